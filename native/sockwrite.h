// socketWrite(fd, buf): one write(2) of a whole buffer on a non-blocking socket, the QD1 answer path (sockwrite.cc).
#pragma once

#include <node_api.h>

namespace nodetgt {
void RegisterSocketWrite(napi_env env, napi_value exports);
}  // namespace nodetgt
