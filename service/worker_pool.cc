#include "service/worker_pool.h"

#include <pthread.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace offkey::service {

absl::StatusOr<std::unique_ptr<WorkerPool>> WorkerPool::Create(Options options) {
  if (options.threads < 1 || options.threads > 1024) {
    return absl::InvalidArgumentError("worker threads must be 1..1024");
  }
  if (options.queue_depth < 1) {
    return absl::InvalidArgumentError("queue depth must be >= 1");
  }
  const int threads = options.threads;
  std::unique_ptr<WorkerPool> pool(new WorkerPool(std::move(options)));
  for (int i = 0; i < threads; ++i) {
    pool->threads_.emplace_back([p = pool.get()] {
      pthread_setname_np(pthread_self(), p->options_.thread_name.c_str());
      p->Run();
    });
  }
  return pool;
}

WorkerPool::~WorkerPool() { Drain(); }

void WorkerPool::Drain() {
  Shutdown();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return busy_ == 0; });
}

void WorkerPool::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
}

absl::Status WorkerPool::AdmitLocked(absl::string_view identity, int in_flight) const {
  if (stopping_) return absl::UnavailableError("offkeyd is shutting down");
  if (options_.max_per_identity > 0 && in_flight >= options_.max_per_identity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "caller '", identity, "' already has ", in_flight,
        " operations queued or running, the most one caller may have "
        "(limits.max_calls_in_flight_per_identity); wait for answers before sending "
        "more"));
  }
  return absl::OkStatus();
}

absl::Status WorkerPool::Submit(absl::string_view identity, absl::Time deadline,
                                Task task, Then then) {
  std::unique_lock<std::mutex> lock(mu_);
  auto found = accounts_.find(identity);
  const int in_flight = found == accounts_.end() ? 0 : found->second.in_flight;
  if (absl::Status admitted = AdmitLocked(identity, in_flight); !admitted.ok()) {
    return admitted;
  }
  if (queued_ >= options_.queue_depth) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "offkeyd is saturated: ", queued_, " operations are already waiting for ",
        options_.waiting_for, "; retry with backoff or on another replica"));
  }
  Account& account = found == accounts_.end() ? accounts_[identity] : found->second;
  if (account.waiting.empty()) turns_.emplace_back(identity);
  account.waiting.push_back({deadline, std::move(task), std::move(then)});
  ++account.in_flight;
  ++queued_;
  lock.unlock();
  work_.notify_one();
  return absl::OkStatus();
}

absl::StatusOr<bool> WorkerPool::TakeIdlePlace(absl::string_view identity) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_ || queued_ > 0 || busy_ >= options_.threads ||
      running_here_ >= options_.max_running_here) {
    return false;
  }
  auto found = accounts_.find(identity);
  const int in_flight = found == accounts_.end() ? 0 : found->second.in_flight;
  if (absl::Status admitted = AdmitLocked(identity, in_flight); !admitted.ok()) {
    return admitted;
  }
  Account& account = found == accounts_.end() ? accounts_[identity] : found->second;
  ++account.in_flight;
  ++busy_;
  ++running_here_;
  return true;
}

void WorkerPool::ReleaseLocked(absl::string_view identity) {
  auto account = accounts_.find(identity);
  if (--account->second.in_flight == 0) accounts_.erase(account);
  --busy_;
  if (stopping_ && busy_ == 0) idle_.notify_all();
}

absl::Status WorkerPool::SubmitOrRunHere(absl::string_view identity, absl::Time deadline,
                                         Task task, Then then) {
  // Pools that never run tasks here (offkeyd's default) take the lock once, in Submit.
  if (options_.max_running_here == 0) {
    return Submit(identity, deadline, std::move(task), std::move(then));
  }
  absl::StatusOr<bool> here = TakeIdlePlace(identity);
  if (!here.ok()) return here.status();
  if (!*here) return Submit(identity, deadline, std::move(task), std::move(then));
  task(absl::Now() > deadline);
  task = nullptr;  // Its captures go before `then` runs, as on a worker.
  bool waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --running_here_;
    ReleaseLocked(identity);
    waiting = queued_ > 0;
  }
  // A task queued meanwhile may have found every place taken: its worker waits for one.
  if (waiting) work_.notify_one();
  if (then) then();
  return absl::OkStatus();
}

int WorkerPool::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

void WorkerPool::Run() {
  for (;;) {
    Item item;
    std::string identity;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // A waiting task needs a free place: tasks running on callers' threads hold
      // some (SubmitOrRunHere).
      work_.wait(lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return queued_ > 0 ? busy_ < options_.threads : stopping_;
      });
      if (queued_ == 0) return;  // Stopping and drained.
      identity = std::move(turns_.front());
      turns_.pop_front();
      Account& account = accounts_.find(identity)->second;
      item = std::move(account.waiting.front());
      account.waiting.pop_front();
      --queued_;
      ++busy_;
      if (!account.waiting.empty()) turns_.push_back(identity);  // Its next turn.
    }
    item.task(absl::Now() > item.deadline);
    item.task = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ReleaseLocked(identity);
    }
    if (item.then) item.then();
  }
}

}  // namespace offkey::service
