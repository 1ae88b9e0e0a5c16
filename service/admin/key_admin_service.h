// The KeyAdmin RPC surface: admin role check, audit, and the status mapping around
// KeyAdmin. Served on offkeyd's admin listener (sync gRPC: admin calls are rare, and
// their HSM work never competes with the data plane's worker pool).
#ifndef OFFKEY_SERVICE_ADMIN_KEY_ADMIN_SERVICE_H_
#define OFFKEY_SERVICE_ADMIN_KEY_ADMIN_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "offkey/v1/key_admin.grpc.pb.h"
#include "service/admin/key_admin.h"
#include "service/audit.h"
#include "service/config/policy.h"

namespace offkey::service::admin {

class KeyAdminService final : public v1::KeyAdmin::Service {
 public:
  // `policy` says, per call, who holds the admin role (it follows config reloads).
  // `audit` may be null. Everything is borrowed.
  KeyAdminService(KeyAdmin* admin,
                  std::function<std::shared_ptr<const config::Policy>()> policy,
                  AuditLog* audit, bool allow_plaintext);

  grpc::Status CreateKey(grpc::ServerContext* context,
                         const v1::CreateKeyRequest* request,
                         v1::CreateKeyResponse* response) override;
  grpc::Status ImportKey(grpc::ServerContext* context,
                         const v1::ImportKeyRequest* request,
                         v1::ImportKeyResponse* response) override;
  grpc::Status ListKeys(grpc::ServerContext* context,
                        const v1::AdminListKeysRequest* request,
                        v1::AdminListKeysResponse* response) override;
  grpc::Status GetKey(grpc::ServerContext* context, const v1::GetKeyRequest* request,
                      v1::GetKeyResponse* response) override;
  grpc::Status UpdateKey(grpc::ServerContext* context,
                         const v1::UpdateKeyRequest* request,
                         v1::UpdateKeyResponse* response) override;
  grpc::Status EnableKey(grpc::ServerContext* context,
                         const v1::EnableKeyRequest* request,
                         v1::EnableKeyResponse* response) override;
  grpc::Status DisableKey(grpc::ServerContext* context,
                          const v1::DisableKeyRequest* request,
                          v1::DisableKeyResponse* response) override;
  grpc::Status ScheduleKeyDestruction(
      grpc::ServerContext* context, const v1::ScheduleKeyDestructionRequest* request,
      v1::ScheduleKeyDestructionResponse* response) override;
  grpc::Status CancelKeyDestruction(grpc::ServerContext* context,
                                    const v1::CancelKeyDestructionRequest* request,
                                    v1::CancelKeyDestructionResponse* response) override;
  grpc::Status DestroyKey(grpc::ServerContext* context,
                          const v1::DestroyKeyRequest* request,
                          v1::DestroyKeyResponse* response) override;
  grpc::Status CreateCsr(grpc::ServerContext* context,
                         const v1::CreateCsrRequest* request,
                         v1::CreateCsrResponse* response) override;
  grpc::Status AttachCertificate(grpc::ServerContext* context,
                                 const v1::AttachCertificateRequest* request,
                                 v1::AttachCertificateResponse* response) override;
  grpc::Status CreateTicketKeySet(grpc::ServerContext* context,
                                  const v1::CreateTicketKeySetRequest* request,
                                  v1::CreateTicketKeySetResponse* response) override;
  grpc::Status ListTicketKeySets(grpc::ServerContext* context,
                                 const v1::ListTicketKeySetsRequest* request,
                                 v1::ListTicketKeySetsResponse* response) override;
  grpc::Status GetTicketKeySet(grpc::ServerContext* context,
                               const v1::GetTicketKeySetRequest* request,
                               v1::GetTicketKeySetResponse* response) override;
  grpc::Status DestroyTicketKeySet(grpc::ServerContext* context,
                                   const v1::DestroyTicketKeySetRequest* request,
                                   v1::DestroyTicketKeySetResponse* response) override;

 private:
  // Checks the caller's role and that the request (`request_bytes` serialized) is
  // within `max_request_bytes`, runs `call`, audits the outcome as `operation` on what
  // `subject` names (its key or ticket_key_set).
  template <typename Response>
  grpc::Status Run(grpc::ServerContext* context, const char* operation,
                   AuditRecord subject, size_t request_bytes, size_t max_request_bytes,
                   const std::function<absl::StatusOr<Response>()>& call,
                   Response* response);

  KeyAdmin* const admin_;
  const std::function<std::shared_ptr<const config::Policy>()> policy_;
  AuditLog* const audit_;
  const bool allow_plaintext_;
};

}  // namespace offkey::service::admin

#endif  // OFFKEY_SERVICE_ADMIN_KEY_ADMIN_SERVICE_H_
