#include "service/key_service_async.h"

#include <pthread.h>

#include <chrono>
#include <deque>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "service/proto_convert.h"
#include "service/tls/schemes.h"

namespace offkey::service {
namespace {

namespace v1 = offkey::v1;

// What the audit line says about each request: identifiers only.
void Describe(const v1::TlsContext& context, AuditRecord* record) {
  if (context.version() != v1::TLS_VERSION_UNSPECIFIED) {
    record->tls_version = v1::TlsVersion_Name(context.version());
  }
  record->sni = context.sni();
  record->handshake_id = context.handshake_id();
}
// Requests that name a key and a handshake.
template <typename Request>
void Describe(const Request& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  Describe(r.context(), record);
}
void Describe(const v1::SignRequest& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  record->scheme = tls::SchemeName(r.scheme());
  Describe(r.context(), record);
}
void Describe(const v1::VerifyClientRequest& r, AuditRecord* record) {
  record->trust_bundle = r.trust_bundle().substr(0, 128);
  record->scheme = tls::SchemeName(r.scheme());
  Describe(r.context(), record);
}
void Describe(const v1::ListKeysRequest&, AuditRecord*) {}

// What the audit line says about a response: only VerifyClient's verdict.
template <typename Response>
void DescribeResult(const Response&, AuditRecord*) {}
void DescribeResult(const v1::VerifyClientResponse& r, AuditRecord* record) {
  record->verify_result = v1::VerifyResult_Name(r.result());
  record->client = r.identity().spiffe_id().empty() ? r.identity().subject()
                                                    : r.identity().spiffe_id();
}

// One row per operation: its kind, how to run it, and the scheme it reports in metrics.
template <typename Request>
struct Op;
// Operations that make no signature report no scheme.
struct NoScheme {
  template <typename Request>
  static v1::SignatureScheme Scheme(const Request&) {
    return v1::SIGNATURE_SCHEME_UNSPECIFIED;
  }
};
template <>
struct Op<v1::SignRequest> {
  using Response = v1::SignResponse;
  static constexpr v1::Operation kKind = v1::SIGN;
  static constexpr auto kRun = &Operations::Sign;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestSign;
  static v1::SignatureScheme Scheme(const v1::SignRequest& r) { return r.scheme(); }
};
template <>
struct Op<v1::DecryptPremasterRequest> : NoScheme {
  using Response = v1::DecryptPremasterResponse;
  static constexpr v1::Operation kKind = v1::DECRYPT_PREMASTER;
  static constexpr auto kRun = &Operations::DecryptPremaster;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestDecryptPremaster;
};
template <>
struct Op<v1::DeriveMasterSecretRequest> : NoScheme {
  using Response = v1::DeriveMasterSecretResponse;
  static constexpr v1::Operation kKind = v1::DERIVE_MASTER_SECRET;
  static constexpr auto kRun = &Operations::DeriveMasterSecret;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestDeriveMasterSecret;
};
template <>
struct Op<v1::VerifyClientRequest> {
  using Response = v1::VerifyClientResponse;
  static constexpr v1::Operation kKind = v1::VERIFY_CLIENT;
  static constexpr auto kRun = &Operations::VerifyClient;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestVerifyClient;
  static v1::SignatureScheme Scheme(const v1::VerifyClientRequest& r) {
    return r.scheme();
  }
};
template <>
struct Op<v1::GetCertificateRequest> : NoScheme {
  using Response = v1::GetCertificateResponse;
  static constexpr v1::Operation kKind = v1::GET_CERTIFICATE;
  static constexpr auto kRun = &Operations::GetCertificate;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestGetCertificate;
};
template <>
struct Op<v1::ListKeysRequest> : NoScheme {
  using Response = v1::ListKeysResponse;
  static constexpr v1::Operation kKind = v1::LIST_KEYS;
  static constexpr auto kRun = &Operations::ListKeys;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestListKeys;
};

// Audits and counts one finished operation. `response` is null unless it succeeded.
template <typename Request>
void RecordOutcome(KeyServiceAsync* service, const std::string& identity,
                   const Request& request, absl::Time arrived,
                   const absl::Status& outcome,
                   const typename Op<Request>::Response* response, bool pipeline) {
  AuditRecord record;
  record.time = arrived;
  record.identity = identity;
  record.operation = std::string(OperationName(Op<Request>::kKind));
  Describe(request, &record);
  if (response != nullptr) DescribeResult(*response, &record);
  record.pipeline = pipeline;
  record.outcome = outcome;
  record.latency = absl::Now() - arrived;
  service->Record(record, Op<Request>::kKind, Op<Request>::Scheme(request));
}

// Runs one operation on a worker: DEADLINE_EXCEEDED without touching the HSM when the
// deadline passed while it queued. Audited and counted here.
template <typename Request>
absl::StatusOr<typename Op<Request>::Response> Perform(
    KeyServiceAsync* service, const Caller& caller, const Request& request,
    absl::Time arrived, absl::Time deadline, bool expired, bool pipeline) {
  absl::StatusOr<typename Op<Request>::Response> result =
      expired ? absl::DeadlineExceededError("deadline passed while queued for the HSM")
              : (service->operations()->*Op<Request>::kRun)(caller, request, deadline);
  RecordOutcome(service, caller.identity, request, arrived, result.status(),
                result.ok() ? &*result : nullptr, pipeline);
  return result;
}

absl::Time DeadlineOf(const grpc::ServerContext& context) {
  auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// A completion-queue tag: the call it belongs to moves on when its event arrives.
class Call {
 public:
  virtual ~Call() = default;
  virtual void Proceed(bool ok) = 0;
};

// One unary call, from "waiting for a request" to "reply sent". Created waiting; when a
// request arrives it creates its successor (so the method keeps accepting calls) and
// queues its work; the worker replies; the reply's completion deletes it.
template <typename Request>
class UnaryCall final : public Call {
 public:
  using Response = typename Op<Request>::Response;

  static void Listen(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue) {
    new UnaryCall(service, queue);
  }

  void Proceed(bool ok) override {
    if (replied_ || !ok) {  // Reply sent, or the server is shutting down.
      if (replied_) service_->active_calls().fetch_sub(1, std::memory_order_relaxed);
      delete this;
      return;
    }
    service_->active_calls().fetch_add(1, std::memory_order_relaxed);
    Listen(service_, queue_);
    const absl::Time arrived = absl::Now();
    absl::StatusOr<Caller> caller =
        service_->identities().Get(context_, service_->options().allow_plaintext);
    if (!caller.ok()) {
      RecordOutcome(service_, "", request_, arrived, caller.status(), nullptr, false);
      Reply(caller.status());
      return;
    }
    const absl::Time deadline = DeadlineOf(context_);
    absl::Status queued = service_->pool()->Submit(
        deadline, [this, arrived, deadline, caller = *caller](bool expired) {
          absl::StatusOr<Response> result =
              Perform(service_, caller, request_, arrived, deadline, expired, false);
          if (!result.ok()) {
            Reply(result.status());
            return;
          }
          response_ = *std::move(result);
          replied_ = true;
          responder_.Finish(response_, grpc::Status::OK, this);
        });
    if (!queued.ok()) {
      RecordOutcome(service_, caller->identity, request_, arrived, queued, nullptr,
                    false);
      Reply(queued);
    }
  }

 private:
  UnaryCall(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue)
      : service_(service), queue_(queue), responder_(&context_) {
    (service_->service().*Op<Request>::kRequest)(&context_, &request_, &responder_,
                                                 queue_, queue_, this);
  }

  void Reply(const absl::Status& status) {
    replied_ = true;
    responder_.FinishWithError(ToGrpcStatus(status), this);
  }

  KeyServiceAsync* const service_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool replied_ = false;
};

}  // namespace

// One Pipeline stream. gRPC allows one outstanding read and one outstanding write per
// stream, so: a read is outstanding while fewer than max_in_flight items are unanswered
// (the flow control the proto promises); each item runs on the worker pool like a unary
// call; finished items queue for the single writer; the stream ends with OK once the
// client half-closed and every item is answered. It deletes itself once gRPC holds none
// of its tags and no worker holds an item. All state is under mu_.
class PipelineStream {
 public:
  static void Listen(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue) {
    new PipelineStream(service, queue);
  }

