// Helpers shared by the addon's classes (tun.cc, fast_socket.cc): errors with Node-style
// code/errno/syscall properties, and argument checks that throw before anything is touched.
#pragma once

#include <napi.h>
#include <uv.h>

#include <string.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace tuntap {

inline std::string ErrName(int err) {
  // libuv error codes are -errno on Unix; uv_err_name gives "EACCES" etc.
  const char* n = uv_err_name(-err);
  if (n == nullptr || strncmp(n, "Unknown", 7) == 0) return "E" + std::to_string(err);
  return n;
}

// "tuntap: <what>: Permission denied (EACCES)", with errno (negative, like Node's own system
// errors), code and syscall properties.
inline Napi::Error SysError(Napi::Env env, int err, const std::string& what, const char* syscall) {
  std::string code = ErrName(err);
  std::string msg = "tuntap: " + what + ": " + strerror(err) + " (" + code + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, code));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

inline Napi::Error ArgError(Napi::Env env, const std::string& msg, bool range) {
  Napi::Error e = range ? static_cast<Napi::Error>(Napi::RangeError::New(env, "tuntap: " + msg))
                        : static_cast<Napi::Error>(Napi::TypeError::New(env, "tuntap: " + msg));
  e.Set("code", Napi::String::New(env, range ? "ERR_OUT_OF_RANGE" : "ERR_INVALID_ARG_VALUE"));
  return e;
}

// An Error with a `code` property, e.g. ERR_TUNTAP_RELEASED.
inline Napi::Error CodedError(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// o[key] = v (counters: exact up to 2^53).
inline void SetCount(Napi::Object o, const char* key, uint64_t v) {
  o.Set(key, Napi::Number::New(o.Env(), static_cast<double>(v)));
}

// A non-negative integer (array index / byte count) from a JS number.
inline size_t ToIndex(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw ArgError(env, std::string(what) + " must be a number", false);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || std::floor(d) != d || d > 9007199254740991.0) {
    throw ArgError(env, std::string(what) + " must be a non-negative integer", true);
  }
  return static_cast<size_t>(d);
}

// Bytes of a Buffer / TypedArray / DataView / ArrayBuffer.
inline void GetBytes(Napi::Env env, const Napi::Value& v, uint8_t** data, size_t* len) {
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    *data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    *len = ta.ByteLength();
  } else if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    *data = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    *len = dv.ByteLength();
  } else if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *len = ab.ByteLength();
  } else {
    throw ArgError(env, "buffer must be a Buffer, Uint8Array or ArrayBuffer", false);
  }
  if (*data == nullptr && *len > 0) throw ArgError(env, "buffer is detached", false);
}

inline uint32_t* U32Data(Napi::Env env, const Napi::Value& v, const char* what, size_t* count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    throw ArgError(env, std::string(what) + " must be a Uint32Array", false);
  }
  Napi::Uint32Array a = v.As<Napi::Uint32Array>();
  *count = a.ElementLength();
  return a.Data();
}

// A uv_poll_t watching an fd for readability on the Node event loop, for an addon object that
// reads batches: Start/Stop as often as needed; Close before closing the fd (uv_close takes the
// fd out of epoll at once; the handle itself is freed later by libuv).
class ReadPoll {
 public:
  using Callback = void (*)(void* owner, int status);

  ReadPoll() = default;
  ReadPoll(const ReadPoll&) = delete;
  ReadPoll& operator=(const ReadPoll&) = delete;
  ~ReadPoll() { Close(); }

  bool active() const { return active_; }

  // Calls cb(owner, status) on each wake-up until Stop/Close. Throws a SysError about `what`.
  void Start(Napi::Env env, int fd, void* owner, Callback cb, const std::string& what) {
    if (h_ == nullptr) {
      uv_loop_t* loop = nullptr;
      if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
        throw Napi::Error::New(env, "tuntap: cannot get the event loop");
      }
      auto* h = new Handle{};
      int rc = uv_poll_init(loop, &h->poll, fd);
      if (rc < 0) {
        delete h;
        throw SysError(env, -rc, "cannot poll " + what, "uv_poll_init");
      }
      h->poll.data = h;
      h_ = h;
    }
    h_->owner = owner;
    h_->cb = cb;
    int rc = uv_poll_start(&h_->poll, UV_READABLE, [](uv_poll_t* p, int status, int /*events*/) {
      auto* h = static_cast<Handle*>(p->data);
      if (h != nullptr && h->owner != nullptr) h->cb(h->owner, status);
    });
    if (rc < 0) throw SysError(env, -rc, "cannot poll " + what, "uv_poll_start");
    active_ = true;
  }

  void Stop() {
    if (h_ != nullptr && active_) uv_poll_stop(&h_->poll);
    active_ = false;
  }

  void Close() {
    active_ = false;
    if (h_ == nullptr) return;
    h_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&h_->poll),
             [](uv_handle_t* x) { delete reinterpret_cast<Handle*>(x); });
    h_ = nullptr;
  }

 private:
  struct Handle {
    uv_poll_t poll;  // first: the uv_handle_t* libuv gives back is the Handle*
    void* owner;
    Callback cb;
  };
  Handle* h_ = nullptr;
  bool active_ = false;
};

// Runs `fn(arg)` when the Node environment shuts down (process or worker exit), unless this is
// destroyed first.
class EnvCleanupHook {
 public:
  EnvCleanupHook() = default;
  EnvCleanupHook(const EnvCleanupHook&) = delete;
  EnvCleanupHook& operator=(const EnvCleanupHook&) = delete;
  ~EnvCleanupHook() {
    if (env_ != nullptr) napi_remove_env_cleanup_hook(env_, &EnvCleanupHook::Fire, this);
  }

  void Add(napi_env env, void (*fn)(void*), void* arg) {
    fn_ = fn;
    arg_ = arg;
    env_ = env;
    napi_add_env_cleanup_hook(env, &EnvCleanupHook::Fire, this);
  }

 private:
  static void Fire(void* self) {
    auto* hook = static_cast<EnvCleanupHook*>(self);
    hook->env_ = nullptr;
    hook->fn_(hook->arg_);
  }
  napi_env env_ = nullptr;
  void (*fn_)(void*) = nullptr;
  void* arg_ = nullptr;
};

// Calls a reader callback from a libuv callback: MakeCallback runs process.nextTick and
// microtasks queued by it; an exception it throws is reported like any uncaught exception
// (process 'uncaughtException'). The caller must not touch its object afterwards unless it
// knows it is still alive (the callback may have closed it).
inline void CallReader(Napi::Env env, const Napi::FunctionReference& fn, napi_value recv, size_t argc,
                       const napi_value* args, Napi::AsyncContext& ctx) {
  try {
    fn.Value().MakeCallback(recv, argc, args, ctx);
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env, e.Value());
  }
}

}  // namespace tuntap
