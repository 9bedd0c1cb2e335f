// Adaptive polling before the thread's libuv loop blocks.
//
// At queue depth 1 a worker thread sleeps in epoll_wait between every command and the next, and on a virtual
// machine the sleep and the wake-up (scheduler, idle state, the interprocessor interrupt that ends it) take a
// good part of the round trip. Here a uv_prepare_t, which runs just before the loop polls, looks whether the loop
// is about to block; if so it first watches the loop's epoll descriptor (readable when any watched descriptor is:
// sockets, the io_uring eventfd, async wake-ups) for up to `window` microseconds, unless the last wake-up
// brought several commands (they come in batches, which sleeping lets grow) or a command waits (or last waited)
// on a device, yielding the CPU between looks so that a process sharing the core (an initiator pinned to it)
// runs meanwhile. When something becomes ready the loop polls without sleeping.
//
// The window adapts to what the idle periods turn out to be, measured from the prepare callback to the check
// callback that runs after the poll (a period ended by the loop's own timer does not count): an idle period that ended within the longest window allowed (`max`) but
// after the window grows it (a longer look would have saved the sleep); one longer than `max` shrinks it (looking
// was wasted). A window that catches the event stays as it is. So a busy loop that finds work at once, or an
// idle target, looks little or not at all, and a request-response stream settles on a window that covers its gap.
#include "idlepoll.h"

#include <poll.h>
#include <sched.h>
#include <time.h>
#include <uv.h>

#include <cstdint>

#include "napi_util.h"