  // Server shutdown: stop reading, answer what was taken, end with UNAVAILABLE.
  void Drain() {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    MaybeFinishLocked();
  }

 private:
  enum class Event { kArrived, kRead, kWrite, kFinish };
  struct Tag final : Call {
    Tag(PipelineStream* stream, Event event) : stream(stream), event(event) {}
    void Proceed(bool ok) override { stream->On(event, ok); }
    PipelineStream* const stream;
    const Event event;
  };

  PipelineStream(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue)
      : service_(service),
        queue_(queue),
        max_in_flight_(service->options().stream_max_in_flight),
        stream_(&context_) {
    service_->service().RequestPipeline(&context_, &stream_, queue_, queue_,
                                        &arrived_tag_);
  }

  ~PipelineStream() {
    if (registered_) service_->RemoveStream(this);
  }

  void On(Event event, bool ok) {
    if (event == Event::kArrived) {
      OnArrived(ok);
      return;
    }
    bool done;
    {
      absl::MutexLock lock(&mu_);
      switch (event) {
        case Event::kRead:
          reading_ = false;
          OnReadLocked(ok);
          break;
        case Event::kWrite:
          OnWriteLocked(ok);
          break;
        case Event::kFinish:
          finished_ = true;
          break;
        case Event::kArrived:
          break;
      }
      done = DoneLocked();
    }
    if (done) delete this;
  }

