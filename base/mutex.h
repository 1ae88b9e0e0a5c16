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
  // Evaluates the conditions of the threads in Await (as absl::Mutex does on every
  // release) and wakes only those whose condition now holds: a waiter whose condition
  // stays false costs the releasing thread one evaluation, not a wake-up.
  void Unlock() ABSL_UNLOCK_FUNCTION();

  // With the lock held: releases it until `condition` holds, then returns holding it.
  // `condition` is evaluated with the lock held, by whichever thread releases the lock
  // (in Unlock or on its way into Await), so it must only read state this Mutex guards
  // and must not block.
  void Await(const absl::Condition& condition) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this);
  // The same, giving up at `deadline`; returns whether `condition` holds.
  bool AwaitWithDeadline(const absl::Condition& condition, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this);
  bool AwaitWithTimeout(const absl::Condition& condition, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    return AwaitWithDeadline(condition, absl::Now() + timeout);
  }

 private:
  // A thread in Await, on its own stack, linked while it waits. Guarded by mu_.
  struct Waiter {
    const absl::Condition* condition;
    std::condition_variable wake;
    bool woken = false;  // Its condition held when a releasing thread evaluated it.
    Waiter* next = nullptr;
  };

  // With mu_ held: wakes every waiter whose condition holds and that is not woken yet.
  void WakeReadyWaiters();
  // With mu_ held: releases it until `waiter` is woken or `deadline` (steady clock
  // slices) passes, then re-evaluates the condition; returns whether it holds.
  bool Wait(std::unique_lock<std::mutex>& lock, Waiter& waiter, absl::Time deadline);
  void Unlink(const Waiter* waiter);

  std::mutex mu_;
  Waiter* waiters_ = nullptr;  // Guarded by mu_.
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
