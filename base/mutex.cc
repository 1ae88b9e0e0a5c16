#include "base/mutex.h"

#include <algorithm>
#include <chrono>

namespace offkey {

void Mutex::WakeReadyWaiters() {
  for (Waiter* w = waiters_; w != nullptr; w = w->next) {
    if (!w->woken && w->condition->Eval()) {
      w->woken = true;
      w->wake.notify_one();
    }
  }
}

void Mutex::Unlink(const Waiter* waiter) {
  for (Waiter** link = &waiters_; *link != nullptr; link = &(*link)->next) {
    if (*link == waiter) {
      *link = waiter->next;
      return;
    }
  }
}

void Mutex::Unlock() {
  // Notified before the unlock, not after: a woken thread may take the lock the moment
  // it is free, see its condition true, and destroy this Mutex (a destructor awaiting
  // "no calls in flight"); nothing of it may be touched after that.
  if (waiters_ != nullptr) WakeReadyWaiters();
  mu_.unlock();
}

bool Mutex::Wait(std::unique_lock<std::mutex>& lock, Waiter& waiter,
                 absl::Time deadline) {
  // On the way in the caller may have changed what other conditions read (as a release
  // of absl::Mutex inside Await would tell them).
  WakeReadyWaiters();
  waiter.next = waiters_;
  waiters_ = &waiter;
  bool holds = false;
  while (true) {
    if (waiter.woken) {
      // Woken because the condition held at the release; another thread may have
      // taken the lock first and made it false again.
      if ((holds = waiter.condition->Eval())) break;
      waiter.woken = false;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      holds = waiter.condition->Eval();
      break;
    }
    // On the steady clock, in slices, so an infinite deadline or a wall-clock step
    // cannot overflow or stretch a wait. A spurious wake-up leaves `woken` false.
    waiter.wake.wait_for(lock, absl::ToChronoNanoseconds(std::min(left, absl::Hours(1))));
  }
  Unlink(&waiter);
  return holds;
}

void Mutex::Await(const absl::Condition& condition) {
  AwaitWithDeadline(condition, absl::InfiniteFuture());
}

bool Mutex::AwaitWithDeadline(const absl::Condition& condition, absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
  bool holds = condition.Eval();
  if (!holds) {
    Waiter waiter{&condition};
    holds = Wait(lock, waiter, deadline);
  }
  lock.release();  // The caller still holds mu_.
  return holds;
}

}  // namespace offkey

#if defined(OFFKEY_TSAN)
// ThreadSanitizer's reports that are about Debian's uninstrumented libraries, whose
// locks TSan cannot see: each names a function inside them that appears in neither
// stack of a race in offkey's code.
extern "C" const char* __tsan_default_suppressions() {
  return "race:grpc_event_engine::posix_engine::Epoll1Poller\n"
         "race:absl::*synchronization_internal::GraphCycles\n";
}
#endif
