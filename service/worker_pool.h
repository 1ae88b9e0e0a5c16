// WorkerPool: a bounded pool of threads that runs calls off gRPC's threads (the HSM
// calls, and separately VerifyClient's chain building).
#ifndef OFFKEY_SERVICE_WORKER_POOL_H_
#define OFFKEY_SERVICE_WORKER_POOL_H_

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace offkey::service {

// A fixed set of threads (for HSM work sized to the HSM session pool, so a worker never
// waits for a session) fed by a bounded queue. Submit never blocks: a full queue is
// refused at once, which is how offkeyd sheds load instead of letting latency grow
// without bound. A task whose deadline passed while it waited is still run, with
// `expired` = true, so it can answer DEADLINE_EXCEEDED without touching the HSM.
// Thread-safe.
//
// Fairness between callers takes two rules, because either alone falls short:
//  - a cap per identity on tasks queued or running (max_per_identity), so one caller
//    cannot fill the queue and have everyone else refused; and
//  - round-robin across identities: a free thread takes the oldest task of the next
//    identity in turn, not the oldest task overall, so a call that got into the queue
//    waits for at most one task of each other waiting identity, not for a flooder's
//    whole backlog (which, even capped, could outlast its deadline).
// Within one identity tasks run in the order submitted.
class WorkerPool {
 public:
  // `expired` is true when the deadline passed before a worker picked the task up.
  using Task = std::function<void(bool expired)>;
  // Runs after the Task, on the same thread, once its identity's slot is free again.
  using Then = std::function<void()>;

  struct Options {
    int threads = 1;      // 1..1024.
    int queue_depth = 1;  // Tasks waiting for a thread, all identities together; >= 1.
    // Tasks one identity may have queued or running at once; 0: no cap but queue_depth.
    int max_per_identity = 0;
    // The threads' name (at most 15 bytes), for top and perf.
    std::string thread_name = "offkey-worker";
    // What queued tasks wait for, as a refusal names it.
    std::string waiting_for = "the HSM";
    // Tasks SubmitOrRunHere may have running on callers' threads at once; 0: none
    // (it always queues). offkeyd sets it (workers.run_on_rpc_threads_when_idle) below
    // its gRPC threads, so one of those is always free to take calls.
    int max_running_here = 0;
  };

  // INVALID_ARGUMENT unless the options are in their ranges.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(Options options);
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Create(int threads,
                                                            int queue_depth) {
    Options options;
    options.threads = threads;
    options.queue_depth = queue_depth;
    return Create(std::move(options));
  }
  // Drain().
  ~WorkerPool();

  // Queues `task` on behalf of `identity` (the caller; "" is an identity like any
  // other). RESOURCE_EXHAUSTED if `identity` already has max_per_identity tasks queued
  // or running, or if queue_depth tasks are already waiting; UNAVAILABLE after Shutdown.
  // On error neither `task` nor `then` is run. `then` (may be null) is where a call
  // sends its answer: a caller that keeps exactly max_per_identity calls in flight
  // and sends the next one as an answer arrives is then never refused for a slot its
  // answered call still held.
  absl::Status Submit(absl::string_view identity, absl::Time deadline, Task task,
                      Then then = nullptr);

  // Submit, except that when a thread is idle, no task waits and fewer than
  // max_running_here tasks run on callers' threads, it runs `task` and then `then` on
  // the calling thread before returning. A worker would have taken the task at once
  // anyway; running it here saves handing it over and back (two thread wake-ups per
  // call). The task holds the idle thread's place meanwhile, so running tasks never
  // outnumber the threads (nor the HSM's sessions), and it counts against its identity's
  // cap like any other. The caller must hold no lock that `task` or `then` takes.
  absl::Status SubmitOrRunHere(absl::string_view identity, absl::Time deadline, Task task,
                               Then then = nullptr);

  // Stops accepting tasks; queued ones still run. Idempotent.
  void Shutdown();
  // Shutdown, then waits until every queued task (tasks see `expired` as usual) has run
  // and the threads have ended, and until no task runs on a caller's thread. The pool
  // stays valid: a Submit that races with this (a call arriving as the server stops) gets
  // UNAVAILABLE rather than a destroyed pool. Idempotent; call it from one thread.
  void Drain();

  // Tasks waiting for a thread.
  int queued() const;
  int threads() const { return static_cast<int>(threads_.size()); }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

 private:
  struct Item {
    absl::Time deadline;
    Task task;
    Then then;
  };
  // One identity's tasks. Present while it has any queued or running.
  struct Account {
    std::deque<Item> waiting;
    int in_flight = 0;  // Queued or running.
  };

  explicit WorkerPool(Options options) : options_(std::move(options)) {}
  void Run();
  // OK if `identity`, with `in_flight` tasks queued or running, may add one more.
  absl::Status AdmitLocked(absl::string_view identity, int in_flight) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For SubmitOrRunHere: true, with the place and the identity's slot taken, if the
  // task may run on the caller's thread now; false if it must queue; the refusal if
  // the identity is at its cap or the pool is stopping.
  absl::StatusOr<bool> TakeIdlePlace(absl::string_view identity);
  // Frees the slot of a finished task of `identity` and its place.
  void ReleaseLocked(absl::string_view identity) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  // std::mutex rather than absl::Mutex: Debian's Abseil is built without ThreadSanitizer
  // annotations, and this pool is the concurrency checked under --config=tsan.
  mutable std::mutex mu_;
  // A task was queued, a place freed up while tasks wait, or Shutdown.
  std::condition_variable work_;
  std::condition_variable idle_;  // busy_ fell to 0 while stopping.
  absl::flat_hash_map<std::string, Account> accounts_ ABSL_GUARDED_BY(mu_);
  // Identities with waiting tasks, each once, in the order they are next served.
  std::deque<std::string> turns_ ABSL_GUARDED_BY(mu_);
  int queued_ ABSL_GUARDED_BY(mu_) = 0;  // Waiting tasks of every identity.
  // Running tasks, on the threads or on callers' threads; at most options_.threads.
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  int running_here_ ABSL_GUARDED_BY(mu_) = 0;  // Of those, on callers' threads.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_WORKER_POOL_H_
