// Ceph RBD images through librbd (compiled only when librbd-dev is present: NODETGT_HAVE_RBD).
//
// Shape, like the io_uring ring: each JS thread has one hub (tags/results arrays shared with JS and one batch
// callback). An image opened on a thread gets its own eventfd, registered with rbd_set_image_notification, and
// a uv_poll_t on that thread's loop; every readiness drains rbd_poll_io_events and calls JS once per batch.
// Completions are created without a callback: a completion with both a callback and notification would be
// delivered twice. Notification cannot be switched off, so the image is closed before its eventfd.
//
// Cluster handles (rados_t) are process-wide, shared by every thread and image with the same config path,
// client id and options (a connection costs threads and a session with the mon). Opening and closing block
// (mon round trips, watch flush): they run on the libuv thread pool.
//
// Reservation state shared by gateways lives in a RADOS object beside the image (prObject): read, replaced
// with a compare-and-swap on its "gen" xattr, watched (a notify reaches every gateway's JS, which answers
// with rbdPrAck once it has refreshed), and notified after each change.
//
// A full pool (its quota reached, or an OSD past the full ratio) fails writes at once instead of holding them:
// the pool's I/O context carries librados' full-try flag (RbdOpen says why and what it means for the data).
#include <fcntl.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "napi_util.h"

namespace nodetgt {
namespace {

// ---- process-wide cluster handles -------------------------------------------------------------------------

struct ClusterEntry {
  rados_t cluster = nullptr;
  int refs = 0;
};
std::mutex g_clusterMu;
std::map<std::string, ClusterEntry> g_clusters;

// Returns 0 or -errno; *out holds a reference to release with ReleaseCluster(key).
int AcquireCluster(const std::string& conf, const std::string& client, bool cache, int opTimeout,
                   std::string* key, rados_t* out, std::string* why) {
  *key = conf + "\n" + client + "\n" + (cache ? "1" : "0") + "\n" + std::to_string(opTimeout);
  std::lock_guard<std::mutex> lock(g_clusterMu);
  auto it = g_clusters.find(*key);
  if (it != g_clusters.end()) {
    it->second.refs++;
    *out = it->second.cluster;
    return 0;
  }
  rados_t c = nullptr;
  const std::string entity = "client." + client;
  int rc = rados_create2(&c, "ceph", entity.c_str(), 0);
  if (rc < 0) {
    *why = "rados_create2";
    return rc;
  }
  rc = rados_conf_read_file(c, conf.empty() ? nullptr : conf.c_str());
  if (rc < 0) *why = "reading the Ceph config " + (conf.empty() ? std::string("(default path)") : conf);
  const std::string t = std::to_string(opTimeout);
  // The librbd cache is off unless asked for: a write then is on the OSDs when it completes.
  if (rc == 0) rc = rados_conf_set(c, "rbd_cache", cache ? "true" : "false");
  // Bounded waits: an unreachable cluster fails the open, a lost OSD fails I/O instead of hanging it.
  // A discard that covers part of an object zeroes it rather than leaving it: UNMAP promises zeros (LBPRZ).
  if (rc == 0) rc = rados_conf_set(c, "rbd_skip_partial_discard", "false");
  if (rc == 0) rc = rados_conf_set(c, "client_mount_timeout", t.c_str());
  if (rc == 0) rc = rados_conf_set(c, "rados_mon_op_timeout", t.c_str());
  if (rc == 0) rc = rados_conf_set(c, "rados_osd_op_timeout", t.c_str());
  if (rc == 0) rc = rados_conf_set(c, "log_to_stderr", "false");
  if (rc == 0) rc = rados_conf_set(c, "err_to_stderr", "false");
  if (rc == 0 && why->empty()) {
    rc = rados_connect(c);
    if (rc < 0) *why = "connecting to the cluster as client." + client;
  }
  if (rc < 0) {
    if (why->empty()) *why = "setting Ceph options";
    rados_shutdown(c);
    return rc;
  }
  g_clusters[*key] = ClusterEntry{c, 1};
  *out = c;
  return 0;
}

void ReleaseCluster(const std::string& key) {
  rados_t c = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_clusterMu);
    auto it = g_clusters.find(key);
    if (it == g_clusters.end() || --it->second.refs > 0) return;
    c = it->second.cluster;
    g_clusters.erase(it);
  }
  rados_watch_flush(c);
  rados_shutdown(c);
}

// ---- per-thread hub and images ----------------------------------------------------------------------------

struct Image;

struct Hub {
  napi_env env = nullptr;
  napi_ref callback = nullptr, tagsRef = nullptr, resultsRef = nullptr;
  int32_t* tags = nullptr;
  double* results = nullptr;  // pairs: result, mismatch offset
  uint32_t cap = 0;
  napi_async_context ctx = nullptr;
  std::vector<Image*> images;  // index = handle; null when closed
};

struct Op {
  int32_t tag;
  uint64_t mismatch = 0;
  std::vector<iovec> iov;
  Image* im = nullptr;  // callback-mode ops (compare-and-write)
};

struct Image {
  Hub* hub = nullptr;
  int32_t handle = -1;
  std::string clusterKey;
  rados_t cluster = nullptr;
  rados_ioctx_t io = nullptr;
  rbd_image_t img = nullptr;
  int efd = -1;
  uv_poll_t poll{};
  bool polling = false;
  // Set by Detach (rbdClose, env teardown): a close may run on the thread pool from then on, so nothing on the
  // loop thread may call into librbd for this image any more.
  bool detached = false;
  uint32_t inflight = 0;
  std::string prObject;
  uint64_t watchCookie = 0;
  bool watching = false;
  napi_threadsafe_function notifyFn = nullptr;
  napi_async_cleanup_hook_handle cleanupHook = nullptr;
  // Completions of callback-mode ops, pushed by librbd's threads, taken by Drain.
  std::mutex doneMu;
  std::vector<std::pair<Op*, ssize_t>> done;
};

