// offkey::Mutex: the part of absl::Mutex's interface offkey uses, over std::mutex and
// std::condition_variable.
//
// Why not absl::Mutex: Debian's Abseil is built without ThreadSanitizer annotations, so
// under --config=tsan absl::Mutex's lock and unlock create no happens-before edges and
// TSan reports a race on every field one guards. TSan intercepts the pthread calls under
// std::mutex, so with this type the TSan runs see offkey's locking as it is. Use it (and
// MutexLock) everywhere in offkey; tools/lint.sh refuses absl::Mutex.
#ifndef OFFKEY_BASE_MUTEX_H_
#define OFFKEY_BASE_MUTEX_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/const_init.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"  // absl::Condition only.
#include "absl/time/time.h"

namespace offkey {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  // Accepted for absl::Mutex's spelling of a global; std::condition_variable cannot be
  // constant-initialised, so a global Mutex must not be used before main().
  explicit Mutex(absl::ConstInitType) {}
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  // Wakes the threads in Await, which then re-evaluate their conditions (as absl::Mutex
  // does on every release).
  void Unlock() ABSL_UNLOCK_FUNCTION();

  // With the lock held: releases it until `condition` holds, then returns holding it.
  // `condition` is evaluated with the lock held, after each Unlock by another thread.
  void Await(const absl::Condition& condition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this);
  // The same, giving up at `deadline`; returns whether `condition` holds.
  bool AwaitWithDeadline(const absl::Condition& condition, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this);
  bool AwaitWithTimeout(const absl::Condition& condition, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    return AwaitWithDeadline(condition, absl::Now() + timeout);
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  int waiters_ = 0;  // Threads in Await; guarded by mu_.
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace offkey

#endif  // OFFKEY_BASE_MUTEX_H_
