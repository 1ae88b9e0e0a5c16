// KeyCatalog: what offkeyd knows about the keys on the token, cached.
#ifndef OFFKEY_SERVICE_KEY_CATALOG_H_
#define OFFKEY_SERVICE_KEY_CATALOG_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "hsm/key_store.h"
#include "offkey/v1/common.pb.h"
#include "offkey/v1/metadata.pb.h"

namespace offkey::service {

// The labels a key may carry (key_admin.proto): the admin plane enforces them when
// labels are written, the data plane on label selectors (a larger one selects nothing).
inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyBytes = 63;
inline constexpr size_t kMaxLabelValueBytes = 255;

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
// background thread reloads the snapshot every `ttl`; lookups never wait for it.
//
// A lookup that misses answers NOT_FOUND at once, from memory: it never walks the token
// in the request path, so an unknown key costs what a known one does (no timing or
// outage signal tells a caller which keys exist). It asks the background thread for a
// reload instead, which runs at most once per `min_miss_reload` (counted from the end of
// the previous load, successful or not), so a stream of unknown key ids cannot make
// offkeyd hammer the HSM. A key made by another process on the same token is therefore
// found here once the reload its first miss asked for has finished (within
// `min_miss_reload` plus one token walk of that miss), and within `ttl` in any case.
// Writes through this process's admin plane call Refresh(), so they show at once.
//
// The lookups that do load in the request path are the first one, the first after
// Invalidate(), and any once the background thread has failed to reload for 3 `ttl`
// (the snapshot is then too old to trust). Such a load does not depend on the
// reference asked for, and callers queued behind a failing load share its error
// instead of each walking the token again.
//
// Keys without an offkey metadata object (made by other tools) get the most restrictive
// reading: usage TLS_SERVER, state ENABLED, no labels. Thread-safe.
class KeyCatalog {
 public:
  // Every key of a successful load, sorted by name, as it is published.
  using LoadedCallback =
      std::function<void(const std::vector<std::shared_ptr<const KeyRecord>>&)>;

  // `on_load` (may be null) runs after every successful load, on the thread that
  // loaded, before lookups see the result; it must not call into the catalog.
  KeyCatalog(hsm::KeyStore* store, absl::Duration ttl = absl::Seconds(5),
             absl::Duration min_miss_reload = absl::Seconds(1),
             LoadedCallback on_load = nullptr);
  ~KeyCatalog();
  KeyCatalog(const KeyCatalog&) = delete;
  KeyCatalog& operator=(const KeyCatalog&) = delete;

  // NOT_FOUND if no key matches `ref` (answered from memory; see above); INVALID_ARGUMENT
  // if `ref` is empty or malformed; the store's error if there is no snapshot to answer
  // from and the store cannot be read.
  absl::StatusOr<std::shared_ptr<const KeyRecord>> Find(const offkey::v1::KeyRef& ref);

  // Every key, sorted by name.
  absl::StatusOr<std::vector<std::shared_ptr<const KeyRecord>>> All();

  // Drops the snapshot: the next lookup loads (after keys changed behind the catalog's
  // back and Refresh() could not read them).
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

  // The snapshot to answer from, loading first if there is none or it is too old.
  absl::StatusOr<std::shared_ptr<const Snapshot>> Current();
  absl::StatusOr<std::shared_ptr<const Snapshot>> Load();
  // Reloads into snapshot_ unless someone else did since `seen` was current.
  absl::StatusOr<std::shared_ptr<const Snapshot>> Reload(
      const std::shared_ptr<const Snapshot>& seen);
  // Makes `snapshot` the one lookups answer from. Requires mu_ (taken before wake_mu_,
  // never after).
  void PublishLocked(std::shared_ptr<const Snapshot> snapshot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the end of a load attempt. Requires mu_.
  void LoadEndedLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Asks the background thread for a reload after a miss.
  void RequestMissReload();
  // Tells the background thread to look at the state again (a miss, or stopping).
  void WakeRefresher();
  // When the background thread must wake; requires wake_mu_.
  bool RefresherMustWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_);
  void RefreshLoop();

  hsm::KeyStore* const store_;
  const absl::Duration ttl_;
  const absl::Duration min_miss_reload_;
  const LoadedCallback on_load_;
  offkey::Mutex load_mu_;  // One load at a time.
  offkey::Mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
  // When the last load attempt ended, and when and how the last failed one did.
  absl::Time last_load_end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time last_failed_load_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Status last_failure_ ABSL_GUARDED_BY(mu_);
  // A miss asked for a reload the background thread has not started yet.
  bool miss_reload_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // The background thread sleeps on wake_mu_, not mu_: mu_ is taken by every lookup,
  // and each release of an offkey::Mutex evaluates its waiters' conditions, so a
  // refresher waiting on mu_ would put its condition on every operation's path.
  // wakes_ moves after each change it must see.
  offkey::Mutex wake_mu_;
  uint64_t wakes_ ABSL_GUARDED_BY(wake_mu_) = 0;
  uint64_t wakes_seen_ ABSL_GUARDED_BY(wake_mu_) = 0;  // When it last looked.
  std::thread refresher_;
};

// Parses a stored metadata blob; INVALID_ARGUMENT for garbage or an unknown version.
absl::StatusOr<offkey::v1::KeyMetadata> ParseKeyMetadata(absl::string_view blob);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_KEY_CATALOG_H_