constexpr int kPollChunk = 64;

Hub* GetHub(napi_env env) {
  Instance* inst = GetInstance(env);
  return inst == nullptr ? nullptr : static_cast<Hub*>(inst->rbd);
}

napi_value TypeErr(napi_env env, const char* msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return nullptr;
}

bool GetString(napi_env env, napi_value v, std::string* out) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return false;
  out->resize(len);
  if (len == 0) return true;
  std::vector<char> buf(len + 1);
  napi_get_value_string_utf8(env, v, buf.data(), len + 1, &len);
  out->assign(buf.data(), len);
  return true;
}

void CallBatch(Hub* hub, uint32_t n) {
  napi_env env = hub->env;
  napi_value fn, global, arg, result;
  napi_get_reference_value(env, hub->callback, &fn);
  napi_get_global(env, &global);
  napi_create_uint32(env, n, &arg);
  if (napi_make_callback(env, hub->ctx, global, fn, 1, &arg, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
}

void Drain(Image* im) {
  Hub* hub = im->hub;
  napi_handle_scope scope;
  napi_open_handle_scope(hub->env, &scope);
  rbd_completion_t comps[kPollChunk];
  for (;;) {
    uint32_t n = 0;
    while (n < hub->cap) {
      const int want = static_cast<int>(std::min<uint32_t>(kPollChunk, hub->cap - n));
      const int got = rbd_poll_io_events(im->img, comps, want);
      if (got <= 0) break;
      for (int i = 0; i < got; i++, n++) {
        Op* op = static_cast<Op*>(rbd_aio_get_arg(comps[i]));
        const ssize_t ret = rbd_aio_get_return_value(comps[i]);
        rbd_aio_release(comps[i]);
        hub->tags[n] = op->tag;
        hub->results[2 * n] = static_cast<double>(ret);
        hub->results[2 * n + 1] = static_cast<double>(op->mismatch);
        delete op;
      }
    }
    if (n < hub->cap) {
      std::lock_guard<std::mutex> lock(im->doneMu);
      size_t i = 0;
      for (; i < im->done.size() && n < hub->cap; i++, n++) {
        Op* op = im->done[i].first;
        hub->tags[n] = op->tag;
        hub->results[2 * n] = static_cast<double>(im->done[i].second);
        hub->results[2 * n + 1] = static_cast<double>(op->mismatch);
        delete op;
      }
      im->done.erase(im->done.begin(), im->done.begin() + i);
    }
    if (n == 0) break;
    im->inflight = n > im->inflight ? 0 : im->inflight - n;
    if (im->inflight == 0 && im->polling) uv_unref(reinterpret_cast<uv_handle_t*>(&im->poll));
    CallBatch(hub, n);
    // The batch's JavaScript (its microtasks included) may have closed this image: rbd_close may be running on
    // the thread pool already, and polling it again raced with it (a SIGSEGV in rbd_poll_io_events).
    if (im->detached) break;
  }
  napi_close_handle_scope(hub->env, scope);
}

void OnPoll(uv_poll_t* h, int /*status*/, int /*events*/) {
  Image* im = static_cast<Image*>(h->data);
  uint64_t value;
  ssize_t ignored = read(im->efd, &value, sizeof value);  // non-blocking; EAGAIN: drained already
  (void)ignored;
  if (im->img != nullptr && !im->detached) Drain(im);
}

// ---- jobs on the thread pool ---------------------------------------------------------------------------------

struct Job {
  napi_async_work work = nullptr;
  napi_ref cb = nullptr;
  std::function<void(Job&)> exec;
  std::function<napi_value(napi_env, Job&)> done;  // the callback's second argument
  int rc = 0;
  std::string why;
};

void JobExec(napi_env, void* data) {
  Job* j = static_cast<Job*>(data);
  j->exec(*j);
}

void JobDone(napi_env env, napi_status, void* data) {
  Job* j = static_cast<Job*>(data);
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, global, args[3], result;
  napi_get_reference_value(env, j->cb, &fn);
  napi_get_global(env, &global);
  napi_create_int32(env, j->rc, &args[0]);
  args[1] = j->done ? j->done(env, *j) : nullptr;
  if (args[1] == nullptr) args[1] = Undefined(env);
  napi_create_string_utf8(env, j->why.c_str(), j->why.size(), &args[2]);
  napi_call_function(env, global, fn, 3, args, &result);
  napi_delete_reference(env, j->cb);
  napi_delete_async_work(env, j->work);
  delete j;
  napi_close_handle_scope(env, scope);
}

// Every entry point that waits for the cluster ends here: exec runs on the thread pool, then done (its value,
// when given, is the second argument) and cb(rc, value, why) on the JS thread. Returns undefined, the entry
// point's own result.
napi_value QueueJob(napi_env env, napi_value cb, std::function<void(Job&)> exec,
                    std::function<napi_value(napi_env, Job&)> done = nullptr) {
  Job* j = new Job();
  j->exec = std::move(exec);
  j->done = std::move(done);
  napi_value name;
  napi_create_string_utf8(env, "nodetgt:rbd", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, cb, 1, &j->cb);
  napi_create_async_work(env, nullptr, name, JobExec, JobDone, j, &j->work);
  napi_queue_async_work(env, j->work);
  return Undefined(env);
}

// ---- watch / notify ------------------------------------------------------------------------------------------

struct NotifyMsg {
  uint64_t notifyId;
  int err;  // 0: a notify; < 0: the watch failed (re-watch and refresh)
};

void WatchCb(void* arg, uint64_t notify_id, uint64_t /*handle*/, uint64_t /*notifier*/, void*, size_t) {
  Image* im = static_cast<Image*>(arg);
  if (im->notifyFn == nullptr) return;
  auto* m = new NotifyMsg{notify_id, 0};
  if (napi_call_threadsafe_function(im->notifyFn, m, napi_tsfn_nonblocking) != napi_ok) delete m;
}

void WatchErrCb(void* arg, uint64_t /*cookie*/, int err) {
  Image* im = static_cast<Image*>(arg);
  if (im->notifyFn == nullptr) return;
  auto* m = new NotifyMsg{0, err};
  if (napi_call_threadsafe_function(im->notifyFn, m, napi_tsfn_nonblocking) != napi_ok) delete m;
}

void CallNotify(napi_env env, napi_value fn, void* /*context*/, void* data) {
  NotifyMsg* m = static_cast<NotifyMsg*>(data);
  if (env != nullptr && fn != nullptr) {
    napi_value args[2], global, result;
    napi_create_bigint_uint64(env, m->notifyId, &args[0]);
    napi_create_int32(env, m->err, &args[1]);
    napi_get_global(env, &global);
    napi_call_function(env, global, fn, 2, args, &result);
  }
  delete m;
}

// ---- teardown ---------------------------------------------------------------------------------------------------

// Blocking part of a close (thread pool or env teardown): the image first, then what it hangs from.
void CloseBlocking(Image* im) {
  if (im->watching) {
    rados_unwatch2(im->io, im->watchCookie);
    im->watching = false;
  }
  if (im->img != nullptr) {
    rbd_close(im->img);
    im->img = nullptr;
  }
  if (im->io != nullptr) {
    rados_ioctx_destroy(im->io);
    im->io = nullptr;
  }
  if (!im->clusterKey.empty()) {
    ReleaseCluster(im->clusterKey);
    im->clusterKey.clear();
  }
}

void OnPollClosed(uv_handle_t* h) {
  Image* im = static_cast<Image*>(h->data);
  close(im->efd);  // after rbd_close: librbd never signals it again
  napi_async_cleanup_hook_handle hook = im->cleanupHook;
  delete im;
  if (hook != nullptr) napi_remove_async_cleanup_hook(hook);
}

void Detach(Image* im) {
  im->detached = true;
  if (im->hub != nullptr && im->handle >= 0 && static_cast<size_t>(im->handle) < im->hub->images.size())
    im->hub->images[im->handle] = nullptr;
  if (im->polling) uv_poll_stop(&im->poll);
}

// After the unwatch (CloseBlocking): no librados thread calls the function any more.
void ReleaseNotify(Image* im) {
  if (im->notifyFn == nullptr) return;
  napi_release_threadsafe_function(im->notifyFn, napi_tsfn_abort);
  im->notifyFn = nullptr;
}

// A worker thread ending with images still open: close them synchronously.
void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
  Image* im = static_cast<Image*>(arg);
  Detach(im);
  CloseBlocking(im);
  ReleaseNotify(im);
  if (im->polling) {
    uv_close(reinterpret_cast<uv_handle_t*>(&im->poll), OnPollClosed);
  } else {
    napi_async_cleanup_hook_handle hook = im->cleanupHook;
    if (im->efd >= 0) close(im->efd);
    delete im;
    napi_remove_async_cleanup_hook(hook);
  }
}

// ---- N-API functions --------------------------------------------------------------------------------------------

#define ARGS(n)                                               \
  size_t argc = (n);                                          \
  napi_value argv[(n)];                                       \
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr); \
  for (size_t i_ = argc; i_ < (n); i_++) argv[i_] = Undefined(env)

