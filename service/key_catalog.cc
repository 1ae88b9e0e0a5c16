#include "service/key_catalog.h"

#include <openssl/sha.h>
#include <pthread.h>

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
                       absl::Duration min_miss_reload, LoadedCallback on_load)
    : store_(store),
      ttl_(ttl),
      min_miss_reload_(min_miss_reload),
      on_load_(std::move(on_load)) {
  refresher_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "offkey-catalog");  // For top, perf, thread_cpu.
    RefreshLoop();
  });
}

KeyCatalog::~KeyCatalog() {
  {
    offkey::MutexLock lock(&mu_);
    stopping_ = true;
  }
  WakeRefresher();
  refresher_.join();
}

bool KeyCatalog::RefresherMustWake() const { return wakes_ != wakes_seen_; }

void KeyCatalog::WakeRefresher() {
  offkey::MutexLock lock(&wake_mu_);
  ++wakes_;
}

void KeyCatalog::RefreshLoop() {
  while (true) {
    // Read before the state it decides on, so a change made after it also moves wakes_
    // and the wait below returns at once rather than missing it.
    {
      offkey::MutexLock lock(&wake_mu_);
      wakes_seen_ = wakes_;
    }
    absl::Time due;
    bool reload;
    std::shared_ptr<const Snapshot> seen;
    {
      offkey::MutexLock lock(&mu_);
      if (stopping_) return;
      // Nothing loaded yet means nobody asked: the first lookup loads. After that, a
      // reload every ttl, and one a miss asked for once min_miss_reload has passed
      // since the last load ended (however that load went).
      due = snapshot_ == nullptr ? absl::InfiniteFuture() : last_load_end_ + ttl_;
      if (miss_reload_requested_) {
        due = std::min(due, last_load_end_ + min_miss_reload_);
      }
      reload = absl::Now() >= due;
      if (reload) {
        miss_reload_requested_ = false;
        seen = snapshot_;
      }
    }
    if (reload) {
      Reload(seen).IgnoreError();  // Lookups keep the old snapshot; the failure is kept.
      continue;
    }
    // Wakes early to stop, or to recompute `due` when a miss asks for a reload.
    offkey::MutexLock lock(&wake_mu_);
    wake_mu_.AwaitWithDeadline(absl::Condition(this, &KeyCatalog::RefresherMustWake),
                               due);
  }
}

void KeyCatalog::PublishLocked(std::shared_ptr<const Snapshot> snapshot) {
  const bool first = snapshot_ == nullptr;
  snapshot_ = std::move(snapshot);
  // The refresher sleeps without a deadline while there is no snapshot: the first one
  // (or the first after Invalidate) starts its ttl schedule.
  if (first) WakeRefresher();
}

void KeyCatalog::LoadEndedLocked(const absl::Status& status) {
  last_load_end_ = absl::Now();
  if (!status.ok()) {
    last_failed_load_ = last_load_end_;
    last_failure_ = status;
  }
}

absl::StatusOr<std::shared_ptr<const KeyCatalog::Snapshot>> KeyCatalog::Reload(
    const std::shared_ptr<const Snapshot>& seen) {
  const absl::Time asked = absl::Now();
  offkey::MutexLock load_lock(&load_mu_);
  {
    offkey::MutexLock lock(&mu_);
    // Another caller may have reloaded while we waited for load_mu_; if its load failed,
    // its error answers us too rather than another walk of a failing token.
    if (snapshot_ != nullptr && snapshot_ != seen) return snapshot_;
    if (last_failed_load_ >= asked) return last_failure_;
  }
  absl::StatusOr<std::shared_ptr<const Snapshot>> fresh = Load();
  offkey::MutexLock lock(&mu_);
  LoadEndedLocked(fresh.status());
  if (!fresh.ok()) return fresh.status();
  PublishLocked(*fresh);
  return fresh;
}

void KeyCatalog::RequestMissReload() {
  {
    offkey::MutexLock lock(&mu_);
    if (miss_reload_requested_) return;  // The refresher was told already.
    miss_reload_requested_ = true;
  }
  WakeRefresher();
}

void KeyCatalog::Invalidate() {
  offkey::MutexLock lock(&mu_);
  snapshot_.reset();
}

absl::Status KeyCatalog::Refresh() {
  offkey::MutexLock load_lock(&load_mu_);
  absl::StatusOr<std::shared_ptr<const Snapshot>> fresh = Load();
  offkey::MutexLock lock(&mu_);
  LoadEndedLocked(fresh.status());
  if (!fresh.ok()) return fresh.status();
  PublishLocked(*std::move(fresh));
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
  if (on_load_) on_load_(snapshot->keys);
  return std::shared_ptr<const Snapshot>(std::move(snapshot));
}

absl::StatusOr<std::shared_ptr<const KeyCatalog::Snapshot>> KeyCatalog::Current() {
  std::shared_ptr<const Snapshot> current;
  {
    offkey::MutexLock lock(&mu_);
    current = snapshot_;
  }
  // The refresher keeps the snapshot within ttl; a snapshot 3 ttl old means it could
  // not reload (the HSM is away), and lookups must not serve state forever old.
  if (current != nullptr && absl::Now() - current->loaded <= 3 * ttl_) return current;
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
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> snapshot, Current());
  auto it = (snapshot.get()->*index).find(value);
  if (it != (snapshot.get()->*index).end()) return it->second;
  // Answered from memory, as a hit is; the key may be new on the token, so the
  // refresher looks (rate-limited) and a later lookup finds it.
  RequestMissReload();
  return absl::NotFoundError("no such key");
}

absl::StatusOr<std::vector<std::shared_ptr<const KeyRecord>>> KeyCatalog::All() {
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const Snapshot> snapshot, Current());
  return snapshot->keys;
}

}  // namespace offkey::service