  void OnArrived(bool ok) {
    if (!ok) {  // The server is shutting down; this stream never started.
      delete this;
      return;
    }
    Listen(service_, queue_);
    absl::StatusOr<Caller> caller =
        service_->identities().Get(context_, service_->options().allow_plaintext);
    // Registered outside mu_: Drain takes the registry lock, then ours.
    registered_ = caller.ok() && service_->AddStream(this);
    absl::MutexLock lock(&mu_);
    if (!caller.ok()) {
      end_status_ = caller.status();
      failed_ = true;
    } else {
      caller_ = *std::move(caller);
      deadline_ = DeadlineOf(context_);
      if (!registered_) draining_ = true;
    }
    if (failed_ || draining_) {
      StartFinishLocked();
      return;
    }
    StartReadLocked();
  }

  void StartReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reading_ = true;
    stream_.Read(&incoming_, &read_tag_);
  }

  bool MayReadLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !reading_ && !half_closed_ && !draining_ && !failed_ && !broken_ &&
           !finishing_ && outstanding_ < max_in_flight_;
  }

  void OnReadLocked(bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!ok) {  // Half-close (or the stream is gone).
      half_closed_ = true;
      MaybeFinishLocked();
      return;
    }
    if (failed_ || broken_ || finishing_) return;
    if (!ids_.insert(incoming_.id()).second) {
      // Replies could no longer be matched to items: the whole stream fails.
      failed_ = true;
      end_status_ = absl::InvalidArgumentError(absl::StrCat(
          "id ", incoming_.id(),
          " is already in flight on this stream; ids must be unique among unanswered "
          "items"));
      outstanding_ -= static_cast<int>(to_write_.size());
      to_write_.clear();
      MaybeFinishLocked();
      return;
    }
    ++outstanding_;
    ++running_;
    service_->stream_items().fetch_add(1, std::memory_order_relaxed);
    DispatchLocked(std::make_shared<v1::PipelineRequest>(std::move(incoming_)));
    incoming_.Clear();
    if (MayReadLocked()) StartReadLocked();
  }

  void DispatchLocked(const std::shared_ptr<const v1::PipelineRequest>& item)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    switch (item->op_case()) {
      case v1::PipelineRequest::kSign:
        return SubmitLocked(item, item->sign(), &v1::PipelineResponse::mutable_sign);
      case v1::PipelineRequest::kDecryptPremaster:
        return SubmitLocked(item, item->decrypt_premaster(),
                            &v1::PipelineResponse::mutable_decrypt_premaster);
      case v1::PipelineRequest::kDeriveMasterSecret:
        return SubmitLocked(item, item->derive_master_secret(),
                            &v1::PipelineResponse::mutable_derive_master_secret);
      case v1::PipelineRequest::kVerifyClient:
        return SubmitLocked(item, item->verify_client(),
                            &v1::PipelineResponse::mutable_verify_client);
      case v1::PipelineRequest::kGetCertificate:
        return SubmitLocked(item, item->get_certificate(),
                            &v1::PipelineResponse::mutable_get_certificate);
      case v1::PipelineRequest::OP_NOT_SET:
        break;
    }
    CompleteLocked(ErrorResponse(
        item->id(), absl::InvalidArgumentError(
                        "op: set one of sign, decrypt_premaster, derive_master_secret, "
                        "verify_client, get_certificate")));
  }

  template <typename Request, typename Response>
  void SubmitLocked(const std::shared_ptr<const v1::PipelineRequest>& item,
                    const Request& request, Response* (v1::PipelineResponse::*field)())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time arrived = absl::Now();
    const Request* const request_ptr = &request;  // Owned by `item`.
    absl::Status queued = service_->pool()->Submit(
        deadline_, [this, item, request_ptr, field, arrived](bool expired) {
          absl::StatusOr<Response> result =
              Perform(service_, caller_, *request_ptr, arrived, deadline_, expired, true);
          v1::PipelineResponse response =
              result.ok() ? v1::PipelineResponse()
                          : ErrorResponse(item->id(), result.status());
          if (result.ok()) {
            response.set_id(item->id());
            response.mutable_status();
            *(response.*field)() = *std::move(result);
          }
          Complete(std::move(response));
        });
    if (!queued.ok()) {
      RecordOutcome(service_, caller_.identity, request, arrived, queued, nullptr, true);
      CompleteLocked(ErrorResponse(item->id(), queued));
    }
  }

  static v1::PipelineResponse ErrorResponse(uint64_t id, const absl::Status& status) {
    v1::PipelineResponse response;
    response.set_id(id);
    grpc::Status wire = ToGrpcStatus(status);
    response.mutable_status()->set_code(wire.error_code());
    response.mutable_status()->set_message(wire.error_message());
    return response;
  }

  // From a worker: an item is answered.
  void Complete(v1::PipelineResponse response) {
    bool done;
    {
      absl::MutexLock lock(&mu_);
      CompleteLocked(std::move(response));
      done = DoneLocked();
    }
    if (done) delete this;
  }

  void CompleteLocked(v1::PipelineResponse response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    --running_;
    ids_.erase(response.id());
    service_->stream_items().fetch_sub(1, std::memory_order_relaxed);
    if (failed_ || broken_ || finishing_) {
      --outstanding_;  // Nobody will read it.
      return;
    }
    to_write_.push_back(std::move(response));
    if (!writing_) StartWriteLocked();
  }

  void StartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    current_ = std::move(to_write_.front());
    to_write_.pop_front();
    // More answers are waiting: let gRPC hold this one and send them together (one TLS
    // record and one syscall for several). The last write of a burst goes out at once.
    grpc::WriteOptions options;
    if (!to_write_.empty()) options.set_buffer_hint();
    stream_.Write(current_, options, &write_tag_);
  }

  void OnWriteLocked(bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = false;
    --outstanding_;
    if (!ok) {  // The client is gone: nothing more can be delivered.
      broken_ = true;
      outstanding_ -= static_cast<int>(to_write_.size());
      to_write_.clear();
    } else if (!to_write_.empty() && !failed_) {
      StartWriteLocked();
    }
    if (MayReadLocked()) StartReadLocked();
    MaybeFinishLocked();
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finishing_ || writing_) return;
    if (failed_ || broken_ || ((half_closed_ || draining_) && outstanding_ == 0)) {
      StartFinishLocked();
    }
  }

  void StartFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    finishing_ = true;
    absl::Status status = end_status_;
    if (status.ok() && draining_ && !half_closed_) {
      status = absl::UnavailableError(
          "offkeyd is shutting down; the items answered are done, send any others to "
          "another replica");
    }
    stream_.Finish(ToGrpcStatus(status), &finish_tag_);
  }

  // Whether the caller must now delete the stream: nothing can touch it again. Decided
  // in the same critical section as the caller's last change, since another thread may
  // delete it the moment the lock is released; exactly one caller gets true.
  bool DoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (deleting_ || !finished_ || reading_ || writing_ || running_ != 0) return false;
    deleting_ = true;
    return true;
  }

  KeyServiceAsync* const service_;
  grpc::ServerCompletionQueue* const queue_;
  const int max_in_flight_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<v1::PipelineResponse, v1::PipelineRequest> stream_;
  Tag arrived_tag_{this, Event::kArrived};
  Tag read_tag_{this, Event::kRead};
  Tag write_tag_{this, Event::kWrite};
  Tag finish_tag_{this, Event::kFinish};
  bool registered_ = false;  // Set once, on arrival, before any other thread sees it.
  Caller caller_;            // Set on arrival, then read-only.
  absl::Time deadline_;      // Likewise.

  absl::Mutex mu_;
  v1::PipelineRequest incoming_;                       // The outstanding read's buffer.
  v1::PipelineResponse current_ ABSL_GUARDED_BY(mu_);  // The outstanding write's.
  std::deque<v1::PipelineResponse> to_write_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> ids_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // Read, not yet written or dropped.
  int running_ ABSL_GUARDED_BY(mu_) = 0;      // Submitted, not yet completed.
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;  // Ends with end_status_.
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // A write failed: the client is gone.
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool deleting_ ABSL_GUARDED_BY(mu_) = false;
};

