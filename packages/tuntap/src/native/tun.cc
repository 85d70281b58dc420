// N-API binding for a Linux TUN device.
//
// One NativeTun owns one /dev/net/tun file descriptor (non-blocking). Reads happen on the
// Node event loop: a uv_poll_t watches the fd, and on every wake-up we drain up to a batch of
// packets into a JS-owned ArrayBuffer (packed, 8-byte aligned) and call JS once with the
// count; offsets and lengths go into two JS-owned Uint32Arrays (readNow() does the same read
// synchronously for JS, e.g. right after a write the kernel answered). Writes are plain
// non-blocking write(2) calls made synchronously from JS (one N-API call per packet or per
// batch). No libuv thread-pool work, no per-packet allocation.
//
// Configuration (addresses, MTU, up/down) uses ioctls on a throw-away socket.

#include <napi.h>
#include <uv.h>

#include "fast_socket.h"
#include "napi_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

namespace {

using tuntap::ArgError;
using tuntap::CallReader;
using tuntap::CodedError;
using tuntap::SetCount;
using tuntap::GetBytes;
using tuntap::SysError;
using tuntap::ToIndex;
using tuntap::U32Data;

// Room reserved for each read: the largest packet a TUN device can hand us (MTU <= 65535).
constexpr size_t kReadSlot = 65536;
constexpr size_t kAlign = 8;
constexpr uint32_t kMaxBatch = 1024;
// struct virtio_net_hdr (without MRG_RXBUF): precedes every packet on a device made with
// IFF_VNET_HDR, in both directions.
constexpr size_t kVnetHdr = 10;

// Linux's struct in6_ifreq (linux/ipv6.h clashes with netinet/in.h, so spell it out).
struct In6Ifreq {
  struct in6_addr ifr6_addr;
  uint32_t ifr6_prefixlen;
  int ifr6_ifindex;
};

class Socket {
 public:
  explicit Socket(int family) : fd_(socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

class NativeTun : public Napi::ObjectWrap<NativeTun> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeTun",
                       {
                           InstanceAccessor<&NativeTun::GetName>("name"),
                           InstanceAccessor<&NativeTun::GetIfindex>("ifindex"),
                           InstanceAccessor<&NativeTun::GetOffload>("offload"),
                           InstanceMethod<&NativeTun::GetMtu>("getMtu"),
                           InstanceMethod<&NativeTun::SetMtu>("setMtu"),
                           InstanceMethod<&NativeTun::GetUp>("getUp"),
                           InstanceMethod<&NativeTun::SetUp>("setUp"),
                           InstanceMethod<&NativeTun::GetIpv4>("getIpv4"),
                           InstanceMethod<&NativeTun::SetIpv4>("setIpv4"),
                           InstanceMethod<&NativeTun::GetIpv6>("getIpv6"),
                           InstanceMethod<&NativeTun::SetIpv6>("setIpv6"),
                           InstanceMethod<&NativeTun::SetReader>("setReader"),
                           InstanceMethod<&NativeTun::Start>("start"),
                           InstanceMethod<&NativeTun::Stop>("stop"),
                           InstanceMethod<&NativeTun::ReadNow>("readNow"),
                           InstanceMethod<&NativeTun::Write>("write"),
                           InstanceMethod<&NativeTun::WriteBatch>("writeBatch"),
                           InstanceMethod<&NativeTun::Stats>("stats"),
                           InstanceMethod<&NativeTun::SetForwarder>("setForwarder"),
                           InstanceMethod<&NativeTun::Close>("close"),
                       });
  }

