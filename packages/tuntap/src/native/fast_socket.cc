// N-API class NativeFastSocket: the fast path's UDP socket, owned by native code.
//
// Every datagram carries one link frame sealed with an AEAD (AES-256-GCM or
// ChaCha20-Poly1305, OpenSSL EVP from the OpenSSL Node itself links):
//
//   0      1..3   4..7                     8..15                   16..        last 16
//   0x01   zero   receiver index (u32 LE)  counter (u64 LE)        ciphertext  tag
//
// nonce = 4 zero bytes || counter (LE), AAD = the 16-byte header. The receiver index is the
// receiver's local index of the session; the counter starts at 0 per session and is never
// reused. See packages/protocol/README.md ("Fast path").
//
// Receiving works like NativeTun: a uv_poll_t on the main loop; on each wake-up one
// recvmmsg(2) of up to a batch of datagrams straight into a JS-owned ArrayBuffer (one 64 KiB
// slot per datagram), each opened in place, and one JS call with the frames that
// authenticated. Sending seals each frame into a native scratch area and queues it; the queue
// goes out with one sendmmsg(2) when full, on flush(), or before the event loop next blocks
// (uv_prepare / uv_check hooks), so a frame never waits for the next event.
//
// Native forwarding (optional; JS installs it per session with setForward and attaches a TUN
// with NativeTun.setForwarder): a packet read from the TUN whose destination is in the table
// leaves as a one-packet frame [1][hop limit][IP packet] on that session, sealed and batched
// like any other; an authenticated one-packet frame from an address of the session to one of
// our addresses is written to the TUN in the same wake-up. Anything else goes to JS as before,
// so JS keeps every decision the table cannot make (control frames, transit, too big, spoofed).

#include "fast_socket.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <uv.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "napi_util.h"

namespace tuntap {
namespace {

constexpr uint8_t kTypeData = 0x01;
// Link frame types carrying IP packets (packages/datapath/src/wire/types.ts): [1][hop limit][IP
// packet]..., and [2][hop limit] then per packet [meta][...][IP packet] (meta 0: a plain packet).
constexpr uint8_t kFramePackets = 0x01;
constexpr uint8_t kFrameOffload = 0x02;
// NativeFastSocket objects carry this tag, so that a NativeTun can tell one from anything else.
constexpr napi_type_tag kFastSocketTag = {0x7a1c3e5f0b2d4c61ull, 0x9e8f7a6b5c4d3e2full};
constexpr size_t kHeader = 16;
constexpr size_t kTag = 16;
constexpr size_t kOverhead = kHeader + kTag;
// Room for one received datagram (the largest UDP payload fits).
constexpr size_t kRxSlot = 65536;
// TURN ChannelData (RFC 8656 section 12.4): [channel u16][length u16], channels 0x4000-0x4FFF.
constexpr size_t kChannelHeader = 4;
constexpr uint32_t kFirstChannel = 0x4000;
constexpr uint32_t kLastChannel = 0x4FFF;
// Largest frame: the largest UDP payload over IPv4 (65507) less our overhead.
constexpr size_t kMaxFrame = 65507 - kOverhead;
constexpr uint32_t kMaxBatch = 1024;
// A session refuses to send from this counter on; JS rekeys long before.
constexpr uint64_t kCounterLimit = 1ull << 60;
// Replay window as in WireGuard (RFC 6479): a ring of 128 64-bit words; the newest word is
// never reused for old counters, so the window is 128 * 64 - 64 counters.
constexpr size_t kWindowWords = 128;
constexpr uint64_t kWindowSize = kWindowWords * 64 - 64;
// STUN-looking datagrams handed to JS per wake-up; more are dropped (batchFull).
constexpr int kMaxRawPerWake = 4;
constexpr size_t kStunHeader = 20;
// UDP GSO/GRO: at most this many datagrams per super-datagram (the kernel's UDP_MAX_SEGMENTS
// / UDP_GRO_CNT_MAX on older kernels) and this many payload bytes.
constexpr uint32_t kMaxSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr size_t kCtrlBytes = 64;  // room for one UDP_SEGMENT / UDP_GRO cmsg

enum Drop {
  kDropShort,
  kDropUnknownIndex,
  kDropBadTag,
  kDropReplay,
  kDropTooOld,
  kDropSendFailed,
  kDropNoEndpoint,
  kDropBatchFull,
  kDropBadType,
  kDropNoSession,
  kDropKeyExhausted,
  kDropCount,
};
const char* const kDropNames[kDropCount] = {
    "short",  "unknownIndex", "badTag",  "replay",    "tooOld",       "sendFailed",
    "noEndpoint", "batchFull", "badType", "noSession", "keyExhausted",
};

enum class Cipher { kAes256Gcm, kChacha20Poly1305 };

uint32_t LoadU32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return le32toh(v);
}
uint64_t LoadU64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return le64toh(v);
}
void StoreU32(uint8_t* p, uint32_t v) {
  v = htole32(v);
  memcpy(p, &v, 4);
}
void StoreU64(uint8_t* p, uint64_t v) {
  v = htole64(v);
  memcpy(p, &v, 8);
}

void Nonce(uint8_t iv[12], uint64_t counter) {
  memset(iv, 0, 4);
  StoreU64(iv + 4, counter);
}

uint64_t NowNs() { return uv_hrtime(); }

// Sliding window of received counters (RFC 6479 as WireGuard does it). Check() never changes
// state; Commit() runs only after the datagram authenticated.
class ReplayWindow {
 public:
  enum Verdict { kOk, kReplay, kTooOld };

  Verdict Check(uint64_t counter) const {
    uint64_t c = counter + 1;  // 0 = nothing seen yet
    if (c <= top_ && top_ - c >= kWindowSize) return kTooOld;
    if (c > top_) return kOk;
    return (bits_[(c >> 6) & (kWindowWords - 1)] >> (c & 63)) & 1 ? kReplay : kOk;
  }

  // Returns true when `counter` is newer than any seen before.
  bool Commit(uint64_t counter) {
    uint64_t c = counter + 1;
    uint64_t word = c >> 6;
    bool newest = c > top_;
    if (newest) {
      uint64_t current = top_ >> 6;
      uint64_t advance = word - current;
      if (advance > kWindowWords) advance = kWindowWords;
      for (uint64_t i = 1; i <= advance; i++) bits_[(current + i) & (kWindowWords - 1)] = 0;
      top_ = c;
    }
    bits_[word & (kWindowWords - 1)] |= 1ull << (c & 63);
    return newest;
  }

 private:
  uint64_t top_ = 0;
  uint64_t bits_[kWindowWords] = {};
};

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;  // 0: none
};

class CipherCtx {
 public:
  CipherCtx() = default;
  CipherCtx(const CipherCtx&) = delete;
  CipherCtx& operator=(const CipherCtx&) = delete;
  // EVP_CIPHER_CTX_free wipes the key schedule (OPENSSL_clear_free).
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx_); }

  bool Init(Cipher cipher, const uint8_t* key, bool encrypt) {
    ctx_ = EVP_CIPHER_CTX_new();
    if (ctx_ == nullptr) return false;
    const EVP_CIPHER* c = cipher == Cipher::kAes256Gcm ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
    uint8_t iv[12] = {};
    return EVP_CipherInit_ex(ctx_, c, nullptr, key, iv, encrypt ? 1 : 0) == 1;
  }

  // header (16 bytes, the AAD) is at out; seals prefix[0, pn) || pt[0, n) to out + 16 and
  // appends the tag (the prefix: a frame header put in front of a packet without copying it).
  bool Seal(uint64_t counter, const uint8_t* prefix, size_t pn, const uint8_t* pt, size_t n, uint8_t* out) {
    uint8_t iv[12];
    Nonce(iv, counter);
    int l = 0;
    if (EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1) return false;
    if (EVP_EncryptUpdate(ctx_, nullptr, &l, out, kHeader) != 1) return false;
    size_t done = 0;
    if (pn > 0) {
      if (EVP_EncryptUpdate(ctx_, out + kHeader, &l, prefix, static_cast<int>(pn)) != 1) return false;
      done += static_cast<size_t>(l);
    }
    if (n > 0) {
      if (EVP_EncryptUpdate(ctx_, out + kHeader + done, &l, pt, static_cast<int>(n)) != 1) return false;
      done += static_cast<size_t>(l);
    }
    if (EVP_EncryptFinal_ex(ctx_, out + kHeader + done, &l) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kTag, out + kHeader + pn + n) == 1;
  }

  // Opens the datagram d[0, len) in place (plaintext at d + 16, len - 32 bytes).
  bool Open(uint64_t counter, uint8_t* d, size_t len) {
    uint8_t iv[12];
    Nonce(iv, counter);
    size_t n = len - kOverhead;
    int l = 0;
    if (EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv) != 1) return false;
    if (EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kTag, d + len - kTag) != 1) return false;
    if (EVP_DecryptUpdate(ctx_, nullptr, &l, d, kHeader) != 1) return false;
    int done = 0;
    if (n > 0) {
      if (EVP_DecryptUpdate(ctx_, d + kHeader, &l, d + kHeader, static_cast<int>(n)) != 1) return false;
      done = l;
    }
    return EVP_DecryptFinal_ex(ctx_, d + kHeader + done, &l) == 1;
  }

 private:
  EVP_CIPHER_CTX* ctx_ = nullptr;
};