namespace nodetgt {
namespace {

constexpr uint32_t kFirstWindowUs = 8;
// A sched_yield longer than this gave the CPU to another task.
constexpr uint64_t kSharedYieldNs = 5000;
// Looks are judged in blocks of this many: when more than a quarter of a block's looks had such a yield, the
// looks stop for kSharedPauseNs.
constexpr uint32_t kBlockLooks = 64;
// How long the looks stop after that.
constexpr uint64_t kSharedPauseNs = 200ull * 1000 * 1000;

struct IdlePoll {
  uv_loop_t* loop = nullptr;
  uv_prepare_t prepare{};
  uv_check_t check{};
  uint32_t maxUs = 0;
  uint32_t windowUs = 0;
  bool idle = false;      // the prepare callback saw the loop about to block
  bool caught = false;    // ... and the look found it ready
  uint64_t idleFrom = 0;  // ns
  uint64_t timerNs = 0;   // the loop's next timer from idleFrom (UINT64_MAX: none)
  // The worker's count of SCSI commands received (a slot of its counter row, written by JavaScript): looks are
  // for a thread that wakes for one command at a time.
  const double* commands = nullptr;
  // Bytes of commands queued to the backstores (same row): looks are not for a thread waiting on a device.
  const double* queued = nullptr;
  napi_ref commandsRef = nullptr;
  double lastCommands = 0;
  bool deviceWaited = false;  // a command waited on a device since the last idle period
  uint64_t pausedUntil = 0;  // ns: no looks before (the CPU was found shared)
  uint32_t blockLooks = 0, blockShared = 0, blockMissed = 0;
  // Statistics since start: looks that caught an event, looks that did not, idle periods, time spent looking,
  // pauses because this CPU was found shared.
  double caughtCount = 0, missedCount = 0, idleCount = 0, lookNs = 0, sharedCount = 0;
};

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void OnPrepare(uv_prepare_t* h) {
  auto* p = static_cast<IdlePoll*>(h->data);
  p->idle = false;
  const int timeout = uv_backend_timeout(p->loop);  // ms; 0: will not block; -1: no timer
  if (timeout == 0) return;
  // Waiting for a device (a disk read or write in flight): its completion is the device's time, which a look
  // would spend in CPU to save a wake-up that is small beside it.
  if (p->queued != nullptr && *p->queued > 0) {
    p->deviceWaited = true;
    return;
  }
  // Nor for the next command after a device wait: where commands wait on a device, the wake-up a look saves is
  // small beside the device's time, and the look costs the CPU of the whole gap (the full bench at 08a63a5: disk
  // 4K QD1 at the same rate, 154 µs of target CPU per I/O against 102 without looking).
  const bool afterDevice = p->deviceWaited;
  p->deviceWaited = false;
  p->idle = true;
  p->caught = false;
  p->idleCount++;
  const uint64_t start = NowNs();
  p->idleFrom = start;
  p->timerNs = timeout < 0 ? UINT64_MAX : static_cast<uint64_t>(timeout) * 1000000;
  uint64_t window = static_cast<uint64_t>(p->windowUs) * 1000;
  if (timeout > 0 && static_cast<uint64_t>(timeout) * 1000000 < window) window = static_cast<uint64_t>(timeout) * 1000000;
  // Several commands since the last sleep: they arrive in batches, and sleeping lets the next batch grow (one
  // wake-up, one read, one write for all of it); looking would take them a few at a time, at more CPU each.
  bool batched = false;
  if (p->commands != nullptr) {
    const double c = *p->commands;
    batched = c - p->lastCommands >= 2;
    p->lastCommands = c;
  }
  if (window == 0 || batched || afterDevice || start < p->pausedUntil) return;
  pollfd fd{uv_backend_fd(p->loop), POLLIN, 0};
  uint64_t now = start;
  bool longYield = false;
  do {
    if (poll(&fd, 1, 0) > 0) {
      p->caught = true;
      break;
    }
    const uint64_t before = NowNs();
    sched_yield();
    now = NowNs();
    if (now - before > kSharedYieldNs) longYield = true;
  } while (now - start < window);
  p->lookNs += static_cast<double>(NowNs() - start);
  // A yield that took long ran another task on this CPU. Now and then that is a kernel thread or the host; in
  // a good share of the looks it means this CPU is shared (an initiator pinned to it, other load), and looking
  // only keeps that task from the CPU it needs to send what we wait for: sleep instead, for a while.
  // Looks that mostly miss do not pay either, whatever the reason; and on a CPU shared with the peer they are
  // the sign of it when the scheduler does not run the peer on a yield.
  p->blockLooks++;
  if (longYield) p->blockShared++;
  if (!p->caught) p->blockMissed++;
  if (p->blockLooks == kBlockLooks) {
    if (p->blockShared * 4 > kBlockLooks || p->blockMissed * 4 > kBlockLooks) {
      p->sharedCount++;
      p->pausedUntil = now + kSharedPauseNs;
      p->windowUs = 0;
    }
    p->blockLooks = p->blockShared = p->blockMissed = 0;
  }
  if (p->caught)
    p->caughtCount++;
  else
    p->missedCount++;
}

void OnCheck(uv_check_t* h) {
  auto* p = static_cast<IdlePoll*>(h->data);
  if (!p->idle) return;
  p->idle = false;
  if (p->caught) return;
  const uint64_t idleNs = NowNs() - p->idleFrom;
  // Ended by the loop's own timer, not by something arriving: it says nothing of the gaps between requests.
  if (idleNs >= p->timerNs) return;
  const uint64_t idleUs = idleNs / 1000;
  if (idleUs > p->maxUs) {
    p->windowUs /= 2;
    if (p->windowUs < kFirstWindowUs) p->windowUs = 0;
  } else if (idleUs > p->windowUs) {
    p->windowUs = p->windowUs == 0 ? kFirstWindowUs : p->windowUs * 2;
    if (p->windowUs > p->maxUs) p->windowUs = p->maxUs;
  }
}

thread_local IdlePoll* t_poll = nullptr;

void OnClosed(uv_handle_t* h) {
  auto* p = static_cast<IdlePoll*>(h->data);
  // Two handles: the second close frees it.
  if (p->loop == nullptr)
    delete p;
  else
    p->loop = nullptr;
}

void Stop(void* arg) {
  IdlePoll* p = t_poll;
  if (p == nullptr) return;
  t_poll = nullptr;
  if (p->commandsRef != nullptr) {
    napi_delete_reference(static_cast<napi_env>(arg), p->commandsRef);
    p->commandsRef = nullptr;
    p->commands = nullptr;
    p->queued = nullptr;
  }
  uv_prepare_stop(&p->prepare);
  uv_check_stop(&p->check);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->prepare), OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->check), OnClosed);
}