// An entry point whose first argument is an image handle: argv and `im`, or return with the exception pending.
#define IMAGE_ARGS(n)                 \
  ARGS(n);                            \
  Image* im = ImageArg(env, argv[0]); \
  if (im == nullptr) return nullptr

Image* ImageArg(napi_env env, napi_value v);

// rbdInit(tags: Int32Array, results: Float64Array (2 per tag), onBatch(count))
napi_value RbdInit(napi_env env, napi_callback_info info) {
  ARGS(3);
  Instance* inst = GetInstance(env);
  if (inst->rbd != nullptr) return Undefined(env);
  napi_typedarray_type t1, t2;
  size_t n1, n2;
  void *d1, *d2;
  if (napi_get_typedarray_info(env, argv[0], &t1, &n1, &d1, nullptr, nullptr) != napi_ok || t1 != napi_int32_array ||
      napi_get_typedarray_info(env, argv[1], &t2, &n2, &d2, nullptr, nullptr) != napi_ok ||
      t2 != napi_float64_array || n2 != 2 * n1 || n1 == 0)
    return TypeErr(env, "rbdInit: expected (Int32Array tags, Float64Array results of twice the length, fn)");
  Hub* hub = new Hub();
  hub->env = env;
  hub->tags = static_cast<int32_t*>(d1);
  hub->results = static_cast<double*>(d2);
  hub->cap = static_cast<uint32_t>(n1);
  napi_create_reference(env, argv[0], 1, &hub->tagsRef);
  napi_create_reference(env, argv[1], 1, &hub->resultsRef);
  napi_create_reference(env, argv[2], 1, &hub->callback);
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "nodetgt:rbd", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &hub->ctx);
  inst->rbd = hub;  // lives as long as the thread
  return Undefined(env);
}

