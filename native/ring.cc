// io_uring ring per JS thread: see ring.h for the shape. The JS side (src/native/index.ts) owns tags,
// keeps the buffers alive until their completion, and splits vectors longer than IOV_MAX.
#include "ring.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>

namespace nodetgt {

namespace {
constexpr size_t kMaxRw = 0x7ffff000;  // Linux MAX_RW_COUNT: larger single transfers come back short anyway
constexpr unsigned kReapChunk = 64;

void OnPoll(uv_poll_t* h, int /*status*/, int /*events*/) {
  Ring* r = static_cast<Ring*>(h->data);
  uint64_t value;
  // Non-blocking; EAGAIN only means another readiness already drained it.
  ssize_t ignored = read(r->eventFd, &value, sizeof value);
  (void)ignored;
  r->Reap();
}

void OnCheck(uv_check_t* h) { static_cast<Ring*>(h->data)->Flush(); }
void OnPrepare(uv_prepare_t* h) { static_cast<Ring*>(h->data)->Flush(); }

void OnClosed(uv_handle_t* h) {
  Ring* r = static_cast<Ring*>(h->data);
  if (--r->handlesOpen > 0) return;
  io_uring_queue_exit(&r->uring);
  close(r->eventFd);
  napi_async_cleanup_hook_handle hook = r->cleanupHook;
  delete r;
  if (hook != nullptr) napi_remove_async_cleanup_hook(hook);
}

void OnEnvCleanup(napi_async_cleanup_hook_handle /*handle*/, void* arg) { static_cast<Ring*>(arg)->Close(); }
}  // namespace

iovec* IovArena::Alloc(size_t n) {
  while (cur_ < blocks_.size()) {
    Block& b = blocks_[cur_];
    if (b.size - used_ >= n) {
      iovec* out = b.mem.get() + used_;
      used_ += n;
      return out;
    }
    cur_++;
    used_ = 0;
  }
  const size_t size = std::max<size_t>(n, 4096);
  blocks_.push_back(Block{std::unique_ptr<iovec[]>(new iovec[size]), size});
  cur_ = blocks_.size() - 1;
  used_ = n;
  return blocks_.back().mem.get();
}

int Ring::Open(unsigned entries) {
  io_uring_params p{};
  p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  p.cq_entries = entries * 4;
  int rc = io_uring_queue_init_params(entries, &uring, &p);
  if (rc == -EINVAL) {  // kernels before 5.18 know no SUBMIT_ALL
    p = io_uring_params{};
    p.flags = IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    rc = io_uring_queue_init_params(entries, &uring, &p);
  }
  if (rc < 0) return rc;
  if (!(p.features & IORING_FEAT_SUBMIT_STABLE) || !(p.features & IORING_FEAT_NODROP)) {
    io_uring_queue_exit(&uring);
    return -ENOSYS;  // kernel older than 5.5: iovecs would have to outlive submission
  }
  eventFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (eventFd < 0) rc = -errno;
  if (rc == 0) rc = io_uring_register_eventfd(&uring, eventFd);
  uv_loop_t* loop = nullptr;
  if (rc == 0 && napi_get_uv_event_loop(env, &loop) != napi_ok) rc = -EINVAL;
  if (rc == 0) rc = uv_poll_init(loop, &poll, eventFd);
  if (rc < 0) {
    if (eventFd >= 0) close(eventFd);
    io_uring_queue_exit(&uring);
    return rc;
  }
  uv_check_init(loop, &check);
  uv_prepare_init(loop, &prepare);
  poll.data = check.data = prepare.data = this;
  handlesOpen = 3;
  // The submit handles never keep the loop alive by themselves; the poll handle does while ops are in flight.
  uv_unref(reinterpret_cast<uv_handle_t*>(&check));
  uv_unref(reinterpret_cast<uv_handle_t*>(&prepare));
  uv_poll_start(&poll, UV_READABLE, OnPoll);
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll));
  batchCap = std::max(batchCap, 1u);
  return 0;
}

void Ring::UpdateRef() {
  const bool want = inflight > 0;
  if (want == refed) return;
  refed = want;
  if (want)
    uv_ref(reinterpret_cast<uv_handle_t*>(&poll));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(&poll));
}

io_uring_sqe* Ring::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&uring);
  if (sqe == nullptr) {  // SQ full within one turn: push what we have, then retry
    Submit();
    sqe = io_uring_get_sqe(&uring);
  }
  return sqe;
}

void Ring::Prepared() {
  inflight++;
  UpdateRef();
  if (!armed) {
    armed = true;
    uv_check_start(&check, OnCheck);
    uv_prepare_start(&prepare, OnPrepare);
  }
}

