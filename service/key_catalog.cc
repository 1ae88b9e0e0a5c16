#include "service/key_catalog.h"

#include <openssl/sha.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"

namespace offkey::service {
namespace {

constexpr uint32_t kMetadataFormat = 1;

std::string Sha256(absl::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

size_t RsaModulusBytes(const hsm::KeyInfo& info) {
  if (hsm::FamilyOf(info.algorithm) != hsm::KeyFamily::kRsa) return 0;
  return static_cast<size_t>(hsm::KeyBits(info.algorithm) / 8);
}

}  // namespace

absl::StatusOr<offkey::v1::KeyMetadata> ParseKeyMetadata(absl::string_view blob) {
  offkey::v1::KeyMetadata metadata;
  if (!metadata.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
    return absl::InvalidArgumentError("key metadata object is not a KeyMetadata");
  }
  if (metadata.format_version() != kMetadataFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat("key metadata format ", metadata.format_version(),
                     " is unknown to this offkeyd (knows ", kMetadataFormat, ")"));
  }
  return metadata;
}

KeyCatalog::KeyCatalog(hsm::KeyStore* store, absl::Duration ttl,
                       absl::Duration min_miss_reload)
    : store_(store), ttl_(ttl), min_miss_reload_(min_miss_reload) {
  refresher_ = std::thread([this] { RefreshLoop(); });
}

KeyCatalog::~KeyCatalog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  refresher_.join();
}

void KeyCatalog::RefreshLoop() {
  for (;;) {
    std::shared_ptr<const Snapshot> seen;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), ttl_)) return;
      seen = snapshot_;
    }
    // Nothing loaded yet means nobody asked: the first lookup loads.
    if (seen != nullptr) Reload(seen).IgnoreError();  // Lookups keep the old snapshot.
  }
}

absl::StatusOr<std::shared_ptr<const KeyCatalog::Snapshot>> KeyCatalog::Reload(
    const std::shared_ptr<const Snapshot>& seen) {
  absl::MutexLock load_lock(&load_mu_);
  {
    absl::MutexLock lock(&mu_);
    // Another caller may have reloaded while we waited for load_mu_.
    if (snapshot_ != nullptr && snapshot_ != seen) return snapshot_;
  }
  absl::StatusOr<std::shared_ptr<const Snapshot>> fresh = Load();
  absl::MutexLock lock(&mu_);
  if (!fresh.ok()) {
    last_failed_reload_ = absl::Now();
    return fresh.status();
  }
  snapshot_ = *fresh;
  return fresh;
}

void KeyCatalog::Invalidate() {
  absl::MutexLock lock(&mu_);
  snapshot_.reset();
}

absl::Status KeyCatalog::Refresh() {
  absl::MutexLock load_lock(&load_mu_);
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> fresh, Load());
  absl::MutexLock lock(&mu_);
  snapshot_ = std::move(fresh);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const KeyCatalog::Snapshot>> KeyCatalog::Load() {
  auto snapshot = std::make_shared<Snapshot>();
  OFFKEY_ASSIGN_OR_RETURN(std::vector<hsm::KeyInfo> keys, store_->ListKeys());
  for (hsm::KeyInfo& info : keys) {
    auto record = std::make_shared<KeyRecord>();
    record->metadata.set_format_version(kMetadataFormat);
    record->metadata.set_usage(offkey::v1::TLS_SERVER);
    record->metadata.set_state(offkey::v1::ENABLED);
    absl::StatusOr<std::string> blob = store_->GetMetadata(info.key_id);
    if (blob.ok()) {
      absl::StatusOr<offkey::v1::KeyMetadata> parsed = ParseKeyMetadata(*blob);
      if (!parsed.ok()) {
        // Unreadable state must not make a key usable: keep it, disabled.
        record->metadata.set_state(offkey::v1::DISABLED);
      } else {
        record->metadata = *std::move(parsed);
      }
    } else if (!absl::IsNotFound(blob.status())) {
      return blob.status();
    }
    OFFKEY_ASSIGN_OR_RETURN(record->chain, store_->GetCertificateChain(info.key_id));
    if (!record->chain.empty()) record->cert_sha256 = Sha256(record->chain[0]);
    record->rsa_modulus_bytes = RsaModulusBytes(info);
    record->info = std::move(info);
    snapshot->keys.push_back(record);
  }
  // All() promises name order; KeyStore::ListKeys promises none.
  std::sort(snapshot->keys.begin(), snapshot->keys.end(),
            [](const auto& a, const auto& b) { return a->info.name < b->info.name; });
  for (const auto& record : snapshot->keys) {
    snapshot->by_name.emplace(record->info.name, record);
    snapshot->by_id.emplace(record->info.key_id, record);
    snapshot->by_ski.emplace(record->info.ski, record);
    if (!record->cert_sha256.empty()) {
      snapshot->by_cert.emplace(record->cert_sha256, record);
    }
  }
  snapshot->loaded = absl::Now();
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

absl::StatusOr<std::shared_ptr<const KeyCatalog::Snapshot>> KeyCatalog::Current(
    bool force_reload) {
  std::shared_ptr<const Snapshot> current;
  {
    absl::MutexLock lock(&mu_);
    current = snapshot_;
  }
  if (current == nullptr) return Reload(nullptr);
  // The refresher keeps the snapshot within ttl; this only catches a refresher that
  // could not reload (the HSM was away), so lookups do not serve state forever old.
  bool stale = absl::Now() - current->loaded > 3 * ttl_;
  // A failed reload counts too: while the store fails, a stream of unknown key ids must
  // not become a stream of token walks.
  bool may_reload_for_miss = false;
  if (force_reload && absl::Now() - current->loaded > min_miss_reload_) {
    absl::MutexLock lock(&mu_);
    may_reload_for_miss = absl::Now() - last_failed_reload_ > min_miss_reload_;
  }
  if (!stale && !may_reload_for_miss) return current;
  return Reload(current);
}

absl::StatusOr<std::shared_ptr<const KeyRecord>> KeyCatalog::Find(
    const offkey::v1::KeyRef& ref) {
  const absl::flat_hash_map<std::string, std::shared_ptr<const KeyRecord>> Snapshot::*
      index = nullptr;
  std::string value;
  switch (ref.ref_case()) {
    case offkey::v1::KeyRef::kName:
      index = &Snapshot::by_name;
      value = ref.name();
      break;
    case offkey::v1::KeyRef::kKeyId:
      index = &Snapshot::by_id;
      value = ref.key_id();
      break;
    case offkey::v1::KeyRef::kSki:
      index = &Snapshot::by_ski;
      value = ref.ski();
      break;
    case offkey::v1::KeyRef::kCertSha256:
      index = &Snapshot::by_cert;
      value = ref.cert_sha256();
      break;
    case offkey::v1::KeyRef::REF_NOT_SET:
      return absl::InvalidArgumentError(
          "key: set one of name, key_id, ski or cert_sha256");
  }
  if (value.empty() || value.size() > 256) {
    return absl::InvalidArgumentError("key: the reference must be 1 to 256 bytes");
  }
  for (bool force : {false, true}) {
    OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> snapshot, Current(force));
    auto it = (snapshot.get()->*index).find(value);
    if (it != (snapshot.get()->*index).end()) return it->second;
  }
  return absl::NotFoundError("no such key");
}

absl::StatusOr<std::vector<std::shared_ptr<const KeyRecord>>> KeyCatalog::All() {
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> snapshot, Current(false));
  return snapshot->keys;
}

}  // namespace offkey::service
