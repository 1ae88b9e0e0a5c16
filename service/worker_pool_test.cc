#include "service/worker_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::offkey::testing::IsOk;

TEST(WorkerPoolTest, RunsTasksOnWorkers) {
  auto pool = WorkerPool::Create(2, 16);
  ASSERT_THAT(pool, IsOk());
  std::atomic<int> ran{0};
  absl::Notification done[8];
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE((*pool)
                    ->Submit(absl::InfiniteFuture(),
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
  absl::Notification started, release;
  ASSERT_TRUE((*pool)
                  ->Submit(absl::InfiniteFuture(),
                           [&](bool) {
                             started.Notify();
                             release.WaitForNotification();
                           })
                  .ok());
  started.WaitForNotification();  // The worker is busy; the queue is empty.
  std::atomic<int> ran{0};
  auto count = [&](bool) { ++ran; };
  EXPECT_THAT((*pool)->Submit(absl::InfiniteFuture(), count), IsOk());
  EXPECT_THAT((*pool)->Submit(absl::InfiniteFuture(), count), IsOk());
  absl::Status third = (*pool)->Submit(absl::InfiniteFuture(), count);
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ((*pool)->queued(), 2);
  release.Notify();
  pool->reset();  // Drains the queue.
  EXPECT_EQ(ran.load(), 2);
}

TEST(WorkerPoolTest, ExpiredTasksAreToldSo) {
  auto pool = WorkerPool::Create(1, 4);
  ASSERT_THAT(pool, IsOk());
  absl::Notification started, release, checked;
  ASSERT_TRUE((*pool)
                  ->Submit(absl::InfiniteFuture(),
                           [&](bool) {
                             started.Notify();
                             release.WaitForNotification();
                           })
                  .ok());
  started.WaitForNotification();
  bool saw_expired = false;
  ASSERT_TRUE((*pool)
                  ->Submit(absl::Now() + absl::Milliseconds(10),
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
  EXPECT_EQ((*pool)->Submit(absl::InfiniteFuture(), [](bool) {}).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace offkey::service