int Ring::Submit() {
  submitCalls++;
  return io_uring_submit(&uring);
}

void Ring::Disarm() {
  if (!armed) return;
  armed = false;
  uv_check_stop(&check);
  uv_prepare_stop(&prepare);
}

void Ring::Flush() {
  if (closing) return;
  int rc = 0;
  if (io_uring_sq_ready(&uring) > 0) rc = Submit();
  if (io_uring_sq_ready(&uring) == 0) {
    Disarm();
    iovs.Reset();
  } else if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
    // Left armed: the SQEs are already published to the kernel and go with the next io_uring_enter.
    fprintf(stderr, "nodetgt: io_uring_submit failed: %d\n", rc);
  }
}

void Ring::Reap() {
  if (closing) return;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  io_uring_cqe* cqes[kReapChunk];
  for (;;) {
    uint32_t n = 0;
    while (n < batchCap) {
      const unsigned got = io_uring_peek_batch_cqe(&uring, cqes, std::min(kReapChunk, batchCap - n));
      if (got == 0) break;
      for (unsigned i = 0; i < got; i++, n++) {
        tags[n] = static_cast<int32_t>(cqes[i]->user_data);
        results[n] = cqes[i]->res;
      }
      io_uring_cq_advance(&uring, got);
    }
    if (n == 0) break;
    inflight = n > inflight ? 0 : inflight - n;
    batches++;
    completions += n;
    UpdateRef();
    CallJs(n);
    if (closing) break;
  }
  napi_close_handle_scope(env, scope);
}

void Ring::CallJs(uint32_t count) {
  napi_value fn, global, arg, result;
  napi_get_reference_value(env, callback, &fn);
  napi_get_global(env, &global);
  napi_create_uint32(env, count, &arg);
  if (napi_make_callback(env, asyncContext, global, fn, 1, &arg, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);  // 'uncaughtException', as for any other I/O callback
  }
}

// At teardown with ops still in the kernel: wait for them, so no completion writes into freed buffers.
void Ring::DrainForExit() {
  if (inflight == 0) return;
  io_uring_submit(&uring);
  int idle = 0;
  while (inflight > 0 && idle < 10) {
    __kernel_timespec ts{1, 0};
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_wait_cqe_timeout(&uring, &cqe, &ts);
    if (rc == 0) {
      io_uring_cqe_seen(&uring, cqe);
      inflight--;
    } else if (rc == -ETIME) {
      idle++;
    } else if (rc != -EINTR) {
      break;
    }
  }
}

void Ring::Close() {
  if (closing) return;
  closing = true;
  DrainForExit();
  if (inst != nullptr) {
    inst->ring = nullptr;
    inst = nullptr;
  }
  napi_delete_reference(env, callback);
  napi_delete_reference(env, tagsRef);
  napi_delete_reference(env, resultsRef);
  napi_async_destroy(env, asyncContext);
  Disarm();
  uv_poll_stop(&poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll), OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&check), OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare), OnClosed);
}

// ---- N-API functions ----------------------------------------------------------------------------

namespace {

#define ARGS(n)                                                   \
  size_t argc = (n);                                              \
  napi_value argv[(n)];                                           \
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);     \
  for (size_t i_ = argc; i_ < (n); i_++) argv[i_] = Undefined(env)

Ring* ActiveRing(napi_env env) {
  Instance* inst = GetInstance(env);
  if (inst == nullptr || inst->ring == nullptr) {
    napi_throw_error(env, "ERR_RING_CLOSED", "io_uring ring is not open on this thread");
    return nullptr;
  }
  return inst->ring;
}

napi_value TypeError(napi_env env, const char* msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return nullptr;
}

io_uring_sqe* TakeSqe(napi_env env, Ring* r) {
  io_uring_sqe* sqe = r->GetSqe();
  if (sqe == nullptr) {
    ThrowErrno(env, EBUSY, "io_uring_get_sqe");
    return nullptr;
  }
  return sqe;
}

void Commit(Ring* r, io_uring_sqe* sqe, int32_t tag) {
  sqe->user_data = static_cast<uint32_t>(tag);
  r->Prepared();
}

