// The KeyService gRPC handlers: thin. Each finds the caller, hands the work to the
// worker pool and answers when it is done; no HSM call runs on a gRPC thread.
#ifndef OFFKEY_SERVICE_KEY_SERVICE_HANDLER_H_
#define OFFKEY_SERVICE_KEY_SERVICE_HANDLER_H_

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/operations.h"
#include "service/worker_pool.h"

namespace offkey::service {

// The caller's identity from the peer certificate of `context` (SPIFFE URI SAN, else DNS
// SAN, else CN). UNAUTHENTICATED without a certificate (plaintext development mode
// calls are "insecure:anonymous" when `allow_plaintext`).
absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase& context,
                                bool allow_plaintext);

// Remembers the identity of recently seen client certificates: parsing a certificate
// costs far more than the HSM operation for EC keys, and a terminator presents the same
// certificate on every call. Bounded; thread-safe.
class IdentityCache {
 public:
  absl::StatusOr<Caller> Get(const grpc::ServerContextBase& context,
                             bool allow_plaintext);

 private:
  static constexpr size_t kMaxEntries = 4096;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> identities_ ABSL_GUARDED_BY(mu_);
};

class KeyServiceHandler final : public offkey::v1::KeyService::CallbackService {
 public:
  KeyServiceHandler(Operations* operations, WorkerPool* pool, bool allow_plaintext)
      : operations_(operations), pool_(pool), allow_plaintext_(allow_plaintext) {}

  grpc::ServerUnaryReactor* Sign(grpc::CallbackServerContext* context,
                                 const offkey::v1::SignRequest* request,
                                 offkey::v1::SignResponse* response) override;
  grpc::ServerUnaryReactor* DecryptPremaster(
      grpc::CallbackServerContext* context,
      const offkey::v1::DecryptPremasterRequest* request,
      offkey::v1::DecryptPremasterResponse* response) override;
  grpc::ServerUnaryReactor* DeriveMasterSecret(
      grpc::CallbackServerContext* context,
      const offkey::v1::DeriveMasterSecretRequest* request,
      offkey::v1::DeriveMasterSecretResponse* response) override;
  grpc::ServerUnaryReactor* VerifyClient(
      grpc::CallbackServerContext* context,
      const offkey::v1::VerifyClientRequest* request,
      offkey::v1::VerifyClientResponse* response) override;
  grpc::ServerUnaryReactor* GetCertificate(
      grpc::CallbackServerContext* context,
      const offkey::v1::GetCertificateRequest* request,
      offkey::v1::GetCertificateResponse* response) override;
  grpc::ServerUnaryReactor* ListKeys(grpc::CallbackServerContext* context,
                                     const offkey::v1::ListKeysRequest* request,
                                     offkey::v1::ListKeysResponse* response) override;

 private:
  // Runs `op` for the call on a worker and finishes the call with its result.
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Dispatch(grpc::CallbackServerContext* context,
                                     const Request* request, Response* response,
                                     absl::StatusOr<Response> (Operations::*op)(
                                         const Caller&, const Request&, absl::Time));

  Operations* const operations_;
  WorkerPool* const pool_;
  const bool allow_plaintext_;
  IdentityCache identities_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_KEY_SERVICE_HANDLER_H_
