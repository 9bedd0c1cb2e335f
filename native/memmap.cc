// Memory-mapped copies for LUs on tmpfs: a small read or write becomes a memcpy to or from a shared mapping of
// the backing file, with no system call.
//
// Why: on tmpfs, the inline preadv2/pwritev2 (inline-io.cc) was the one system call left per 4 KiB command at
// QD32 (socket reads and writes are batched over many commands), and on the paravirtualized bench machine a
// system call is dear: perf put about a fifth of the target's CPU in the preadv2 path, most of it entry and exit
// and the page-cache lookup, against 2.5% for the copy itself. The page tables of a mapping do that lookup once.
//
// What the caller must see to (src/backstore/file.ts): a read through the mapping of a hole in a tmpfs file
// allocates a page (a page fault fills the hole, where read(2) copies from the zero page), so it reads through
// the mapping only where it knows the file is allocated.
//
// Faults: a page past the end of the file (truncated under us) or a page tmpfs cannot allocate (full, over its
// size) raises SIGBUS. A copy runs under a guard: the SIGBUS handler jumps out of a guarded copy on the thread
// that faulted and the call answers -EFAULT (the caller then takes the system call path, which answers with the
// real error). A SIGBUS outside a guarded copy goes to the handler that was installed before ours, or kills the
// process as it would have.
//
// memMap(fd, length, writable) -> mapping | -errno; memUnmap(mapping);
// memRead(mapping, buf, offset) / memWrite(mapping, buf | bufs[], offset) -> bytes copied, or -errno:
// -EFAULT after a SIGBUS, -ERANGE outside the mapping, -EBADF once unmapped, -EROFS for a write to a read-only
// mapping. memPopulate(mapping, offset, length) -> 0 | -errno maps a range's pages ahead of its copies;
// memResident(mapping, offset, length) -> 1 | 0 | -errno tells whether the file holds every page of a range.
// Every mapping belongs to the JS thread that made it (its FileBackstore).
#include "memmap.h"

#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "napi_util.h"

namespace nodetgt {
namespace {

struct Mapping {
  uint8_t* base = nullptr;
  uint64_t length = 0;
  bool writable = false;
};

// Most buffers memWrite takes at once, as pwriteInline.
constexpr uint32_t kMaxBuffers = 64;

// volatile, and fenced: the stores around a memcpy would otherwise be merged away (nothing the compiler can see
// reads them in between; the signal handler does).
thread_local sigjmp_buf* volatile t_guard = nullptr;
struct sigaction g_previous;
std::once_flag g_installed;
int g_installError = 0;

void OnSigbus(int sig, siginfo_t* info, void* context) {
  sigjmp_buf* guard = t_guard;
  if (guard != nullptr) {
    t_guard = nullptr;
    siglongjmp(*guard, 1);
  }
  // Not a guarded copy: whatever would have happened without us.
  if ((g_previous.sa_flags & SA_SIGINFO) != 0 && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN && g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  // Default action: returning re-runs the faulting access, which now kills the process with SIGBUS.
  signal(SIGBUS, SIG_DFL);
}

void Install() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = OnSigbus;
  sigemptyset(&sa.sa_mask);
  // SA_NODEFER: the handler leaves by siglongjmp without restoring a signal mask, so SIGBUS must not be
  // blocked while it runs.
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  if (sigaction(SIGBUS, &sa, &g_previous) != 0) g_installError = errno;
}

__attribute__((noinline)) void Gather(uint8_t* dst, const iovec* iov, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    memcpy(dst, iov[i].iov_base, iov[i].iov_len);
    dst += iov[i].iov_len;
  }
}

// The copy under the guard (a read is a gather of one). noinline: nothing the compiler keeps in registers across
// sigsetjmp matters.
__attribute__((noinline)) bool GuardedGather(uint8_t* dst, const iovec* iov, uint32_t n) {
  sigjmp_buf jb;
  if (sigsetjmp(jb, 0) != 0) return false;
  t_guard = &jb;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  Gather(dst, iov, n);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_guard = nullptr;
  return true;
}

void Finalize(napi_env env, void* data, void* hint) {
  auto* m = static_cast<Mapping*>(data);
  if (m->base != nullptr) munmap(m->base, m->length);
  delete m;
}

napi_value MemMap(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int32_t fd;
  int64_t length;
  bool writable = false;
  if (argc < 3 || !GetInt32(env, argv[0], &fd) || !GetInt64(env, argv[1], &length) || length <= 0 ||
      napi_get_value_bool(env, argv[2], &writable) != napi_ok)
    return ThrowArgType(env, "memMap: expected (fd, length > 0, writable)");
  std::call_once(g_installed, Install);
  if (g_installError != 0) return NumberValue(env, -g_installError);
  // MAP_NORESERVE: a thin LU's holes are not charged up front; pages come as they are written.
  void* p = mmap(nullptr, static_cast<size_t>(length), writable ? PROT_READ | PROT_WRITE : PROT_READ,
                 MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) return NumberValue(env, -errno);
  auto* m = new Mapping{static_cast<uint8_t*>(p), static_cast<uint64_t>(length), writable};
  napi_value out;
  if (napi_create_external(env, m, Finalize, nullptr, &out) != napi_ok) {
    munmap(p, static_cast<size_t>(length));
    delete m;
    return nullptr;
  }
  return out;
}

Mapping* GetMapping(napi_env env, napi_value v) {
  void* data = nullptr;
  if (napi_get_value_external(env, v, &data) != napi_ok) return nullptr;
  return static_cast<Mapping*>(data);
}

napi_value MemUnmap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  Mapping* m = argc >= 1 ? GetMapping(env, argv[0]) : nullptr;
  if (m == nullptr) return ThrowArgType(env, "memUnmap: expected a mapping");
  if (m->base != nullptr) munmap(m->base, m->length);
  m->base = nullptr;
  return nullptr;
}

