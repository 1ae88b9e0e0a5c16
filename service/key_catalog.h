// KeyCatalog: what offkeyd knows about the keys on the token, cached.
#ifndef OFFKEY_SERVICE_KEY_CATALOG_H_
#define OFFKEY_SERVICE_KEY_CATALOG_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "hsm/key_store.h"
#include "offkey/v1/common.pb.h"
#include "offkey/v1/metadata.pb.h"

namespace offkey::service {

// One key as the data plane sees it. Immutable once published.
struct KeyRecord {
  hsm::KeyInfo info;
  offkey::v1::KeyMetadata metadata;  // Defaults when the token holds none (see below).
  std::vector<std::string> chain;    // DER, leaf first; empty without a certificate.
  std::string cert_sha256;           // SHA-256 of chain[0], if any.
  size_t rsa_modulus_bytes = 0;      // RSA keys only.
};

// Reads the key list, metadata and certificates from the KeyStore and serves lookups
// from memory, so a handshake costs one HSM operation, not a directory walk. A
// background thread reloads the snapshot every `ttl`, so lookups never wait for a
// reload (except the very first, and a lookup miss, which reloads at most once per
// `min_miss_reload`: unknown key ids cannot make offkeyd hammer the HSM). Changes made by
// another process on the same token show within `ttl`.
//
// Keys without an offkey metadata object (made by other tools) get the most restrictive
// reading: usage TLS_SERVER, state ENABLED, no labels. Thread-safe.
class KeyCatalog {
 public:
  KeyCatalog(hsm::KeyStore* store, absl::Duration ttl = absl::Seconds(5),
             absl::Duration min_miss_reload = absl::Seconds(1));
  ~KeyCatalog();
  KeyCatalog(const KeyCatalog&) = delete;
  KeyCatalog& operator=(const KeyCatalog&) = delete;

  // NOT_FOUND if no key matches `ref`; INVALID_ARGUMENT if `ref` is empty or malformed;
  // the store's error if it cannot be read.
  absl::StatusOr<std::shared_ptr<const KeyRecord>> Find(const offkey::v1::KeyRef& ref);

  // Every key, sorted by name.
  absl::StatusOr<std::vector<std::shared_ptr<const KeyRecord>>> All();

  // Makes the next lookup reload (after keys changed behind the catalog's back).
  void Invalidate();

  // Reloads now and publishes the result; lookups meanwhile keep the old snapshot, so
  // the data plane never waits. The load starts after the call, so it reflects every
  // change made before it (an admin write in this process).
  absl::Status Refresh();

 private:
  struct Snapshot {
    std::vector<std::shared_ptr<const KeyRecord>> keys;
    absl::flat_hash_map<std::string, std::shared_ptr<const KeyRecord>> by_name, by_id,
        by_ski, by_cert;
    absl::Time loaded;
  };

  absl::StatusOr<std::shared_ptr<const Snapshot>> Current(bool force_reload);
  absl::StatusOr<std::shared_ptr<const Snapshot>> Load();
  // Reloads into snapshot_ unless someone else did since `seen` was current.
  absl::StatusOr<std::shared_ptr<const Snapshot>> Reload(
      const std::shared_ptr<const Snapshot>& seen);
  void RefreshLoop();

  hsm::KeyStore* const store_;
  const absl::Duration ttl_;
  const absl::Duration min_miss_reload_;
  absl::Mutex load_mu_;  // One reload at a time.
  absl::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // When a reload last failed: a lookup miss waits min_miss_reload after it too.
  absl::Time last_failed_reload_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

// Parses a stored metadata blob; INVALID_ARGUMENT for garbage or an unknown version.
absl::StatusOr<offkey::v1::KeyMetadata> ParseKeyMetadata(absl::string_view blob);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_KEY_CATALOG_H_
