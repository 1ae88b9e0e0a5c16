#include "service/worker_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The synchronization here is std::mutex, not absl::Mutex or absl::Notification, for
// the same reason as in the pool: this test runs under --config=tsan, and Debian's
// Abseil is not instrumented.

// A one-shot event.
class Notification {
 public:
  // Signals under the lock: a waiter may destroy the event as soon as it wakes.
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }
  void WaitForNotification() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return notified_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool notified_ = false;
};

// Occupies a pool's threads until released, so that what is submitted meanwhile
// queues; the tests then decide exactly when workers move on.
class Blocker {
 public:
  // A task that notes it started and waits for Release.
  WorkerPool::Task Task() {
    return [this](bool) {
      std::unique_lock<std::mutex> lock(mu_);
      ++started_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
    };
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this, n] { return started_ >= n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int started_ = 0;
  bool released_ = false;
};

// The thread a task ran on: Task records it, Wait waits for the task and returns it.
class RanOn {
 public:
  WorkerPool::Task Task() {
    return [this](bool) {
      thread_ = std::this_thread::get_id();
      done_.Notify();
    };
  }
  std::thread::id Wait() {
    done_.WaitForNotification();
    return thread_;
  }

 private:
  Notification done_;
  std::thread::id thread_;
};

// Records the order tasks ran in.
class Order {
 public:
  WorkerPool::Task Task(const std::string& name) {
    return [this, name](bool) {
      std::lock_guard<std::mutex> lock(mu_);
      ran_.push_back(name);
    };
  }
  std::vector<std::string> ran() {
    std::lock_guard<std::mutex> lock(mu_);
    return ran_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> ran_;
};

absl::StatusOr<std::unique_ptr<WorkerPool>> Pool(int threads, int queue_depth,
                                                 int max_per_identity,
                                                 int max_running_here = 0) {
  WorkerPool::Options options;
  options.threads = threads;
  options.queue_depth = queue_depth;
  options.max_per_identity = max_per_identity;
  options.max_running_here = max_running_here;
  return WorkerPool::Create(options);
}

TEST(WorkerPoolTest, RunsTasksOnWorkers) {
  auto pool = WorkerPool::Create(2, 16);
  ASSERT_THAT(pool, IsOk());
  std::atomic<int> ran{0};
  Notification done[8];
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE((*pool)
                    ->Submit("", absl::InfiniteFuture(),
                             [&, i](bool expired) {
                               EXPECT_FALSE(expired);
                               ++ran;
                               done[i].Notify();
                             })
                    .ok());
  }
  for (auto& d : done) d.WaitForNotification();
  EXPECT_EQ(ran.load(), 8);
}

TEST(WorkerPoolTest, FullQueueIsRefusedAtOnce) {
  auto pool = WorkerPool::Create(1, 2);
  ASSERT_THAT(pool, IsOk());
  Notification started, release;
  ASSERT_TRUE((*pool)
                  ->Submit("", absl::InfiniteFuture(),
                           [&](bool) {
                             started.Notify();
                             release.WaitForNotification();
                           })
                  .ok());
  started.WaitForNotification();  // The worker is busy; the queue is empty.
  std::atomic<int> ran{0};
  auto count = [&](bool) { ++ran; };
  EXPECT_THAT((*pool)->Submit("", absl::InfiniteFuture(), count), IsOk());
  EXPECT_THAT((*pool)->Submit("", absl::InfiniteFuture(), count), IsOk());
  absl::Status third = (*pool)->Submit("", absl::InfiniteFuture(), count);
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*pool)->queued(), 2);
  release.Notify();
  pool->reset();  // Drains the queue.
  EXPECT_EQ(ran.load(), 2);
}

TEST(WorkerPoolTest, ExpiredTasksAreToldSo) {
  auto pool = WorkerPool::Create(1, 4);
  ASSERT_THAT(pool, IsOk());
  Notification started, release, checked;
  ASSERT_TRUE((*pool)
                  ->Submit("", absl::InfiniteFuture(),
                           [&](bool) {
                             started.Notify();
                             release.WaitForNotification();
                           })
                  .ok());
  started.WaitForNotification();
  bool saw_expired = false;
  ASSERT_TRUE((*pool)
                  ->Submit("", absl::Now() + absl::Milliseconds(10),
                           [&](bool expired) {
                             saw_expired = expired;
                             checked.Notify();
                           })
                  .ok());
  absl::SleepFor(absl::Milliseconds(30));  // Let the queued task's deadline pass.
  release.Notify();
  checked.WaitForNotification();
  EXPECT_TRUE(saw_expired);
}

