// One io_uring per addon instance (per JS thread), driven by that thread's libuv loop.
//
// Submission: the prep functions only fill SQEs; a uv_check_t and a uv_prepare_t, active only while SQEs
// wait, call io_uring_submit once per loop turn. Completion: the ring signals an eventfd, watched by a
// uv_poll_t; every readiness reaps all CQEs into two Int32Arrays shared with JS (tags, results) and calls
// one JS function per batch, through napi_make_callback so microtasks run after it.
#pragma once

#include <liburing.h>
#include <node_api.h>
#include <sys/uio.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "napi_util.h"

namespace nodetgt {

// iovec storage for SQEs not yet consumed by the kernel; reused once the SQ is drained
// (IORING_FEAT_SUBMIT_STABLE: the kernel has copied what it needs when it consumes an SQE).
class IovArena {
 public:
  iovec* Alloc(size_t n);
  void Reset() {
    cur_ = 0;
    used_ = 0;
  }

 private:
  struct Block {
    std::unique_ptr<iovec[]> mem;
    size_t size;
  };
  std::vector<Block> blocks_;
  size_t cur_ = 0, used_ = 0;
};

struct Ring {
  napi_env env = nullptr;
  Instance* inst = nullptr;
  io_uring uring{};
  int eventFd = -1;
  uv_poll_t poll{};
  uv_check_t check{};
  uv_prepare_t prepare{};
  int handlesOpen = 0;
  bool closing = false;
  bool armed = false;    // check/prepare active
  bool refed = false;    // poll handle keeps the loop alive
  uint32_t inflight = 0;  // SQEs prepared and not yet reaped
  napi_ref callback = nullptr, tagsRef = nullptr, resultsRef = nullptr;
  int32_t* tags = nullptr;
  int32_t* results = nullptr;
  uint32_t batchCap = 0;
  napi_async_context asyncContext = nullptr;
  napi_async_cleanup_hook_handle cleanupHook = nullptr;
  IovArena iovs;
  // Counters for tests and metrics.
  double submitCalls = 0, batches = 0, completions = 0;

  // Returns 0 or -errno; on failure the Ring is left unusable and must be deleted by the caller.
  int Open(unsigned entries);
  io_uring_sqe* GetSqe();
  // Accounting after an SQE is filled: arms the submit handles and refs the loop.
  void Prepared();
  int Submit();
  void Flush();
  void Reap();
  void Close();
  void UpdateRef();

 private:
  void Disarm();
  void CallJs(uint32_t count);
  void DrainForExit();
};

void RegisterRing(napi_env env, napi_value exports);

}  // namespace nodetgt
