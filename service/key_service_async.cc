#include "service/key_service_async.h"

#include <chrono>
#include <utility>

#include "service/proto_convert.h"
#include "service/tls/schemes.h"

namespace offkey::service {
namespace {

// What the audit line says about each request: identifiers only.
void Describe(const offkey::v1::TlsContext& context, AuditRecord* record) {
  if (context.version() != offkey::v1::TLS_VERSION_UNSPECIFIED) {
    record->tls_version = offkey::v1::TlsVersion_Name(context.version());
  }
  record->sni = context.sni();
  record->handshake_id = context.handshake_id();
}
void Describe(const offkey::v1::SignRequest& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  record->scheme = tls::SchemeName(r.scheme());
  Describe(r.context(), record);
}
void Describe(const offkey::v1::DecryptPremasterRequest& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  Describe(r.context(), record);
}
void Describe(const offkey::v1::DeriveMasterSecretRequest& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  Describe(r.context(), record);
}
void Describe(const offkey::v1::GetCertificateRequest& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  Describe(r.context(), record);
}
void Describe(const offkey::v1::ListKeysRequest&, AuditRecord*) {}

// A completion-queue tag: the call it belongs to moves on when its event arrives.
class Call {
 public:
  virtual ~Call() = default;
  virtual void Proceed(bool ok) = 0;
};

// One unary call, from "waiting for a request" to "reply sent". Created waiting; when a
// request arrives it creates its successor (so the method keeps accepting calls) and
// queues its work; the worker replies; the reply's completion deletes it.
template <typename Request, typename Response>
class UnaryCall final : public Call {
 public:
  using RequestMethod = void (KeyServiceAsyncBase::*)(
      grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
      grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*);
  using Operation = absl::StatusOr<Response> (Operations::*)(const Caller&,
                                                             const Request&, absl::Time);

  static void Listen(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue,
                     RequestMethod request, Operation operation,
                     offkey::v1::Operation kind) {
    new UnaryCall(service, queue, request, operation, kind);
  }

  void Proceed(bool ok) override {
    if (replied_ || !ok) {  // Reply sent, or the server is shutting down.
      delete this;
      return;
    }
    Listen(service_, queue_, request_method_, operation_, kind_);
    arrived_ = absl::Now();
    absl::StatusOr<Caller> caller =
        service_->identities().Get(context_, service_->allow_plaintext());
    if (caller.ok()) identity_ = caller->identity;
    if (!caller.ok()) {
      Reply(caller.status());
      return;
    }
    const absl::Time deadline = Deadline();
    absl::Status queued = service_->pool()->Submit(
        deadline, [this, deadline, caller = *std::move(caller)](bool expired) {
          if (expired) {
            // Dropped before it reached the HSM: the client has given up on it.
            Reply(
                absl::DeadlineExceededError("deadline passed while queued for the HSM"));
            return;
          }
          absl::StatusOr<Response> result =
              (service_->operations()->*operation_)(caller, request_, deadline);
          if (!result.ok()) {
            Reply(result.status());
            return;
          }
          response_ = *std::move(result);
          Audit(absl::OkStatus());
          replied_ = true;
          responder_.Finish(response_, grpc::Status::OK, this);
        });
    if (!queued.ok()) Reply(queued);
  }

 private:
  UnaryCall(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue,
            RequestMethod request, Operation operation, offkey::v1::Operation kind)
      : service_(service),
        queue_(queue),
        request_method_(request),
        operation_(operation),
        kind_(kind),
        responder_(&context_) {
    (service_->service().*request_method_)(&context_, &request_, &responder_, queue_,
                                           queue_, this);
  }

  absl::Time Deadline() const {
    auto deadline = context_.deadline();
    if (deadline == std::chrono::system_clock::time_point::max()) {
      return absl::InfiniteFuture();
    }
    return absl::FromChrono(deadline);
  }

  void Audit(const absl::Status& outcome) {
    if (service_->audit() == nullptr) return;
    AuditRecord record;
    record.time = arrived_;
    record.identity = identity_;
    record.operation = std::string(OperationName(kind_));
    Describe(request_, &record);
    record.outcome = outcome;
    record.latency = absl::Now() - arrived_;
    service_->audit()->Write(record);
  }

  void Reply(const absl::Status& status) {
    Audit(status);
    replied_ = true;
    responder_.FinishWithError(ToGrpcStatus(status), this);
  }

  KeyServiceAsync* const service_;
  grpc::ServerCompletionQueue* const queue_;
  const RequestMethod request_method_;
  const Operation operation_;
  const offkey::v1::Operation kind_;
  absl::Time arrived_;
  std::string identity_;
  grpc::ServerContext context_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool replied_ = false;
};

template <typename Request, typename Response>
void Listen(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue,
            typename UnaryCall<Request, Response>::RequestMethod request,
            typename UnaryCall<Request, Response>::Operation operation,
            offkey::v1::Operation kind) {
  UnaryCall<Request, Response>::Listen(service, queue, request, operation, kind);
}

}  // namespace

KeyServiceAsync::KeyServiceAsync(Operations* operations, WorkerPool* pool,
                                 AuditLog* audit, bool allow_plaintext)
    : operations_(operations),
      pool_(pool),
      audit_(audit),
      allow_plaintext_(allow_plaintext) {}

KeyServiceAsync::~KeyServiceAsync() { Stop(); }

void KeyServiceAsync::Register(grpc::ServerBuilder& builder, int pollers) {
  builder.RegisterService(&service_);
  for (int i = 0; i < pollers; ++i) queues_.push_back(builder.AddCompletionQueue());
}

void KeyServiceAsync::Start() {
  namespace v1 = offkey::v1;
  for (auto& queue : queues_) {
    grpc::ServerCompletionQueue* cq = queue.get();
    // A few outstanding requests per method and queue, so bursts are matched at once.
    for (int i = 0; i < 4; ++i) {
      Listen<v1::SignRequest, v1::SignResponse>(
          this, cq, &KeyServiceAsyncBase::RequestSign, &Operations::Sign, v1::SIGN);
      Listen<v1::DecryptPremasterRequest, v1::DecryptPremasterResponse>(
          this, cq, &KeyServiceAsyncBase::RequestDecryptPremaster,
          &Operations::DecryptPremaster, v1::DECRYPT_PREMASTER);
      Listen<v1::DeriveMasterSecretRequest, v1::DeriveMasterSecretResponse>(
          this, cq, &KeyServiceAsyncBase::RequestDeriveMasterSecret,
          &Operations::DeriveMasterSecret, v1::DERIVE_MASTER_SECRET);
    }
    Listen<v1::GetCertificateRequest, v1::GetCertificateResponse>(
        this, cq, &KeyServiceAsyncBase::RequestGetCertificate,
        &Operations::GetCertificate, v1::GET_CERTIFICATE);
    Listen<v1::ListKeysRequest, v1::ListKeysResponse>(
        this, cq, &KeyServiceAsyncBase::RequestListKeys, &Operations::ListKeys,
        v1::LIST_KEYS);
    pollers_.emplace_back([cq] {
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