TEST(WorkerPoolTest, RefusesAfterShutdownAndBadSizes) {
  EXPECT_EQ(WorkerPool::Create(0, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WorkerPool::Create(1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto pool = WorkerPool::Create(1, 1);
  ASSERT_THAT(pool, IsOk());
  (*pool)->Shutdown();
  EXPECT_EQ((*pool)->Submit("", absl::InfiniteFuture(), [](bool) {}).code(),
            absl::StatusCode::kUnavailable);
}

// One identity at its cap is refused at once; another still gets in; the cap counts the
// running task too, and frees up as tasks finish.
TEST(WorkerPoolTest, PerIdentityCapRefusesOnlyThatIdentity) {
  auto pool = Pool(/*threads=*/1, /*queue_depth=*/16, /*max_per_identity=*/3);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  Order order;
  ASSERT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), blocker.Task()), IsOk());
  blocker.WaitStarted(1);  // a: one running.
  EXPECT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), order.Task("a1")), IsOk());
  EXPECT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), order.Task("a2")), IsOk());
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), order.Task("refused")),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("max_calls_in_flight_per_identity")));
  }
  EXPECT_THAT((*pool)->Submit("b", absl::InfiniteFuture(), order.Task("b1")), IsOk());
  EXPECT_EQ((*pool)->queued(), 3);
  blocker.Release();
  pool->reset();  // Drains the queue.
  EXPECT_THAT(order.ran(), ::testing::UnorderedElementsAre("a1", "a2", "b1"));
}

// A caller at its cap that sends the next call as soon as an answer arrives (answers go
// out in `then`) is never refused: the slot is free before the answer leaves.
TEST(WorkerPoolTest, PerIdentitySlotIsFreeBeforeTheAnswer) {
  auto pool = Pool(/*threads=*/1, /*queue_depth=*/16, /*max_per_identity=*/1);
  ASSERT_THAT(pool, IsOk());
  for (int i = 0; i < 20; ++i) {
    Notification answered;
    ASSERT_THAT((*pool)->Submit(
                    "a", absl::InfiniteFuture(), [](bool) {}, [&] { answered.Notify(); }),
                IsOk());
    answered.WaitForNotification();
  }
}

// Waiting tasks are served round-robin across identities: one identity's backlog does
// not stand between another identity and the next free thread.
TEST(WorkerPoolTest, QueueIsRoundRobinAcrossIdentities) {
  auto pool = Pool(/*threads=*/1, /*queue_depth=*/16, /*max_per_identity=*/0);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  Order order;
  ASSERT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), blocker.Task()), IsOk());
  blocker.WaitStarted(1);
  for (const char* name : {"a1", "a2", "a3", "a4"}) {
    ASSERT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), order.Task(name)), IsOk());
  }
  for (const char* name : {"b1", "b2"}) {
    ASSERT_THAT((*pool)->Submit("b", absl::InfiniteFuture(), order.Task(name)), IsOk());
  }
  ASSERT_THAT((*pool)->Submit("c", absl::InfiniteFuture(), order.Task("c1")), IsOk());
  blocker.Release();
  pool->reset();
  EXPECT_THAT(order.ran(), ElementsAre("a1", "b1", "c1", "a2", "b2", "a3", "a4"));
}