// ringOpen(entries, tags: Int32Array, results: Int32Array, onBatch: (count) => void)
napi_value RingOpen(napi_env env, napi_callback_info info) {
  ARGS(4);
  Instance* inst = GetInstance(env);
  if (inst->ring != nullptr) {
    napi_throw_error(env, "ERR_RING_OPEN", "io_uring ring already open on this thread");
    return nullptr;
  }
  int32_t entries;
  napi_typedarray_type t1, t2;
  size_t n1, n2;
  void *d1, *d2;
  napi_valuetype fnType;
  if (!GetInt32(env, argv[0], &entries) || entries < 1 || entries > 4096)
    return TypeError(env, "entries must be an integer in 1..4096");
  if (napi_get_typedarray_info(env, argv[1], &t1, &n1, &d1, nullptr, nullptr) != napi_ok || t1 != napi_int32_array ||
      napi_get_typedarray_info(env, argv[2], &t2, &n2, &d2, nullptr, nullptr) != napi_ok || t2 != napi_int32_array ||
      n1 != n2 || n1 == 0)
    return TypeError(env, "tags and results must be Int32Arrays of the same non-zero length");
  napi_typeof(env, argv[3], &fnType);
  if (fnType != napi_function) return TypeError(env, "onBatch must be a function");

  Ring* r = new Ring();
  r->env = env;
  r->inst = inst;
  r->tags = static_cast<int32_t*>(d1);
  r->results = static_cast<int32_t*>(d2);
  r->batchCap = static_cast<uint32_t>(n1);
  const int rc = r->Open(static_cast<unsigned>(entries));
  if (rc < 0) {
    delete r;
    ThrowErrno(env, -rc, "io_uring_setup");
    return nullptr;
  }
  napi_create_reference(env, argv[1], 1, &r->tagsRef);
  napi_create_reference(env, argv[2], 1, &r->resultsRef);
  napi_create_reference(env, argv[3], 1, &r->callback);
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "nodetgt:io_uring", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &r->asyncContext);
  napi_add_async_cleanup_hook(env, OnEnvCleanup, r, &r->cleanupHook);
  inst->ring = r;
  return Undefined(env);
}

napi_value RingClose(napi_env env, napi_callback_info info) {
  Instance* inst = GetInstance(env);
  if (inst->ring == nullptr) return Undefined(env);
  if (inst->ring->inflight > 0) {
    ThrowErrno(env, EBUSY, "io_uring_close");
    return nullptr;
  }
  inst->ring->Close();
  return Undefined(env);
}

// ringRead(tag, fd, buf, offset) / ringWrite(tag, fd, buf, offset, rwFlags): one buffer, no iovec.
napi_value RingReadWrite(napi_env env, napi_callback_info info, bool write) {
  ARGS(5);
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  int32_t tag, fd, flags = 0;
  int64_t offset;
  uint8_t* data;
  size_t len;
  if (!GetInt32(env, argv[0], &tag) || !GetInt32(env, argv[1], &fd) || !GetBytes(env, argv[2], &data, &len) ||
      !GetInt64(env, argv[3], &offset) || (write && !GetInt32(env, argv[4], &flags)))
    return TypeError(env, "expected (tag, fd, buffer, offset[, rwFlags])");
  if (len > kMaxRw) return TypeError(env, "transfer larger than 0x7ffff000 bytes");
  io_uring_sqe* sqe = TakeSqe(env, r);
  if (sqe == nullptr) return nullptr;
  if (write) {
    io_uring_prep_write(sqe, fd, data, static_cast<unsigned>(len), static_cast<uint64_t>(offset));
    sqe->rw_flags = flags;
  } else {
    io_uring_prep_read(sqe, fd, data, static_cast<unsigned>(len), static_cast<uint64_t>(offset));
  }
  Commit(r, sqe, tag);
  return Undefined(env);
}

napi_value RingRead(napi_env env, napi_callback_info info) { return RingReadWrite(env, info, false); }
napi_value RingWrite(napi_env env, napi_callback_info info) { return RingReadWrite(env, info, true); }

// ringReadv(tag, fd, buffers[], offset) / ringWritev(tag, fd, buffers[], offset, rwFlags)
napi_value RingVectored(napi_env env, napi_callback_info info, bool write) {
  ARGS(5);
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  int32_t tag, fd, flags = 0;
  int64_t offset;
  uint32_t count = 0;
  if (!GetInt32(env, argv[0], &tag) || !GetInt32(env, argv[1], &fd) ||
      napi_get_array_length(env, argv[2], &count) != napi_ok || !GetInt64(env, argv[3], &offset) ||
      (write && !GetInt32(env, argv[4], &flags)))
    return TypeError(env, "expected (tag, fd, buffers[], offset[, rwFlags])");
  if (count == 0 || count > IOV_MAX) return TypeError(env, "buffer count must be in 1..IOV_MAX");
  // Fill the iovecs before taking an SQE: an SQE once taken cannot be handed back.
  iovec* iov = r->iovs.Alloc(count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    uint8_t* data;
    size_t len;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || !GetBytes(env, el, &data, &len))
      return TypeError(env, "buffers must be ArrayBufferViews");
    iov[i].iov_base = data;
    iov[i].iov_len = len;
  }
  io_uring_sqe* sqe = TakeSqe(env, r);
  if (sqe == nullptr) return nullptr;
  if (write)
    io_uring_prep_writev2(sqe, fd, iov, count, static_cast<uint64_t>(offset), flags);
  else
    io_uring_prep_readv(sqe, fd, iov, count, static_cast<uint64_t>(offset));
  Commit(r, sqe, tag);
  return Undefined(env);
}

