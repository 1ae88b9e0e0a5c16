// The server side of KeyService.Pipeline: one bidirectional stream carrying many
// operations tagged with ids, answered out of order (the client side is
// client/pipeline_stream.h). Built on gRPC's completion-queue API like the unary calls
// in key_service_async.cc: poller threads deliver the stream's events, workers run its
// items.
#ifndef OFFKEY_SERVICE_PIPELINE_REACTOR_H_
#define OFFKEY_SERVICE_PIPELINE_REACTOR_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/call_support.h"
#include "service/caller.h"

namespace offkey::service {

class PipelineReactor;

// Every Pipeline stream of one service: listens for new ones and drains the open ones at
// shutdown. Thread-safe.
class PipelineRegistry {
 public:
  // `env` must outlive every stream (KeyServiceAsync owns both). `max_in_flight`: items
  // unanswered per stream before it stops reading.
  PipelineRegistry(const RpcEnvironment* env, int max_in_flight)
      : env_(env), max_in_flight_(max_in_flight) {}

  // Waits for one Pipeline call on `queue`; each call that arrives waits for the next.
  void Listen(grpc::ServerCompletionQueue* queue);
  // Server shutdown: every open stream stops reading, answers the items it has taken and
  // ends with UNAVAILABLE; streams that arrive later end so at once. Idempotent.
  void Drain();

  int open_streams() const { return open_streams_.load(std::memory_order_relaxed); }
  int items_in_flight() const { return items_.load(std::memory_order_relaxed); }

  // Runs `hook` on each arriving stream's thread right after the stream registered and
  // before it starts reading: the window in which a Drain once finished a stream twice.
  // The hook may call Drain. Tests only.
  void SetAfterRegisterForTest(std::function<void()> hook);

 private:
  friend class PipelineReactor;
  // False once draining has begun: the stream must end at once.
  bool Add(PipelineReactor* stream);
  void Remove(PipelineReactor* stream);
  void AfterRegister();

  const RpcEnvironment* const env_;
  const int max_in_flight_;
  offkey::Mutex mu_;
  std::set<PipelineReactor*> streams_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> after_register_for_test_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> open_streams_{0};
  std::atomic<int> items_{0};
};

// One Pipeline stream. gRPC allows one outstanding read and one outstanding write per
// stream, so: a read is outstanding while fewer than max_in_flight items are unanswered
// (the flow control the proto promises); each item runs on the worker pool like a unary
// call; finished items queue for the single writer; the stream ends with OK once the
// client half-closed and every item is answered. It deletes itself once gRPC holds none
// of its tags and no worker holds an item. All state is under mu_.
//
// Phases (Phase below) and the events that move between them. "-": stays; "drop": the
// read item or answer is discarded; ".": cannot happen in that phase.
//
//   event            Arriving    Reading     HalfClosed  Draining    Failed  Finishing
//   arrived, ok      Reading(1)  .           .           .           .       .
//   arrived, not ok  (delete)    .           .           .           .       .
//   read, ok         .           -(2)        .           -(3)        drop    drop
//   read, not ok     .           HalfClosed  .           HalfClosed  -       -
//   item answered    .           -(4)        -(4)        -(4)        drop    drop
//   write, ok        .           -(5)        -(5)        -(5)        -       .
//   write, not ok    .           Failed(6)   Failed(6)   Failed(6)   -       .
//   Drain            .           Draining    -           -           -       -
//   finish done      .           .           .           .           .       Finished
//
//   (1) The caller is identified, then the stream registers for Drain and starts its
//       first read. An unknown caller goes to Failed; a registry already draining, or a
//       Drain between registering and the first read, to Draining.
//   (2) The next read starts while fewer than max_in_flight are unanswered; then the
//       item runs on the worker pool (on this thread when it is the stream's only
//       unanswered item, a worker is idle and the pool allows it; see
//       WorkerPool::SubmitOrRunHere), or is
//       answered at once if the pool refuses it.
//       An id already in flight goes to Failed (INVALID_ARGUMENT) instead.
//   (3) A read outstanding when the drain began still delivers its item, which is
//       served; no further read starts.
//   (4) The answer queues for the writer; a write starts unless one is outstanding.
//   (5) The next queued answer is written; in Reading, reading resumes below the cap.
//   (6) The client is gone: queued answers are dropped.
//   Finished: read and item events are dropped; nothing else happens.
//
// After every event the stream starts Finish (phase Finishing) once no write is
// outstanding and it is Failed, or HalfClosed or Draining with every taken item
// written. The status: HalfClosed OK; Draining UNAVAILABLE (send the rest elsewhere);
// Failed its error, or, when a write failed, OK (UNAVAILABLE if it was Draining). Once
// Finished, the stream deletes itself when no read or write is outstanding, no worker
// holds an item and arrival is done with it (phase Deleted); exactly one thread sees
// that moment.
//
// Outstanding gRPC operations: the arrival request only in Arriving; a read in Reading
// (below the cap), in Draining (one started before the drain) and in Finishing or
// Finished (gRPC fails it once the call ends); a write in Reading, HalfClosed, Draining
// and Failed (Failed finishes only once it is back); Finish only in Finishing.
//
// Cancellation and deadlines have no events of their own on the completion-queue API:
// a cancelled or expired call fails its outstanding read or write (not ok), which the
// table covers; the deadline also bounds each item's wait for a worker (it is answered
// DEADLINE_EXCEEDED without touching the HSM).
class PipelineReactor {
 public:
  PipelineReactor(const PipelineReactor&) = delete;
  PipelineReactor& operator=(const PipelineReactor&) = delete;

