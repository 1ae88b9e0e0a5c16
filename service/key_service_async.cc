#include "service/key_service_async.h"

#include <chrono>
#include <utility>

#include "service/proto_convert.h"

namespace offkey::service {
namespace {

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
                     RequestMethod request, Operation operation) {
    new UnaryCall(service, queue, request, operation);
  }

  void Proceed(bool ok) override {
    if (replied_ || !ok) {  // Reply sent, or the server is shutting down.
      delete this;
      return;
    }
    Listen(service_, queue_, request_method_, operation_);
    absl::StatusOr<Caller> caller =
        service_->identities().Get(context_, service_->allow_plaintext());
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
          replied_ = true;
          responder_.Finish(response_, grpc::Status::OK, this);
        });
    if (!queued.ok()) Reply(queued);
  }

 private:
  UnaryCall(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue,
            RequestMethod request, Operation operation)
      : service_(service),
        queue_(queue),
        request_method_(request),
        operation_(operation),
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

  void Reply(const absl::Status& status) {
    replied_ = true;
    responder_.FinishWithError(ToGrpcStatus(status), this);
  }

  KeyServiceAsync* const service_;
  grpc::ServerCompletionQueue* const queue_;
  const RequestMethod request_method_;
  const Operation operation_;
  grpc::ServerContext context_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool replied_ = false;
};

template <typename Request, typename Response>
void Listen(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue,
            typename UnaryCall<Request, Response>::RequestMethod request,
            typename UnaryCall<Request, Response>::Operation operation) {
  UnaryCall<Request, Response>::Listen(service, queue, request, operation);
}

}  // namespace

KeyServiceAsync::KeyServiceAsync(Operations* operations, WorkerPool* pool,
                                 bool allow_plaintext)
    : operations_(operations), pool_(pool), allow_plaintext_(allow_plaintext) {}

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
          this, cq, &KeyServiceAsyncBase::RequestSign, &Operations::Sign);
      Listen<v1::DecryptPremasterRequest, v1::DecryptPremasterResponse>(
          this, cq, &KeyServiceAsyncBase::RequestDecryptPremaster,
          &Operations::DecryptPremaster);
      Listen<v1::DeriveMasterSecretRequest, v1::DeriveMasterSecretResponse>(
          this, cq, &KeyServiceAsyncBase::RequestDeriveMasterSecret,
          &Operations::DeriveMasterSecret);
    }
    Listen<v1::GetCertificateRequest, v1::GetCertificateResponse>(
        this, cq, &KeyServiceAsyncBase::RequestGetCertificate,
        &Operations::GetCertificate);
    Listen<v1::ListKeysRequest, v1::ListKeysResponse>(
        this, cq, &KeyServiceAsyncBase::RequestListKeys, &Operations::ListKeys);
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
