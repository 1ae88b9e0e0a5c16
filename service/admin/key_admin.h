// KeyAdmin: the admin plane's logic (offkey.v1.KeyAdmin, key_admin.proto), apart from
// gRPC so that tests and the RPC layer share it. The token is the only state: metadata
// (usage, labels, state, times) lives in the KeyStore's metadata object beside each key,
// so every offkeyd on one token agrees and a restart loses nothing.
#ifndef OFFKEY_SERVICE_ADMIN_KEY_ADMIN_H_
#define OFFKEY_SERVICE_ADMIN_KEY_ADMIN_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "hsm/key_store.h"
#include "offkey/v1/key_admin.pb.h"
#include "service/key_catalog.h"

namespace offkey::service::admin {

// Thread-safe. Status codes and limits are those documented in key_admin.proto.
class KeyAdmin {
 public:
  using Clock = std::function<absl::Time()>;
  // `store` and `catalog` are borrowed. `clock` says what time it is (tests inject one).
  KeyAdmin(hsm::KeyStore* store, KeyCatalog* catalog, Clock clock = &absl::Now);

  absl::StatusOr<v1::CreateKeyResponse> CreateKey(const v1::CreateKeyRequest& request);
  absl::StatusOr<v1::ImportKeyResponse> ImportKey(const v1::ImportKeyRequest& request);
  absl::StatusOr<v1::AdminListKeysResponse> ListKeys(
      const v1::AdminListKeysRequest& request);
  absl::StatusOr<v1::GetKeyResponse> GetKey(const v1::GetKeyRequest& request);
  absl::StatusOr<v1::UpdateKeyResponse> UpdateKey(const v1::UpdateKeyRequest& request);
  absl::StatusOr<v1::EnableKeyResponse> EnableKey(const v1::EnableKeyRequest& request);
  absl::StatusOr<v1::DisableKeyResponse> DisableKey(const v1::DisableKeyRequest& request);
  absl::StatusOr<v1::ScheduleKeyDestructionResponse> ScheduleKeyDestruction(
      const v1::ScheduleKeyDestructionRequest& request);
  absl::StatusOr<v1::CancelKeyDestructionResponse> CancelKeyDestruction(
      const v1::CancelKeyDestructionRequest& request);
  absl::StatusOr<v1::DestroyKeyResponse> DestroyKey(const v1::DestroyKeyRequest& request);
  absl::StatusOr<v1::CreateCsrResponse> CreateCsr(const v1::CreateCsrRequest& request);
  absl::StatusOr<v1::AttachCertificateResponse> AttachCertificate(
      const v1::AttachCertificateRequest& request);

  // Ticket-key sets (key_admin.proto, "Ticket-key sets"). current_epoch and
  // next_rotation_time are by the clock.
  absl::StatusOr<v1::CreateTicketKeySetResponse> CreateTicketKeySet(
      const v1::CreateTicketKeySetRequest& request);
  absl::StatusOr<v1::ListTicketKeySetsResponse> ListTicketKeySets(
      const v1::ListTicketKeySetsRequest& request);
  absl::StatusOr<v1::GetTicketKeySetResponse> GetTicketKeySet(
      const v1::GetTicketKeySetRequest& request);
  absl::StatusOr<v1::DestroyTicketKeySetResponse> DestroyTicketKeySet(
      const v1::DestroyTicketKeySetRequest& request);
  // Called with the name of each set this KeyAdmin destroyed, so the data plane drops
  // what it cached about it at once. Set before serving.
  void SetTicketKeySetDestroyedHook(std::function<void(const std::string&)> hook) {
    ticket_key_set_destroyed_ = std::move(hook);
  }

  // Destroys every key whose pending window has ended (by the clock). Returns the names
  // destroyed. offkeyd runs it periodically, so destruction happens on time across
  // restarts and whichever replica runs it first.
  absl::StatusOr<std::vector<std::string>> DestroyDue();

 private:
  // The key as on the token now (the catalog reloaded first).
  absl::StatusOr<std::shared_ptr<const KeyRecord>> Fresh(const v1::KeyRef& ref);
  // After a write: the data plane sees it from its next lookup.
  void Publish();
  // Writes `metadata` for `key`, then returns the key as now stored.
  absl::StatusOr<v1::KeyInfo> Store(const KeyRecord& key,
                                    const v1::KeyMetadata& metadata);
  // Shared by CreateKey and ImportKey: validates the name, usage and labels, runs
  // `make` and stores the first metadata.
  absl::StatusOr<v1::KeyInfo> AddKey(
      const std::string& name, v1::KeyUsage usage,
      const google::protobuf::Map<std::string, std::string>& labels,
      const std::function<absl::StatusOr<hsm::KeyInfo>()>& make);
  absl::StatusOr<v1::KeyInfo> SetState(const v1::KeyRef& ref, v1::KeyState to);
  v1::TicketKeySetInfo ToProto(const hsm::TicketKeySetInfo& info) const;

  hsm::KeyStore* const store_;
  KeyCatalog* const catalog_;
  const Clock clock_;
  std::function<void(const std::string&)> ticket_key_set_destroyed_;
  // Serializes read-modify-write of metadata within this process.
  offkey::Mutex write_mu_;
};

// Name and label checks (key_admin.proto's limits); INVALID_ARGUMENT naming the field.
absl::Status CheckKeyName(absl::string_view name);
absl::Status CheckLabels(const google::protobuf::Map<std::string, std::string>& labels);

}  // namespace offkey::service::admin

#endif  // OFFKEY_SERVICE_ADMIN_KEY_ADMIN_H_
