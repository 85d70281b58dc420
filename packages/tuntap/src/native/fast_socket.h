// The fast-path UDP socket class of the addon (fast_socket.cc); registered by tun.cc.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace tuntap {

// Adds NativeFastSocket and its constants to the module's exports.
void InitFastSocket(Napi::Env env, Napi::Object exports);

// What a NativeTun and the NativeFastSocket it forwards to share (the native forwarding table,
// see fast_socket.cc "Native forwarding"). Each side fills in its half and clears it when it
// closes, so neither ever calls the other after it is gone.
constexpr uint32_t kNoCsum = 0xffffffffu;

struct ForwardBridge {
  // The TUN's half.
  int tunFd = -1;
  bool tunVnet = false;
  void* tun = nullptr;
  // Reads the TUN now, as one of its poll wake-ups would (the kernel's answers to what we wrote).
  void (*tunDrain)(void* tun) = nullptr;
  // The socket's half.
  void* socket = nullptr;
  // Takes the IP packet pkt[0, len) read from the TUN when the table has its destination; false:
  // JS gets it as before, unchanged. csumStart/csumOffset: a partial checksum to finish first
  // (the virtio-net header's NEEDS_CSUM); csumStart kNoCsum: none.
  bool (*forward)(void* socket, uint8_t* pkt, size_t len, uint32_t csumStart, uint32_t csumOffset) = nullptr;
  // Sends what forward() queued.
  void (*flush)(void* socket) = nullptr;
};

// The bridge of a NativeFastSocket (a JS object made by its constructor); throws a TypeError for
// anything else or a closed socket.
std::shared_ptr<ForwardBridge> FastSocketBridge(Napi::Env env, const Napi::Value& socket);

}  // namespace tuntap