KeyServiceAsync::KeyServiceAsync(Operations* operations, WorkerPool* pool,
                                 AuditLog* audit, metrics::Metrics* metrics,
                                 Options options)
    : operations_(operations),
      pool_(pool),
      audit_(audit),
      metrics_(metrics),
      options_(options) {}

KeyServiceAsync::~KeyServiceAsync() { Stop(); }

void KeyServiceAsync::Record(const AuditRecord& record, v1::Operation kind,
                             v1::SignatureScheme scheme) {
  if (audit_ != nullptr) audit_->Write(record);
  if (metrics_ != nullptr) {
    metrics_->RecordOperation(kind, scheme, record.outcome.code(), record.latency);
  }
}

bool KeyServiceAsync::AddStream(PipelineStream* stream) {
  absl::MutexLock lock(&streams_mu_);
  if (draining_) return false;
  streams_.insert(stream);
  open_streams_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void KeyServiceAsync::RemoveStream(PipelineStream* stream) {
  absl::MutexLock lock(&streams_mu_);
  streams_.erase(stream);
  open_streams_.fetch_sub(1, std::memory_order_relaxed);
}

void KeyServiceAsync::Drain() {
  absl::MutexLock lock(&streams_mu_);
  draining_ = true;
  for (PipelineStream* stream : streams_) stream->Drain();
}

void KeyServiceAsync::Register(grpc::ServerBuilder& builder, int pollers) {
  builder.RegisterService(&service_);
  for (int i = 0; i < pollers; ++i) queues_.push_back(builder.AddCompletionQueue());
}

void KeyServiceAsync::Start() {
  for (auto& queue : queues_) {
    grpc::ServerCompletionQueue* cq = queue.get();
    // A few outstanding requests per method and queue, so bursts are matched at once.
    for (int i = 0; i < 4; ++i) {
      UnaryCall<v1::SignRequest>::Listen(this, cq);
      UnaryCall<v1::DecryptPremasterRequest>::Listen(this, cq);
      UnaryCall<v1::DeriveMasterSecretRequest>::Listen(this, cq);
    }
    UnaryCall<v1::VerifyClientRequest>::Listen(this, cq);
    UnaryCall<v1::GetCertificateRequest>::Listen(this, cq);
    UnaryCall<v1::ListKeysRequest>::Listen(this, cq);
    PipelineStream::Listen(this, cq);
    pollers_.emplace_back([cq] {
      pthread_setname_np(pthread_self(), "offkey-rpc");  // Named for top and perf.
      void* tag = nullptr;
      bool ok = false;
      while (cq->Next(&tag, &ok)) static_cast<Call*>(tag)->Proceed(ok);
    });
  }
}

void KeyServiceAsync::Stop() {
  for (auto& queue : queues_) queue->Shutdown();
  for (std::thread& poller : pollers_) poller.join();
  pollers_.clear();
  queues_.clear();
}

}  // namespace offkey::service