  // new NativeTun(name: string, vnetHdr: boolean)
  explicit NativeTun(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTun>(info) {
    Napi::Env env = info.Env();
    env_ = env;
    std::string want;
    if (info.Length() > 0 && info[0].IsString()) want = info[0].As<Napi::String>().Utf8Value();
    if (want.size() >= IFNAMSIZ) {
      throw ArgError(env, "interface name \"" + want + "\" is too long (max " +
                              std::to_string(IFNAMSIZ - 1) + " bytes)",
                     false);
    }
    bool vnetHdr = info.Length() > 1 && info[1].ToBoolean().Value();

    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw SysError(env, errno, "cannot open /dev/net/tun", "open");

    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0);
    if (!want.empty()) memcpy(ifr.ifr_name, want.data(), want.size());
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
      int err = errno;
      close(fd);
      throw SysError(env, err,
                     "cannot create TUN device" + (want.empty() ? std::string() : " \"" + want + "\""),
                     "ioctl(TUNSETIFF)");
    }
    ifr.ifr_name[IFNAMSIZ - 1] = '\0';
    if (vnetHdr) {
      // Little-endian header fields on every host (fails harmlessly on little-endian-only
      // kernels built without TUN_VNET_CROSS_LE; x86/arm64 are little-endian anyway).
      int le = 1;
      ioctl(fd, TUNSETVNETLE, &le);
      int sz = static_cast<int>(kVnetHdr);
      // Offloads: the kernel may hand us TCP super-packets (up to 64 KiB) with a partial
      // checksum, and takes them from us. Without them the header is still there (all zero).
      if (ioctl(fd, TUNSETVNETHDRSZ, &sz) == 0 &&
          ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) == 0) {
        offload_ = true;
      }
    }
    vnet_ = vnetHdr;
    name_ = ifr.ifr_name;
    fd_ = fd;
    ifindex_ = static_cast<int>(if_nametoindex(name_.c_str()));

    cleanup_.Add(env, [](void* self) { static_cast<NativeTun*>(self)->Shutdown(); }, this);
  }

  ~NativeTun() override { Shutdown(); }

 private:
  // ---- lifecycle ----------------------------------------------------------------------

  // Stop polling, close the poll handle and the fd. Never calls into JS.
  void Shutdown() {
    DetachForwarder();
    poll_.Close();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) throw CodedError(env, "tuntap: device " + name_ + " was released", "ERR_TUNTAP_RELEASED");
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    if (refed_) {
      Unref();
      refed_ = false;
    }
    reader_.Reset();
    rxBuf_.Reset();
    rxOffsets_.Reset();
    rxLengths_.Reset();
    // asyncCtx_ lives until the destructor: Close() may run inside a callback that uses it.
    return info.Env().Undefined();
  }

  // ---- native forwarding ------------------------------------------------------------------

  // setForwarder(fastSocket | null): packets read go to the fast socket's forwarding table first
  // (those it takes never reach JS), and it writes the packets it received for us to this device.
  Napi::Value SetForwarder(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    std::shared_ptr<tuntap::ForwardBridge> bridge;
    if (!info[0].IsNull() && !info[0].IsUndefined()) bridge = tuntap::FastSocketBridge(env, info[0]);
    DetachForwarder();
    if (bridge) {
      bridge->tunFd = fd_;
      bridge->tunVnet = vnet_;
      bridge->tun = this;
      bridge->tunDrain = [](void* self) { static_cast<NativeTun*>(self)->Drain(0); };
      bridge_ = bridge;
    }
    return env.Undefined();
  }

  void DetachForwarder() {
    if (!bridge_) return;
    bridge_->tunFd = -1;
    bridge_->tun = nullptr;
    bridge_->tunDrain = nullptr;
    bridge_.reset();
  }

  // The packet at p[0, n) (after its vnet header, if any) was taken by the forwarding table.
  bool Forwarded(uint8_t* p, size_t n) {
    const tuntap::ForwardBridge* b = bridge_.get();
    if (b == nullptr || b->forward == nullptr || b->socket == nullptr) return false;
    uint32_t csumStart = tuntap::kNoCsum, csumOffset = 0;
    if (vnet_) {
      // virtio_net_hdr: flags u8, gso_type u8, hdr_len, gso_size, csum_start, csum_offset (u16 LE).
      const uint8_t* h = p - kVnetHdr;
      if (h[1] != 0) return false;  // a GSO super-packet: JS cuts it into frames
      if ((h[0] & 1) != 0) {
        csumStart = static_cast<uint32_t>(h[6] | (h[7] << 8));
        csumOffset = static_cast<uint32_t>(h[8] | (h[9] << 8));
      }
    }
    return b->forward(b->socket, p, n, csumStart, csumOffset);
  }

  // ---- properties -----------------------------------------------------------------------

  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value GetIfindex(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), ifindex_);
  }

  Napi::Value GetOffload(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), offload_);
  }

  struct ifreq Req() const {
    struct ifreq r;
    memset(&r, 0, sizeof r);
    memcpy(r.ifr_name, name_.data(), name_.size());
    return r;
  }

  // ioctl on a fresh socket of the given family; throws a SysError naming the request.
  void Ioctl(Napi::Env env, int family, unsigned long req, void* arg, const char* reqName,
             const std::string& what) {
    Socket s(family);
    if (s.fd() < 0) throw SysError(env, errno, what + " (socket)", "socket");
    if (ioctl(s.fd(), req, arg) < 0) {
      throw SysError(env, errno, what + " of " + name_ + " (" + reqName + ")",
                     (std::string("ioctl(") + reqName + ")").c_str());
    }
  }

  Napi::Value GetMtu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    struct ifreq r = Req();
    Ioctl(env, AF_INET, SIOCGIFMTU, &r, "SIOCGIFMTU", "cannot get MTU");
    return Napi::Number::New(env, r.ifr_mtu);
  }

  Napi::Value SetMtu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    size_t mtu = ToIndex(env, info[0], "mtu");
    if (mtu < 68 || mtu > 65535) throw ArgError(env, "mtu must be within 68..65535", true);
    struct ifreq r = Req();
    r.ifr_mtu = static_cast<int>(mtu);
    Ioctl(env, AF_INET, SIOCSIFMTU, &r, "SIOCSIFMTU", "cannot set MTU");
    return env.Undefined();
  }

  Napi::Value GetUp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    struct ifreq r = Req();
    Ioctl(env, AF_INET, SIOCGIFFLAGS, &r, "SIOCGIFFLAGS", "cannot get flags");
    return Napi::Boolean::New(env, (r.ifr_flags & IFF_UP) != 0);
  }

  Napi::Value SetUp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    bool up = info[0].ToBoolean().Value();
    struct ifreq r = Req();
    Ioctl(env, AF_INET, SIOCGIFFLAGS, &r, "SIOCGIFFLAGS", "cannot get flags");
    if (up)
      r.ifr_flags |= IFF_UP;
    else
      r.ifr_flags &= ~IFF_UP;
    Ioctl(env, AF_INET, SIOCSIFFLAGS, &r, "SIOCSIFFLAGS", up ? "cannot bring up" : "cannot bring down");
    return env.Undefined();
  }

  // "a.b.c.d/len" or null
  Napi::Value GetIpv4(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    Socket s(AF_INET);
    if (s.fd() < 0) throw SysError(env, errno, "cannot get IPv4 address (socket)", "socket");
    struct ifreq r = Req();
    if (ioctl(s.fd(), SIOCGIFADDR, &r) < 0) {
      if (errno == EADDRNOTAVAIL) return env.Null();
      throw SysError(env, errno, "cannot get IPv4 address of " + name_, "ioctl(SIOCGIFADDR)");
    }
    struct in_addr addr = reinterpret_cast<struct sockaddr_in*>(&r.ifr_addr)->sin_addr;
    r = Req();
    if (ioctl(s.fd(), SIOCGIFNETMASK, &r) < 0) {
      throw SysError(env, errno, "cannot get IPv4 netmask of " + name_, "ioctl(SIOCGIFNETMASK)");
    }
    uint32_t mask = ntohl(reinterpret_cast<struct sockaddr_in*>(&r.ifr_netmask)->sin_addr.s_addr);
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr, buf, sizeof buf);
    return Napi::String::New(env, std::string(buf) + "/" + std::to_string(__builtin_popcount(mask)));
  }

  // setIpv4(address: string, prefixLen: number)
  Napi::Value SetIpv4(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsString()) throw ArgError(env, "IPv4 address must be a string", false);
    std::string text = info[0].As<Napi::String>().Utf8Value();
    size_t prefix = ToIndex(env, info[1], "IPv4 prefix length");
    if (prefix > 32) throw ArgError(env, "IPv4 prefix length must be within 0..32", true);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    if (inet_pton(AF_INET, text.c_str(), &sin.sin_addr) != 1) {
      throw ArgError(env, "invalid IPv4 address \"" + text + "\"", false);
    }
    struct ifreq r = Req();
    memcpy(&r.ifr_addr, &sin, sizeof sin);
    Ioctl(env, AF_INET, SIOCSIFADDR, &r, "SIOCSIFADDR", "cannot set IPv4 address " + text);
    sin.sin_addr.s_addr = htonl(prefix == 0 ? 0 : 0xffffffffu << (32 - prefix));
    r = Req();
    memcpy(&r.ifr_netmask, &sin, sizeof sin);
    Ioctl(env, AF_INET, SIOCSIFNETMASK, &r, "SIOCSIFNETMASK",
          "cannot set IPv4 netmask /" + std::to_string(prefix));
    return env.Undefined();
  }

  // The IPv6 address set through setIpv6 if still present, else the first non-link-local
  // one; "addr/len" or null.
  Napi::Value GetIpv6(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    struct ifaddrs* list = nullptr;
    if (getifaddrs(&list) < 0) throw SysError(env, errno, "cannot list addresses", "getifaddrs");
    std::string first, mine;
    for (struct ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET6) continue;
      if (name_ != a->ifa_name) continue;
      const struct in6_addr& ad = reinterpret_cast<struct sockaddr_in6*>(a->ifa_addr)->sin6_addr;
      if (IN6_IS_ADDR_LINKLOCAL(&ad)) continue;
      int prefix = 0;
      if (a->ifa_netmask != nullptr) {
        const uint8_t* m = reinterpret_cast<struct sockaddr_in6*>(a->ifa_netmask)->sin6_addr.s6_addr;
        for (int i = 0; i < 16; i++) prefix += __builtin_popcount(m[i]);
      }
      char buf[INET6_ADDRSTRLEN];
      inet_ntop(AF_INET6, &ad, buf, sizeof buf);
      std::string s = std::string(buf) + "/" + std::to_string(prefix);
      if (first.empty()) first = s;
      if (haveV6_ && memcmp(&ad, &v6_, sizeof ad) == 0) mine = s;
    }
    freeifaddrs(list);
    if (!mine.empty()) return Napi::String::New(env, mine);
    if (!first.empty()) return Napi::String::New(env, first);
    return env.Null();
  }

  // setIpv6(address: string, prefixLen: number): replaces the address set before by us.
  Napi::Value SetIpv6(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsString()) throw ArgError(env, "IPv6 address must be a string", false);
    std::string text = info[0].As<Napi::String>().Utf8Value();
    size_t prefix = ToIndex(env, info[1], "IPv6 prefix length");
    if (prefix > 128) throw ArgError(env, "IPv6 prefix length must be within 0..128", true);
    struct in6_addr addr;
    if (inet_pton(AF_INET6, text.c_str(), &addr) != 1) {
      throw ArgError(env, "invalid IPv6 address \"" + text + "\"", false);
    }
    Socket s(AF_INET6);
    if (s.fd() < 0) throw SysError(env, errno, "cannot set IPv6 address (IPv6 socket)", "socket");
    if (haveV6_) {
      In6Ifreq old;
      memset(&old, 0, sizeof old);
      old.ifr6_addr = v6_;
      old.ifr6_prefixlen = v6Prefix_;
      old.ifr6_ifindex = ifindex_;
      ioctl(s.fd(), SIOCDIFADDR, &old);  // may already be gone (e.g. MTU < 1280); ignore
      haveV6_ = false;
    }
    In6Ifreq r;
    memset(&r, 0, sizeof r);
    r.ifr6_addr = addr;
    r.ifr6_prefixlen = static_cast<uint32_t>(prefix);
    r.ifr6_ifindex = ifindex_;
    if (ioctl(s.fd(), SIOCSIFADDR, &r) < 0 && errno != EEXIST) {
      throw SysError(env, errno, "cannot set IPv6 address " + text + " of " + name_,
                     "ioctl(SIOCSIFADDR)");
    }
    v6_ = addr;
    v6Prefix_ = static_cast<uint32_t>(prefix);
    haveV6_ = true;
    return env.Undefined();
  }

  // ---- reading ----------------------------------------------------------------------------

  // setReader(callback, buffer: ArrayBuffer, offsets: Uint32Array, lengths: Uint32Array)
  // callback(count: number, error?: Error) is called once per wake-up.
  Napi::Value SetReader(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (!info[0].IsFunction()) throw ArgError(env, "reader must be a function", false);
    if (!info[1].IsArrayBuffer()) throw ArgError(env, "rx buffer must be an ArrayBuffer", false);
    size_t nOff = 0, nLen = 0;
    U32Data(env, info[2], "rx offsets", &nOff);
    U32Data(env, info[3], "rx lengths", &nLen);
    size_t cap = info[1].As<Napi::ArrayBuffer>().ByteLength();
    if (cap < kReadSlot) throw ArgError(env, "rx buffer must hold at least 65536 bytes", true);
    if (nOff == 0 || nOff != nLen) throw ArgError(env, "rx offsets/lengths must have the same non-zero length", true);
    reader_ = Napi::Persistent(info[0].As<Napi::Function>());
    rxBuf_ = Napi::Persistent(info[1].As<Napi::ArrayBuffer>());
    rxOffsets_ = Napi::Persistent(info[2].As<Napi::Uint32Array>());
    rxLengths_ = Napi::Persistent(info[3].As<Napi::Uint32Array>());
    if (!asyncCtx_) asyncCtx_ = std::make_unique<Napi::AsyncContext>(env, "TunRead", Value());
    return env.Undefined();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    if (reader_.IsEmpty()) throw Napi::Error::New(env, "tuntap: start() before setReader()");
    if (poll_.active()) return env.Undefined();
    poll_.Start(env, fd_, this, [](void* self, int status) { static_cast<NativeTun*>(self)->Drain(status); }, name_);
    if (!refed_) {
      Ref();  // keep this object alive while the loop may call it
      refed_ = true;
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    poll_.Stop();
    if (refed_) {
      Unref();
      refed_ = false;
    }
    return info.Env().Undefined();
  }

  void Drain(int status) {
    if (fd_ < 0 || !poll_.active() || reader_.IsEmpty()) return;
    Napi::Env env = env_;
    Napi::HandleScope scope(env);
    size_t count = 0;
    int err = status < 0 ? -status : ReadBatch(&count);

    napi_value args[2];
    size_t argc = 1;
    args[0] = Napi::Number::New(env, static_cast<double>(count));
    if (err != 0) {
      // Stop first: the JS side learns of it through the error and must not get woken again.
      poll_.Stop();
      args[1] = SysError(env, err, "cannot read from " + name_, "read").Value();
      argc = 2;
    } else if (count == 0) {
      return;  // spurious wake-up
    }
    CallReader(env, reader_, Value(), argc, args, *asyncCtx_);
    // Do not touch `this` here: the callback may have released the device.
  }

  // readNow(): what Drain reads, read now from JS (the reader is not called): the number of
  // packets in the rx arrays, or -errno when reading failed (the next wake-up reports it).
  Napi::Value ReadNow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0 || reader_.IsEmpty()) return Napi::Number::New(env, 0);
    size_t count = 0;
    int err = ReadBatch(&count);
    return Napi::Number::New(env, err != 0 && count == 0 ? -static_cast<double>(err) : static_cast<double>(count));
  }

  // Reads up to a batch of packets into the rx arrays; returns 0 or the errno that ended it.
  int ReadBatch(size_t* countOut) {
    // Fetch the pointers afresh on every read: cheap, and safe if JS detached a buffer.
    Napi::ArrayBuffer ab = rxBuf_.Value();
    Napi::Uint32Array offs = rxOffsets_.Value();
    Napi::Uint32Array lens = rxLengths_.Value();
    uint8_t* data = static_cast<uint8_t*>(ab.Data());
    size_t cap = data == nullptr ? 0 : ab.ByteLength();
    size_t max = offs.ElementLength() < lens.ElementLength() ? offs.ElementLength() : lens.ElementLength();
    uint32_t* offp = offs.Data();
    uint32_t* lenp = lens.Data();

    int err = 0;
    if (cap < kReadSlot || max == 0 || offp == nullptr || lenp == nullptr) err = EFAULT;
    size_t count = 0, off = 0, reads = 0, forwarded = 0;
    // With a vnet header, it is read into the 10 bytes before the packet: offsets[i] still
    // points at the IP header and the virtio_net_hdr is at offsets[i] - 10.
    const size_t hdr = vnet_ ? kVnetHdr : 0;
    // Packets the forwarding table takes count against the batch too: one wake-up stays bounded.
    while (err == 0 && count < max && reads < max && cap - off >= kReadSlot + hdr) {
      ssize_t n = read(fd_, data + off, kReadSlot + hdr);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
        break;
      }
      if (static_cast<size_t>(n) <= hdr) continue;  // no packet behind the header: skip
      // The kernel returns a packet's full length even when it truncated it to our slot (e.g. a
      // device with gso_max_size above 64 KiB): never account for bytes we do not have.
      if (static_cast<size_t>(n) > kReadSlot + hdr) continue;
      reads++;
      rxPackets_++;
      rxBytes_ += static_cast<uint64_t>(n) - hdr;
      if (Forwarded(data + off + hdr, static_cast<size_t>(n) - hdr)) {
        forwarded++;
        continue;
      }
      off += hdr;
      n -= static_cast<ssize_t>(hdr);
      offp[count] = static_cast<uint32_t>(off);
      lenp[count] = static_cast<uint32_t>(n);
      count++;
      off += (static_cast<size_t>(n) + kAlign - 1) & ~(kAlign - 1);
    }
    if (forwarded > 0 && bridge_ && bridge_->flush != nullptr && bridge_->socket != nullptr) {
      bridge_->flush(bridge_->socket);
    }
    *countOut = count;
    return err;
  }

  // ---- writing ----------------------------------------------------------------------------

  // One write(2); returns 1 written, 0 on EAGAIN; throws on other errors.
  // On a vnet-header device, `vhdr` (10 bytes, or null for an all-zero header: no offload)
  // goes first.
  int WriteOne(Napi::Env env, const uint8_t* p, size_t n, const uint8_t* vhdr = nullptr) {
    static const uint8_t kZeroHdr[kVnetHdr] = {};
    for (;;) {
      ssize_t w;
      if (vnet_) {
        struct iovec iov[2];
        iov[0].iov_base = const_cast<uint8_t*>(vhdr != nullptr ? vhdr : kZeroHdr);
        iov[0].iov_len = kVnetHdr;
        iov[1].iov_base = const_cast<uint8_t*>(p);
        iov[1].iov_len = n;
        w = writev(fd_, iov, 2);
        if (w >= static_cast<ssize_t>(kVnetHdr)) w -= static_cast<ssize_t>(kVnetHdr);
      } else {
        w = write(fd_, p, n);
      }
      if (w >= 0) {
        txPackets_++;
        txBytes_ += static_cast<uint64_t>(w);
        return 1;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      throw SysError(env, errno, "cannot write to " + name_, "write");
    }
  }

  // write(buf, offset?, length?, vnetHdr?: Uint8Array(10)): boolean
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint8_t* data = nullptr;
    size_t len = 0;
    GetBytes(env, info[0], &data, &len);
    size_t off = info[1].IsUndefined() ? 0 : ToIndex(env, info[1], "offset");
    if (off > len) throw ArgError(env, "offset " + std::to_string(off) + " is beyond the buffer (" + std::to_string(len) + " bytes)", true);
    size_t n = info[2].IsUndefined() ? len - off : ToIndex(env, info[2], "length");
    if (n > len - off) throw ArgError(env, "offset + length is beyond the buffer (" + std::to_string(len) + " bytes)", true);
    if (n == 0) throw ArgError(env, "cannot write an empty packet", true);
    if (n > 65535) throw ArgError(env, "packet longer than 65535 bytes", true);
    const uint8_t* vhdr = nullptr;
    if (info.Length() > 3 && !info[3].IsUndefined()) {
      uint8_t* h = nullptr;
      size_t hlen = 0;
      GetBytes(env, info[3], &h, &hlen);
      if (hlen < kVnetHdr) throw ArgError(env, "vnet header must hold 10 bytes", true);
      if (!vnet_) throw ArgError(env, "vnet header given but the device has none (offload: false)", false);
      vhdr = h;
    }
    int ok = WriteOne(env, data + off, n, vhdr);
    if (!ok) txDropsEagain_++;
    return Napi::Boolean::New(env, ok != 0);
  }

  // writeBatch(buf, offsets: Uint32Array, lengths: Uint32Array, count): number written.
  // Every (offset, length) is checked before anything is written. On EAGAIN the rest of the
  // batch is dropped and counted in txDropsEagain.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    uint8_t* data = nullptr;
    size_t len = 0;
    GetBytes(env, info[0], &data, &len);
    size_t nOff = 0, nLen = 0;
    uint32_t* offp = U32Data(env, info[1], "offsets", &nOff);
    uint32_t* lenp = U32Data(env, info[2], "lengths", &nLen);
    size_t count = ToIndex(env, info[3], "count");
    if (count > nOff || count > nLen) {
      throw ArgError(env, "count " + std::to_string(count) + " exceeds the offsets/lengths arrays", true);
    }
    for (size_t i = 0; i < count; i++) {
      size_t o = offp[i], n = lenp[i];
      if (o > len || n > len - o) {
        throw ArgError(env, "packet " + std::to_string(i) + " (offset " + std::to_string(o) + ", length " +
                                std::to_string(n) + ") is beyond the buffer (" + std::to_string(len) + " bytes)",
                       true);
      }
      if (n == 0) throw ArgError(env, "packet " + std::to_string(i) + " is empty", true);
      if (n > 65535) throw ArgError(env, "packet " + std::to_string(i) + " is longer than 65535 bytes", true);
    }
    size_t written = 0;
    for (; written < count; written++) {
      int ok;
      try {
        ok = WriteOne(env, data + offp[written], lenp[written]);
      } catch (Napi::Error& e) {
        e.Set("written", Napi::Number::New(env, static_cast<double>(written)));
        throw;
      }
      if (!ok) {
        txDropsEagain_ += count - written;
        break;
      }
    }
    return Napi::Number::New(env, static_cast<double>(written));
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    SetCount(o, "rxPackets", rxPackets_);
    SetCount(o, "rxBytes", rxBytes_);
    SetCount(o, "txPackets", txPackets_);
    SetCount(o, "txBytes", txBytes_);
    SetCount(o, "txDropsEagain", txDropsEagain_);
    return o;
  }

  napi_env env_ = nullptr;
  int fd_ = -1;
  int ifindex_ = 0;
  std::string name_;
  tuntap::EnvCleanupHook cleanup_;
  bool vnet_ = false;
  bool offload_ = false;
  tuntap::ReadPoll poll_;
  bool refed_ = false;
  Napi::FunctionReference reader_;
  Napi::Reference<Napi::ArrayBuffer> rxBuf_;
  Napi::Reference<Napi::Uint32Array> rxOffsets_;
  Napi::Reference<Napi::Uint32Array> rxLengths_;
  std::unique_ptr<Napi::AsyncContext> asyncCtx_;
  bool haveV6_ = false;
  struct in6_addr v6_ {};
  uint32_t v6Prefix_ = 0;
  uint64_t rxPackets_ = 0, rxBytes_ = 0, txPackets_ = 0, txBytes_ = 0, txDropsEagain_ = 0;
  std::shared_ptr<tuntap::ForwardBridge> bridge_;
};

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeTun", NativeTun::Init(env));
  exports.Set("readSlot", Napi::Number::New(env, static_cast<double>(kReadSlot)));
  exports.Set("maxBatch", Napi::Number::New(env, kMaxBatch));
  exports.Set("vnetHdrBytes", Napi::Number::New(env, static_cast<double>(kVnetHdr)));
  tuntap::InitFastSocket(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(tuntap, InitModule)
