#include "base/mutex.h"

#include <algorithm>
#include <chrono>

namespace offkey {

void Mutex::Unlock() {
  // Notified before the unlock, not after: a thread may take the lock the moment it is
  // free, see its condition true, and destroy this Mutex (a destructor awaiting "no
  // calls in flight"); the condition variable must not be touched after that.
  if (waiters_ > 0) changed_.notify_all();
  mu_.unlock();
}

// Waking others on the way in: the caller may have changed what their conditions read
// (as a release of absl::Mutex inside Await would tell them). Only on the way in, so two
// waiters whose conditions stay false do not wake each other forever.
void Mutex::Await(const absl::Condition& condition) {
  std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
  if (!condition.Eval()) {
    if (waiters_ > 0) changed_.notify_all();
    ++waiters_;
    do {
      changed_.wait(lock);
    } while (!condition.Eval());
    --waiters_;
  }
  lock.release();  // The caller still holds mu_.
}

bool Mutex::AwaitWithDeadline(const absl::Condition& condition, absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
  bool holds = condition.Eval();
  if (holds) {
    lock.release();
    return true;
  }
  if (waiters_ > 0) changed_.notify_all();  // As in Await.
  ++waiters_;
  while (!(holds = condition.Eval())) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    // On the steady clock, in slices, so an infinite deadline or a wall-clock step
    // cannot overflow or stretch a wait.
    changed_.wait_for(lock, absl::ToChronoNanoseconds(std::min(left, absl::Hours(1))));
  }
  --waiters_;
  lock.release();
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
