#include "service/key_service_handler.h"

#include <chrono>
#include <utility>

#include "service/config/identity.h"
#include "service/proto_convert.h"

namespace offkey::service {
namespace {

absl::Time DeadlineOf(const grpc::CallbackServerContext& context) {
  auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

}  // namespace

absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase& context,
                                bool allow_plaintext) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  std::vector<grpc::string_ref> pem;
  if (auth != nullptr) pem = auth->FindPropertyValues("x509_pem_cert");
  if (pem.empty()) {
    if (allow_plaintext) return Caller{"insecure:anonymous"};
    return absl::UnauthenticatedError(
        "no client certificate: offkeyd requires mutual TLS; present a certificate "
        "issued by the CA in the server's client_ca_file");
  }
  absl::StatusOr<std::string> identity =
      config::IdentityFromCertificatePem(absl::string_view(pem[0].data(), pem[0].size()));
  if (!identity.ok()) return absl::UnauthenticatedError(identity.status().message());
  return Caller{*std::move(identity)};
}

absl::StatusOr<Caller> IdentityCache::Get(const grpc::ServerContextBase& context,
                                          bool allow_plaintext) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  std::vector<grpc::string_ref> pem;
  if (auth != nullptr) pem = auth->FindPropertyValues("x509_pem_cert");
  if (pem.empty()) return CallerOf(context, allow_plaintext);
  std::string key(pem[0].data(), pem[0].size());
  {
    absl::MutexLock lock(&mu_);
    auto it = identities_.find(key);
    if (it != identities_.end()) return Caller{it->second};
  }
  absl::StatusOr<Caller> caller = CallerOf(context, allow_plaintext);
  if (caller.ok()) {
    absl::MutexLock lock(&mu_);
    if (identities_.size() >= kMaxEntries) identities_.clear();
    identities_.emplace(std::move(key), caller->identity);
  }
  return caller;
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* KeyServiceHandler::Dispatch(
    grpc::CallbackServerContext* context, const Request* request, Response* response,
    absl::StatusOr<Response> (Operations::*op)(const Caller&, const Request&,
                                               absl::Time)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Caller> caller = identities_.Get(*context, allow_plaintext_);
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  const absl::Time deadline = DeadlineOf(*context);
  absl::Status queued =
      pool_->Submit(deadline, [this, reactor, request, response, op, deadline,
                               caller = *std::move(caller)](bool expired) {
        if (expired) {
          // Dropped before it reached the HSM: the client has given up on it.
          reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                       "deadline passed while queued for the HSM"));
          return;
        }
        absl::StatusOr<Response> result = (operations_->*op)(caller, *request, deadline);
        grpc::Status status = ToGrpcStatus(result.status());
        if (result.ok()) *response = *std::move(result);
        reactor->Finish(status);
      });
  if (!queued.ok()) reactor->Finish(ToGrpcStatus(queued));
  return reactor;
}

grpc::ServerUnaryReactor* KeyServiceHandler::Sign(grpc::CallbackServerContext* context,
                                                  const offkey::v1::SignRequest* request,
                                                  offkey::v1::SignResponse* response) {
  return Dispatch(context, request, response, &Operations::Sign);
}

grpc::ServerUnaryReactor* KeyServiceHandler::DecryptPremaster(
    grpc::CallbackServerContext* context,
    const offkey::v1::DecryptPremasterRequest* request,
    offkey::v1::DecryptPremasterResponse* response) {
  return Dispatch(context, request, response, &Operations::DecryptPremaster);
}

grpc::ServerUnaryReactor* KeyServiceHandler::DeriveMasterSecret(
    grpc::CallbackServerContext* context,
    const offkey::v1::DeriveMasterSecretRequest* request,
    offkey::v1::DeriveMasterSecretResponse* response) {
  return Dispatch(context, request, response, &Operations::DeriveMasterSecret);
}

grpc::ServerUnaryReactor* KeyServiceHandler::VerifyClient(
    grpc::CallbackServerContext* context, const offkey::v1::VerifyClientRequest*,
    offkey::v1::VerifyClientResponse*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                               "VerifyClient is not implemented in this offkeyd yet"));
  return reactor;
}

grpc::ServerUnaryReactor* KeyServiceHandler::GetCertificate(
    grpc::CallbackServerContext* context,
    const offkey::v1::GetCertificateRequest* request,
    offkey::v1::GetCertificateResponse* response) {
  return Dispatch(context, request, response, &Operations::GetCertificate);
}

grpc::ServerUnaryReactor* KeyServiceHandler::ListKeys(
    grpc::CallbackServerContext* context, const offkey::v1::ListKeysRequest* request,
    offkey::v1::ListKeysResponse* response) {
  return Dispatch(context, request, response, &Operations::ListKeys);
}

}  // namespace offkey::service
