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

}  // namespace tuntap
