#include "service/pipeline_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "service/proto_convert.h"
#include "service/secret_fields.h"

namespace offkey::service {
namespace {

namespace v1 = offkey::v1;
using call_support::DeadlineOf;
using call_support::Perform;
using call_support::RecordOutcome;

v1::PipelineResponse ErrorResponse(uint64_t id, const absl::Status& status) {
  v1::PipelineResponse response;
  response.set_id(id);
  grpc::Status wire = ToGrpcStatus(status);
  response.mutable_status()->set_code(wire.error_code());
  response.mutable_status()->set_message(wire.error_message());
  return response;
}

absl::Status ShuttingDown() {
  return absl::UnavailableError(
      "offkeyd is shutting down; the items answered are done, send any others to "
      "another replica");
}

}  // namespace

void PipelineRegistry::Listen(grpc::ServerCompletionQueue* queue) {
  new PipelineReactor(this, queue);
}

bool PipelineRegistry::Add(PipelineReactor* stream) {
  offkey::MutexLock lock(&mu_);
  if (draining_) return false;
  streams_.insert(stream);
  open_streams_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void PipelineRegistry::SetAfterRegisterForTest(std::function<void()> hook) {
  offkey::MutexLock lock(&mu_);
  after_register_for_test_ = std::move(hook);
}

void PipelineRegistry::AfterRegister() {
  std::function<void()> hook;
  {
    offkey::MutexLock lock(&mu_);
    hook = after_register_for_test_;
  }
  if (hook) hook();  // Outside mu_: it may Drain.
}

void PipelineRegistry::Remove(PipelineReactor* stream) {
  offkey::MutexLock lock(&mu_);
  streams_.erase(stream);
  open_streams_.fetch_sub(1, std::memory_order_relaxed);
}

void PipelineRegistry::Drain() {
  offkey::MutexLock lock(&mu_);
  draining_ = true;
  for (PipelineReactor* stream : streams_) stream->Drain();
}

PipelineReactor::PipelineReactor(PipelineRegistry* registry,
                                 grpc::ServerCompletionQueue* queue)
    : registry_(registry), env_(*registry->env_), queue_(queue), stream_(&context_) {
  env_.service->RequestPipeline(&context_, &stream_, queue_, queue_, &arrived_tag_);
}

PipelineReactor::~PipelineReactor() {
  if (registered_) registry_->Remove(this);
  WipeSecrets(&current_);
  for (v1::PipelineResponse& unsent : to_write_) WipeSecrets(&unsent);
}

void PipelineReactor::Drain() {
  offkey::MutexLock lock(&mu_);
  if (phase_ == Phase::kReading) phase_ = Phase::kDraining;
  MaybeFinishLocked();
}

void PipelineReactor::On(Event event, bool ok) {
  if (event == Event::kArrived) {
    OnArrived(ok);
    return;
  }
  bool done;
  std::shared_ptr<const v1::PipelineRequest> taken;
  bool alone = false;
  {
    offkey::MutexLock lock(&mu_);
    switch (event) {
      case Event::kRead:
        read_outstanding_ = false;
        taken = OnReadLocked(ok, &alone);
        break;
      case Event::kWrite:
        OnWriteLocked(ok);
        break;
      case Event::kFinish:
        phase_ = Phase::kFinished;
        break;
      case Event::kArrived:
        break;
    }
    done = DoneLocked();
  }
  // Outside mu_: the item may run on this thread, and answers take mu_. The stream
  // lives on meanwhile: the taken item keeps it from being done.
  if (taken != nullptr) {
    Dispatch(taken, alone);
  } else if (done) {
    delete this;
  }
}

void PipelineReactor::OnArrived(bool ok) {
  if (!ok) {  // The server is shutting down; this stream never started.
    delete this;
    return;
  }
  registry_->Listen(queue_);
  absl::StatusOr<Caller> caller = env_.identities->Get(context_, env_.allow_plaintext);
  if (!caller.ok()) {
    offkey::MutexLock lock(&mu_);
    FailLocked(caller.status());
    MaybeFinishLocked();
    return;
  }
  {
    offkey::MutexLock lock(&mu_);
    caller_ = *std::move(caller);
    deadline_ = DeadlineOf(context_);
    phase_ = Phase::kReading;
    arrival_hold_ = true;
  }
  // Registered outside mu_: Drain takes the registry lock, then ours. A Drain from here
  // on moves the stream to Draining and, with nothing taken, finishes it before the
  // first read; the hold keeps the stream alive until this function is done with it.
  const bool registered = registry_->Add(this);
  registry_->AfterRegister();
  bool done;
  {
    offkey::MutexLock lock(&mu_);
    registered_ = registered;
    arrival_hold_ = false;
    if (!registered_ && phase_ == Phase::kReading) phase_ = Phase::kDraining;
    if (MayReadLocked()) StartReadLocked();
    MaybeFinishLocked();
    done = DoneLocked();
  }
  if (done) delete this;
}

void PipelineReactor::StartReadLocked() {
  read_outstanding_ = true;
  stream_.Read(&incoming_, &read_tag_);
}

bool PipelineReactor::MayReadLocked() const {
  return phase_ == Phase::kReading && !read_outstanding_ &&
         outstanding_ < registry_->max_in_flight_;
}

bool PipelineReactor::AnsweringLocked() const {
  return phase_ == Phase::kReading || phase_ == Phase::kHalfClosed ||
         phase_ == Phase::kDraining;
}

std::shared_ptr<const v1::PipelineRequest> PipelineReactor::OnReadLocked(bool ok,
                                                                         bool* alone) {
  if (!ok) {  // Half-close (or the stream is gone).
    if (phase_ == Phase::kReading || phase_ == Phase::kDraining) {
      phase_ = Phase::kHalfClosed;
    }
    MaybeFinishLocked();
    return nullptr;
  }
  if (!AnsweringLocked()) return nullptr;
  if (!ids_.insert(incoming_.id()).second) {
    // Replies could no longer be matched to items: the whole stream fails.
    FailLocked(absl::InvalidArgumentError(
        absl::StrCat("id ", incoming_.id(),
                     " is already in flight on this stream; ids must be unique among "
                     "unanswered items")));
    MaybeFinishLocked();
    return nullptr;
  }
  ++outstanding_;
  ++running_;
  *alone = outstanding_ == 1;
  registry_->items_.fetch_add(1, std::memory_order_relaxed);
  auto taken = std::make_shared<v1::PipelineRequest>(std::move(incoming_));
  incoming_.Clear();
  if (MayReadLocked()) StartReadLocked();
  return taken;
}

void PipelineReactor::Dispatch(const std::shared_ptr<const v1::PipelineRequest>& item,
                               bool alone) {
  switch (item->op_case()) {
    case v1::PipelineRequest::kSign:
      return Submit(item, alone, item->sign(), &v1::PipelineResponse::mutable_sign);
    case v1::PipelineRequest::kDecryptPremaster:
      return Submit(item, alone, item->decrypt_premaster(),
                    &v1::PipelineResponse::mutable_decrypt_premaster);
    case v1::PipelineRequest::kDeriveMasterSecret:
      return Submit(item, alone, item->derive_master_secret(),
                    &v1::PipelineResponse::mutable_derive_master_secret);
    case v1::PipelineRequest::kVerifyClient:
      return Submit(item, alone, item->verify_client(),
                    &v1::PipelineResponse::mutable_verify_client);
    case v1::PipelineRequest::kGetCertificate:
      return Submit(item, alone, item->get_certificate(),
                    &v1::PipelineResponse::mutable_get_certificate);
    case v1::PipelineRequest::OP_NOT_SET:
      break;
  }
  Complete(ErrorResponse(
      item->id(), absl::InvalidArgumentError(
                      "op: set one of sign, decrypt_premaster, derive_master_secret, "
                      "verify_client, get_certificate")));
}

template <typename Request, typename Response>
void PipelineReactor::Submit(const std::shared_ptr<const v1::PipelineRequest>& item,
                             bool alone, const Request& request,
                             Response* (v1::PipelineResponse::*field)()) {
  const absl::Time arrived = absl::Now();
  const Request* const request_ptr = &request;  // Owned by `item`.
  absl::Status queued = call_support::CheckRequestSize(request);
  if (queued.ok()) {
    auto response = std::make_shared<v1::PipelineResponse>();
    WorkerPool::Task task = [this, item, request_ptr, field, arrived,
                             response](bool expired) {
      absl::StatusOr<Response> result =
          Perform(env_, caller_, *request_ptr, arrived, deadline_, expired, true);
      if (!result.ok()) {
        *response = ErrorResponse(item->id(), result.status());
        return;
      }
      response->set_id(item->id());
      response->mutable_status();
      *((*response).*field)() = *std::move(result);
    };
    // Answered once the caller's slot in the pool is free again.
    WorkerPool::Then then = [this, response] { Complete(std::move(*response)); };
    WorkerPool* pool = call_support::Op<Request>::Pool(env_);
    // Only an item the client waits on alone may hold this thread: the next items of a
    // client that pipelines arrive on this thread too, and must reach the workers.
    queued = alone ? pool->SubmitOrRunHere(caller_.identity, deadline_, std::move(task),
                                           std::move(then))
                   : pool->Submit(caller_.identity, deadline_, std::move(task),
                                  std::move(then));
  }
  if (!queued.ok()) {
    RecordOutcome(env_, caller_.identity, request, arrived, queued, nullptr, true)
        .IgnoreError();  // An error either way.
    Complete(ErrorResponse(item->id(), queued));
  }
}

// An item is answered (from a worker, or from the thread that read it).
void PipelineReactor::Complete(v1::PipelineResponse response) {
  bool done;
  {
    offkey::MutexLock lock(&mu_);
    CompleteLocked(std::move(response));
    done = DoneLocked();
  }
  if (done) delete this;
}

void PipelineReactor::CompleteLocked(v1::PipelineResponse response) {
  --running_;
  ids_.erase(response.id());
  registry_->items_.fetch_sub(1, std::memory_order_relaxed);
  if (!AnsweringLocked()) {
    --outstanding_;  // Nobody will read it.
    WipeSecrets(&response);
    return;
  }
  to_write_.push_back(std::move(response));
  if (!write_outstanding_) StartWriteLocked();
}

void PipelineReactor::StartWriteLocked() {
  write_outstanding_ = true;
  current_ = std::move(to_write_.front());
  to_write_.pop_front();
  // More answers are waiting: let gRPC hold this one and send them together (one TLS
  // record and one syscall for several). The last write of a burst goes out at once.
  grpc::WriteOptions options;
  if (!to_write_.empty()) options.set_buffer_hint();
  stream_.Write(current_, options, &write_tag_);
}

void PipelineReactor::OnWriteLocked(bool ok) {
  write_outstanding_ = false;
  // gRPC is done with the answer (serialized when Write was called): its secrets go now,
  // before the next answer is moved in and this one's buffers are freed.
  WipeSecrets(&current_);
  --outstanding_;
  if (!ok) {  // The client is gone: nothing more can be delivered.
    if (phase_ != Phase::kFailed) {
      FailLocked(phase_ == Phase::kDraining ? ShuttingDown() : absl::OkStatus());
    }
  } else if (!to_write_.empty() && phase_ != Phase::kFailed) {
    StartWriteLocked();
  }
  if (MayReadLocked()) StartReadLocked();
  MaybeFinishLocked();
}

void PipelineReactor::FailLocked(absl::Status status) {
  phase_ = Phase::kFailed;
  end_status_ = std::move(status);
  outstanding_ -= static_cast<int>(to_write_.size());
  for (v1::PipelineResponse& dropped : to_write_) WipeSecrets(&dropped);
  to_write_.clear();
}

void PipelineReactor::MaybeFinishLocked() {
  if (write_outstanding_) return;
  if (phase_ == Phase::kFailed ||
      ((phase_ == Phase::kHalfClosed || phase_ == Phase::kDraining) &&
       outstanding_ == 0)) {
    StartFinishLocked();
  }
}

void PipelineReactor::StartFinishLocked() {
  // The only call of Finish, at most once per stream whatever the phases say: a second
  // Finish is a gRPC assertion that aborts the process.
  if (finish_started_) return;
  finish_started_ = true;
  absl::Status status = phase_ == Phase::kFailed     ? end_status_
                        : phase_ == Phase::kDraining ? ShuttingDown()
                                                     : absl::OkStatus();
  phase_ = Phase::kFinishing;
  stream_.Finish(ToGrpcStatus(status), &finish_tag_);
}

// Whether the caller must now delete the stream: nothing can touch it again. Decided in
// the same critical section as the caller's last change, since another thread may
// delete it the moment the lock is released; exactly one caller gets true.
bool PipelineReactor::DoneLocked() {
  if (phase_ != Phase::kFinished || read_outstanding_ || write_outstanding_ ||
      running_ != 0 || arrival_hold_) {
    return false;
  }
  phase_ = Phase::kDeleted;
  return true;
}

}  // namespace offkey::service