// An IPv4 (v4-mapped) or IPv6 address: the key of the native forwarding table.
struct AddrKey {
  uint64_t hi = 0, lo = 0;
  bool operator==(const AddrKey& o) const { return hi == o.hi && lo == o.lo; }
};
struct AddrKeyHash {
  size_t operator()(const AddrKey& k) const {
    return static_cast<size_t>((k.hi * 0x9E3779B97F4A7C15ull) ^ k.lo ^ (k.lo >> 29));
  }
};

AddrKey KeyOf(const uint8_t* a, bool v4) {
  uint8_t b[16] = {};
  if (v4) {
    b[10] = b[11] = 0xff;
    memcpy(b + 12, a, 4);
  } else {
    memcpy(b, a, 16);
  }
  AddrKey k;
  memcpy(&k.hi, b, 8);
  memcpy(&k.lo, b + 8, 8);
  return k;
}

std::string KeyText(const AddrKey& k) {
  uint8_t b[16];
  memcpy(b, &k.hi, 8);
  memcpy(b + 8, &k.lo, 8);
  char buf[INET6_ADDRSTRLEN] = "";
  in6_addr a;
  memcpy(&a, b, 16);
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    inet_ntop(AF_INET, b + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, b, buf, sizeof buf);
  }
  return buf;
}

// Source and destination of the IP packet p[0, len) when it is exactly one well-formed IPv4 or
// IPv6 packet (its header's length is len); false for anything else (JS decides about it).
bool PacketAddresses(const uint8_t* p, size_t len, AddrKey* src, AddrKey* dst) {
  if (len < 20) return false;
  uint8_t version = p[0] >> 4;
  if (version == 4) {
    if ((p[0] & 0x0f) < 5 || ((static_cast<size_t>(p[2]) << 8) | p[3]) != len) return false;
    *src = KeyOf(p + 12, true);
    *dst = KeyOf(p + 16, true);
    return true;
  }
  if (version == 6) {
    if (len < 40 || 40 + ((static_cast<size_t>(p[4]) << 8) | p[5]) != len) return false;
    *src = KeyOf(p + 8, false);
    *dst = KeyOf(p + 24, false);
    return true;
  }
  return false;
}

struct Session {
  uint32_t remoteIndex = 0;
  CipherCtx enc;
  CipherCtx dec;
  uint64_t sendCounter = 0;
  ReplayWindow replay;
  Endpoint endpoint;
  uint64_t txPackets = 0, txBytes = 0, rxPackets = 0, rxBytes = 0;
  uint64_t lastRxNs = 0;  // 0: never
  // TURN channel (0x4000-0x4FFF) whose ChannelData header goes in front of each datagram: the
  // endpoint is then our TURN server, which relays to the peer. 0: none, straight to the peer.
  uint16_t channel = 0;
  // Native forwarding (setForward): one-packet frames to the addresses that name this session in
  // the table, and from them to our own address, go between the TUN and the socket without JS.
  bool forward = false;
  uint8_t hopLimit = 0;
  uint32_t maxPacket = 0;  // larger packets go to JS (too-big handling, fragments)
  std::vector<AddrKey> addresses;
  uint64_t fwdTxPackets = 0, fwdTxBytes = 0, fwdRxPackets = 0, fwdRxBytes = 0, fwdVnicFull = 0;
};

// A destination of the forwarding table: the session that carries it, and per-address counts
// (the datapath's route counters).
struct Dest {
  Session* session = nullptr;
  uint64_t txPackets = 0, txBytes = 0, rxPackets = 0;
};

// A u32 from a JS number (session indexes).
uint32_t ToU32(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw ArgError(env, std::string(what) + " must be a number", false);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || std::floor(d) != d || d > 4294967295.0) {
    throw ArgError(env, std::string(what) + " must be an integer within 0..4294967295", true);
  }
  return static_cast<uint32_t>(d);
}

const uint8_t* KeyBytes(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw ArgError(env, std::string(what) + " must be a Uint8Array of 32 bytes", false);
  }
  uint8_t* data = nullptr;
  size_t len = 0;
  GetBytes(env, v, &data, &len);
  if (len != 32) {
    throw ArgError(env, std::string(what) + " must be 32 bytes, got " + std::to_string(len), true);
  }
  return data;
}

