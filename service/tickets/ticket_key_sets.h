// TicketKeySets: the ticket-key sets on the token and their epochs' key material, cached
// so that GetTicketKeys, SealTicket and UnsealTicket do not reach the HSM on every call.
#ifndef OFFKEY_SERVICE_TICKETS_TICKET_KEY_SETS_H_
#define OFFKEY_SERVICE_TICKETS_TICKET_KEY_SETS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "hsm/key_store.h"
#include "service/tickets/ticket_crypto.h"

namespace offkey::service::tickets {

// What is cached, and for how long:
//   - a set's facts (period, creation time) are re-read from the store when more than
//     `recheck` old, and one cached epoch derived again; a set the store no longer has,
//     or whose root changed (destroyed and made again), is dropped then. So a set
//     destroyed through another replica stops working here within `recheck` (5 s by
//     default); through this replica (Forget) at once.
//   - the material of epochs current - 1 .. current + 1 of each set; older and newer
//     epochs are dropped as the clock moves on, and with their set.
//   - at most `max_sets` sets; beyond that the least recently checked one goes.
// Store calls are made without the lock held. Thread-safe.
class TicketKeySets {
 public:
  struct Options {
    absl::Duration recheck = absl::Seconds(5);
    size_t max_sets = 256;
    std::function<absl::Time()> clock = &absl::Now;
  };

  // `store` is borrowed.
  explicit TicketKeySets(hsm::KeyStore* store) : TicketKeySets(store, Options()) {}
  TicketKeySets(hsm::KeyStore* store, Options options);

  // The set's facts. NOT_FOUND when the store has no set of that name; the store's
  // errors otherwise. A recheck derives one cached epoch again with `options`. Adds the
  // time spent in store calls to `*store_time` if given.
  absl::StatusOr<hsm::TicketKeySetInfo> Find(absl::string_view name,
                                             const hsm::CallOptions& options = {},
                                             absl::Duration* store_time = nullptr);

  // The material of `epoch` of the set `info` (as Find returned it), derived in the
  // store on a miss with `options`.
  absl::StatusOr<std::shared_ptr<const EpochMaterial>> Material(
      const hsm::TicketKeySetInfo& info, int64_t epoch, const hsm::CallOptions& options,
      absl::Duration* store_time = nullptr);

  // Drops everything cached about the set (after it was destroyed).
  void Forget(absl::string_view name);

  absl::Time Now() const { return options_.clock(); }

  // For tests: the sets and the epochs cached now.
  size_t CachedSetsForTest() const;
  size_t CachedEpochsForTest(absl::string_view name) const;

 private:
  struct Entry {
    hsm::TicketKeySetInfo info;
    absl::Time checked;
    std::map<int64_t, std::shared_ptr<const EpochMaterial>> epochs;
  };

  // Drops epochs of `entry` outside current - 1 .. current + 1.
  void Prune(Entry& entry, absl::Time now) const;

  hsm::KeyStore* const store_;
  const Options options_;
  mutable offkey::Mutex mu_;
  std::map<std::string, Entry, std::less<>> sets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace offkey::service::tickets

#endif  // OFFKEY_SERVICE_TICKETS_TICKET_KEY_SETS_H_