// idlePoll(maxMicros[, counters: Float64Array, commandsIndex, queuedIndex]): start (or change, or with 0 stop)
// looking before this thread's loop blocks; counters[commandsIndex] counts the commands the thread receives,
// counters[queuedIndex] the bytes it has queued to backstores.
napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  uint32_t max = 0;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &max) != napi_ok || max > 1000000) {
    napi_throw_type_error(env, nullptr, "idlePoll: expected microseconds (0..1000000)");
    return nullptr;
  }
  const double* commands = nullptr;
  const double* queued = nullptr;
  if (argc >= 4) {
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    uint32_t ci = 0, qi = 0;
    if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, nullptr, nullptr) != napi_ok ||
        type != napi_float64_array || napi_get_value_uint32(env, argv[2], &ci) != napi_ok || ci >= length ||
        napi_get_value_uint32(env, argv[3], &qi) != napi_ok || qi >= length) {
      napi_throw_type_error(env, nullptr, "idlePoll: expected (microseconds, Float64Array, index, index)");
      return nullptr;
    }
    commands = static_cast<const double*>(data) + ci;
    queued = static_cast<const double*>(data) + qi;
  }
  if (max == 0) {
    if (t_poll != nullptr) {
      napi_remove_env_cleanup_hook(env, Stop, env);
      Stop(env);
    }
    return nullptr;
  }
  if (t_poll == nullptr) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      napi_throw_error(env, nullptr, "idlePoll: no event loop");
      return nullptr;
    }
    auto* p = new IdlePoll();
    p->loop = loop;
    uv_prepare_init(loop, &p->prepare);
    uv_check_init(loop, &p->check);
    p->prepare.data = p->check.data = p;
    uv_prepare_start(&p->prepare, OnPrepare);
    uv_check_start(&p->check, OnCheck);
    // Neither keeps the loop (the thread) alive.
    uv_unref(reinterpret_cast<uv_handle_t*>(&p->prepare));
    uv_unref(reinterpret_cast<uv_handle_t*>(&p->check));
    t_poll = p;
    napi_add_env_cleanup_hook(env, Stop, env);
  }
  if (commands != nullptr) {
    if (t_poll->commandsRef != nullptr) napi_delete_reference(env, t_poll->commandsRef);
    napi_create_reference(env, argv[1], 1, &t_poll->commandsRef);
    t_poll->commands = commands;
    t_poll->queued = queued;
    t_poll->lastCommands = *commands;
  }
  t_poll->maxUs = max;
  if (t_poll->windowUs > max) t_poll->windowUs = max;
  return nullptr;
}

// idlePollStats(): [caught, missed, idle periods, look ms, window us, max us, shared] of this thread, or zeros.
napi_value Stats(napi_env env, napi_callback_info /*info*/) {
  const IdlePoll* p = t_poll;
  const double v[7] = {p ? p->caughtCount : 0,
                       p ? p->missedCount : 0,
                       p ? p->idleCount : 0,
                       p ? p->lookNs / 1e6 : 0,
                       p ? static_cast<double>(p->windowUs) : 0,
                       p ? static_cast<double>(p->maxUs) : 0,
                       p ? p->sharedCount : 0};
  napi_value arr;
  napi_create_array_with_length(env, 7, &arr);
  for (uint32_t i = 0; i < 7; i++) {
    napi_value x;
    napi_create_double(env, v[i], &x);
    napi_set_element(env, arr, i, x);
  }
  return arr;
}

}  // namespace

void RegisterIdlePoll(napi_env env, napi_value exports) {
  SetFunction(env, exports, "idlePoll", Start);
  SetFunction(env, exports, "idlePollStats", Stats);
}

}  // namespace nodetgt
