// socketWrite(fd, buf): write(2) of one buffer on a connection's non-blocking socket, for the answer that goes out
// alone while nothing waits in the socket's stream (src/session/connection.ts writeDirect).
//
// Hot path: one call per QD1 answer. Node's stream write (Writable, StreamBase::WriteBuffer) and fs.writeSync (an
// FS request and its context object) each cost about 3 us of CPU per answer around the write itself on the 2-core
// bench box (perf, bench/qd1.ts --kinds null); this is the write and a buffer lookup. It never throws for a failed
// write: it returns the byte count, or -errno (EAGAIN, EPIPE, ...), and the caller hands what is left to the stream.
#include "sockwrite.h"

#include <unistd.h>

#include <cerrno>

#include "napi_util.h"

namespace nodetgt {
namespace {

napi_value SocketWrite(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd = -1;
  void* data = nullptr;
  size_t len = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "socketWrite: expected a descriptor and a Buffer");
    return nullptr;
  }
  ssize_t n;
  do n = write(fd, data, len);
  while (n < 0 && errno == EINTR);
  napi_value out;
  napi_create_int64(env, n < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(n), &out);
  return out;
}

}  // namespace

void RegisterSocketWrite(napi_env env, napi_value exports) { SetFunction(env, exports, "socketWrite", SocketWrite); }
}  // namespace nodetgt