// Many identities submitting at once from many threads: every accepted task runs once,
// no identity ever has more than its cap in flight, tasks running at once never
// outnumber the threads (tasks run on submitters' threads included), and every refusal
// names a limit. (Run under --config=tsan as well.)
void SubmitConcurrently(bool here) {
  constexpr int kCap = 1;  // Below the thread count, so the cap is what holds.
  constexpr int kThreads = 2;
  auto pool =
      Pool(kThreads, /*queue_depth=*/8, kCap, /*max_running_here=*/here ? kThreads : 0);
  ASSERT_THAT(pool, IsOk());
  std::mutex mu;
  std::map<std::string, int> in_flight;
  int most = 0, running = 0, most_running = 0;
  std::atomic<int> accepted{0}, ran{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 6; ++t) {
    submitters.emplace_back([&, t] {
      const std::string identity = absl::StrCat("id", t % 3);
      for (int i = 0; i < 200; ++i) {
        auto task = [&, identity](bool) {
          {
            std::lock_guard<std::mutex> lock(mu);
            most = std::max(most, ++in_flight[identity]);
            most_running = std::max(most_running, ++running);
          }
          ++ran;
          std::lock_guard<std::mutex> lock(mu);
          --in_flight[identity];
          --running;
        };
        absl::Status status =
            here ? (*pool)->SubmitOrRunHere(identity, absl::InfiniteFuture(), task)
                 : (*pool)->Submit(identity, absl::InfiniteFuture(), task);
        if (status.ok()) {
          ++accepted;
        } else {
          EXPECT_THAT(status, StatusIs(absl::StatusCode::kResourceExhausted));
        }
      }
    });
  }
  for (std::thread& t : submitters) t.join();
  pool->reset();
  EXPECT_EQ(ran.load(), accepted.load());
  EXPECT_GT(accepted.load(), 0);
  EXPECT_LE(most, kCap);
  EXPECT_LE(most_running, kThreads);
}

TEST(WorkerPoolTest, ConcurrentSubmittersKeepTheirCaps) { SubmitConcurrently(false); }

TEST(WorkerPoolTest, ConcurrentSubmittersKeepTheirCapsRunningHere) {
  SubmitConcurrently(true);
}

// Runs a task of `identity` with SubmitOrRunHere on a thread of its own, which
// it holds until `blocker` is released; returns once the task runs there.
std::thread RunHereUntilReleased(WorkerPool* pool, const std::string& identity,
                                 Blocker* blocker) {
  std::thread caller([pool, identity, blocker] {
    EXPECT_THAT(pool->SubmitOrRunHere(identity, absl::InfiniteFuture(), blocker->Task()),
                IsOk());
  });
  blocker->WaitStarted(1);
  return caller;
}

// SubmitOrRunHere on an idle pool runs the task and then its answer on the caller's
// thread, before returning.
TEST(WorkerPoolTest, RunsHereWhenAWorkerIsIdle) {
  auto pool = Pool(/*threads=*/2, /*queue_depth=*/4, /*max_per_identity=*/0,
                   /*max_running_here=*/2);
  ASSERT_THAT(pool, IsOk());
  std::thread::id task_thread, then_thread;
  ASSERT_THAT((*pool)->SubmitOrRunHere(
                  "a", absl::InfiniteFuture(),
                  [&](bool expired) {
                    EXPECT_FALSE(expired);
                    task_thread = std::this_thread::get_id();
                  },
                  [&] { then_thread = std::this_thread::get_id(); }),
              IsOk());
  EXPECT_EQ(task_thread, std::this_thread::get_id());
  EXPECT_EQ(then_thread, std::this_thread::get_id());
  // An expired deadline is told here as on a worker.
  bool expired_seen = false;
  ASSERT_THAT((*pool)->SubmitOrRunHere("a", absl::InfinitePast(),
                                       [&](bool expired) { expired_seen = expired; }),
              IsOk());
  EXPECT_TRUE(expired_seen);
}

// Without the option (the VerifyClient pool, offkeyd's default), every task is handed
// to a worker.
TEST(WorkerPoolTest, HandsOffUnlessAllowedToRunHere) {
  auto pool = Pool(/*threads=*/2, /*queue_depth=*/4, /*max_per_identity=*/0);
  ASSERT_THAT(pool, IsOk());
  RanOn ran;
  ASSERT_THAT((*pool)->SubmitOrRunHere("a", absl::InfiniteFuture(), ran.Task()), IsOk());
  EXPECT_NE(ran.Wait(), std::this_thread::get_id());
}

// With every thread busy the task queues for a worker, as Submit would queue it.
TEST(WorkerPoolTest, QueuesWhenNoWorkerIsIdle) {
  auto pool = Pool(/*threads=*/1, /*queue_depth=*/4, /*max_per_identity=*/0,
                   /*max_running_here=*/2);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  ASSERT_THAT((*pool)->Submit("a", absl::InfiniteFuture(), blocker.Task()), IsOk());
  blocker.WaitStarted(1);
  RanOn ran;
  ASSERT_THAT((*pool)->SubmitOrRunHere("b", absl::InfiniteFuture(), ran.Task()), IsOk());
  EXPECT_EQ((*pool)->queued(), 1);  // Returned without running it.
  blocker.Release();
  EXPECT_NE(ran.Wait(), std::this_thread::get_id());
}

