// copyFileRange: kernel-side range copy between descriptors on the libuv thread pool (copy.cc).
#pragma once

#include <napi.h>

namespace nodetgt {
void RegisterCopy(Napi::Env env, Napi::Object exports);
}  // namespace nodetgt
