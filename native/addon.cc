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
#include <cstring>
#include <napi.h>

#include "idlepoll.h"
#include "copy.h"
#include "crc32c.h"
#include "inline-io.h"
#include "napi_util.h"
#include "ring.h"
#include "tcpinfo.h"
#include "memmap.h"
#include "sockwrite.h"

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

// crc32cVariant(impl: 0 portable | 1 sse4.2 | 2 sse4.2+pclmul | 3 avx2+vpclmulqdq | 4 avx512+vpclmulqdq, buf, prev): tests of every path.
napi_value Crc32cVariant(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t which = -1;
  if (argc < 2 || !GetInt32(env, argv[0], &which) || which < 0 || which >= crc32c::kImplCount)
    return ThrowType(env, "crc32cVariant: expected (impl 0..4, buf, prev?)");
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
  for (int k = crc32c::kImplCount - 1; k >= 0; k--) {
    const auto impl = static_cast<crc32c::Impl>(k);
    if (!crc32c::Supported(impl)) continue;
    napi_create_string_utf8(env, crc32c::ImplName(impl), NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, i++, s);
  }
  return arr;
}

// ---- PDU digests: one crossing per PDU, the CRC run over the bytes where they lie ----------------

inline void StoreLe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

inline uint32_t LoadLe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

// An optional byte argument: false for null/undefined (and *data = nullptr), false after throwing otherwise.
inline bool OptBytes(napi_env env, napi_value v, uint8_t** data, size_t* len, bool* threw) {
  *data = nullptr;
  *len = 0;
  if (GetBytes(env, v, data, len)) return true;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_null && t != napi_undefined) {
    ThrowType(env, "pduSeal: expected a Uint8Array/Buffer or null");
    *threw = true;
  }
  return false;
}

// pduSeal(bhs, hdr, data, trailer): the digests of one outgoing PDU for writev (src/pdu/digests.ts).
//   hdr (bhs.length + 4 bytes, or null): receives a copy of bhs followed by CRC32C(bhs), LE.
//   trailer (4..7 bytes, or null): trailer.length - 4 pad bytes (zeroed), then CRC32C(data ++ pad), LE.
napi_value PduSeal(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc < 4) return ThrowType(env, "pduSeal: expected (bhs, hdr, data, trailer)");
  uint8_t *bhs, *hdr, *data, *tr;
  size_t bl, hl, dl, tl;
  bool threw = false;
  if (!GetBytes(env, argv[0], &bhs, &bl)) return ThrowType(env, "pduSeal: bhs must be a Buffer");
  if (OptBytes(env, argv[1], &hdr, &hl, &threw)) {
    if (hl != bl + 4) return ThrowType(env, "pduSeal: hdr must be 4 bytes longer than bhs");
    std::memmove(hdr, bhs, bl);
    StoreLe32(hdr + bl, ~g_crcAuto(~0u, hdr, bl));
  }
  if (threw) return nullptr;
  OptBytes(env, argv[2], &data, &dl, &threw);
  if (threw) return nullptr;
  if (OptBytes(env, argv[3], &tr, &tl, &threw)) {
    if (tl < 4 || tl > 7) return ThrowType(env, "pduSeal: trailer must be 4 to 7 bytes");
    const size_t pad = tl - 4;
    std::memset(tr, 0, pad);
    uint32_t reg = g_crcAuto(~0u, data, dl);
    reg = g_crcAuto(reg, tr, pad);
    StoreLe32(tr + pad, ~reg);
  }
  return nullptr;  // undefined, or the pending exception
}

// pduCheck(buf, at, headerLen, dataLen, flags): checks the digests of a whole PDU lying in buf from `at`
// (flags: 1 header digest present, 2 data digest present). headerLen: BHS + AHS bytes. Returns 0 when all
// match, else bit 1 (header) and/or bit 2 (data) for the ones that do not.
napi_value PduCheck(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  uint8_t* buf;
  size_t len;
  int32_t at, hlen, dlen, flags;
  if (argc < 5 || !GetBytes(env, argv[0], &buf, &len) || !GetInt32(env, argv[1], &at) ||
      !GetInt32(env, argv[2], &hlen) || !GetInt32(env, argv[3], &dlen) || !GetInt32(env, argv[4], &flags) || at < 0 ||
      hlen < 0 || dlen < 0)
    return ThrowType(env, "pduCheck: expected (buf, at, headerLen, dataLen, flags)");
  const size_t pad = (4 - (static_cast<size_t>(dlen) & 3)) & 3;
  const bool hd = (flags & 1) != 0;
  const bool dd = (flags & 2) != 0 && dlen > 0;
  const size_t total = static_cast<size_t>(hlen) + (hd ? 4 : 0) + static_cast<size_t>(dlen) + pad + (dd ? 4 : 0);
  if (static_cast<size_t>(at) + total > len) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "pduCheck: the PDU runs past the buffer");
    return nullptr;
  }
  const uint8_t* p = buf + at;
  int32_t bad = 0;
  if (hd) {
    if (~g_crcAuto(~0u, p, hlen) != LoadLe32(p + hlen)) bad |= 1;
    p += hlen + 4;
  } else {
    p += hlen;
  }
  if (dd && ~g_crcAuto(~0u, p, dlen + pad) != LoadLe32(p + dlen + pad)) bad |= 2;
  napi_value out;
  napi_create_int32(env, bad, &out);
  return out;
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
  SetFunction(e, ex, "pduSeal", PduSeal);
  SetFunction(e, ex, "pduCheck", PduCheck);
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
  RegisterSocketWrite(e, ex);
  RegisterMemMap(e, ex);
  RegisterIdlePoll(e, ex);
#ifdef NODETGT_HAVE_RBD
  RegisterRbd(e, ex);
  exports.Set("rbdAvailable", Napi::Boolean::New(env, true));
#else
  exports.Set("rbdAvailable", Napi::Boolean::New(env, false));
#endif
  return exports;
}

NODE_API_MODULE(nodetgt_native, Init)
