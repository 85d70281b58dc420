// The fast-path UDP socket class of the addon (fast_socket.cc); registered by tun.cc.
#pragma once

#include <napi.h>

namespace tuntap {

// Adds NativeFastSocket and its constants to the module's exports.
void InitFastSocket(Napi::Env env, Napi::Object exports);

}  // namespace tuntap