// rbdOpen({conf, client, pool, namespace, image, createSize, cache, opTimeout, prObject}, onNotify, cb(rc, handle, why))
napi_value RbdOpen(napi_env env, napi_callback_info info) {
  ARGS(3);
  Hub* hub = GetHub(env);
  if (hub == nullptr) return TypeErr(env, "rbdOpen: rbdInit first");
  auto str = [&](const char* key, std::string* out) {
    napi_value v;
    napi_valuetype t;
    if (napi_get_named_property(env, argv[0], key, &v) != napi_ok) return false;
    napi_typeof(env, v, &t);
    if (t == napi_undefined) return true;
    return GetString(env, v, out);
  };
  auto num = [&](const char* key, double* out) {
    napi_value v;
    napi_valuetype t;
    if (napi_get_named_property(env, argv[0], key, &v) != napi_ok) return false;
    napi_typeof(env, v, &t);
    if (t == napi_undefined) return true;
    return napi_get_value_double(env, v, out) == napi_ok;
  };
  std::string conf, client = "admin", pool, ns, name, prObject;
  double createSize = 0, cache = 0, opTimeout = 30;
  if (!str("conf", &conf) || !str("client", &client) || !str("pool", &pool) || !str("namespace", &ns) ||
      !str("image", &name) || !str("prObject", &prObject) || !num("createSize", &createSize) ||
      !num("cache", &cache) || !num("opTimeout", &opTimeout) || pool.empty() || name.empty())
    return TypeErr(env, "rbdOpen: bad options");

  Image* im = new Image();
  im->hub = hub;
  im->prObject = prObject;
  im->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (im->efd < 0) {
    delete im;
    ThrowErrno(env, errno, "eventfd");
    return nullptr;
  }
  napi_valuetype ft;
  napi_typeof(env, argv[1], &ft);
  if (ft == napi_function) {
    napi_value rname;
    napi_create_string_utf8(env, "nodetgt:rbd-watch", NAPI_AUTO_LENGTH, &rname);
    napi_create_threadsafe_function(env, argv[1], nullptr, rname, 0, 1, nullptr, nullptr, nullptr, CallNotify,
                                    &im->notifyFn);
    napi_unref_threadsafe_function(env, im->notifyFn);
  }
  const uint64_t size = static_cast<uint64_t>(createSize);
  auto exec = [im, conf, client, pool, ns, name, size, cache, opTimeout](Job& job) {
    rados_t c = nullptr;
    int rc = AcquireCluster(conf, client, cache != 0, static_cast<int>(opTimeout), &im->clusterKey, &c, &job.why);
    if (rc < 0) {
      im->clusterKey.clear();
      job.rc = rc;
      return;
    }
    im->cluster = c;
    rc = rados_ioctx_create(c, pool.c_str(), &im->io);
    if (rc < 0) {
      job.why = "opening pool " + pool;
      job.rc = rc;
      return;
    }
    rados_ioctx_set_namespace(im->io, ns.c_str());
    // A pool that is full (its quota reached, or an OSD past the full ratio) must fail a write, not hold it.
    // Without this flag librados pauses every write to a pool flagged full until the flag goes, so a WRITE
    // would hang until the initiator gives up. With it the write goes to the OSD, which refuses what would
    // take more space (EDQUOT for a quota, ENOSPC for a full cluster: DATA PROTECT, SPACE ALLOCATION FAILED
    // WRITE PROTECT in src/scsi/sbc.ts) and still applies what takes none: an overwrite of written space, a
    // discard (UNMAP frees space on a full pool). librbd copies the flag into the image's I/O contexts when it
    // opens the image (checked with librbd 16.2.15), so it is set before rbd_open; opening needs it too (the
    // header watch is a write: without the flag an open on a full cluster times out). The op itself completes
    // with the error, so nothing is left in flight to land after the answer. A write over two objects may land
    // in one and be refused in the other: SCSI allows a partly written range for a command that ends in
    // CHECK CONDITION, and nothing is acknowledged GOOD that the OSD did not take.
    rados_set_pool_full_try(im->io);
    rc = rbd_open(im->io, name.c_str(), &im->img, nullptr);
    if (rc == -ENOENT && size > 0) {
      // Layering only: no exclusive-lock, so that several gateways (and workers) write without lock
      // transitions; reservations are the fencing mechanism (src/backstore/rbd.ts).
      rbd_image_options_t opts;
      rbd_image_options_create(&opts);
      rbd_image_options_set_uint64(opts, RBD_IMAGE_OPTION_FEATURES, RBD_FEATURE_LAYERING);
      rc = rbd_create4(im->io, name.c_str(), size, opts);
      rbd_image_options_destroy(opts);
      if (rc < 0 && rc != -EEXIST) {
        job.why = "creating image " + pool + "/" + name;
        job.rc = rc;
        return;
      }
      const bool racing = rc == -EEXIST;
      rc = rbd_open(im->io, name.c_str(), &im->img, nullptr);
      // EEXIST: another gateway or worker is creating the image at this moment, and until its rbd_create4 has
      // written the header, rbd_open says ENOENT (seen with two gateways of two workers each starting at once).
      // Wait for that creation, a bounded time: one that stopped half-way stays ENOENT and is reported so.
      for (int i = 0; racing && rc == -ENOENT && i < 100; i++) {
        usleep(50 * 1000);
        rc = rbd_open(im->io, name.c_str(), &im->img, nullptr);
      }
    }
    if (rc < 0) {
      im->img = nullptr;
      job.why = "opening image " + pool + (ns.empty() ? "" : "/" + ns) + "/" + name;
      job.rc = rc;
      return;
    }
    rc = rbd_set_image_notification(im->img, im->efd, EVENT_TYPE_EVENTFD);
    if (rc < 0) {
      job.why = "rbd_set_image_notification";
      job.rc = rc;
      return;
    }
    if (!im->prObject.empty() && im->notifyFn != nullptr) {
      // The object exists from the first open on (generation "0", no document), so that it can be watched
      // and every change is a compare-and-swap on "gen".
      rados_write_op_t op = rados_create_write_op();
      rados_write_op_create(op, LIBRADOS_CREATE_EXCLUSIVE, nullptr);
      rados_write_op_setxattr(op, "gen", "0", 1);
      rc = rados_write_op_operate(op, im->io, im->prObject.c_str(), nullptr, 0);
      rados_release_write_op(op);
      if (rc < 0 && rc != -EEXIST) {
        job.why = "creating " + im->prObject;
        job.rc = rc;
        return;
      }
      rc = rados_watch2(im->io, im->prObject.c_str(), &im->watchCookie, WatchCb, WatchErrCb, im);
      if (rc < 0) {
        job.why = "watching " + im->prObject;
        job.rc = rc;
        return;
      }
      im->watching = true;
    }
  };
  auto done = [im, hub](napi_env e, Job& job) -> napi_value {
    if (job.rc < 0) {
      Detach(im);
      CloseBlocking(im);
      ReleaseNotify(im);
      close(im->efd);
      delete im;
      return Undefined(e);
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(e, &loop);
    uv_poll_init(loop, &im->poll, im->efd);
    im->poll.data = im;
    im->polling = true;
    uv_poll_start(&im->poll, UV_READABLE, OnPoll);
    uv_unref(reinterpret_cast<uv_handle_t*>(&im->poll));
    im->handle = static_cast<int32_t>(hub->images.size());
    hub->images.push_back(im);
    napi_add_async_cleanup_hook(e, OnEnvCleanup, im, &im->cleanupHook);
    napi_value h;
    napi_create_int32(e, im->handle, &h);
    return h;
  };
  return QueueJob(env, argv[2], exec, done);
}

Image* ImageArg(napi_env env, napi_value v) {
  Hub* hub = GetHub(env);
  int32_t h;
  if (hub == nullptr || !GetInt32(env, v, &h) || h < 0 || static_cast<size_t>(h) >= hub->images.size() ||
      hub->images[h] == nullptr) {
    napi_throw_error(env, "ERR_RBD_CLOSED", "rbd image is not open on this thread");
    return nullptr;
  }
  return hub->images[h];
}

// rbdClose(handle, cb(rc)): JS waits for its ops first.
napi_value RbdClose(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(2);
  if (im->inflight > 0) {
    ThrowErrno(env, EBUSY, "rbd_close");
    return nullptr;
  }
  Detach(im);
  napi_remove_async_cleanup_hook(im->cleanupHook);
  im->cleanupHook = nullptr;
  auto exec = [im](Job&) { CloseBlocking(im); };
  auto done = [im](napi_env e, Job&) -> napi_value {
    ReleaseNotify(im);
    uv_close(reinterpret_cast<uv_handle_t*>(&im->poll), OnPollClosed);
    return Undefined(e);
  };
  return QueueJob(env, argv[1], exec, done);
}

// rbdStat(handle) -> { size, objectSize, features }
napi_value RbdStat(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(1);
  rbd_image_info_t st{};
  int rc = rbd_stat(im->img, &st, sizeof st);
  uint64_t features = 0;
  if (rc == 0) rc = rbd_get_features(im->img, &features);
  if (rc < 0) {
    ThrowErrno(env, -rc, "rbd_stat");
    return nullptr;
  }
  napi_value out, v;
  napi_create_object(env, &out);
  napi_create_double(env, static_cast<double>(st.size), &v);
  napi_set_named_property(env, out, "size", v);
  napi_create_double(env, static_cast<double>(st.obj_size), &v);
  napi_set_named_property(env, out, "objectSize", v);
  napi_create_double(env, static_cast<double>(features), &v);
  napi_set_named_property(env, out, "features", v);
  return out;
}

// librbd 16 never delivers compare-and-write completions through the image notification (neither a match nor a
// miscompare: rbd_poll_io_events stays empty), so that op alone completes through a callback, which queues it
// and signals the same eventfd. No op has both (a completion with both would be delivered twice).
void CawDone(rbd_completion_t c, void* arg) {
  Op* op = static_cast<Op*>(arg);
  const ssize_t ret = rbd_aio_get_return_value(c);
  rbd_aio_release(c);
  Image* im = op->im;
  {
    std::lock_guard<std::mutex> lock(im->doneMu);
    im->done.emplace_back(op, ret);
  }
  const uint64_t one = 1;
  ssize_t ignored = write(im->efd, &one, sizeof one);
  (void)ignored;
}

// Starts one aio op; `start` returns 0 or -errno (then the completion is released here and -errno returned).
napi_value Start(napi_env env, Image* im, int32_t tag, Op* op, const std::function<int(rbd_completion_t)>& start) {
  op->tag = tag;
  rbd_completion_t c = nullptr;
  int rc = rbd_aio_create_completion(op, op->im != nullptr ? CawDone : nullptr, &c);
  if (rc == 0) {
    rc = start(c);
    if (rc < 0) rbd_aio_release(c);
  }
  if (rc < 0) {
    delete op;
    napi_value out;
    napi_create_int32(env, rc, &out);
    return out;
  }
  if (im->inflight++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&im->poll));
  napi_value out;
  napi_create_int32(env, 0, &out);
  return out;
}