 private:
  friend class PipelineRegistry;

  enum class Phase {
    kArriving,    // RequestPipeline outstanding: no call yet.
    kReading,     // Taking items.
    kHalfClosed,  // The client sent its last item: answer them all, then OK.
    kDraining,    // Server shutdown: answer what was taken, then UNAVAILABLE.
    kFailed,      // Answers are dropped; finish with end_status_ once no write is out.
    kFinishing,   // Finish outstanding.
    kFinished,    // Finish done; waiting for gRPC and the workers to let go.
    kDeleted,     // One thread has decided to delete the stream.
  };
  enum class Event { kArrived, kRead, kWrite, kFinish };
  struct Tag final : call_support::Call {
    Tag(PipelineReactor* stream, Event event) : stream(stream), event(event) {}
    void Proceed(bool ok) override { stream->On(event, ok); }
    PipelineReactor* const stream;
    const Event event;
  };

  PipelineReactor(PipelineRegistry* registry, grpc::ServerCompletionQueue* queue);
  ~PipelineReactor();

  void Drain();
  void On(Event event, bool ok);
  void OnArrived(bool ok);
  void StartReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MayReadLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The item taken, to be dispatched once mu_ is released (null if none); `alone`:
  // no other item of the stream is unanswered.
  std::shared_ptr<const offkey::v1::PipelineRequest> OnReadLocked(bool ok, bool* alone)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs a taken item on a worker (or, when it is `alone` and a worker is idle, on
  // this thread) or answers it at once with the pool's refusal. Called without mu_.
  void Dispatch(const std::shared_ptr<const offkey::v1::PipelineRequest>& item,
                bool alone) ABSL_LOCKS_EXCLUDED(mu_);
  template <typename Request, typename Response>
  void Submit(const std::shared_ptr<const offkey::v1::PipelineRequest>& item, bool alone,
              const Request& request, Response* (offkey::v1::PipelineResponse::*field)())
      ABSL_LOCKS_EXCLUDED(mu_);
  void Complete(offkey::v1::PipelineResponse response) ABSL_LOCKS_EXCLUDED(mu_);
  void CompleteLocked(offkey::v1::PipelineResponse response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnWriteLocked(bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Enters Failed with `status`, dropping the answers not yet written.
  void FailLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether answers are still delivered (not Failed and not finishing or beyond).
  bool AnsweringLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PipelineRegistry* const registry_;
  const RpcEnvironment& env_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<offkey::v1::PipelineResponse, offkey::v1::PipelineRequest>
      stream_;
  Tag arrived_tag_{this, Event::kArrived};
  Tag read_tag_{this, Event::kRead};
  Tag write_tag_{this, Event::kWrite};
  Tag finish_tag_{this, Event::kFinish};
  // Set once, on arrival, under mu_; read unlocked by the destructor, which runs after
  // the last critical section.
  bool registered_ = false;
  Caller caller_;        // Set on arrival, then read-only.
  absl::Time deadline_;  // Likewise.

  offkey::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kArriving;
  bool finish_started_ ABSL_GUARDED_BY(mu_) = false;  // Set once, never cleared.
  bool read_outstanding_ ABSL_GUARDED_BY(mu_) = false;
  bool write_outstanding_ ABSL_GUARDED_BY(mu_) = false;
  // While arrival registers the stream outside mu_: a Drain may finish the stream
  // meanwhile, and this keeps it from being deleted under arrival's feet.
  bool arrival_hold_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);  // What Failed finishes with.
  offkey::v1::PipelineRequest incoming_;          // The outstanding read's buffer.
  offkey::v1::PipelineResponse current_ ABSL_GUARDED_BY(mu_);  // The outstanding write's.
  std::deque<offkey::v1::PipelineResponse> to_write_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> ids_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // Read, not yet written or dropped.
  int running_ ABSL_GUARDED_BY(mu_) = 0;      // Submitted, not yet completed.
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_PIPELINE_REACTOR_H_