// (mapping, data, offset): argv[1] is left to the caller.
Mapping* Args(napi_env env, napi_callback_info info, napi_value* data, uint64_t* offset) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int64_t off;
  if (argc < 3 || !GetInt64(env, argv[2], &off) || off < 0) return nullptr;
  *data = argv[1];
  *offset = static_cast<uint64_t>(off);
  return GetMapping(env, argv[0]);
}

napi_value MemRead(napi_env env, napi_callback_info info) {
  napi_value buf;
  uint64_t offset;
  uint8_t* data;
  size_t len;
  Mapping* m = Args(env, info, &buf, &offset);
  if (m == nullptr || !GetBytes(env, buf, &data, &len))
    return ThrowArgType(env, "memRead: expected (mapping, buffer, offset)");
  if (m->base == nullptr) return NumberValue(env, -EBADF);
  if (offset > m->length || len > m->length - offset) return NumberValue(env, -ERANGE);
  const iovec from = {m->base + offset, len};
  if (!GuardedGather(data, &from, 1)) return NumberValue(env, -EFAULT);
  return NumberValue(env, static_cast<double>(len));
}

napi_value MemWrite(napi_env env, napi_callback_info info) {
  napi_value bufs;
  uint64_t offset;
  Mapping* m = Args(env, info, &bufs, &offset);
  if (m == nullptr) return ThrowArgType(env, "memWrite: expected (mapping, buffer | buffers[], offset)");
  iovec iov[kMaxBuffers];
  uint32_t n = 0;
  if (!GetIovecs(env, bufs, iov, kMaxBuffers, &n))
    return ThrowArgType(env, "memWrite: a buffer or 1..64 ArrayBufferViews");
  if (m->base == nullptr) return NumberValue(env, -EBADF);
  if (!m->writable) return NumberValue(env, -EROFS);
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; i++) total += iov[i].iov_len;
  if (offset > m->length || total > m->length - offset) return NumberValue(env, -ERANGE);
  if (!GuardedGather(m->base + offset, iov, n)) return NumberValue(env, -EFAULT);
  return NumberValue(env, static_cast<double>(total));
}

// The pages of (mapping, offset, length > 0): a page-aligned address and span. Answers false with *out set to
// what the call returns: a thrown TypeError (nullptr) or -EBADF / -ERANGE.
bool PageRange(napi_env env, napi_callback_info info, const char* usage, uint8_t** addr, uint64_t* span,
               napi_value* out) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int64_t offset, length;
  Mapping* m = argc >= 3 ? GetMapping(env, argv[0]) : nullptr;
  if (m == nullptr || !GetInt64(env, argv[1], &offset) || !GetInt64(env, argv[2], &length) || offset < 0 ||
      length <= 0) {
    *out = ThrowArgType(env, usage);
    return false;
  }
  const uint64_t off = static_cast<uint64_t>(offset), len = static_cast<uint64_t>(length);
  if (m->base == nullptr || off > m->length || len > m->length - off) {
    *out = NumberValue(env, m->base == nullptr ? -EBADF : -ERANGE);
    return false;
  }
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = off & ~(page - 1);
  *addr = m->base + start;
  *span = len + (off - start);
  return true;
}

// (mapping, offset, length): map the range's pages now (MADV_POPULATE_READ), where each would otherwise cost a
// page fault at its first copy. Only for ranges the file holds whole: a read fault on a tmpfs hole allocates.
// 0 or -errno (-EINVAL from a kernel before 5.14: the pages then come by faults as before).
napi_value MemPopulate(napi_env env, napi_callback_info info) {
  uint8_t* addr;
  uint64_t span;
  napi_value out;
  if (!PageRange(env, info, "memPopulate: expected (mapping, offset, length > 0)", &addr, &span, &out)) return out;
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
  if (madvise(addr, span, MADV_POPULATE_READ) != 0) return NumberValue(env, -errno);
  return NumberValue(env, 0);
}

// (mapping, offset, length): 1 when every page of the range is in the file's page cache, which on tmpfs means
// allocated (a hole has no page), else 0; or -errno. mincore(2): bounded by the range, where lseek(SEEK_HOLE)
// walks on to the next hole, to the end of a fully allocated file.
napi_value MemResident(napi_env env, napi_callback_info info) {
  uint8_t* addr;
  uint64_t span;
  napi_value out;
  if (!PageRange(env, info, "memResident: expected (mapping, offset, length > 0)", &addr, &span, &out)) return out;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec(static_cast<size_t>((span + page - 1) / page));
  if (mincore(addr, span, vec.data()) != 0) return NumberValue(env, -errno);
  for (unsigned char v : vec)
    if ((v & 1) == 0) return NumberValue(env, 0);
  return NumberValue(env, 1);
}

}  // namespace

void RegisterMemMap(napi_env env, napi_value exports) {
  SetFunction(env, exports, "memMap", MemMap);
  SetFunction(env, exports, "memUnmap", MemUnmap);
  SetFunction(env, exports, "memRead", MemRead);
  SetFunction(env, exports, "memWrite", MemWrite);
  SetFunction(env, exports, "memPopulate", MemPopulate);
  SetFunction(env, exports, "memResident", MemResident);
}

}  // namespace nodetgt