class NativeFastSocket : public Napi::ObjectWrap<NativeFastSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeFastSocket",
                       {
                           InstanceAccessor<&NativeFastSocket::GetPort>("port"),
                           InstanceAccessor<&NativeFastSocket::GetAddress>("address"),
                           InstanceMethod<&NativeFastSocket::SetReader>("setReader"),
                           InstanceMethod<&NativeFastSocket::SetSession>("setSession"),
                           InstanceMethod<&NativeFastSocket::RemoveSession>("removeSession"),
                           InstanceMethod<&NativeFastSocket::SetEndpoint>("setEndpoint"),
                           InstanceMethod<&NativeFastSocket::SetChannel>("setChannel"),
                           InstanceMethod<&NativeFastSocket::Send>("send"),
                           InstanceMethod<&NativeFastSocket::FlushJs>("flush"),
                           InstanceMethod<&NativeFastSocket::SendRaw>("sendRaw"),
                           InstanceMethod<&NativeFastSocket::SessionStats>("sessionStats"),
                           InstanceMethod<&NativeFastSocket::SetForward>("setForward"),
                           InstanceMethod<&NativeFastSocket::ClearForward>("clearForward"),
                           InstanceMethod<&NativeFastSocket::SetLocalAddresses>("setLocalAddresses"),
                           InstanceMethod<&NativeFastSocket::HoldForward>("holdForward"),
                           InstanceMethod<&NativeFastSocket::ForwardStats>("forwardStats"),
                           InstanceMethod<&NativeFastSocket::Stats>("stats"),
                           InstanceMethod<&NativeFastSocket::Close>("close"),
                       });
  }

  // new NativeFastSocket(address: string, port: number, batchSize: number,
  //                      cipher: "aes-256-gcm" | "chacha20-poly1305", socketBufferBytes: number,
  //                      udpOffload: boolean)
  explicit NativeFastSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeFastSocket>(info) {
    Napi::Env env = info.Env();
    env_ = env;
    napi_type_tag_object(env, info.This(), &kFastSocketTag);
    if (!info[0].IsString()) throw ArgError(env, "address must be an IP address string", false);
    std::string address = info[0].As<Napi::String>().Utf8Value();
    size_t port = ToIndex(env, info[1], "port");
    if (port > 65535) throw ArgError(env, "port must be within 0..65535", true);
    size_t batch = ToIndex(env, info[2], "batchSize");
    if (batch < 1 || batch > kMaxBatch) throw ArgError(env, "batchSize must be within 1..1024", true);
    if (!info[3].IsString()) throw ArgError(env, "cipher must be a string", false);
    std::string cipher = info[3].As<Napi::String>().Utf8Value();
    if (cipher == "aes-256-gcm") {
      cipher_ = Cipher::kAes256Gcm;
    } else if (cipher == "chacha20-poly1305") {
      cipher_ = Cipher::kChacha20Poly1305;
    } else {
      throw ArgError(env, "cipher must be \"aes-256-gcm\" or \"chacha20-poly1305\"", false);
    }
    size_t sockBuf = ToIndex(env, info[4], "socketBufferBytes");
    if (sockBuf > 0x7fffffff) throw ArgError(env, "socketBufferBytes must be below 2 GiB", true);
    bool udpOffload = info[5].ToBoolean().Value();

    sockaddr_storage bindAddr{};
    socklen_t bindLen = 0;
    if (!ParseAddress(address, static_cast<uint16_t>(port), /*family=*/0, &bindAddr, &bindLen)) {
      throw ArgError(env, "invalid IP address \"" + address + "\"", false);
    }
    family_ = bindAddr.ss_family;
    int fd = socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw SysError(env, errno, "cannot create the fast-path socket", "socket");
    if (family_ == AF_INET6) {
      // "::" takes IPv4 too (as v4-mapped addresses).
      int off = 0;
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    }
    // DF on every datagram, the kernel's path MTU cache ignored: a datagram larger than the
    // route's device MTU is refused (EMSGSIZE, counted as sendFailed) instead of fragmented, and
    // one larger than a router's MTU is lost, so the link's own prober (path-mtu.ts) measures
    // the path. IP_ applies to IPv4 sent from a "::" socket too (v4-mapped).
    int probe = IP_PMTUDISC_PROBE;
    setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probe, sizeof probe);
    if (family_ == AF_INET6) {
      int probe6 = IPV6_PMTUDISC_PROBE;
      setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &probe6, sizeof probe6);
    }
    if (sockBuf > 0) {
      int sz = static_cast<int>(sockBuf);
      // *FORCE (root / CAP_NET_ADMIN) goes beyond net.core.[rw]mem_max.
      if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
      }
      if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
      }
    }
    if (udpOffload) {
      // GRO: the kernel may hand us up to 64 same-size datagrams of one sender as one, with
      // their size in a cmsg. GSO (UDP_SEGMENT per send) needs no socket option.
      int on = 1;
      gro_ = setsockopt(fd, IPPROTO_UDP, UDP_GRO, &on, sizeof on) == 0;
      gso_ = true;
    }
    if (bind(fd, reinterpret_cast<sockaddr*>(&bindAddr), bindLen) < 0) {
      int err = errno;
      close(fd);
      throw SysError(env, err, "cannot bind the fast-path socket to " + address + ":" + std::to_string(port),
                     "bind");
    }
    sockaddr_storage local{};
    socklen_t localLen = sizeof local;
    getsockname(fd, reinterpret_cast<sockaddr*>(&local), &localLen);
    FormatAddress(local, &address_, &port_);
    fd_ = fd;
    batch_ = static_cast<uint32_t>(batch);

    txBuf_ = static_cast<uint8_t*>(malloc(static_cast<size_t>(batch_) * kRxSlot));
    if (txBuf_ == nullptr) {
      Shutdown();
      throw Napi::Error::New(env, "tuntap: cannot allocate the fast-path send buffer");
    }
    txIov_.resize(batch_);
    txAddr_.resize(batch_);
    txNameLen_.resize(batch_);
    outMsgs_.resize(batch_);
    outFirst_.resize(batch_);
    outCtrl_.resize(static_cast<size_t>(batch_) * kCtrlBytes / sizeof(uint64_t));
    rxMsgs_.resize(batch_);
    rxIov_.resize(batch_);
    rxAddr_.resize(batch_);
    rxCtrl_.resize(static_cast<size_t>(batch_) * kCtrlBytes / sizeof(uint64_t));

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Shutdown();
      throw Napi::Error::New(env, "tuntap: cannot get the event loop");
    }
    // Flush hooks: prepare runs before the loop blocks in poll, check right after poll
    // callbacks. Unreferenced: they never keep the process alive.
    prepare_ = new uv_prepare_t;
    uv_prepare_init(loop, prepare_);
    prepare_->data = this;
    uv_prepare_start(prepare_, [](uv_prepare_t* h) {
      if (h->data != nullptr) static_cast<NativeFastSocket*>(h->data)->Flush();
    });
    uv_unref(reinterpret_cast<uv_handle_t*>(prepare_));
    check_ = new uv_check_t;
    uv_check_init(loop, check_);
    check_->data = this;
    uv_check_start(check_, [](uv_check_t* h) {
      if (h->data != nullptr) static_cast<NativeFastSocket*>(h->data)->Flush();
    });
    uv_unref(reinterpret_cast<uv_handle_t*>(check_));

    cleanup_.Add(env, [](void* self) { static_cast<NativeFastSocket*>(self)->Shutdown(); }, this);
  }

  ~NativeFastSocket() override { Shutdown(); }

  // The bridge a NativeTun forwards through (made at first use).
  std::shared_ptr<ForwardBridge> Bridge(Napi::Env env) {
    CheckOpen(env);
    if (!bridge_) {
      bridge_ = std::make_shared<ForwardBridge>();
      bridge_->socket = this;
      bridge_->forward = [](void* self, uint8_t* pkt, size_t len, uint32_t csumStart, uint32_t csumOffset) {
        return static_cast<NativeFastSocket*>(self)->ForwardFromTun(pkt, len, csumStart, csumOffset);
      };
      bridge_->flush = [](void* self) { static_cast<NativeFastSocket*>(self)->Flush(); };
    }
    return bridge_;
  }

 private:
  // ---- addresses --------------------------------------------------------------------------

  // Parses an IPv4/IPv6 literal. family 0: the literal's own; AF_INET6: IPv4 becomes
  // v4-mapped; AF_INET: IPv6 is refused.
  static bool ParseAddress(const std::string& text, uint16_t port, int family, sockaddr_storage* out,
                           socklen_t* len) {
    memset(out, 0, sizeof *out);
    in_addr a4;
    in6_addr a6;
    if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
      if (family == AF_INET6) {
        auto* s = reinterpret_cast<sockaddr_in6*>(out);
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(port);
        s->sin6_addr.s6_addr[10] = 0xff;
        s->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&s->sin6_addr.s6_addr[12], &a4, 4);
        *len = sizeof(sockaddr_in6);
      } else {
        auto* s = reinterpret_cast<sockaddr_in*>(out);
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        s->sin_addr = a4;
        *len = sizeof(sockaddr_in);
      }
      return true;
    }
    if (family != AF_INET && inet_pton(AF_INET6, text.c_str(), &a6) == 1) {
      auto* s = reinterpret_cast<sockaddr_in6*>(out);
      s->sin6_family = AF_INET6;
      s->sin6_port = htons(port);
      s->sin6_addr = a6;
      *len = sizeof(sockaddr_in6);
      return true;
    }
    return false;
  }

  // v4-mapped IPv6 addresses come out as plain IPv4.
  static void FormatAddress(const sockaddr_storage& ss, std::string* address, uint16_t* port) {
    char buf[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) {
      const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
      *port = ntohs(s->sin_port);
    } else {
      const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
      if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
        inet_ntop(AF_INET, &s->sin6_addr.s6_addr[12], buf, sizeof buf);
      } else {
        inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof buf);
      }
      *port = ntohs(s->sin6_port);
    }
    *address = buf;
  }

  Napi::Object EndpointObject(Napi::Env env, const sockaddr_storage& ss) {
    std::string address;
    uint16_t port = 0;
    FormatAddress(ss, &address, &port);
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", Napi::String::New(env, address));
    o.Set("port", Napi::Number::New(env, port));
    return o;
  }

  // { address, port } -> a destination for this socket's family; throws on bad input.
  Endpoint ToEndpoint(Napi::Env env, const Napi::Value& v) {
    if (!v.IsObject()) throw ArgError(env, "endpoint must be an object { address, port }", false);
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value a = o.Get("address");
    if (!a.IsString()) throw ArgError(env, "endpoint.address must be an IP address string", false);
    std::string text = a.As<Napi::String>().Utf8Value();
    size_t port = ToIndex(env, o.Get("port"), "endpoint.port");
    if (port < 1 || port > 65535) throw ArgError(env, "endpoint.port must be within 1..65535", true);
    Endpoint ep;
    if (!ParseAddress(text, static_cast<uint16_t>(port), family_, &ep.addr, &ep.len)) {
      bool v6 = text.find(':') != std::string::npos;
      throw ArgError(env,
                     v6 && family_ == AF_INET
                         ? "endpoint.address \"" + text + "\" is IPv6 but the socket is bound to IPv4 " + address_
                         : "endpoint.address \"" + text + "\" is not an IP address",
                     false);
    }
    return ep;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  template <typename H>
  static void CloseHandle(H*& h) {
    if (h == nullptr) return;
    h->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* x) { delete reinterpret_cast<H*>(x); });
    h = nullptr;
  }

  // Stops everything, wipes all keys, closes the fd. Never calls into JS.
  void Shutdown() {
    poll_.Close();
    CloseHandle(prepare_);
    CloseHandle(check_);
    if (bridge_) {
      bridge_->socket = nullptr;
      bridge_->forward = nullptr;
      bridge_->flush = nullptr;
    }
    dests_.clear();
    sessions_.clear();  // ~CipherCtx wipes the key schedules
    pending_ = 0;
    txOff_ = 0;
    if (txBuf_ != nullptr) {
      free(txBuf_);
      txBuf_ = nullptr;
    }
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) throw CodedError(env, "tuntap: fast socket is closed", "ERR_FAST_SOCKET_CLOSED");
  }

  // Sends what is pending, then as Shutdown, and lets JS collect this object.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) Flush();
    Shutdown();
    for (auto* ref : {&rxIndexes_, &rxOffsets_, &rxLengths_}) ref->Reset();
    rxBuf_.Reset();
    reader_.Reset();
    if (refed_) Unref();
    refed_ = false;
    return info.Env().Undefined();
  }

  Napi::Value GetPort(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value GetAddress(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), address_); }

  // ---- sessions -----------------------------------------------------------------------------

  // setSession(localIndex, remoteIndex, sendKey, recvKey, endpoint | null)
  Napi::Value SetSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint32_t local = ToU32(env, info[0], "localIndex");
    uint32_t remote = ToU32(env, info[1], "remoteIndex");
    const uint8_t* sendKey = KeyBytes(env, info[2], "sendKey");
    const uint8_t* recvKey = KeyBytes(env, info[3], "recvKey");
    Endpoint ep;
    if (!info[4].IsNull() && !info[4].IsUndefined()) ep = ToEndpoint(env, info[4]);
    auto s = std::make_unique<Session>();
    s->remoteIndex = remote;
    s->endpoint = ep;
    if (!s->enc.Init(cipher_, sendKey, true) || !s->dec.Init(cipher_, recvKey, false)) {
      throw Napi::Error::New(env, "tuntap: OpenSSL could not set up the session's cipher");
    }
    auto old = sessions_.find(local);
    if (old != sessions_.end()) UnlinkForward(*old->second);
    sessions_[local] = std::move(s);  // a replaced session's keys are wiped here
    return env.Undefined();
  }

  Napi::Value RemoveSession(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t local = ToU32(env, info[0], "localIndex");
    auto it = sessions_.find(local);
    if (it != sessions_.end()) {
      UnlinkForward(*it->second);
      sessions_.erase(it);
    }
    return env.Undefined();
  }

  // ---- native forwarding --------------------------------------------------------------------

  // Takes the session out of the table and resets its forwarding counts.
  void UnlinkForward(Session& s) {
    for (const AddrKey& k : s.addresses) {
      auto it = dests_.find(k);
      if (it != dests_.end() && it->second.session == &s) dests_.erase(it);
    }
    s.addresses.clear();
    s.forward = false;
    s.fwdTxPackets = s.fwdTxBytes = s.fwdRxPackets = s.fwdRxBytes = s.fwdVnicFull = 0;
  }

  AddrKey ToKey(Napi::Env env, const Napi::Value& v, const char* what) {
    if (!v.IsString()) throw ArgError(env, std::string(what) + " must be an IP address string", false);
    std::string text = v.As<Napi::String>().Utf8Value();
    uint8_t b[16];
    if (inet_pton(AF_INET, text.c_str(), b) == 1) return KeyOf(b, true);
    if (inet_pton(AF_INET6, text.c_str(), b) == 1) return KeyOf(b, false);
    throw ArgError(env, std::string(what) + " \"" + text + "\" is not an IP address", false);
  }

  // setForward(localIndex, hopLimit, maxPacket, addresses: string[]): packets to these addresses
  // go on this session natively, and packets from them on it are written to the TUN (when for
  // one of our addresses). Replaces the session's entry; its counts start at zero. An address
  // another session had moves to this one.
  Napi::Value SetForward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint32_t local = ToU32(env, info[0], "localIndex");
    size_t hops = ToIndex(env, info[1], "hopLimit");
    if (hops < 1 || hops > 255) throw ArgError(env, "hopLimit must be within 1..255", true);
    size_t maxPacket = ToIndex(env, info[2], "maxPacket");
    if (maxPacket < 20 || maxPacket > 65535) throw ArgError(env, "maxPacket must be within 20..65535", true);
    if (!info[3].IsArray()) throw ArgError(env, "addresses must be an array of IP address strings", false);
    Napi::Array list = info[3].As<Napi::Array>();
    if (list.Length() > 65536) throw ArgError(env, "at most 65536 addresses per session", true);
    std::vector<AddrKey> keys;
    keys.reserve(list.Length());
    for (uint32_t i = 0; i < list.Length(); i++) keys.push_back(ToKey(env, list.Get(i), "address"));
    Session& s = Existing(env, local);
    UnlinkForward(s);
    s.forward = true;
    s.hopLimit = static_cast<uint8_t>(hops);
    s.maxPacket = static_cast<uint32_t>(maxPacket);
    for (const AddrKey& k : keys) {
      Dest& d = dests_[k];
      if (d.session == &s) continue;  // listed twice
      if (d.session != nullptr) {
        auto& other = d.session->addresses;
        for (size_t j = 0; j < other.size(); j++) {
          if (other[j] == k) {
            other.erase(other.begin() + static_cast<std::ptrdiff_t>(j));
            break;
          }
        }
      }
      d = Dest{};
      d.session = &s;
      s.addresses.push_back(k);
    }
    return env.Undefined();
  }

  // clearForward(localIndex): the session's packets go through JS again (no-op when none).
  Napi::Value ClearForward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t local = ToU32(env, info[0], "localIndex");
    auto it = sessions_.find(local);
    if (it != sessions_.end()) UnlinkForward(*it->second);
    return env.Undefined();
  }

  // setLocalAddresses(ipv4 | null, ipv6 | null): our own addresses, the only destinations a
  // received packet is written to the TUN for natively (and sources it may never have).
  Napi::Value SetLocalAddresses(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool v4 = !info[0].IsNull() && !info[0].IsUndefined();
    bool v6 = !info[1].IsNull() && !info[1].IsUndefined();
    AddrKey k4 = v4 ? ToKey(env, info[0], "ipv4") : AddrKey{};
    AddrKey k6 = v6 ? ToKey(env, info[1], "ipv6") : AddrKey{};
    ownV4_ = k4;
    ownV6_ = k6;
    haveOwnV4_ = v4;
    haveOwnV6_ = v6;
    return env.Undefined();
  }

  // holdForward(hold): while held, every packet read from the TUN goes to JS (its send queue
  // holds packets already: later ones must not overtake them).
  Napi::Value HoldForward(const Napi::CallbackInfo& info) {
    fwdHold_ = info[0].ToBoolean().Value();
    return info.Env().Undefined();
  }

  // forwardStats(localIndex): what was forwarded natively since setForward, or null.
  Napi::Value ForwardStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t local = ToU32(env, info[0], "localIndex");
    auto it = sessions_.find(local);
    if (it == sessions_.end() || !it->second->forward) return env.Null();
    const Session& s = *it->second;
    Napi::Object o = TrafficObject(env, s.fwdTxPackets, s.fwdTxBytes, s.fwdRxPackets, s.fwdRxBytes);
    SetCount(o, "vnicFull", s.fwdVnicFull);
    Napi::Array list = Napi::Array::New(env, s.addresses.size());
    for (size_t i = 0; i < s.addresses.size(); i++) {
      auto d = dests_.find(s.addresses[i]);
      Napi::Object a = Napi::Object::New(env);
      a.Set("address", Napi::String::New(env, KeyText(s.addresses[i])));
      SetCount(a, "txPackets", d == dests_.end() ? 0 : d->second.txPackets);
      SetCount(a, "txBytes", d == dests_.end() ? 0 : d->second.txBytes);
      SetCount(a, "rxPackets", d == dests_.end() ? 0 : d->second.rxPackets);
      list.Set(static_cast<uint32_t>(i), a);
    }
    o.Set("addresses", list);
    return o;
  }

  bool IsOwn(const AddrKey& k) const { return (haveOwnV4_ && k == ownV4_) || (haveOwnV6_ && k == ownV6_); }

  // A packet read from the TUN: sealed in a one-packet frame and queued when its destination is
  // in the table and nothing stands in the way; false hands it to JS.
  bool ForwardFromTun(uint8_t* pkt, size_t len, uint32_t csumStart, uint32_t csumOffset) {
    if (fwdHold_ || fd_ < 0 || dests_.empty()) return false;
    AddrKey src, dst;
    if (!PacketAddresses(pkt, len, &src, &dst)) return false;
    auto it = dests_.find(dst);
    if (it == dests_.end()) return false;
    Dest& d = it->second;
    Session& s = *d.session;
    if (!s.forward || len > s.maxPacket || s.endpoint.len == 0 || s.sendCounter >= kCounterLimit) return false;
    if (csumStart != kNoCsum) {
      if (csumStart < 20 || csumStart >= len || csumOffset > len - csumStart - 2) return false;
      // The field holds the pseudo-header sum; the sum over the rest finishes it (RFC 1071).
      uint64_t sum = 0;
      const uint8_t* p = pkt + csumStart;
      size_t n = len - csumStart;
      for (; n >= 2; p += 2, n -= 2) sum += (static_cast<uint32_t>(p[0]) << 8) | p[1];
      if (n == 1) sum += static_cast<uint32_t>(p[0]) << 8;
      while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
      uint16_t c = static_cast<uint16_t>(~sum);
      bool udp = (pkt[0] >> 4) == 4 ? pkt[9] == 17 : pkt[6] == 17;
      if (c == 0 && udp) c = 0xffff;  // a UDP checksum of 0 means "none"
      pkt[csumStart + csumOffset] = static_cast<uint8_t>(c >> 8);
      pkt[csumStart + csumOffset + 1] = static_cast<uint8_t>(c);
    }
    const uint8_t header[2] = {kFramePackets, s.hopLimit};
    // Not handed back once changed: a failed seal is dropped and counted (sendFailed).
    if (!SealAndQueue(s, header, sizeof header, pkt, len)) return csumStart != kNoCsum;
    s.fwdTxPackets++;
    s.fwdTxBytes += len;
    d.txPackets++;
    d.txBytes += len;
    return true;
  }

  // An authenticated frame of session s: written to the TUN when it holds one packet from an
  // address of the session to one of ours (the datapath's source check). False hands it to JS
  // (control frames, transit, several packets, anything else).
  bool DeliverToTun(Session& s, const uint8_t* frame, size_t n) {
    const ForwardBridge* b = bridge_.get();
    if (b == nullptr || b->tunFd < 0 || n < 3) return false;
    size_t at;
    if (frame[0] == kFramePackets) {
      at = 2;
    } else if (frame[0] == kFrameOffload && frame[2] == 0) {
      at = 3;
    } else {
      return false;
    }
    const uint8_t* pkt = frame + at;
    size_t len = n - at;
    AddrKey src, dst;
    if (!PacketAddresses(pkt, len, &src, &dst) || !IsOwn(dst) || IsOwn(src)) return false;
    auto it = dests_.find(src);
    if (it == dests_.end() || it->second.session != &s) return false;
    static const uint8_t kZeroVnet[10] = {};
    ssize_t w;
    do {
      if (b->tunVnet) {
        iovec iov[2] = {{const_cast<uint8_t*>(kZeroVnet), sizeof kZeroVnet}, {const_cast<uint8_t*>(pkt), len}};
        w = writev(b->tunFd, iov, 2);
      } else {
        w = write(b->tunFd, pkt, len);
      }
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;  // JS writes it again and counts why
      s.fwdVnicFull++;
      return true;
    }
    s.fwdRxPackets++;
    s.fwdRxBytes += len;
    it->second.rxPackets++;
    wroteTun_ = true;
    return true;
  }

  Session& Existing(Napi::Env env, uint32_t local) {
    auto it = sessions_.find(local);
    if (it == sessions_.end()) {
      Napi::Error e = Napi::RangeError::New(env, "tuntap: no fast-path session with local index " +
                                                     std::to_string(local));
      e.Set("code", Napi::String::New(env, "ERR_FAST_NO_SESSION"));
      throw e;
    }
    return *it->second;
  }

  Napi::Value SetEndpoint(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint32_t local = ToU32(env, info[0], "localIndex");
    Endpoint ep = ToEndpoint(env, info[1]);
    Existing(env, local).endpoint = ep;
    return env.Undefined();
  }

  // setChannel(localIndex, channel): datagrams go as TURN ChannelData on `channel` (0: plainly).
  Napi::Value SetChannel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint32_t local = ToU32(env, info[0], "localIndex");
    uint32_t channel = ToU32(env, info[1], "channel");
    if (channel != 0 && (channel < kFirstChannel || channel > kLastChannel)) {
      throw ArgError(env, "channel must be 0 or within 0x4000..0x4FFF", true);
    }
    Existing(env, local).channel = static_cast<uint16_t>(channel);
    return env.Undefined();
  }

  static Napi::Object TrafficObject(Napi::Env env, uint64_t txPackets, uint64_t txBytes, uint64_t rxPackets,
                                    uint64_t rxBytes) {
    Napi::Object o = Napi::Object::New(env);
    SetCount(o, "txPackets", txPackets);
    SetCount(o, "txBytes", txBytes);
    SetCount(o, "rxPackets", rxPackets);
    SetCount(o, "rxBytes", rxBytes);
    return o;
  }

  Napi::Value SessionStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t local = ToU32(env, info[0], "localIndex");
    auto it = sessions_.find(local);
    if (it == sessions_.end()) return env.Null();
    const Session& s = *it->second;
    Napi::Object o = TrafficObject(env, s.txPackets, s.txBytes, s.rxPackets, s.rxBytes);
    o.Set("endpoint", s.endpoint.len == 0 ? env.Null() : static_cast<Napi::Value>(EndpointObject(env, s.endpoint.addr)));
    o.Set("lastRxMs", Napi::Number::New(env, s.lastRxNs == 0 ? -1.0
                                                              : static_cast<double>((NowNs() - s.lastRxNs) / 1000000)));
    SetCount(o, "sendCounter", s.sendCounter);
    return o;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    SetCount(o, "rxDatagrams", rxDatagrams_);
    SetCount(o, "txDatagrams", txDatagrams_);
    SetCount(o, "rxMessages", rxMessages_);
    SetCount(o, "txMessages", txMessages_);
    o.Set("udpGso", Napi::Boolean::New(env, gso_));
    o.Set("udpGro", Napi::Boolean::New(env, gro_));
    Napi::Object d = Napi::Object::New(env);
    for (int i = 0; i < kDropCount; i++) SetCount(d, kDropNames[i], drops_[i]);
    o.Set("drops", d);
    return o;
  }

  // ---- sending ------------------------------------------------------------------------------

  // send(localIndex, buf, start, end): boolean. Hot path: plain N-API calls, no handles kept.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint32_t local = ToU32(env, info[0], "localIndex");
    napi_typedarray_type type;
    size_t elems = 0;
    void* data = nullptr;
    napi_value ab;
    size_t byteOffset = 0;
    if (!info[1].IsTypedArray() ||
        napi_get_typedarray_info(env, info[1], &type, &elems, &data, &ab, &byteOffset) != napi_ok ||
        type != napi_uint8_array) {
      throw ArgError(env, "buf must be a Buffer or Uint8Array", false);
    }
    size_t start = ToIndex(env, info[2], "start");
    size_t end = ToIndex(env, info[3], "end");
    if (start > end || end > elems) {
      throw ArgError(env, "start/end (" + std::to_string(start) + ", " + std::to_string(end) +
                              ") must satisfy 0 <= start <= end <= " + std::to_string(elems),
                     true);
    }
    size_t n = end - start;
    if (n > kMaxFrame) {
      throw ArgError(env, "frame of " + std::to_string(n) + " bytes is longer than " + std::to_string(kMaxFrame),
                     true);
    }
    if (data == nullptr && elems > 0) throw ArgError(env, "buf is detached", false);
    auto it = sessions_.find(local);
    if (it == sessions_.end()) {
      drops_[kDropNoSession]++;
      return Napi::Boolean::New(env, false);
    }
    return Napi::Boolean::New(env, SealAndQueue(*it->second, nullptr, 0, static_cast<const uint8_t*>(data) + start, n));
  }

  // Seals prefix[0, pn) || frame[0, n) for session s into the pending batch.
  bool SealAndQueue(Session& s, const uint8_t* prefix, size_t pn, const uint8_t* frame, size_t n) {
    n += pn;
    if (s.endpoint.len == 0) {
      drops_[kDropNoEndpoint]++;
      return false;
    }
    if (s.sendCounter >= kCounterLimit) {
      drops_[kDropKeyExhausted]++;
      return false;
    }
    size_t framing = s.channel != 0 ? kChannelHeader : 0;
    if (n + framing > kMaxFrame) {
      drops_[kDropSendFailed]++;
      return false;
    }
    if (pending_ == batch_) Flush();
    uint8_t* datagram = txBuf_ + txOff_;
    uint8_t* out = datagram + framing;
    if (framing != 0) {
      datagram[0] = static_cast<uint8_t>(s.channel >> 8);
      datagram[1] = static_cast<uint8_t>(s.channel);
      datagram[2] = static_cast<uint8_t>((n + kOverhead) >> 8);
      datagram[3] = static_cast<uint8_t>(n + kOverhead);
    }
    out[0] = kTypeData;
    out[1] = out[2] = out[3] = 0;
    StoreU32(out + 4, s.remoteIndex);
    StoreU64(out + 8, s.sendCounter);
    if (!s.enc.Seal(s.sendCounter, prefix, pn, frame, n - pn, out)) {
      drops_[kDropSendFailed]++;
      return false;
    }
    s.sendCounter++;
    size_t len = framing + n + kOverhead;
    uint32_t i = pending_++;
    txIov_[i].iov_base = datagram;
    txIov_[i].iov_len = len;
    memcpy(&txAddr_[i], &s.endpoint.addr, s.endpoint.len);
    txNameLen_[i] = s.endpoint.len;
    txOff_ += (len + 15) & ~static_cast<size_t>(15);
    s.txPackets++;
    s.txBytes += n;
    if (pending_ == batch_) Flush();
    return true;
  }

  // sendmmsg everything pending. With GSO, runs of datagrams to the same endpoint of the same
  // size (the last may be shorter) go as one message with a UDP_SEGMENT cmsg: the kernel cuts
  // it into the same datagrams after one pass through the stack. A datagram the kernel refuses
  // is dropped and counted (sendFailed; on EAGAIN, all the rest).
  void Flush() {
    if (pending_ == 0 || fd_ < 0) {
      pending_ = 0;
      txOff_ = 0;
      return;
    }
    uint32_t nout = 0;
    for (uint32_t i = 0; i < pending_;) {
      uint32_t j = i + 1;
      size_t seg = txIov_[i].iov_len;
      if (gso_) {
        size_t total = seg;
        while (j < pending_ && j - i < kMaxSegments && txIov_[j].iov_len <= seg &&
               total + txIov_[j].iov_len <= kMaxGsoBytes && txNameLen_[j] == txNameLen_[i] &&
               memcmp(&txAddr_[j], &txAddr_[i], txNameLen_[i]) == 0) {
          total += txIov_[j].iov_len;
          bool shorter = txIov_[j].iov_len < seg;
          j++;
          if (shorter) break;
        }
      }
      BuildMessage(nout, i, j - i, seg);
      nout++;
      i = j;
    }
    uint32_t k = 0;
    while (k < nout) {
      int r = sendmmsg(fd_, outMsgs_.data() + k, nout - k, MSG_DONTWAIT);
      if (r > 0) {
        for (int x = 0; x < r; x++) txDatagrams_ += outMsgs_[k + x].msg_hdr.msg_iovlen;
        txMessages_ += static_cast<uint64_t>(r);
        k += static_cast<uint32_t>(r);
        continue;
      }
      int err = r < 0 ? errno : EIO;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        for (uint32_t x = k; x < nout; x++) drops_[kDropSendFailed] += outMsgs_[x].msg_hdr.msg_iovlen;
        break;
      }
      // This message failed. A GSO one may fail only for being GSO (e.g. a segment larger than
      // the route's MTU: EINVAL; a device without checksum offload: EIO): send its datagrams
      // one by one instead.
      uint32_t n = static_cast<uint32_t>(outMsgs_[k].msg_hdr.msg_iovlen);
      if (n > 1) {
        if (err == EIO || err == EOPNOTSUPP || err == ENOPROTOOPT) gso_ = false;
        SendEach(outFirst_[k], n);
      } else {
        drops_[kDropSendFailed]++;
      }
      k++;
    }
    pending_ = 0;
    txOff_ = 0;
  }

  // outMsgs_[out] := datagrams [first, first + n) as one message (GSO when n > 1).
  void BuildMessage(uint32_t out, uint32_t first, uint32_t n, size_t seg) {
    msghdr& h = outMsgs_[out].msg_hdr;
    memset(&h, 0, sizeof h);
    h.msg_name = &txAddr_[first];
    h.msg_namelen = txNameLen_[first];
    h.msg_iov = &txIov_[first];
    h.msg_iovlen = n;
    outFirst_[out] = first;
    if (n > 1) {
      auto* ctrl = reinterpret_cast<uint8_t*>(outCtrl_.data()) + static_cast<size_t>(out) * kCtrlBytes;
      h.msg_control = ctrl;
      h.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      memset(ctrl, 0, h.msg_controllen);
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = IPPROTO_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t size = static_cast<uint16_t>(seg);
      memcpy(CMSG_DATA(c), &size, sizeof size);
    }
  }

  // Fallback for a refused GSO message: its datagrams as plain messages.
  void SendEach(uint32_t first, uint32_t n) {
    for (uint32_t x = 0; x < n; x++) {
      msghdr h;
      memset(&h, 0, sizeof h);
      h.msg_name = &txAddr_[first + x];
      h.msg_namelen = txNameLen_[first + x];
      h.msg_iov = &txIov_[first + x];
      h.msg_iovlen = 1;
      ssize_t w;
      do {
        w = sendmsg(fd_, &h, MSG_DONTWAIT);
      } while (w < 0 && errno == EINTR);
      if (w >= 0) {
        txDatagrams_++;
        txMessages_++;
      } else {
        drops_[kDropSendFailed]++;
      }
    }
  }

  Napi::Value FlushJs(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) Flush();
    return info.Env().Undefined();
  }

  // sendRaw(endpoint, buf): boolean, one unsealed datagram right away.
  Napi::Value SendRaw(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    Endpoint ep = ToEndpoint(env, info[0]);
    uint8_t* data = nullptr;
    size_t len = 0;
    if (!info[1].IsTypedArray()) throw ArgError(env, "buf must be a Buffer or Uint8Array", false);
    GetBytes(env, info[1], &data, &len);
    if (len == 0 || len > kMaxFrame + kOverhead) {
      throw ArgError(env, "raw datagram must be 1.." + std::to_string(kMaxFrame + kOverhead) + " bytes", true);
    }
    if (len > 0 && data[0] == kTypeData) {
      throw ArgError(env, "raw datagram must not start with 0x01 (the sealed data type)", true);
    }
    for (;;) {
      ssize_t w = sendto(fd_, data, len, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ep.addr), ep.len);
      if (w >= 0) {
        txDatagrams_++;
        txMessages_++;
        return Napi::Boolean::New(env, true);
      }
      if (errno == EINTR) continue;
      drops_[kDropSendFailed]++;
      return Napi::Boolean::New(env, false);
    }
  }

  // ---- receiving ----------------------------------------------------------------------------

  // setReader(cb, rx: ArrayBuffer, indexes, offsets, lengths: Uint32Array) and start reading.
  // cb(count, raw?: [Buffer, address, port, ...], error?) is called once per wake-up.
  Napi::Value SetReader(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsFunction()) throw ArgError(env, "reader must be a function", false);
    if (!info[1].IsArrayBuffer()) throw ArgError(env, "rx buffer must be an ArrayBuffer", false);
    size_t nIdx = 0, nOff = 0, nLen = 0;
    U32Data(env, info[2], "rx indexes", &nIdx);
    U32Data(env, info[3], "rx offsets", &nOff);
    U32Data(env, info[4], "rx lengths", &nLen);
    size_t frames = static_cast<size_t>(batch_) * kMaxSegments;
    if (nIdx < frames || nOff < frames || nLen < frames) {
      throw ArgError(env, "rx indexes/offsets/lengths must hold batchSize * 64 entries", true);
    }
    if (info[1].As<Napi::ArrayBuffer>().ByteLength() < batch_ * kRxSlot) {
      throw ArgError(env, "rx buffer must hold batchSize * 65536 bytes", true);
    }
    reader_ = Napi::Persistent(info[0].As<Napi::Function>());
    rxBuf_ = Napi::Persistent(info[1].As<Napi::ArrayBuffer>());
    rxIndexes_ = Napi::Persistent(info[2].As<Napi::Uint32Array>());
    rxOffsets_ = Napi::Persistent(info[3].As<Napi::Uint32Array>());
    rxLengths_ = Napi::Persistent(info[4].As<Napi::Uint32Array>());
    if (!asyncCtx_) asyncCtx_ = std::make_unique<Napi::AsyncContext>(env, "FastSocketRead", Value());
    if (!poll_.active()) {
      poll_.Start(env, fd_, this, [](void* self, int status) { static_cast<NativeFastSocket*>(self)->Drain(status); },
                  "the fast-path socket");
      if (!refed_) {
        Ref();  // keep this object alive while the loop may call it
        refed_ = true;
      }
    }
    return env.Undefined();
  }

  static bool LooksLikeStun(const uint8_t* d, size_t len) {
    return len >= kStunHeader && (d[0] & 0xC0) == 0 && d[4] == 0x21 && d[5] == 0x12 && d[6] == 0xA4 &&
           d[7] == 0x42;
  }

  // Per-wake-up state of Drain, shared with Receive.
  struct RxBatch {
    Napi::Env env;
    uint8_t* base;
    uint32_t* idxp;
    uint32_t* offp;
    uint32_t* lenp;
    uint32_t cap;  // entries of idxp/offp/lenp
    uint32_t count = 0;
    int raws = 0;
    napi_value rawArr = nullptr;
    uint64_t now = 0;
  };

  // One datagram d[0, len) from `from`: opened in place and listed for JS, or dropped and
  // counted. Nothing changes before the datagram authenticated.
  void Receive(RxBatch& rx, uint8_t* d, size_t len, const sockaddr_storage& from, socklen_t fromLen) {
    rxDatagrams_++;
    // TURN ChannelData (from our TURN server, relaying a peer): the datagram inside is checked
    // like any other (its tag decides; the session's endpoint becomes the server).
    if (len >= kChannelHeader && (d[0] & 0xF0) == 0x40) {
      size_t inner = (static_cast<size_t>(d[2]) << 8) | d[3];
      if (kChannelHeader + inner > len) {
        drops_[kDropBadType]++;
        return;
      }
      d += kChannelHeader;
      len = inner;
    }
    // Data: 0x01 and three zero bytes. Anything else may be STUN: a Binding Success
    // response (type 0x0101) starts with 0x01 too, but its second byte is not zero.
    bool data = len >= 4 && d[0] == kTypeData && (d[1] | d[2] | d[3]) == 0;
    if (!data) {
      if (LooksLikeStun(d, len)) {
        if (rx.raws >= kMaxRawPerWake) {
          drops_[kDropBatchFull]++;
          return;
        }
        if (rx.rawArr == nullptr) napi_create_array(rx.env, &rx.rawArr);
        std::string address;
        uint16_t port = 0;
        FormatAddress(from, &address, &port);
        Napi::Array arr(rx.env, rx.rawArr);
        uint32_t at = static_cast<uint32_t>(rx.raws * 3);
        arr.Set(at, Napi::Buffer<uint8_t>::Copy(rx.env, d, len));
        arr.Set(at + 1, Napi::String::New(rx.env, address));
        arr.Set(at + 2, Napi::Number::New(rx.env, port));
        rx.raws++;
      } else {
        drops_[len < kOverhead && len > 0 && d[0] == kTypeData ? kDropShort : kDropBadType]++;
      }
      return;
    }
    if (len < kOverhead) {
      drops_[kDropShort]++;
      return;
    }
    if (rx.count >= rx.cap) {
      drops_[kDropBatchFull]++;
      return;
    }
    uint32_t index = LoadU32(d + 4);
    auto it = sessions_.find(index);
    if (it == sessions_.end()) {
      drops_[kDropUnknownIndex]++;
      return;
    }
    Session& s = *it->second;
    uint64_t counter = LoadU64(d + 8);
    if (counter >= kCounterLimit) {
      drops_[kDropTooOld]++;
      return;
    }
    ReplayWindow::Verdict v = s.replay.Check(counter);
    if (v != ReplayWindow::kOk) {
      drops_[v == ReplayWindow::kReplay ? kDropReplay : kDropTooOld]++;
      return;
    }
    if (!s.dec.Open(counter, d, len)) {
      drops_[kDropBadTag]++;
      return;
    }
    // Authenticated: only now may the datagram change state.
    if (s.replay.Commit(counter)) {
      // Roaming: the newest authenticated datagram says where the peer is.
      if (fromLen <= sizeof(sockaddr_storage) &&
          (fromLen != s.endpoint.len || memcmp(&s.endpoint.addr, &from, fromLen) != 0)) {
        memset(&s.endpoint.addr, 0, sizeof s.endpoint.addr);
        memcpy(&s.endpoint.addr, &from, fromLen);
        s.endpoint.len = fromLen;
      }
    }
    size_t n = len - kOverhead;
    s.rxPackets++;
    s.rxBytes += n;
    s.lastRxNs = rx.now;
    if (s.forward && DeliverToTun(s, d + kHeader, n)) return;
    rx.idxp[rx.count] = index;
    rx.offp[rx.count] = static_cast<uint32_t>(d - rx.base + kHeader);
    rx.lenp[rx.count] = static_cast<uint32_t>(n);
    rx.count++;
  }

  void Drain(int status) {
    if (fd_ < 0 || !poll_.active() || reader_.IsEmpty()) return;
    Napi::Env env = env_;
    Napi::HandleScope scope(env);

    Napi::ArrayBuffer ab = rxBuf_.Value();
    Napi::Uint32Array idx = rxIndexes_.Value();
    Napi::Uint32Array off = rxOffsets_.Value();
    Napi::Uint32Array len = rxLengths_.Value();
    RxBatch rx{env, static_cast<uint8_t*>(ab.Data()), idx.Data(), off.Data(), len.Data(), 0};
    size_t cap = idx.ElementLength();
    if (off.ElementLength() < cap) cap = off.ElementLength();
    if (len.ElementLength() < cap) cap = len.ElementLength();
    rx.cap = static_cast<uint32_t>(cap);

    int err = status < 0 ? -status : 0;
    if (err == 0 && (rx.base == nullptr || ab.ByteLength() < batch_ * kRxSlot || rx.cap < batch_)) err = EFAULT;
    int got = 0;
    if (err == 0) {
      for (uint32_t i = 0; i < batch_; i++) {
        rxIov_[i].iov_base = rx.base + static_cast<size_t>(i) * kRxSlot;
        rxIov_[i].iov_len = kRxSlot;
        msghdr& h = rxMsgs_[i].msg_hdr;
        memset(&h, 0, sizeof h);
        h.msg_name = &rxAddr_[i];
        h.msg_namelen = sizeof(sockaddr_storage);
        h.msg_iov = &rxIov_[i];
        h.msg_iovlen = 1;
        if (gro_) {
          h.msg_control = reinterpret_cast<uint8_t*>(rxCtrl_.data()) + static_cast<size_t>(i) * kCtrlBytes;
          h.msg_controllen = kCtrlBytes;
        }
      }
      got = recvmmsg(fd_, rxMsgs_.data(), batch_, MSG_DONTWAIT, nullptr);
      if (got < 0) {
        int e = errno;
        got = 0;
        // Transient: try again on the next wake-up. ECONNREFUSED etc. are ICMP reports about
        // earlier sends, not a broken socket.
        if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR && e != ENOMEM && e != ENOBUFS &&
            e != ECONNREFUSED && e != EHOSTUNREACH && e != ENETUNREACH) {
          err = e;
        }
      }
    }

    rx.now = NowNs();
    rxMessages_ += static_cast<uint64_t>(got);
    for (int i = 0; i < got; i++) {
      const msghdr& h = rxMsgs_[i].msg_hdr;
      uint8_t* d = rx.base + static_cast<size_t>(i) * kRxSlot;
      size_t n = rxMsgs_[i].msg_len;
      // With GRO, one message may hold several datagrams of `seg` bytes (the last shorter).
      size_t seg = n;
      if (gro_ && h.msg_controllen > 0) {
        for (cmsghdr* c = CMSG_FIRSTHDR(const_cast<msghdr*>(&h)); c != nullptr;
             c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
          if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
            int size = 0;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            if (size > 0 && static_cast<size_t>(size) < n) seg = static_cast<size_t>(size);
          }
        }
      }
      if (n == 0 || (h.msg_flags & MSG_TRUNC) != 0) {
        rxDatagrams_++;
        drops_[kDropShort]++;
        continue;
      }
      for (size_t at = 0; at < n; at += seg) {
        Receive(rx, d + at, seg < n - at ? seg : n - at, rxAddr_[i], h.msg_namelen);
      }
    }
    uint32_t count = rx.count;
    int raws = rx.raws;
    napi_value rawArr = rx.rawArr;
    // Packets written to the TUN natively: the kernel's answers (an echo reply, TCP ACKs) are
    // read and sent before this wake-up ends, as Outside.readReplies() does for JS's writes.
    std::shared_ptr<ForwardBridge> replies = wroteTun_ ? bridge_ : nullptr;
    wroteTun_ = false;

    if (count == 0 && raws == 0 && err == 0) {
      if (replies) DrainTun(*replies);
      return;
    }
    napi_value args[3];
    args[0] = Napi::Number::New(env, count);
    args[1] = rawArr != nullptr ? rawArr : env.Undefined();
    size_t argc = 2;
    if (err != 0) {
      // Stop first: JS learns of it through the error and must not be woken again.
      poll_.Stop();
      args[2] = SysError(env, err, "cannot read from the fast-path socket", "recvmmsg").Value();
      argc = 3;
    }
    CallReader(env, reader_, Value(), argc, args, *asyncCtx_);
    // Do not touch `this` here: the callback may have closed the socket.
    if (replies) DrainTun(*replies);
  }

  static void DrainTun(const ForwardBridge& b) {
    if (b.tun != nullptr && b.tunDrain != nullptr) b.tunDrain(b.tun);
  }

  napi_env env_ = nullptr;
  int fd_ = -1;
  int family_ = AF_INET;
  std::string address_;
  uint16_t port_ = 0;
  uint32_t batch_ = 0;
  Cipher cipher_ = Cipher::kAes256Gcm;
  EnvCleanupHook cleanup_;
  ReadPoll poll_;
  uv_prepare_t* prepare_ = nullptr;
  uv_check_t* check_ = nullptr;
  bool refed_ = false;

  std::unordered_map<uint32_t, std::unique_ptr<Session>> sessions_;
  // Native forwarding: destination (and allowed source) address -> session; our own addresses.
  std::unordered_map<AddrKey, Dest, AddrKeyHash> dests_;
  AddrKey ownV4_, ownV6_;
  bool haveOwnV4_ = false, haveOwnV6_ = false;
  bool fwdHold_ = false;
  bool wroteTun_ = false;
  std::shared_ptr<ForwardBridge> bridge_;

  // Pending sealed datagrams: packed 16-byte aligned in txBuf_ (batch_ * 64 KiB, only the
  // touched pages are backed), one mmsghdr each.
  uint8_t* txBuf_ = nullptr;
  size_t txOff_ = 0;
  uint32_t pending_ = 0;
  std::vector<iovec> txIov_;
  std::vector<sockaddr_storage> txAddr_;
  std::vector<socklen_t> txNameLen_;
  // What Flush hands to sendmmsg: one message per datagram or per GSO run.
  std::vector<mmsghdr> outMsgs_;
  std::vector<uint32_t> outFirst_;
  std::vector<uint64_t> outCtrl_;  // kCtrlBytes per message (uint64_t: cmsg alignment)
  bool gso_ = false;
  bool gro_ = false;
  std::vector<mmsghdr> rxMsgs_;
  std::vector<iovec> rxIov_;
  std::vector<sockaddr_storage> rxAddr_;
  std::vector<uint64_t> rxCtrl_;

  Napi::FunctionReference reader_;
  Napi::Reference<Napi::ArrayBuffer> rxBuf_;
  Napi::Reference<Napi::Uint32Array> rxIndexes_;
  Napi::Reference<Napi::Uint32Array> rxOffsets_;
  Napi::Reference<Napi::Uint32Array> rxLengths_;
  std::unique_ptr<Napi::AsyncContext> asyncCtx_;

  uint64_t rxDatagrams_ = 0, txDatagrams_ = 0, rxMessages_ = 0, txMessages_ = 0;
  uint64_t drops_[kDropCount] = {};
};

}  // namespace

std::shared_ptr<ForwardBridge> FastSocketBridge(Napi::Env env, const Napi::Value& v) {
  bool tagged = false;
  if (v.IsObject()) napi_check_object_type_tag(env, v, &kFastSocketTag, &tagged);
  if (!tagged) throw ArgError(env, "forwarder must be a FastSocket's native object or null", false);
  return NativeFastSocket::Unwrap(v.As<Napi::Object>())->Bridge(env);
}

void InitFastSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeFastSocket", NativeFastSocket::Init(env));
  exports.Set("fastOverhead", Napi::Number::New(env, static_cast<double>(kOverhead)));
  exports.Set("fastMaxFrame", Napi::Number::New(env, static_cast<double>(kMaxFrame)));
  exports.Set("fastRxSlot", Napi::Number::New(env, static_cast<double>(kRxSlot)));
  exports.Set("fastReplayWindow", Napi::Number::New(env, static_cast<double>(kWindowSize)));
  exports.Set("fastMaxBatch", Napi::Number::New(env, kMaxBatch));
  exports.Set("fastMaxSegments", Napi::Number::New(env, kMaxSegments));
}

}  // namespace tuntap
