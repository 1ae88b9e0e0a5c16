#include "service/caller.h"

#include <utility>
#include <vector>

#include "base/identity.h"

namespace offkey::service {
namespace {

// The peer certificate as gRPC's TLS stack exposes it (empty over plaintext).
std::string PeerCertificatePem(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr) return "";
  std::vector<grpc::string_ref> pem = auth->FindPropertyValues("x509_pem_cert");
  return pem.empty() ? "" : std::string(pem[0].data(), pem[0].size());
}

absl::StatusOr<Caller> CallerOfPem(const std::string& pem, bool allow_plaintext) {
  if (pem.empty()) {
    if (allow_plaintext) return Caller{std::string(kPlaintextIdentity)};
    return absl::UnauthenticatedError(
        "no client certificate: offkeyd requires mutual TLS; present a certificate "
        "issued by the CA in the server's client_ca_file");
  }
  absl::StatusOr<std::string> identity = IdentityFromCertificatePem(pem);
  if (!identity.ok()) return absl::UnauthenticatedError(identity.status().message());
  return Caller{*std::move(identity)};
}

}  // namespace

absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase& context,
                                bool allow_plaintext) {
  return CallerOfPem(PeerCertificatePem(context), allow_plaintext);
}

absl::StatusOr<Caller> IdentityCache::Get(const grpc::ServerContextBase& context,
                                          bool allow_plaintext) {
  std::string pem = PeerCertificatePem(context);
  if (pem.empty()) return CallerOfPem(pem, allow_plaintext);
  {
    offkey::MutexLock lock(&mu_);
    auto it = identities_.find(pem);
    if (it != identities_.end()) return Caller{it->second};
  }
  absl::StatusOr<Caller> caller = CallerOfPem(pem, allow_plaintext);
  if (caller.ok()) {
    offkey::MutexLock lock(&mu_);
    if (identities_.size() >= kMaxEntries) identities_.clear();
    identities_.emplace(std::move(pem), caller->identity);
  }
  return caller;
}

}  // namespace offkey::service
