// copyFileRange: copy a byte range between two descriptors in the kernel (copy_file_range(2), which shares
// blocks on file systems that can reflink), on the libuv thread pool so the calling thread's event loop never
// waits for the data. Where the kernel cannot (different file systems on old kernels, O_DIRECT alignment, no
// support at all) it falls back to pread/pwrite through one aligned bounce buffer, still off the event loop.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <napi.h>

#include "copy.h"
#include "napi_util.h"

namespace nodetgt {
namespace {

// The bounce buffer of the fallback: aligned for O_DIRECT on 4 KiB-sector devices.
constexpr size_t kBounceBytes = 1 << 20;
constexpr size_t kBounceAlign = 4096;
// Flag bits of copyFileRange's flags argument.
constexpr int32_t kNoFallback = 1;
// Holes of the source become holes of the destination (punched) instead of written zeros.
constexpr int32_t kSparse = 2;

// Errors after which the same copy can still be done by reading and writing.
bool FallbackErrno(int err) {
  return err == EXDEV || err == EINVAL || err == EOPNOTSUPP || err == ENOSYS;
}

class CopyWorker : public Napi::AsyncWorker {
 public:
  CopyWorker(Napi::Function& cb, int fdIn, int64_t offIn, int fdOut, int64_t offOut, int64_t len, int32_t flags)
      : Napi::AsyncWorker(cb, "nodetgt:copyFileRange"),
        fdIn_(fdIn), offIn_(offIn), fdOut_(fdOut), offOut_(offOut), len_(len), flags_(flags) {}

  void Execute() override {
    if ((flags_ & kSparse) == 0) {
      res_ = CopyData(0, len_);
      return;
    }
    // Walk the source's extents: data is copied, holes are punched in the destination. Where the file system
    // cannot tell (no SEEK_DATA) or cannot punch, everything is copied as data (zeros read as zeros).
    int64_t pos = 0;
    while (pos < len_) {
      off_t data = lseek(fdIn_, offIn_ + pos, SEEK_DATA);
      int64_t dataAt;
      if (data < 0 && errno == ENXIO) dataAt = len_;  // nothing but hole up to the end of the file
      else if (data < 0) {
        res_ = CopyData(pos, len_);
        return;
      } else dataAt = data - offIn_ < len_ ? data - offIn_ : len_;
      if (dataAt > pos) {
        if (fallocate(fdOut_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offOut_ + pos, dataAt - pos) != 0) {
          const int64_t r = CopyData(pos, dataAt);
          if (r < dataAt) {
            res_ = r;
            return;
          }
        }
        pos = dataAt;
        if (pos >= len_) break;
      }
      off_t hole = lseek(fdIn_, offIn_ + pos, SEEK_HOLE);
      int64_t holeAt = hole < 0 ? len_ : (hole - offIn_ < len_ ? hole - offIn_ : len_);
      if (holeAt <= pos) holeAt = len_;  // the file changed under us: copy the rest as data
      const int64_t r = CopyData(pos, holeAt);
      if (r < holeAt) {
        res_ = r;
        return;
      }
      pos = holeAt;
    }
    res_ = len_;
  }

  // Copy [from, to) of the range as data. Returns `to`, the end reached when the source file ended, or -errno.
  int64_t CopyData(int64_t from, int64_t to) {
    int64_t done = from;
    while (done < to) {
      loff_t in = offIn_ + done;
      loff_t out = offOut_ + done;
      const ssize_t n = syscall(SYS_copy_file_range, fdIn_, &in, fdOut_, &out, static_cast<size_t>(to - done), 0u);
      if (n > 0) {
        done += n;
        continue;
      }
      if (n == 0) break;  // end of the source file
      const int err = errno;
      if (err == EINTR) continue;
      if ((flags_ & kNoFallback) != 0 || !FallbackErrno(err)) return -err;
      fellBack_ = true;
      return ReadWrite(done, to);
    }
    return done;
  }

  void OnOK() override {
    Napi::Env env = Env();
    Callback().Call({Napi::Number::New(env, static_cast<double>(res_)), Napi::Boolean::New(env, fellBack_)});
  }

 private:
  // [done, to) by pread + pwrite. Returns the end reached or -errno.
  int64_t ReadWrite(int64_t done, int64_t to) {
    void* mem = nullptr;
    if (posix_memalign(&mem, kBounceAlign, kBounceBytes) != 0) return -ENOMEM;
    auto* buf = static_cast<uint8_t*>(mem);
    int64_t result = done;
    while (done < to) {
      const size_t want =
          static_cast<size_t>(to - done < static_cast<int64_t>(kBounceBytes) ? to - done : static_cast<int64_t>(kBounceBytes));
      const ssize_t r = pread(fdIn_, buf, want, offIn_ + done);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        result = -errno;
        break;
      }
      if (r == 0) break;
      ssize_t w = 0;
      while (w < r) {
        const ssize_t k = pwrite(fdOut_, buf + w, static_cast<size_t>(r - w), offOut_ + done + w);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
          result = k < 0 ? -errno : -EIO;
          break;
        }
        w += k;
      }
      if (w < r) break;
      done += r;
      result = done;
    }
    free(mem);
    return result;
  }

  const int fdIn_;
  const int64_t offIn_;
  const int fdOut_;
  const int64_t offOut_;
  const int64_t len_;
  const int32_t flags_;
  int64_t res_ = 0;
  bool fellBack_ = false;
};

// copyFileRange(fdIn, offIn, fdOut, offOut, length, flags, cb(res, fellBack)): res is the bytes copied (short
// only at the end of the source file) or -errno. flags: 1 no pread/pwrite fallback, 2 keep holes as holes.
Napi::Value CopyFileRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fdIn = -1, fdOut = -1, flags = 0;
  int64_t offIn = -1, offOut = -1, len = -1;
  napi_env e = env;
  if (info.Length() < 7 || !GetInt32(e, info[0], &fdIn) || !GetInt64(e, info[1], &offIn) ||
      !GetInt32(e, info[2], &fdOut) || !GetInt64(e, info[3], &offOut) || !GetInt64(e, info[4], &len) ||
      !GetInt32(e, info[5], &flags) || !info[6].IsFunction() || fdIn < 0 || fdOut < 0 || offIn < 0 ||
      offOut < 0 || len < 0) {
    napi_throw_type_error(e, "ERR_INVALID_ARG_TYPE",
                          "copyFileRange: expected (fdIn, offIn >= 0, fdOut, offOut >= 0, length >= 0, flags, cb)");
    return env.Undefined();
  }
  Napi::Function cb = info[6].As<Napi::Function>();
  auto* worker = new CopyWorker(cb, fdIn, offIn, fdOut, offOut, len, flags);
  worker->Queue();
  return env.Undefined();
}

}  // namespace

void RegisterCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copyFileRange", Napi::Function::New(env, CopyFileRange, "copyFileRange"));
}

}  // namespace nodetgt
