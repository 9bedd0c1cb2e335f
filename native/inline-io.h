// Positional reads and writes done on the calling thread (inline-io.cc): the fast path for page-cache files,
// where a trip through io_uring costs more than the copy itself.
#pragma once

#include <node_api.h>

namespace nodetgt {
void RegisterInlineIo(napi_env env, napi_value exports);
}  // namespace nodetgt
