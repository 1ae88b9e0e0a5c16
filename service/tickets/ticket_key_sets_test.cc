#include "service/tickets/ticket_key_sets.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/secret_bytes.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/key_store.h"
#include "hsm/testing/fake_key_store.h"
#include "hsm/testing/forwarding_store.h"

namespace offkey::service::tickets {
namespace {

using ::offkey::hsm::testing::FakeKeyStore;
using ::offkey::testing::IsOk;
using M = FakeKeyStore::Method;

class TicketKeySetsTest : public ::testing::Test {
 protected:
  TicketKeySetsTest() : store_(FakeKeyStore::Create()), sets_(store_.get(), Options()) {}

  TicketKeySets::Options Options() {
    TicketKeySets::Options options;
    options.recheck = absl::Seconds(5);
    options.max_sets = 3;
    options.clock = [this] { return now_; };
    return options;
  }

  int finds() const { return store_->CallCount(M::kFindTicketKeySet); }
  int derives() const { return store_->CallCount(M::kDeriveTicketEpochSecret); }

  std::unique_ptr<FakeKeyStore> store_;
  absl::Time now_ = absl::FromUnixSeconds(1000000);
  TicketKeySets sets_;
};

TEST_F(TicketKeySetsTest, FindIsCachedForTheRecheckInterval) {
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  ASSERT_THAT(sets_.Find("edge"), IsOk());
  ASSERT_THAT(sets_.Find("edge"), IsOk());
  EXPECT_EQ(finds(), 1);
  now_ += absl::Seconds(5);
  ASSERT_THAT(sets_.Find("edge"), IsOk());
  EXPECT_EQ(finds(), 1);
  now_ += absl::Seconds(1);
  ASSERT_THAT(sets_.Find("edge"), IsOk());
  EXPECT_EQ(finds(), 2);
  // A clock that went back does not keep an entry alive.
  now_ -= absl::Hours(1);
  ASSERT_THAT(sets_.Find("edge"), IsOk());
  EXPECT_EQ(finds(), 3);
  EXPECT_EQ(sets_.Find("absent").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TicketKeySetsTest, MaterialIsDerivedOncePerEpoch) {
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  absl::StatusOr<hsm::TicketKeySetInfo> info = sets_.Find("edge");
  ASSERT_THAT(info, IsOk());
  const int64_t current = EpochAt(now_, absl::Seconds(60));
  absl::Duration store_time;
  for (int round = 0; round < 3; ++round) {
    for (int64_t e = current - 1; e <= current + 1; ++e) {
      absl::StatusOr<std::shared_ptr<const EpochMaterial>> m =
          sets_.Material(*info, e, {}, &store_time);
      ASSERT_THAT(m, IsOk());
      EXPECT_EQ((*m)->epoch(), e);
    }
  }
  EXPECT_EQ(derives(), 3);
  EXPECT_EQ(sets_.CachedEpochsForTest("edge"), 3u);
  EXPECT_GT(store_time, absl::ZeroDuration());
  // Different epochs, different keys.
  EXPECT_NE((*sets_.Material(*info, current, {}))->name(),
            (*sets_.Material(*info, current + 1, {}))->name());

  // Two periods on, the old epochs are dropped as new ones come in.
  now_ += absl::Seconds(120);
  info = sets_.Find("edge");
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(sets_.CachedEpochsForTest("edge"), 1u);  // current + 1 is now previous.
  ASSERT_THAT(sets_.Material(*info, current + 2, {}), IsOk());
  ASSERT_THAT(sets_.Material(*info, current + 3, {}), IsOk());
  EXPECT_EQ(sets_.CachedEpochsForTest("edge"), 3u);
  // Three new epochs, and one derived again when the set was rechecked.
  EXPECT_EQ(derives(), 3 + 1 + 2);
}

TEST_F(TicketKeySetsTest, ForgetStopsASetAtOnce) {
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  absl::StatusOr<hsm::TicketKeySetInfo> info = sets_.Find("edge");
  ASSERT_THAT(info, IsOk());
  ASSERT_THAT(sets_.Material(*info, 1, {}), IsOk());
  ASSERT_THAT(store_->DestroyTicketKeySet("edge"), IsOk());
  // Another replica destroyed it: still answered from the cache until the recheck...
  EXPECT_THAT(sets_.Find("edge"), IsOk());
  now_ += absl::Seconds(6);
  // ...and not after it.
  EXPECT_EQ(sets_.Find("edge").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(sets_.CachedSetsForTest(), 0u);

  ASSERT_THAT(store_->CreateTicketKeySet("edge2", absl::Seconds(60)), IsOk());
  info = sets_.Find("edge2");
  ASSERT_THAT(info, IsOk());
  ASSERT_THAT(sets_.Material(*info, 1, {}), IsOk());
  ASSERT_THAT(store_->DestroyTicketKeySet("edge2"), IsOk());
  sets_.Forget("edge2");  // Destroyed through this replica: gone at once.
  EXPECT_EQ(sets_.Find("edge2").status().code(), absl::StatusCode::kNotFound);
  // Material for a set the store no longer has is refused, not served from memory.
  EXPECT_EQ(sets_.Material(*info, 1, {}).status().code(), absl::StatusCode::kNotFound);
}

// Made again at once, so most likely within the same second: the same facts, another
// root. The recheck notices through the key of a cached epoch.
TEST_F(TicketKeySetsTest, RecreatedSetIsAnotherSet) {
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  absl::StatusOr<hsm::TicketKeySetInfo> first = sets_.Find("edge");
  ASSERT_THAT(first, IsOk());
  absl::StatusOr<std::shared_ptr<const EpochMaterial>> old =
      sets_.Material(*first, 1, {});
  ASSERT_THAT(old, IsOk());
  ASSERT_THAT(store_->DestroyTicketKeySet("edge"), IsOk());
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  now_ += absl::Seconds(6);
  absl::StatusOr<hsm::TicketKeySetInfo> second = sets_.Find("edge");
  ASSERT_THAT(second, IsOk());
  absl::StatusOr<std::shared_ptr<const EpochMaterial>> fresh =
      sets_.Material(*second, 1, {});
  ASSERT_THAT(fresh, IsOk());
  EXPECT_NE((*old)->seal_key().view(), (*fresh)->seal_key().view());
}

TEST_F(TicketKeySetsTest, BoundedNumberOfSets) {
  for (int i = 0; i < 5; ++i) {
    const std::string name = absl::StrCat("set", i);
    ASSERT_THAT(store_->CreateTicketKeySet(name, absl::Seconds(60)), IsOk());
    ASSERT_THAT(sets_.Find(name), IsOk());
    now_ += absl::Milliseconds(1);
  }
  EXPECT_EQ(sets_.CachedSetsForTest(), 3u);
  // The least recently checked went first; they still work, from the store.
  const int before = finds();
  ASSERT_THAT(sets_.Find("set0"), IsOk());
  EXPECT_EQ(finds(), before + 1);
}

TEST_F(TicketKeySetsTest, StoreErrorsPassThrough) {
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  absl::StatusOr<hsm::TicketKeySetInfo> info = sets_.Find("edge");
  ASSERT_THAT(info, IsOk());
  store_->FailCall(M::kDeriveTicketEpochSecret, 1, absl::UnavailableError("token busy"));
  EXPECT_EQ(sets_.Material(*info, 1, {}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(sets_.CachedSetsForTest(), 1u);  // A passing error forgets nothing...
  EXPECT_THAT(sets_.Material(*info, 1, {}), IsOk());  // ...and is not cached.
  EXPECT_EQ(derives(), 2);
}

// The recheck's derivation is a store call of the operation that triggered it, so it
// gives up at that operation's deadline like the others.
TEST_F(TicketKeySetsTest, RecheckUsesTheCallersDeadline) {
  class DeadlineRecorder : public hsm::testing::ForwardingStore {
   public:
    using ForwardingStore::ForwardingStore;
    absl::StatusOr<SecretBytes> DeriveTicketEpochSecret(
        absl::string_view name, int64_t epoch, const hsm::CallOptions& options) override {
      deadlines.push_back(options.deadline);
      return ForwardingStore::DeriveTicketEpochSecret(name, epoch, options);
    }
    std::vector<absl::Time> deadlines;
  } recorder(store_.get());
  TicketKeySets sets(&recorder, Options());
  ASSERT_THAT(store_->CreateTicketKeySet("edge", absl::Seconds(60)), IsOk());
  hsm::CallOptions options;
  options.deadline = absl::FromUnixSeconds(2000000);
  absl::StatusOr<hsm::TicketKeySetInfo> info = sets.Find("edge", options);
  ASSERT_THAT(info, IsOk());
  ASSERT_THAT(sets.Material(*info, EpochAt(now_, absl::Seconds(60)), options), IsOk());
  now_ += absl::Seconds(6);
  ASSERT_THAT(sets.Find("edge", options), IsOk());
  EXPECT_EQ(recorder.deadlines,
            std::vector<absl::Time>(2, absl::FromUnixSeconds(2000000)));
}

}  // namespace
}  // namespace offkey::service::tickets
