// Adaptive polling before the thread's event loop sleeps (idlepoll.cc).
#pragma once

#include <node_api.h>

namespace nodetgt {
void RegisterIdlePoll(napi_env env, napi_value exports);
}  // namespace nodetgt