// rbdRead(handle, tag, buf, offset) -> 0 | -errno (started or not)
napi_value RbdRead(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(4);
  int32_t tag;
  int64_t off;
  uint8_t* data;
  size_t len;
  if (!GetInt32(env, argv[1], &tag) || !GetBytes(env, argv[2], &data, &len) || !GetInt64(env, argv[3], &off))
    return TypeErr(env, "rbdRead: expected (handle, tag, buffer, offset)");
  return Start(env, im, tag, new Op(), [&](rbd_completion_t c) {
    return rbd_aio_read(im->img, static_cast<uint64_t>(off), len, reinterpret_cast<char*>(data), c);
  });
}

// rbdWritev(handle, tag, buffers[], offset)
napi_value RbdWritev(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(4);
  int32_t tag;
  int64_t off;
  uint32_t count = 0;
  if (!GetInt32(env, argv[1], &tag) || napi_get_array_length(env, argv[2], &count) != napi_ok ||
      !GetInt64(env, argv[3], &off) || count == 0)
    return TypeErr(env, "rbdWritev: expected (handle, tag, buffers[], offset)");
  Op* op = new Op();
  op->iov.resize(count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    uint8_t* data;
    size_t len;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || !GetBytes(env, el, &data, &len)) {
      delete op;
      return TypeErr(env, "rbdWritev: buffers must be ArrayBufferViews");
    }
    op->iov[i] = iovec{data, len};
  }
  return Start(env, im, tag, op, [&](rbd_completion_t c) {
    return rbd_aio_writev(im->img, op->iov.data(), static_cast<int>(count), static_cast<uint64_t>(off), c);
  });
}

