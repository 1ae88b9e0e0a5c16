// Operations: the data-plane operations, independent of gRPC. The RPC handlers (and the
// pipelined stream) are thin wrappers that find the caller and call these on a worker.
#ifndef OFFKEY_SERVICE_OPERATIONS_H_
#define OFFKEY_SERVICE_OPERATIONS_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "hsm/key_store.h"
#include "offkey/v1/config.pb.h"
#include "offkey/v1/key_service.pb.h"
#include "service/clientverify/client_verifier.h"
#include "service/config/policy.h"
#include "service/key_catalog.h"
#include "service/metrics/metrics.h"
#include "service/operation_names.h"
#include "service/proto_convert.h"
#include "service/tickets/ticket_key_sets.h"
#include "service/tls/handshake_shape.h"

namespace offkey::service {

// Who is calling: the identity from the client certificate (base/identity.h: the SPIFFE
// ID, else "dns:" + DNS SAN, else "cn:" + CN).
struct Caller {
  std::string identity;
};

// Each operation validates its request (INVALID_ARGUMENT naming the field), authorizes
// the caller against the policy (PERMISSION_DENIED, identical for unknown and forbidden
// keys), checks the key's state (FAILED_PRECONDITION) and performs the HSM work through
// the KeyStore with `deadline`. Status codes are those documented in key_service.proto.
// Thread-safe; the policy can be swapped while calls run.
class Operations {
 public:
  // `metrics` (may be null) receives the time each operation spends in `store`.
  Operations(hsm::KeyStore* store, KeyCatalog* catalog,
             std::shared_ptr<const config::Policy> policy,
             metrics::Metrics* metrics = nullptr);

  void SetPolicy(std::shared_ptr<const config::Policy> policy);
  // The policy in force (it also says who holds the admin role).
  std::shared_ptr<const config::Policy> policy() const;
  // The trust bundles VerifyClient uses (initially none). Not null.
  void SetTrustStore(std::shared_ptr<const clientverify::TrustStore> trust);
  // Which handshake shapes tls-server keys sign beyond the defaults
  // (ServerConfig.handshake). Initially the defaults: ECDHE only.
  void SetHandshakeShapeOptions(const tls::HandshakeShapeOptions& options);

  absl::StatusOr<offkey::v1::SignResponse> Sign(const Caller& caller,
                                                const offkey::v1::SignRequest& request,
                                                absl::Time deadline);
  absl::StatusOr<offkey::v1::DecryptPremasterResponse> DecryptPremaster(
      const Caller& caller, const offkey::v1::DecryptPremasterRequest& request,
      absl::Time deadline);
  absl::StatusOr<offkey::v1::DeriveMasterSecretResponse> DeriveMasterSecret(
      const Caller& caller, const offkey::v1::DeriveMasterSecretRequest& request,
      absl::Time deadline);
  // Client verification failures are answers (OK with result != VERIFIED), not errors;
  // errors are bad input, an unknown bundle (NOT_FOUND, only after authorization, so
  // bundle names do not leak) and PERMISSION_DENIED without a VERIFY_CLIENT grant.
  absl::StatusOr<offkey::v1::VerifyClientResponse> VerifyClient(
      const Caller& caller, const offkey::v1::VerifyClientRequest& request,
      absl::Time deadline);
  absl::StatusOr<offkey::v1::GetCertificateResponse> GetCertificate(
      const Caller& caller, const offkey::v1::GetCertificateRequest& request,
      absl::Time deadline);
  absl::StatusOr<offkey::v1::ListKeysResponse> ListKeys(
      const Caller& caller, const offkey::v1::ListKeysRequest& request,
      absl::Time deadline);

  // Session tickets (key_service.proto). Each needs a grant of its operation naming the
  // ticket-key set; PERMISSION_DENIED otherwise and for a set that does not exist (one
  // message for both). INVALID_ARGUMENT for a missing or malformed set name,
  // RESOURCE_EXHAUSTED for a plaintext or sealed ticket over its limit. An unsealable
  // ticket is an answer (UnsealTicketResponse.result), not an error.
  absl::StatusOr<offkey::v1::GetTicketKeysResponse> GetTicketKeys(
      const Caller& caller, const offkey::v1::GetTicketKeysRequest& request,
      absl::Time deadline);
  absl::StatusOr<offkey::v1::SealTicketResponse> SealTicket(
      const Caller& caller, const offkey::v1::SealTicketRequest& request,
      absl::Time deadline);
  absl::StatusOr<offkey::v1::UnsealTicketResponse> UnsealTicket(
      const Caller& caller, const offkey::v1::UnsealTicketRequest& request,
      absl::Time deadline);

  // The ticket-key sets and their cached epoch material (KeyAdmin forgets a set it
  // destroyed here).
  tickets::TicketKeySets& ticket_key_sets() { return ticket_key_sets_; }

 private:
  // The key `ref` names, if `caller` may perform `op` on it and it is enabled.
  absl::StatusOr<std::shared_ptr<const KeyRecord>> Authorize(
      const Caller& caller, offkey::v1::Operation op, const offkey::v1::KeyRef& ref);
  // The ticket-key set `name`, if `caller` may perform the ticket operation `op` on it.
  // Store calls give up at `deadline`; their time is added to `*store_time`.
  absl::StatusOr<hsm::TicketKeySetInfo> AuthorizeTicketKeySet(const Caller& caller,
                                                              offkey::v1::Operation op,
                                                              const std::string& name,
                                                              absl::Time deadline,
                                                              absl::Duration* store_time);
  // Decrypts a TLS 1.2 premaster by the DecryptPremaster contract (always 48 bytes for
  // a ciphertext of at most k bytes below the modulus; shorter ones are left-padded).
  absl::StatusOr<SecretBytes> Premaster(const Caller& caller, offkey::v1::Operation op,
                                        const offkey::v1::KeyRef& ref,
                                        const offkey::v1::TlsContext& context,
                                        const std::string& ciphertext,
                                        uint32_t client_version, absl::Time deadline);

  hsm::KeyStore* const store_;
  KeyCatalog* const catalog_;
  metrics::Metrics* const metrics_;
  tickets::TicketKeySets ticket_key_sets_;
  mutable offkey::Mutex mu_;
  std::shared_ptr<const config::Policy> policy_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const clientverify::TrustStore> trust_ ABSL_GUARDED_BY(mu_);
  tls::HandshakeShapeOptions shape_options_ ABSL_GUARDED_BY(mu_);
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_OPERATIONS_H_
