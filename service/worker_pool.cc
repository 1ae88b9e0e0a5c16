#include "service/worker_pool.h"

#include <pthread.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace offkey::service {

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(int threads,
                                                               int queue_depth) {
  if (threads < 1 || threads > 1024) {
    return absl::InvalidArgumentError("worker threads must be 1..1024");
  }
  if (queue_depth < 1) return absl::InvalidArgumentError("queue depth must be >= 1");
  std::unique_ptr<WorkerPool> pool(new WorkerPool(queue_depth));
  for (int i = 0; i < threads; ++i) {
    pool->threads_.emplace_back([p = pool.get()] {
      pthread_setname_np(pthread_self(), "offkey-worker");  // Named for top and perf.
      p->Run();
    });
  }
  return pool;
}

WorkerPool::~WorkerPool() {
  Shutdown();
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::Shutdown() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

absl::Status WorkerPool::Submit(absl::Time deadline, Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("offkeyd is shutting down");
  if (static_cast<int>(queue_.size()) >= queue_depth_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("offkeyd is saturated: ", queue_.size(),
                     " operations are already waiting for the HSM; retry with backoff or "
                     "on another replica"));
  }
  queue_.push_back({deadline, std::move(task)});
  return absl::OkStatus();
}

int WorkerPool::queued() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

void WorkerPool::Run() {
  for (;;) {
    Item item;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkerPool* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stopping_ || !p->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // Stopping and drained.
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    item.task(absl::Now() > item.deadline);
  }
}

}  // namespace offkey::service
