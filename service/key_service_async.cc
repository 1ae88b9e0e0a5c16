#include "service/key_service_async.h"

#include <pthread.h>

#include <utility>

#include "service/call_support.h"
#include "service/proto_convert.h"
#include "service/secret_fields.h"

namespace offkey::service {
namespace {

namespace v1 = offkey::v1;

using call_support::Call;
using call_support::DeadlineOf;
using call_support::Op;
using call_support::Perform;
using call_support::RecordOutcome;

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
    const RpcEnvironment& env = service_->env();
    absl::StatusOr<Caller> caller = env.identities->Get(context_, env.allow_plaintext);
    if (!caller.ok()) {
      // An error either way; it is returned whether or not its line was written.
      RecordOutcome(env, "", request_, arrived, caller.status(), nullptr, false)
          .IgnoreError();
      Reply(caller.status());
      return;
    }
    const absl::Time deadline = DeadlineOf(context_);
    absl::Status queued = call_support::CheckRequestSize(request_);
    if (queued.ok()) {
      // On this thread when a worker is idle and the pool allows it: `this` is answered
      // (and may be deleted by this thread's next event) when it returns.
      queued = Op<Request>::Pool(env)->SubmitOrRunHere(
          caller->identity, deadline,
          [this, arrived, deadline, caller = *caller](bool expired) {
            result_ = Perform(service_->env(), caller, request_, arrived, deadline,
                              expired, false);
          },
          // The reply leaves once the caller's slot in the pool is free again.
          [this] {
            if (!result_.ok()) {
              Reply(result_.status());
              return;
            }
            replied_ = true;
            responder_.Finish(*result_, grpc::Status::OK, this);
          });
    }
    if (!queued.ok()) {
      RecordOutcome(env, caller->identity, request_, arrived, queued, nullptr, false)
          .IgnoreError();  // An error either way.
      Reply(queued);
    }
  }

 private:
  UnaryCall(KeyServiceAsync* service, grpc::ServerCompletionQueue* queue)
      : service_(service), queue_(queue), responder_(&context_) {
    (service_->env().service->*Op<Request>::kRequest)(&context_, &request_, &responder_,
                                                      queue_, queue_, this);
  }
  // Runs once the reply's completion arrived: gRPC serialized the response when Finish
  // was called and holds no reference to it now, so a premaster or master secret in it
  // is wiped rather than freed as is.
  ~UnaryCall() override {
    if (result_.ok()) WipeSecrets(&*result_);
    WipeSecrets(&request_);  // Session state to seal.
  }

  void Reply(const absl::Status& status) {
    replied_ = true;
    responder_.FinishWithError(ToGrpcStatus(status), this);
  }

  KeyServiceAsync* const service_;
  grpc::ServerCompletionQueue* const queue_;
  grpc::ServerContext context_;
  Request request_;
  absl::StatusOr<Response> result_;  // Set by the worker before the reply.
  grpc::ServerAsyncResponseWriter<Response> responder_;
  bool replied_ = false;
};

}  // namespace

KeyServiceAsync::KeyServiceAsync(Operations* operations, WorkerPool* pool,
                                 AuditLog* audit, metrics::Metrics* metrics,
                                 Options options)
    : env_{operations,
           pool,
           options.verify_pool != nullptr ? options.verify_pool : pool,
           audit,
           metrics,
           &identities_,
           &service_,
           options.allow_plaintext},
      pipeline_(&env_, options.stream_max_in_flight) {}

KeyServiceAsync::~KeyServiceAsync() { Stop(); }

void KeyServiceAsync::Drain() { pipeline_.Drain(); }

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
    UnaryCall<v1::GetTicketKeysRequest>::Listen(this, cq);
    UnaryCall<v1::SealTicketRequest>::Listen(this, cq);
    UnaryCall<v1::UnsealTicketRequest>::Listen(this, cq);
    pipeline_.Listen(cq);
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
