// nodetgt_native: CRC32C, the per-thread io_uring ring, inline page-cache I/O (inline-io.cc), kernel range
// copies, and a few fd helpers (TCP_INFO in tcpinfo.cc).
//
// Context-aware: every JS thread (main, each worker) loads its own instance with its own ring.
// The hot functions use the N-API C interface directly so a call costs one crossing and no allocation.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <napi.h>

#include "copy.h"
#include "crc32c.h"
#include "inline-io.h"
#include "napi_util.h"
#include "ring.h"
#include "tcpinfo.h"

#ifdef NODETGT_HAVE_RBD
namespace nodetgt {
void RegisterRbd(napi_env env, napi_value exports);
}
#endif

namespace nodetgt {
namespace {

crc32c::Fn g_crcAuto = crc32c::Portable;

napi_value ThrowType(napi_env env, const char* msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return nullptr;
}

// prev: a previous crc32c() result (or undefined); returns false after throwing.
inline bool ReadPrev(napi_env env, napi_value v, uint32_t* prev) {
  if (napi_get_value_uint32(env, v, prev) == napi_ok) return true;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) {
    *prev = 0;
    return true;
  }
  ThrowType(env, "crc32c: prev must be a number");
  return false;
}

inline napi_value CrcWith(napi_env env, crc32c::Fn fn, napi_value buf, napi_value prevValue, bool hasPrev) {
  uint8_t* data;
  size_t len;
  uint32_t prev = 0;
  if (!GetBytes(env, buf, &data, &len)) return ThrowType(env, "crc32c: expected a Uint8Array/Buffer");
  if (hasPrev && !ReadPrev(env, prevValue, &prev)) return nullptr;
  napi_value out;
  napi_create_uint32(env, ~fn(~prev, data, len), &out);
  return out;
}

// crc32c(buf, prev?)
napi_value Crc32c(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 1) return ThrowType(env, "crc32c: expected a Uint8Array/Buffer");
  return CrcWith(env, g_crcAuto, argv[0], argc > 1 ? argv[1] : nullptr, argc > 1);
}

// crc32cPortable(buf, prev?)
napi_value Crc32cPortable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 1) return ThrowType(env, "crc32c: expected a Uint8Array/Buffer");
  return CrcWith(env, crc32c::Portable, argv[0], argc > 1 ? argv[1] : nullptr, argc > 1);
}

// crc32cVariant(impl: 0 portable | 1 sse4.2 | 2 sse4.2+pclmul, buf, prev): for tests of every path.
napi_value Crc32cVariant(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t which = -1;
  if (argc < 2 || !GetInt32(env, argv[0], &which) || which < 0 || which > 2)
    return ThrowType(env, "crc32cVariant: expected (impl 0..2, buf, prev?)");
  const auto impl = static_cast<crc32c::Impl>(which);
  if (!crc32c::Supported(impl)) {
    napi_throw_error(env, "ERR_UNSUPPORTED", "this CPU cannot run that crc32c implementation");
    return nullptr;
  }
  return CrcWith(env, crc32c::Get(impl), argv[1], argc > 2 ? argv[2] : nullptr, argc > 2);
}

// crc32cImpls(): names of the implementations this CPU runs, best first.
napi_value Crc32cImpls(napi_env env, napi_callback_info) {
  napi_value arr, s;
  napi_create_array(env, &arr);
  uint32_t i = 0;
  for (int k = 2; k >= 0; k--) {
    const auto impl = static_cast<crc32c::Impl>(k);
    if (!crc32c::Supported(impl)) continue;
    napi_create_string_utf8(env, crc32c::ImplName(impl), NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, i++, s);
  }
  return arr;
}

bool ArgFd(napi_env env, napi_callback_info info, int32_t* fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 1 || !GetInt32(env, argv[0], fd)) {
    ThrowType(env, "expected a file descriptor");
    return false;
  }
  return true;
}

// dup(fd): a new close-on-exec descriptor for the same open file.
napi_value Dup(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!ArgFd(env, info, &fd)) return nullptr;
  const int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) {
    ThrowErrno(env, errno, "fcntl(F_DUPFD_CLOEXEC)");
    return nullptr;
  }
  napi_value out;
  napi_create_int32(env, nfd, &out);
  return out;
}

// peerCredentials(fd): [pid, uid, gid] of the process at the other end of a Unix socket (SO_PEERCRED), as
// the kernel recorded them at connect(): who is asking, whatever the socket file's permissions let through.
napi_value PeerCredentials(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!ArgFd(env, info, &fd)) return nullptr;
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowErrno(env, errno, "getsockopt(SO_PEERCRED)");
    return nullptr;
  }
  napi_value out, v;
  napi_create_array_with_length(env, 3, &out);
  napi_create_int64(env, cred.pid, &v);
  napi_set_element(env, out, 0, v);
  napi_create_int64(env, cred.uid, &v);
  napi_set_element(env, out, 1, v);
  napi_create_int64(env, cred.gid, &v);
  napi_set_element(env, out, 2, v);
  return out;
}

// blockDeviceSize(fd): bytes (BLKGETSIZE64).
napi_value BlockDeviceSize(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!ArgFd(env, info, &fd)) return nullptr;
  uint64_t size = 0;
  if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
    ThrowErrno(env, errno, "ioctl(BLKGETSIZE64)");
    return nullptr;
  }
  napi_value out;
  napi_create_double(env, static_cast<double>(size), &out);
  return out;
}

