// Inline file I/O: preadv2/pwritev2 on the JS thread, for data that is (or may be) in memory already.
//
// Why: io_uring serves a buffered read inline only where the file system supports non-blocking attempts
// (FMODE_NOWAIT). tmpfs on the kernels we run has none, so every tmpfs read and write is punted to an
// io-wq worker thread, and a QD1 command pays a thread wake-up, the eventfd and another event-loop turn for
// a 4 KiB memcpy. Here the copy is done where the command is, and the caller falls back to the ring when the
// kernel says it would block (RWF_NOWAIT: EAGAIN) or cannot try (EOPNOTSUPP).
//
// preadInline(fd, buf, offset, rwFlags) / pwriteInline(fd, buf | bufs[], offset, rwFlags): bytes or -errno.
// fsMagic(fd): the file system's f_type (fstatfs), or -errno.
#include "inline-io.h"

#include <sys/statfs.h>
#include <sys/uio.h>

#include <cerrno>

#include "napi_util.h"

namespace nodetgt {
namespace {

// Vectors longer than this are not worth doing inline (the caller sends them to the ring).
constexpr uint32_t kMaxInlineIov = 64;

ssize_t Retry(ssize_t (*fn)(int, const iovec*, int, off_t, int), int fd, const iovec* iov, int n, off_t off,
              int flags) {
  ssize_t res;
  do res = fn(fd, iov, n, off, flags);
  while (res < 0 && errno == EINTR);
  return res < 0 ? -errno : res;
}

// (fd, data, offset, rwFlags): the common arguments; argv[1] is left to the caller.
bool PositionalArgs(napi_env env, napi_callback_info info, napi_value* data, int32_t* fd, int64_t* offset,
                    int32_t* flags) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  *data = argv[1];
  return argc >= 4 && GetInt32(env, argv[0], fd) && GetInt64(env, argv[2], offset) && *offset >= 0 &&
         GetInt32(env, argv[3], flags);
}

napi_value PreadInline(napi_env env, napi_callback_info info) {
  napi_value buf;
  int32_t fd, flags;
  int64_t offset;
  iovec iov;
  uint8_t* data;
  if (!PositionalArgs(env, info, &buf, &fd, &offset, &flags) || !GetBytes(env, buf, &data, &iov.iov_len))
    return ThrowArgType(env, "preadInline: expected (fd, buffer, offset, rwFlags)");
  iov.iov_base = data;
  return NumberValue(env, static_cast<double>(Retry(preadv2, fd, &iov, 1, offset, flags)));
}

napi_value PwriteInline(napi_env env, napi_callback_info info) {
  napi_value bufs;
  int32_t fd, flags;
  int64_t offset;
  iovec iov[kMaxInlineIov];
  uint32_t n = 0;
  if (!PositionalArgs(env, info, &bufs, &fd, &offset, &flags))
    return ThrowArgType(env, "pwriteInline: expected (fd, buffer | buffers[], offset, rwFlags)");
  if (!GetIovecs(env, bufs, iov, kMaxInlineIov, &n))
    return ThrowArgType(env, "pwriteInline: a buffer or 1..64 ArrayBufferViews");
  return NumberValue(env, static_cast<double>(Retry(pwritev2, fd, iov, static_cast<int>(n), offset, flags)));
}

napi_value FsMagic(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd;
  if (argc < 1 || !GetInt32(env, argv[0], &fd)) return ThrowArgType(env, "fsMagic: expected (fd)");
  struct statfs st;
  if (fstatfs(fd, &st) < 0) return NumberValue(env, -static_cast<double>(errno));
  return NumberValue(env, static_cast<double>(static_cast<unsigned long>(st.f_type)));
}

}  // namespace

void RegisterInlineIo(napi_env env, napi_value exports) {
  SetFunction(env, exports, "preadInline", PreadInline);
  SetFunction(env, exports, "pwriteInline", PwriteInline);
  SetFunction(env, exports, "fsMagic", FsMagic);
}

}  // namespace nodetgt