// A task running on a caller's thread holds a thread's place: what is submitted
// meanwhile waits for it (the HSM never sees more calls than threads), and starts as
// soon as it ends.
TEST(WorkerPoolTest, TaskRunningHereHoldsAPlace) {
  auto pool = Pool(/*threads=*/1, /*queue_depth=*/4, /*max_per_identity=*/0,
                   /*max_running_here=*/2);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  std::thread caller = RunHereUntilReleased(pool->get(), "a", &blocker);
  std::atomic<bool> released{false};
  Notification done;
  ASSERT_THAT((*pool)->Submit("b", absl::InfiniteFuture(),
                              [&](bool) {
                                EXPECT_TRUE(released.load());
                                done.Notify();
                              }),
              IsOk());
  // The idle worker must not take it while the place is held. (A wrong pool would
  // run it at once; this waits long enough for that to show almost always.)
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ((*pool)->queued(), 1);
  released = true;
  blocker.Release();
  done.WaitForNotification();
  caller.join();
}

// The per-identity cap counts tasks running on callers' threads.
TEST(WorkerPoolTest, TaskRunningHereCountsAgainstItsIdentity) {
  auto pool = Pool(/*threads=*/2, /*queue_depth=*/4, /*max_per_identity=*/1,
                   /*max_running_here=*/2);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  std::thread caller = RunHereUntilReleased(pool->get(), "a", &blocker);
  EXPECT_THAT((*pool)->SubmitOrRunHere("a", absl::InfiniteFuture(), [](bool) {}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("'a'")));
  bool ran_b = false;
  EXPECT_THAT(
      (*pool)->SubmitOrRunHere("b", absl::InfiniteFuture(), [&](bool) { ran_b = true; }),
      IsOk());
  EXPECT_TRUE(ran_b);  // A second place was free: it ran here.
  blocker.Release();
  caller.join();
}

// At most max_running_here tasks run on callers' threads; beyond, they go to workers.
TEST(WorkerPoolTest, RunsHereOnlyUpToItsLimit) {
  auto pool = Pool(/*threads=*/2, /*queue_depth=*/4, /*max_per_identity=*/0,
                   /*max_running_here=*/1);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  std::thread caller = RunHereUntilReleased(pool->get(), "a", &blocker);
  RanOn ran;
  ASSERT_THAT((*pool)->SubmitOrRunHere("b", absl::InfiniteFuture(), ran.Task()), IsOk());
  // On the idle worker, while "a" still runs.
  EXPECT_NE(ran.Wait(), std::this_thread::get_id());
  blocker.Release();
  caller.join();
}

// Drain returns only once no task runs on a caller's thread, and none starts after.
TEST(WorkerPoolTest, DrainWaitsForTasksRunningHere) {
  auto pool = Pool(/*threads=*/2, /*queue_depth=*/4, /*max_per_identity=*/0,
                   /*max_running_here=*/2);
  ASSERT_THAT(pool, IsOk());
  Blocker blocker;
  std::atomic<bool> finished{false};
  std::thread caller([&] {
    EXPECT_THAT((*pool)->SubmitOrRunHere("a", absl::InfiniteFuture(),
                                         [&](bool expired) {
                                           blocker.Task()(expired);
                                           finished = true;
                                         }),
                IsOk());
  });
  blocker.WaitStarted(1);
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    (*pool)->Drain();
    EXPECT_TRUE(finished.load());
    drained = true;
  });
  // Until the drain has begun, "b" still runs (here, in the free place).
  absl::Status b;
  while ((b = (*pool)->SubmitOrRunHere("b", absl::InfiniteFuture(), [](bool) {})).ok()) {
    std::this_thread::yield();
  }
  EXPECT_THAT(b, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(drained.load());  // "a" still holds its place.
  blocker.Release();
  drainer.join();
  caller.join();
  EXPECT_TRUE(drained.load());
}

}  // namespace
}  // namespace offkey::service
