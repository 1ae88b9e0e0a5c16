#include "service/admin/key_admin_service.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/caller.h"
#include "service/proto_convert.h"
#include "service/secret_fields.h"

namespace offkey::service::admin {

KeyAdminService::KeyAdminService(
    KeyAdmin* admin, std::function<std::shared_ptr<const config::Policy>()> policy,
    AuditLog* audit, bool allow_plaintext)
    : admin_(admin),
      policy_(std::move(policy)),
      audit_(audit),
      allow_plaintext_(allow_plaintext) {}

namespace {

// The largest request each admin RPC takes, serialized: the largest legitimate one with
// room (field limits in key_admin.proto). Most carry a name, a key reference and up to
// 64 labels; ImportKey a PKCS#8 key of at most 16 KiB besides; CreateCsr up to 100
// SANs; AttachCertificate a chain of at most 1 MiB of PEM.
constexpr size_t kMaxAdminRequestBytes = 64 * 1024;
template <typename Request>
constexpr size_t MaxRequestBytes(const Request&) {
  return kMaxAdminRequestBytes;
}
constexpr size_t MaxRequestBytes(const v1::CreateCsrRequest&) { return 256 * 1024; }
constexpr size_t MaxRequestBytes(const v1::AttachCertificateRequest&) {
  return 1024 * 1024 + kMaxAdminRequestBytes;
}

// What an audit line names: a key, or a ticket-key set.
AuditRecord AboutKey(std::string key) {
  AuditRecord record;
  record.key = std::move(key);
  return record;
}
AuditRecord AboutTicketKeySet(std::string name) {
  AuditRecord record;
  record.ticket_key_set = std::move(name);
  return record;
}

}  // namespace

template <typename Response>
grpc::Status KeyAdminService::Run(grpc::ServerContext* context, const char* operation,
                                  AuditRecord subject, size_t request_bytes,
                                  size_t max_request_bytes,
                                  const std::function<absl::StatusOr<Response>()>& call,
                                  Response* response) {
  const absl::Time start = absl::Now();
  AuditRecord record = std::move(subject);
  record.time = start;
  record.operation = operation;
  absl::StatusOr<Caller> caller = CallerOf(*context, allow_plaintext_);
  if (!caller.ok()) {
    record.outcome = caller.status();
  } else {
    record.identity = caller->identity;
    if (!policy_()->IsAdmin(caller->identity)) {
      record.outcome = absl::PermissionDeniedError(absl::StrCat(
          "'", caller->identity,
          "' does not hold the admin role; add it to admin_identities in offkeyd's "
          "configuration"));
    } else if (request_bytes > max_request_bytes) {
      record.outcome = absl::ResourceExhaustedError(absl::StrCat(
          operation, " request is ", request_bytes, " bytes; offkeyd takes at most ",
          max_request_bytes, " bytes for this operation"));
    } else if (absl::Status ready =
                   audit_ != nullptr ? audit_->Check() : absl::OkStatus();
               !ready.ok()) {
      // Fail closed: no key is created, changed or destroyed while its audit line could
      // not be written.
      record.outcome = ready;
    } else {
      absl::StatusOr<Response> result = call();
      record.outcome = result.status();
      if (result.ok()) *response = *std::move(result);
    }
  }
  record.latency = absl::Now() - start;
  absl::Status audited = audit_ != nullptr ? audit_->Write(record) : absl::OkStatus();
  if (record.outcome.ok() && !audited.ok()) {
    // Done but not audited: withhold the answer, so the caller knows to look.
    response->Clear();
    return ToGrpcStatus(audited);
  }
  return ToGrpcStatus(record.outcome);
}

#define OFFKEY_ADMIN_RPC(Method, Request, Response, operation, subject)                  \
  grpc::Status KeyAdminService::Method(grpc::ServerContext* context,                     \
                                       const v1::Request* request,                       \
                                       v1::Response* response) {                         \
    return Run<v1::Response>(                                                            \
        context, operation, subject, request->ByteSizeLong(), MaxRequestBytes(*request), \
        [&] { return admin_->Method(*request); }, response);                             \
  }

OFFKEY_ADMIN_RPC(CreateKey, CreateKeyRequest, CreateKeyResponse, "admin.create-key",
                 AboutKey(request->name()))
grpc::Status KeyAdminService::ImportKey(grpc::ServerContext* context,
                                        const v1::ImportKeyRequest* request,
                                        v1::ImportKeyResponse* response) {
  grpc::Status status = Run<v1::ImportKeyResponse>(
      context, "admin.import-key", AboutKey(request->name()), request->ByteSizeLong(),
      MaxRequestBytes(*request), [&] { return admin_->ImportKey(*request); }, response);
  // The key and its passphrase are used up, whatever the outcome. gRPC hands the request
  // over as const but owns a mutable message it frees after this returns; wiping it here
  // keeps the key out of freed memory.
  WipeSecrets(const_cast<v1::ImportKeyRequest*>(request));
  return status;
}
OFFKEY_ADMIN_RPC(ListKeys, AdminListKeysRequest, AdminListKeysResponse, "admin.list-keys",
                 AboutKey(""))
OFFKEY_ADMIN_RPC(GetKey, GetKeyRequest, GetKeyResponse, "admin.get-key",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(UpdateKey, UpdateKeyRequest, UpdateKeyResponse, "admin.update-key",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(EnableKey, EnableKeyRequest, EnableKeyResponse, "admin.enable-key",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(DisableKey, DisableKeyRequest, DisableKeyResponse, "admin.disable-key",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(ScheduleKeyDestruction, ScheduleKeyDestructionRequest,
                 ScheduleKeyDestructionResponse, "admin.schedule-key-destruction",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(CancelKeyDestruction, CancelKeyDestructionRequest,
                 CancelKeyDestructionResponse, "admin.cancel-key-destruction",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(DestroyKey, DestroyKeyRequest, DestroyKeyResponse, "admin.destroy-key",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(CreateCsr, CreateCsrRequest, CreateCsrResponse, "admin.create-csr",
                 AboutKey(KeyRefText(request->key())))
OFFKEY_ADMIN_RPC(AttachCertificate, AttachCertificateRequest, AttachCertificateResponse,
                 "admin.attach-certificate", AboutKey(KeyRefText(request->key())))

OFFKEY_ADMIN_RPC(CreateTicketKeySet, CreateTicketKeySetRequest,
                 CreateTicketKeySetResponse, "admin.create-ticket-key-set",
                 AboutTicketKeySet(request->name()))
OFFKEY_ADMIN_RPC(ListTicketKeySets, ListTicketKeySetsRequest, ListTicketKeySetsResponse,
                 "admin.list-ticket-key-sets", AboutTicketKeySet(""))
OFFKEY_ADMIN_RPC(GetTicketKeySet, GetTicketKeySetRequest, GetTicketKeySetResponse,
                 "admin.get-ticket-key-set", AboutTicketKeySet(request->name()))
OFFKEY_ADMIN_RPC(DestroyTicketKeySet, DestroyTicketKeySetRequest,
                 DestroyTicketKeySetResponse, "admin.destroy-ticket-key-set",
                 AboutTicketKeySet(request->name()))

#undef OFFKEY_ADMIN_RPC

}  // namespace offkey::service::admin