// rbdFlush(handle, tag)
napi_value RbdFlush(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(2);
  int32_t tag;
  if (!GetInt32(env, argv[1], &tag)) return TypeErr(env, "rbdFlush: expected (handle, tag)");
  return Start(env, im, tag, new Op(), [&](rbd_completion_t c) { return rbd_aio_flush(im->img, c); });
}

// rbdDiscard(handle, tag, offset, length, zeroes: boolean): discard, or write_zeroes (reads as zeros after)
napi_value RbdDiscard(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(5);
  int32_t tag;
  int64_t off, len;
  bool zeroes = false;
  if (!GetInt32(env, argv[1], &tag) || !GetInt64(env, argv[2], &off) || !GetInt64(env, argv[3], &len) ||
      napi_get_value_bool(env, argv[4], &zeroes) != napi_ok)
    return TypeErr(env, "rbdDiscard: expected (handle, tag, offset, length, zeroes)");
  return Start(env, im, tag, new Op(), [&](rbd_completion_t c) {
    if (zeroes)
      return rbd_aio_write_zeroes(im->img, static_cast<uint64_t>(off), static_cast<size_t>(len), c, 0, 0);
    return rbd_aio_discard(im->img, static_cast<uint64_t>(off), static_cast<uint64_t>(len), c);
  });
}

// rbdWriteSame(handle, tag, offset, length, pattern)
napi_value RbdWriteSame(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(5);
  int32_t tag;
  int64_t off, len;
  uint8_t* data;
  size_t plen;
  if (!GetInt32(env, argv[1], &tag) || !GetInt64(env, argv[2], &off) || !GetInt64(env, argv[3], &len) ||
      !GetBytes(env, argv[4], &data, &plen))
    return TypeErr(env, "rbdWriteSame: expected (handle, tag, offset, length, pattern)");
  return Start(env, im, tag, new Op(), [&](rbd_completion_t c) {
    return rbd_aio_writesame(im->img, static_cast<uint64_t>(off), static_cast<size_t>(len),
                             reinterpret_cast<const char*>(data), plen, c, 0);
  });
}

// rbdCompareAndWrite(handle, tag, offset, cmp, data): result -EILSEQ with the mismatch offset on a miscompare
napi_value RbdCompareAndWrite(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(5);
  int32_t tag;
  int64_t off;
  uint8_t *cmp, *data;
  size_t clen, dlen;
  if (!GetInt32(env, argv[1], &tag) || !GetInt64(env, argv[2], &off) || !GetBytes(env, argv[3], &cmp, &clen) ||
      !GetBytes(env, argv[4], &data, &dlen) || clen != dlen)
    return TypeErr(env, "rbdCompareAndWrite: expected (handle, tag, offset, cmp, data of the same length)");
  Op* op = new Op();
  op->im = im;
  return Start(env, im, tag, op, [&](rbd_completion_t c) {
    const ssize_t rc = rbd_aio_compare_and_write(im->img, static_cast<uint64_t>(off), clen,
                                                 reinterpret_cast<const char*>(cmp),
                                                 reinterpret_cast<const char*>(data), c, &op->mismatch, 0);
    return rc < 0 ? static_cast<int>(rc) : 0;
  });
}

// rbdMapping(handle, offset, length, cb(rc, Float64Array [offset, length]*)): the extents of [offset, offset +
// length) that hold data (rbd_diff_iterate2 from the image's creation, parent included), for GET LBA STATUS.
// Without fast-diff librbd lists each object's extents from the OSDs: blocking, so on the thread pool. JS counts
// it as an op in flight, so the image stays open until it is done.
int MappingCb(uint64_t off, size_t len, int exists, void* arg) {
  if (exists) {
    auto* out = static_cast<std::vector<double>*>(arg);
    out->push_back(static_cast<double>(off));
    out->push_back(static_cast<double>(len));
  }
  return 0;
}