napi_value RingReadv(napi_env env, napi_callback_info info) { return RingVectored(env, info, false); }
napi_value RingWritev(napi_env env, napi_callback_info info) { return RingVectored(env, info, true); }

// ringFsync(tag, fd, datasync: boolean)
napi_value RingFsync(napi_env env, napi_callback_info info) {
  ARGS(3);
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  int32_t tag, fd;
  bool datasync = false;
  if (!GetInt32(env, argv[0], &tag) || !GetInt32(env, argv[1], &fd) ||
      napi_get_value_bool(env, argv[2], &datasync) != napi_ok)
    return TypeError(env, "expected (tag, fd, datasync)");
  io_uring_sqe* sqe = TakeSqe(env, r);
  if (sqe == nullptr) return nullptr;
  io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
  Commit(r, sqe, tag);
  return Undefined(env);
}

// ringFallocate(tag, fd, mode, offset, length)
napi_value RingFallocate(napi_env env, napi_callback_info info) {
  ARGS(5);
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  int32_t tag, fd, mode;
  int64_t offset, length;
  if (!GetInt32(env, argv[0], &tag) || !GetInt32(env, argv[1], &fd) || !GetInt32(env, argv[2], &mode) ||
      !GetInt64(env, argv[3], &offset) || !GetInt64(env, argv[4], &length))
    return TypeError(env, "expected (tag, fd, mode, offset, length)");
  io_uring_sqe* sqe = TakeSqe(env, r);
  if (sqe == nullptr) return nullptr;
  io_uring_prep_fallocate(sqe, fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length));
  Commit(r, sqe, tag);
  return Undefined(env);
}

// ringNop(tag): a round trip through the kernel, for tests and overhead measurements.
napi_value RingNop(napi_env env, napi_callback_info info) {
  ARGS(1);
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  int32_t tag;
  if (!GetInt32(env, argv[0], &tag)) return TypeError(env, "expected (tag)");
  io_uring_sqe* sqe = TakeSqe(env, r);
  if (sqe == nullptr) return nullptr;
  io_uring_prep_nop(sqe);
  Commit(r, sqe, tag);
  return Undefined(env);
}

// ringSubmit(): submit now rather than at the end of this loop turn; returns SQEs submitted.
napi_value RingSubmit(napi_env env, napi_callback_info info) {
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  const int rc = io_uring_sq_ready(&r->uring) > 0 ? r->Submit() : 0;
  if (rc < 0 && rc != -EAGAIN && rc != -EBUSY) {
    ThrowErrno(env, -rc, "io_uring_submit");
    return nullptr;
  }
  napi_value out;
  napi_create_int32(env, rc < 0 ? 0 : rc, &out);
  return out;
}

napi_value RingStats(napi_env env, napi_callback_info info) {
  Ring* r = ActiveRing(env);
  if (r == nullptr) return nullptr;
  napi_value out, v;
  napi_create_object(env, &out);
  const double fields[] = {static_cast<double>(r->inflight), r->submitCalls, r->batches, r->completions,
                           static_cast<double>(r->uring.sq.ring_entries),
                           static_cast<double>(r->uring.cq.ring_entries), r->refed ? 1.0 : 0.0};
  const char* names[] = {"inflight", "submitCalls", "batches", "completions", "sqEntries", "cqEntries", "refed"};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    napi_create_double(env, fields[i], &v);
    napi_set_named_property(env, out, names[i], v);
  }
  return out;
}

}  // namespace

void RegisterRing(napi_env env, napi_value exports) {
  SetFunction(env, exports, "ringOpen", RingOpen);
  SetFunction(env, exports, "ringClose", RingClose);
  SetFunction(env, exports, "ringRead", RingRead);
  SetFunction(env, exports, "ringWrite", RingWrite);
  SetFunction(env, exports, "ringReadv", RingReadv);
  SetFunction(env, exports, "ringWritev", RingWritev);
  SetFunction(env, exports, "ringFsync", RingFsync);
  SetFunction(env, exports, "ringFallocate", RingFallocate);
  SetFunction(env, exports, "ringNop", RingNop);
  SetFunction(env, exports, "ringSubmit", RingSubmit);
  SetFunction(env, exports, "ringStats", RingStats);
}

}  // namespace nodetgt
