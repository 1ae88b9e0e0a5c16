#include "service/worker_pool.h"

#include <algorithm>
#include <atomic>
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

// Records the order tasks ran in.
class Order {
 public:
  WorkerPool::Task Task(std::string name) {
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
                                                 int max_per_identity) {
  WorkerPool::Options options;
  options.threads = threads;
  options.queue_depth = queue_depth;
  options.max_per_identity = max_per_identity;
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
// no identity ever has more than its cap in flight, and every refusal names a limit.
// (Run under --config=tsan as well.)
TEST(WorkerPoolTest, ConcurrentSubmittersKeepTheirCaps) {
  constexpr int kCap = 1;  // Below the thread count, so the cap is what holds.
  auto pool = Pool(/*threads=*/4, /*queue_depth=*/8, kCap);
  ASSERT_THAT(pool, IsOk());
  std::mutex mu;
  std::map<std::string, int> in_flight;
  int most = 0;
  std::atomic<int> accepted{0}, ran{0};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 6; ++t) {
    submitters.emplace_back([&, t] {
      const std::string identity = absl::StrCat("id", t % 3);
      for (int i = 0; i < 200; ++i) {
        absl::Status status =
            (*pool)->Submit(identity, absl::InfiniteFuture(), [&, identity](bool) {
              {
                std::lock_guard<std::mutex> lock(mu);
                most = std::max(most, ++in_flight[identity]);
              }
              ++ran;
              std::lock_guard<std::mutex> lock(mu);
              --in_flight[identity];
            });
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
}

}  // namespace
}  // namespace offkey::service