// logicalBlockSize(fd): the device's logical sector size (BLKSSZGET).
napi_value LogicalBlockSize(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!ArgFd(env, info, &fd)) return nullptr;
  int size = 0;
  if (ioctl(fd, BLKSSZGET, &size) != 0) {
    ThrowErrno(env, errno, "ioctl(BLKSSZGET)");
    return nullptr;
  }
  napi_value out;
  napi_create_int32(env, size, &out);
  return out;
}

// lseek(fd, offset, SEEK_DATA / SEEK_HOLE) for the allocation map of a sparse file. Returns the offset found,
// or -errno (-ENXIO: no data at or after offset, or offset at or past the end of file). Synchronous on
// purpose: lseek reads only the file's extent metadata, which for a file being served is almost always in
// memory already (at worst one metadata block read), never file data; a call costs microseconds, less than a
// thread-pool round trip would. Callers bound how many calls one command makes.
napi_value SeekWhence(napi_env env, napi_callback_info info, int whence) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd;
  int64_t offset = 0;
  if (argc < 2 || !GetInt32(env, argv[0], &fd) || !GetInt64(env, argv[1], &offset) || offset < 0)
    return ThrowType(env, "lseek: expected (fd, offset >= 0)");
  const off_t res = lseek(fd, static_cast<off_t>(offset), whence);
  napi_value out;
  napi_create_double(env, res < 0 ? -static_cast<double>(errno) : static_cast<double>(res), &out);
  return out;
}

napi_value LseekData(napi_env env, napi_callback_info info) { return SeekWhence(env, info, SEEK_DATA); }
napi_value LseekHole(napi_env env, napi_callback_info info) { return SeekWhence(env, info, SEEK_HOLE); }

// allocAligned(size, alignment): an ArrayBuffer whose memory starts on `alignment` (for O_DIRECT).
napi_value AllocAligned(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int64_t size = 0, align = 0;
  if (argc < 2 || !GetInt64(env, argv[0], &size) || !GetInt64(env, argv[1], &align) || size < 0 ||
      size > (int64_t{1} << 32) || align < 8 || (align & (align - 1)) != 0)
    return ThrowType(env, "allocAligned: expected (size 0..4 GiB, power-of-two alignment >= 8)");
  void* mem = nullptr;
  if (posix_memalign(&mem, static_cast<size_t>(align), size > 0 ? static_cast<size_t>(size) : 1) != 0) {
    ThrowErrno(env, ENOMEM, "posix_memalign");
    return nullptr;
  }
  napi_value out;
  const napi_status st = napi_create_external_arraybuffer(
      env, mem, static_cast<size_t>(size), [](napi_env, void* data, void*) { free(data); }, nullptr, &out);
  if (st != napi_ok) {
    free(mem);
    napi_throw_error(env, "ERR_EXTERNAL_BUFFER", "external ArrayBuffers are not allowed in this runtime");
    return nullptr;
  }
  return out;
}

// isAligned(view, alignment): start address and length both multiples of alignment.
napi_value IsAligned(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  uint8_t* data;
  size_t len;
  int64_t align = 0;
  if (argc < 2 || !GetBytes(env, argv[0], &data, &len) || !GetInt64(env, argv[1], &align) || align <= 0)
    return ThrowType(env, "isAligned: expected (ArrayBufferView, alignment)");
  const uint64_t a = static_cast<uint64_t>(align);
  napi_value out;
  napi_get_boolean(env, reinterpret_cast<uintptr_t>(data) % a == 0 && len % a == 0, &out);
  return out;
}

}  // namespace
}  // namespace nodetgt

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace nodetgt;
  crc32c::Init();
  g_crcAuto = crc32c::Get(crc32c::Best());

  auto* inst = new Instance();
  napi_set_instance_data(
      env, inst,
      [](napi_env, void* data, void*) {
        auto* i = static_cast<Instance*>(data);
        if (i->ring != nullptr) i->ring->inst = nullptr;  // the ring outlives us while its handles close
        delete i;
      },
      nullptr);

  napi_env e = env;
  napi_value ex = exports;
  SetFunction(e, ex, "crc32c", Crc32c);
  SetFunction(e, ex, "crc32cPortable", Crc32cPortable);
  SetFunction(e, ex, "crc32cVariant", Crc32cVariant);
  SetFunction(e, ex, "crc32cImpls", Crc32cImpls);
  exports.Set("crc32cImpl", Napi::String::New(env, crc32c::ImplName(crc32c::Best())));
  SetFunction(e, ex, "dup", Dup);
  SetFunction(e, ex, "blockDeviceSize", BlockDeviceSize);
  SetFunction(e, ex, "logicalBlockSize", LogicalBlockSize);
  SetFunction(e, ex, "lseekData", LseekData);
  SetFunction(e, ex, "lseekHole", LseekHole);
  SetFunction(e, ex, "allocAligned", AllocAligned);
  SetFunction(e, ex, "isAligned", IsAligned);
  SetFunction(e, ex, "peerCredentials", PeerCredentials);
  RegisterRing(e, ex);
  RegisterInlineIo(e, ex);
  RegisterCopy(env, exports);
  RegisterTcpInfo(e, ex);
#ifdef NODETGT_HAVE_RBD
  RegisterRbd(e, ex);
  exports.Set("rbdAvailable", Napi::Boolean::New(env, true));
#else
  exports.Set("rbdAvailable", Napi::Boolean::New(env, false));
#endif
  return exports;
}

NODE_API_MODULE(nodetgt_native, Init)