napi_value RbdMapping(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(4);
  int64_t off, len;
  if (!GetInt64(env, argv[1], &off) || !GetInt64(env, argv[2], &len) || off < 0 || len < 0)
    return TypeErr(env, "rbdMapping: expected (handle, offset, length, cb)");
  rbd_image_t img = im->img;
  // Shared by exec (thread pool) and done (JS thread), which never run at the same time.
  auto extents = std::make_shared<std::vector<double>>();
  auto exec = [img, off, len, extents](Job& job) {
    job.rc = rbd_diff_iterate2(img, nullptr, static_cast<uint64_t>(off), static_cast<uint64_t>(len), 1, 0,
                               MappingCb, extents.get());
    if (job.rc < 0) job.why = "rbd_diff_iterate2";
  };
  auto done = [extents](napi_env e, Job&) -> napi_value {
    napi_value ab, arr;
    void* data = nullptr;
    napi_create_arraybuffer(e, extents->size() * sizeof(double), &data, &ab);
    if (!extents->empty()) std::memcpy(data, extents->data(), extents->size() * sizeof(double));
    napi_create_typedarray(e, napi_float64_array, extents->size(), ab, 0, &arr);
    return arr;
  };
  return QueueJob(env, argv[3], exec, done);
}

// rbdPrRead(handle, cb(rc, {gen, doc}|undefined)): rc -ENOENT when never written.
napi_value RbdPrRead(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(2);
  rados_ioctx_t io = im->io;
  std::string obj = im->prObject;
  auto* gen = new std::string();
  auto* body = new std::string();
  auto exec = [io, obj, gen, body](Job& job) {
    char g[32] = {0};
    int rc = rados_getxattr(io, obj.c_str(), "gen", g, sizeof g - 1);
    if (rc < 0) {
      job.rc = rc;
      return;
    }
    gen->assign(g, rc);
    std::vector<char> buf(64 * 1024);
    rc = rados_read(io, obj.c_str(), buf.data(), buf.size(), 0);
    if (rc < 0) {
      job.rc = rc;
      return;
    }
    body->assign(buf.data(), rc);
  };
  auto done = [gen, body](napi_env e, Job& job) -> napi_value {
    napi_value out = Undefined(e), v;
    if (job.rc >= 0) {
      napi_create_object(e, &out);
      napi_create_string_utf8(e, gen->c_str(), gen->size(), &v);
      napi_set_named_property(e, out, "gen", v);
      napi_create_string_utf8(e, body->c_str(), body->size(), &v);
      napi_set_named_property(e, out, "doc", v);
    }
    delete gen;
    delete body;
    return out;
  };
  return QueueJob(env, argv[1], exec, done);
}

// rbdPrWrite(handle, expectedGen, newGen, doc, cb(rc)): -ECANCELED when "gen" is no longer expectedGen.
napi_value RbdPrWrite(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(5);
  std::string expected, next, doc;
  if (!GetString(env, argv[1], &expected) || !GetString(env, argv[2], &next) || !GetString(env, argv[3], &doc))
    return TypeErr(env, "rbdPrWrite: expected (handle, expectedGen, newGen, doc, cb)");
  rados_ioctx_t io = im->io;
  std::string obj = im->prObject;
  auto exec = [io, obj, expected, next, doc](Job& job) {
    rados_write_op_t op = rados_create_write_op();
    rados_write_op_cmpxattr(op, "gen", LIBRADOS_CMPXATTR_OP_EQ, expected.c_str(), expected.size());
    rados_write_op_setxattr(op, "gen", next.c_str(), next.size());
    rados_write_op_write_full(op, doc.c_str(), doc.size());
    job.rc = rados_write_op_operate(op, io, obj.c_str(), nullptr, 0);
    rados_release_write_op(op);
  };
  return QueueJob(env, argv[4], exec);
}

// rbdPrNotify(handle, timeoutMs, cb(rc)): every watcher (every gateway's workers) has acknowledged, or -ETIMEDOUT.
napi_value RbdPrNotify(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(3);
  int32_t timeoutMs;
  if (!GetInt32(env, argv[1], &timeoutMs)) return TypeErr(env, "rbdPrNotify: expected (handle, timeoutMs, cb)");
  rados_ioctx_t io = im->io;
  std::string obj = im->prObject;
  auto exec = [io, obj, timeoutMs](Job& job) {
    char* reply = nullptr;
    size_t replyLen = 0;
    job.rc = rados_notify2(io, obj.c_str(), "pr", 2, static_cast<uint64_t>(timeoutMs), &reply, &replyLen);
    if (reply != nullptr) rados_buffer_free(reply);
  };
  return QueueJob(env, argv[2], exec);
}

// rbdPrAck(handle, notifyId: bigint, cb(rc))
napi_value RbdPrAck(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(3);
  uint64_t id;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, argv[1], &id, &lossless) != napi_ok)
    return TypeErr(env, "rbdPrAck: expected (handle, notifyId bigint, cb)");
  rados_ioctx_t io = im->io;
  std::string obj = im->prObject;
  uint64_t cookie = im->watchCookie;
  return QueueJob(env, argv[2], [io, obj, id, cookie](Job& job) {
    job.rc = rados_notify_ack(io, obj.c_str(), id, cookie, nullptr, 0);
  });
}

