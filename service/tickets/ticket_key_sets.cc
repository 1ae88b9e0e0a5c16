#include "service/tickets/ticket_key_sets.h"

#include <optional>
#include <utility>

#include "base/status_macros.h"

namespace offkey::service::tickets {
namespace {

bool SameSet(const hsm::TicketKeySetInfo& a, const hsm::TicketKeySetInfo& b) {
  return a.name == b.name && a.rotation_period == b.rotation_period &&
         a.create_time == b.create_time;
}

// Adds the time from construction to destruction to `*total` (if not null).
class StoreTimer {
 public:
  explicit StoreTimer(absl::Duration* total) : total_(total), start_(absl::Now()) {}
  ~StoreTimer() {
    if (total_ != nullptr) *total_ += absl::Now() - start_;
  }
  StoreTimer(const StoreTimer&) = delete;
  StoreTimer& operator=(const StoreTimer&) = delete;

 private:
  absl::Duration* const total_;
  const absl::Time start_;
};

}  // namespace

TicketKeySets::TicketKeySets(hsm::KeyStore* store, Options options)
    : store_(store), options_(std::move(options)) {}

absl::StatusOr<hsm::TicketKeySetInfo> TicketKeySets::Find(absl::string_view name,
                                                          const hsm::CallOptions& options,
                                                          absl::Duration* store_time) {
  const absl::Time now = Now();
  // When the entry is stale: one epoch it holds, to check against the store below.
  std::optional<hsm::TicketKeySetInfo> cached_info;
  std::shared_ptr<const EpochMaterial> probe;
  {
    offkey::MutexLock lock(&mu_);
    auto it = sets_.find(name);
    if (it != sets_.end()) {
      // A clock that went back counts as stale too.
      if (now >= it->second.checked && now - it->second.checked <= options_.recheck) {
        return it->second.info;
      }
      cached_info = it->second.info;
      if (!it->second.epochs.empty()) probe = it->second.epochs.rbegin()->second;
    }
  }
  absl::StatusOr<hsm::TicketKeySetInfo> found;
  {
    StoreTimer timer(store_time);
    found = store_->FindTicketKeySet(name);
  }
  // The facts alone cannot tell a set destroyed and made again within the same second
  // (creation times are whole seconds) from the set as it was, so one cached epoch is
  // derived again: if its key changed, every cached epoch goes.
  bool same_root = true;
  if (found.ok() && probe != nullptr && cached_info.has_value() &&
      SameSet(*cached_info, *found)) {
    absl::StatusOr<SecretBytes> secret;
    {
      StoreTimer timer(store_time);
      secret = store_->DeriveTicketEpochSecret(name, probe->epoch(), options);
    }
    if (absl::IsNotFound(secret.status())) {
      found = secret.status();
    } else if (!secret.ok()) {
      return secret.status();
    } else {
      OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const EpochMaterial> again,
                              EpochMaterial::FromSecret(probe->epoch(), *secret));
      same_root = again->seal_key().view() == probe->seal_key().view();
    }
  }
  offkey::MutexLock lock(&mu_);
  if (absl::IsNotFound(found.status())) {
    auto it = sets_.find(name);
    if (it != sets_.end()) sets_.erase(it);
    return found;
  }
  if (!found.ok()) return found;  // Kept as it was: the next call asks again.
  auto it = sets_.find(name);
  if (it == sets_.end()) {
    if (sets_.size() >= options_.max_sets) {
      auto oldest = sets_.begin();
      for (auto i = sets_.begin(); i != sets_.end(); ++i) {
        if (i->second.checked < oldest->second.checked) oldest = i;
      }
      sets_.erase(oldest);
    }
    it = sets_.emplace(std::string(name), Entry()).first;
  }
  Entry& entry = it->second;
  // A set destroyed and made again under the same name is another set.
  if (!same_root || !SameSet(entry.info, *found)) entry.epochs.clear();
  entry.info = *found;
  entry.checked = now;
  Prune(entry, now);
  return found;
}

absl::StatusOr<std::shared_ptr<const EpochMaterial>> TicketKeySets::Material(
    const hsm::TicketKeySetInfo& info, int64_t epoch, const hsm::CallOptions& options,
    absl::Duration* store_time) {
  {
    offkey::MutexLock lock(&mu_);
    auto it = sets_.find(info.name);
    if (it != sets_.end() && SameSet(it->second.info, info)) {
      auto cached = it->second.epochs.find(epoch);
      if (cached != it->second.epochs.end()) return cached->second;
    }
  }
  absl::StatusOr<SecretBytes> secret;
  {
    StoreTimer timer(store_time);
    secret = store_->DeriveTicketEpochSecret(info.name, epoch, options);
  }
  if (!secret.ok()) {
    if (absl::IsNotFound(secret.status())) Forget(info.name);
    return secret.status();
  }
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const EpochMaterial> material,
                          EpochMaterial::FromSecret(epoch, *secret));
  const absl::Time now = Now();
  offkey::MutexLock lock(&mu_);
  auto it = sets_.find(info.name);
  // Kept only for a set still cached as the same set (not forgotten meanwhile).
  if (it != sets_.end() && SameSet(it->second.info, info)) {
    it->second.epochs[epoch] = material;
    Prune(it->second, now);
  }
  return material;
}

void TicketKeySets::Forget(absl::string_view name) {
  offkey::MutexLock lock(&mu_);
  auto it = sets_.find(name);
  if (it != sets_.end()) sets_.erase(it);
}

void TicketKeySets::Prune(Entry& entry, absl::Time now) const {
  const int64_t current = EpochAt(now, entry.info.rotation_period);
  for (auto it = entry.epochs.begin(); it != entry.epochs.end();) {
    if (it->first < current - 1 || it->first > current + 1) {
      it = entry.epochs.erase(it);
    } else {
      ++it;
    }
  }
}

size_t TicketKeySets::CachedSetsForTest() const {
  offkey::MutexLock lock(&mu_);
  return sets_.size();
}

size_t TicketKeySets::CachedEpochsForTest(absl::string_view name) const {
  offkey::MutexLock lock(&mu_);
  auto it = sets_.find(name);
  return it == sets_.end() ? 0 : it->second.epochs.size();
}

}  // namespace offkey::service::tickets
