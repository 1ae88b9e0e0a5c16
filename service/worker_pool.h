// WorkerPool: the bounded pool that runs every HSM call, off gRPC's threads.
#ifndef OFFKEY_SERVICE_WORKER_POOL_H_
#define OFFKEY_SERVICE_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace offkey::service {

// A fixed set of threads (sized to the HSM session pool, so a worker never waits for a
// session) fed by a bounded FIFO queue. Submit never blocks: a full queue is refused at
// once, which is how offkeyd sheds load instead of letting latency grow without bound.
// A task whose deadline passed while it waited is still run, with `expired` = true, so it
// can answer DEADLINE_EXCEEDED without touching the HSM. Thread-safe.
class WorkerPool {
 public:
  // `expired` is true when the deadline passed before a worker picked the task up.
  using Task = std::function<void(bool expired)>;

  // INVALID_ARGUMENT unless threads >= 1 and queue_depth >= 1.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(int threads, int queue_depth);
  // Runs every queued task (tasks see `expired` as usual), then joins the threads.
  ~WorkerPool();

  // Queues `task`. RESOURCE_EXHAUSTED if `queue_depth` tasks are already waiting;
  // UNAVAILABLE after Shutdown. On error `task` is not run.
  absl::Status Submit(absl::Time deadline, Task task);

  // Stops accepting tasks; queued ones still run. Idempotent.
  void Shutdown();

  int queued() const;
  int threads() const { return static_cast<int>(threads_.size()); }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

 private:
  struct Item {
    absl::Time deadline;
    Task task;
  };

  WorkerPool(int queue_depth) : queue_depth_(queue_depth) {}
  void Run();

  const int queue_depth_;
  mutable absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_WORKER_POOL_H_
