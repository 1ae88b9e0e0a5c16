#include "base/mutex.h"

#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

TEST(MutexTest, ExcludesOtherThreads) {
  Mutex mu;
  int counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        MutexLock lock(&mu);
        ++counter;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  MutexLock lock(&mu);
  EXPECT_EQ(counter, 80000);
}

TEST(MutexTest, AwaitReturnsOnceAnotherThreadMakesTheConditionTrue) {
  Mutex mu;
  bool ready = false;
  int seen = 0;
  std::thread waiter([&] {
    MutexLock lock(&mu);
    mu.Await(absl::Condition(&ready));
    seen = 1;
  });
  {
    MutexLock lock(&mu);
    ready = true;
  }
  waiter.join();
  EXPECT_EQ(seen, 1);
}

TEST(MutexTest, EveryWaiterIsWokenWhenItsOwnConditionHolds) {
  Mutex mu;
  int stage = 0;
  std::vector<std::thread> waiters;
  std::vector<int> order;
  for (int want = 1; want <= 3; ++want) {
    waiters.emplace_back([&, want] {
      MutexLock lock(&mu);
      struct Want {
        const int* stage;
        int want;
      } arg{&stage, want};
      mu.Await(absl::Condition(
          +[](Want* w) { return *w->stage >= w->want; }, &arg));
      order.push_back(want);
    });
  }
  for (int s = 1; s <= 3; ++s) {
    MutexLock lock(&mu);
    stage = s;
  }
  for (auto& thread : waiters) thread.join();
  EXPECT_EQ(order.size(), 3u);
}

// A thread that changes state and then waits (releasing the lock inside Await, not
// through Unlock) must still wake the threads whose conditions it made true.
TEST(MutexTest, ReleasingTheLockInAwaitWakesOtherWaiters) {
  Mutex mu;
  int entered = 0;
  bool open = false;
  std::thread gate([&] {
    absl::SleepFor(absl::Milliseconds(50));  // Usually after the waiter below waits.
    MutexLock lock(&mu);
    ++entered;
    mu.Await(absl::Condition(&open));
  });
  {
    MutexLock lock(&mu);
    auto one = [&] { return entered >= 1; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&one), absl::Seconds(10)));
    open = true;
  }
  gate.join();
}

// The owner of a Mutex may destroy it as soon as it sees (under the lock) that no other
// thread needs it; an Unlock that was still touching it would then use freed memory
// (TSan and ASan see it; found by TSan in liboffkey's Client destructor).
TEST(MutexTest, MayBeDestroyedOnceAwaitSeesTheLastUnlock) {
  for (int i = 0; i < 200; ++i) {
    auto* mu = new Mutex;
    int in_flight = 1;
    std::thread last([&] {
      MutexLock lock(mu);
      --in_flight;
    });
    {
      MutexLock lock(mu);
      auto idle = [&] { return in_flight == 0; };
      mu->Await(absl::Condition(&idle));
    }
    delete mu;
    last.join();
  }
}

// Releases that leave a waiter's condition false must not wake it: the releasing thread
// evaluates the condition, and the waiter's own thread evaluates it only on the way in
// and once when woken.
TEST(MutexTest, ReleasesThatLeaveTheConditionFalseDoNotWakeTheWaiter) {
  Mutex mu;
  bool ready = false;
  bool waiting = false;
  int own_thread_evaluations = 0;
  std::thread::id waiter_id;
  struct Arg {
    bool* ready;
    bool* waiting;
    int* own;
    std::thread::id* id;
  } arg{&ready, &waiting, &own_thread_evaluations, &waiter_id};
  std::thread waiter([&] {
    MutexLock lock(&mu);
    waiter_id = std::this_thread::get_id();
    waiting = true;
    mu.Await(absl::Condition(
        +[](Arg* a) {
          if (std::this_thread::get_id() == *a->id) ++*a->own;
          return *a->ready;
        },
        &arg));
  });
  {
    MutexLock lock(&mu);
    mu.Await(absl::Condition(&waiting));
  }
  for (int i = 0; i < 200; ++i) {
    { MutexLock lock(&mu); }                  // Changes nothing the waiter reads.
    absl::SleepFor(absl::Microseconds(200));  // Time for a woken waiter to run.
  }
  {
    MutexLock lock(&mu);
    ready = true;
  }
  waiter.join();
  EXPECT_EQ(own_thread_evaluations, 2);
}

TEST(MutexTest, AwaitWithDeadlineGivesUpAtTheDeadline) {
  Mutex mu;
  bool never = false;
  MutexLock lock(&mu);
  const absl::Time start = absl::Now();
  EXPECT_FALSE(
      mu.AwaitWithDeadline(absl::Condition(&never), start + absl::Milliseconds(50)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_FALSE(mu.AwaitWithTimeout(absl::Condition(&never), absl::ZeroDuration()));
}

TEST(MutexTest, AwaitWithDeadlineReturnsTrueWhenTheConditionHolds) {
  Mutex mu;
  bool ready = false;
  std::thread setter([&] {
    MutexLock lock(&mu);
    ready = true;
  });
  {
    MutexLock lock(&mu);
    // An infinite deadline must neither overflow nor return early.
    EXPECT_TRUE(mu.AwaitWithDeadline(absl::Condition(&ready), absl::InfiniteFuture()));
  }
  setter.join();
  MutexLock lock(&mu);
  EXPECT_TRUE(mu.AwaitWithDeadline(absl::Condition(&ready), absl::InfinitePast()));
}

}  // namespace
}  // namespace offkey
