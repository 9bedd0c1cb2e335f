// Copies to and from a shared mapping of a tmpfs backing file, guarded against SIGBUS (memmap.cc).
#pragma once

#include <node_api.h>

namespace nodetgt {
void RegisterMemMap(napi_env env, napi_value exports);
}  // namespace nodetgt