// rbdPrRewatch(handle, cb(rc)): after a watch error (the OSD lost it), watch again.
napi_value RbdPrRewatch(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(2);
  auto exec = [im](Job& job) {
    if (im->watching) rados_unwatch2(im->io, im->watchCookie);
    im->watching = false;
    job.rc = rados_watch2(im->io, im->prObject.c_str(), &im->watchCookie, WatchCb, WatchErrCb, im);
    if (job.rc == 0) im->watching = true;
  };
  return QueueJob(env, argv[1], exec);
}


// ---- plain RADOS objects beside the image (the WRITE ATOMIC redo journal, src/backstore/rbd-atomic.ts) --------
// Each call is one librados op on the image's pool and namespace, on the thread pool. A write is one OSD op: the
// OSD applies all of its bytes or none (what makes a journal record whole without a checksum's help).

// rbdObjWrite(handle, object, offset, bufs[], cb(rc)): the buffers back to back at offset (copied first).
napi_value RbdObjWrite(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(5);
  std::string obj;
  int64_t off;
  uint32_t count = 0;
  if (!GetString(env, argv[1], &obj) || obj.empty() || !GetInt64(env, argv[2], &off) || off < 0 ||
      napi_get_array_length(env, argv[3], &count) != napi_ok)
    return TypeErr(env, "rbdObjWrite: expected (handle, object, offset, buffers, cb)");
  auto data = std::make_shared<std::string>();
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    uint8_t* p;
    size_t len;
    if (napi_get_element(env, argv[3], i, &el) != napi_ok || !GetBytes(env, el, &p, &len))
      return TypeErr(env, "rbdObjWrite: buffers must be ArrayBufferViews");
    data->append(reinterpret_cast<const char*>(p), len);
  }
  rados_ioctx_t io = im->io;
  return QueueJob(env, argv[4], [io, obj, off, data](Job& job) {
    job.rc = rados_write(io, obj.c_str(), data->data(), data->size(), static_cast<uint64_t>(off));
    if (job.rc < 0) job.why = "rados_write " + obj;
  });
}

// rbdObjRead(handle, object, offset, length, cb(rc, Buffer|undefined)): rc the bytes read (short at the object's
// end), -ENOENT when the object does not exist.
napi_value RbdObjRead(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(5);
  std::string obj;
  int64_t off, len;
  if (!GetString(env, argv[1], &obj) || obj.empty() || !GetInt64(env, argv[2], &off) || off < 0 ||
      !GetInt64(env, argv[3], &len) || len < 0 || len > (int64_t{1} << 30))
    return TypeErr(env, "rbdObjRead: expected (handle, object, offset, length, cb)");
  rados_ioctx_t io = im->io;
  auto buf = std::make_shared<std::vector<char>>(static_cast<size_t>(len));
  auto exec = [io, obj, off, buf](Job& job) {
    job.rc = rados_read(io, obj.c_str(), buf->data(), buf->size(), static_cast<uint64_t>(off));
    if (job.rc < 0 && job.rc != -ENOENT) job.why = "rados_read " + obj;
  };
  auto done = [buf](napi_env e, Job& job) -> napi_value {
    if (job.rc < 0) return nullptr;
    napi_value out;
    void* copy = nullptr;
    napi_create_buffer_copy(e, static_cast<size_t>(job.rc), buf->data(), &copy, &out);
    return out;
  };
  return QueueJob(env, argv[4], exec, done);
}

// rbdObjStat(handle, object, cb(rc, size)): -ENOENT when the object does not exist.
napi_value RbdObjStat(napi_env env, napi_callback_info info) {
  IMAGE_ARGS(3);
  std::string obj;
  if (!GetString(env, argv[1], &obj) || obj.empty())
    return TypeErr(env, "rbdObjStat: expected (handle, object, cb)");
  rados_ioctx_t io = im->io;
  auto size = std::make_shared<uint64_t>(0);
  auto exec = [io, obj, size](Job& job) {
    time_t mtime;
    job.rc = rados_stat(io, obj.c_str(), size.get(), &mtime);
    if (job.rc < 0 && job.rc != -ENOENT) job.why = "rados_stat " + obj;
  };
  auto done = [size](napi_env e, Job&) -> napi_value {
    napi_value out;
    napi_create_double(e, static_cast<double>(*size), &out);
    return out;
  };
  return QueueJob(env, argv[2], exec, done);
}

}  // namespace

void RegisterRbd(napi_env env, napi_value exports) {
  static const std::pair<const char*, napi_callback> kFunctions[] = {
      {"rbdInit", RbdInit},
      {"rbdOpen", RbdOpen},
      {"rbdClose", RbdClose},
      {"rbdStat", RbdStat},
      {"rbdRead", RbdRead},
      {"rbdWritev", RbdWritev},
      {"rbdFlush", RbdFlush},
      {"rbdDiscard", RbdDiscard},
      {"rbdWriteSame", RbdWriteSame},
      {"rbdCompareAndWrite", RbdCompareAndWrite},
      {"rbdMapping", RbdMapping},
      {"rbdPrRead", RbdPrRead},
      {"rbdPrWrite", RbdPrWrite},
      {"rbdPrNotify", RbdPrNotify},
      {"rbdPrAck", RbdPrAck},
      {"rbdPrRewatch", RbdPrRewatch},
      {"rbdObjWrite", RbdObjWrite},
      {"rbdObjRead", RbdObjRead},
      {"rbdObjStat", RbdObjStat},
  };
  for (const auto& [name, fn] : kFunctions) SetFunction(env, exports, name, fn);
}

}  // namespace nodetgt
