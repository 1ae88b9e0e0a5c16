// Unit tests of KeyCatalog over a FakeKeyStore: lookups, metadata defaults, the ttl
// refresher, the miss-reload limit and what a failing store does to lookups.
#include "service/key_catalog.h"

#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/testing/caller_thread_store.h"
#include "hsm/testing/fake_key_store.h"
#include "service/dev/dev_pki.h"

namespace offkey::service {
namespace {

using ::offkey::hsm::KeyAlgorithm;
using ::offkey::hsm::KeyInfo;
using ::offkey::hsm::testing::FakeKeyStore;
using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using M = FakeKeyStore::Method;

constexpr absl::Duration kLong = absl::Hours(1);

offkey::v1::KeyRef ByName(absl::string_view name) {
  offkey::v1::KeyRef ref;
  ref.set_name(std::string(name));
  return ref;
}

std::string Sha256(absl::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::vector<std::string> Names(
    const std::vector<std::shared_ptr<const KeyRecord>>& records) {
  std::vector<std::string> names;
  for (const auto& record : records) names.push_back(record->info.name);
  return names;
}

// Waits (up to 5 s) until `method` has been called more than `calls` times.
bool WaitForCall(const FakeKeyStore& store, M method, int calls) {
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (store.CallCount(method) <= calls) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

using hsm::testing::CallerThreadStore;

class KeyCatalogTest : public ::testing::Test {
 protected:
  KeyInfo Add(absl::string_view name, KeyAlgorithm algorithm = KeyAlgorithm::kEcP256) {
    absl::StatusOr<KeyInfo> info = store_->GenerateKey(name, algorithm);
    EXPECT_THAT(info, IsOk());
    return info.ok() ? *info : KeyInfo();
  }

  std::unique_ptr<FakeKeyStore> store_ = FakeKeyStore::Create();
};

TEST_F(KeyCatalogTest, FindsByEveryKindOfReference) {
  KeyInfo web = Add("web");
  // The store checks only that each certificate is DER X.509, not that it fits the key.
  OFFKEY_ASSERT_OK_AND_ASSIGN(service::dev::IssuedCert leaf,
                              service::dev::MakeCa("leaf"));
  OFFKEY_ASSERT_OK_AND_ASSIGN(service::dev::IssuedCert ca, service::dev::MakeCa("ca"));
  std::vector<std::string> chain(2);
  OFFKEY_ASSERT_OK_AND_ASSIGN(chain[0], service::dev::PemToDer(leaf.cert_pem));
  OFFKEY_ASSERT_OK_AND_ASSIGN(chain[1], service::dev::PemToDer(ca.cert_pem));
  ASSERT_THAT(store_->PutCertificateChain(web.key_id, chain), IsOk());
  KeyCatalog catalog(store_.get(), kLong, kLong);

  offkey::v1::KeyRef ref = ByName("web");
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto by_name, catalog.Find(ref));
  EXPECT_EQ(by_name->info.key_id, web.key_id);
  EXPECT_EQ(by_name->chain, chain);
  EXPECT_EQ(by_name->cert_sha256, Sha256(chain[0]));
  EXPECT_EQ(by_name->rsa_modulus_bytes, 0u);

  ref.set_key_id(web.key_id);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto by_id, catalog.Find(ref));
  EXPECT_EQ(by_id, by_name);
  ref.set_ski(web.ski);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto by_ski, catalog.Find(ref));
  EXPECT_EQ(by_ski, by_name);
  ref.set_cert_sha256(Sha256(chain[0]));
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto by_cert, catalog.Find(ref));
  EXPECT_EQ(by_cert, by_name);

  // A name is not a key id, and the hash of a non-leaf certificate finds nothing.
  ref.set_key_id("web");
  EXPECT_THAT(catalog.Find(ref), StatusIs(absl::StatusCode::kNotFound));
  ref.set_cert_sha256(Sha256(chain[1]));
  EXPECT_THAT(catalog.Find(ref), StatusIs(absl::StatusCode::kNotFound));
  // One token walk served all of it.
  EXPECT_EQ(store_->CallCount(M::kListKeys), 1);
}

TEST_F(KeyCatalogTest, MalformedReferencesAreRefusedWithoutTouchingTheStore) {
  Add("web");
  KeyCatalog catalog(store_.get(), kLong, kLong);
  EXPECT_THAT(catalog.Find(offkey::v1::KeyRef()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("key:")));
  EXPECT_THAT(catalog.Find(ByName("")), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(catalog.Find(ByName(std::string(257, 'a'))),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->CallCount(M::kListKeys), 0);
}

TEST_F(KeyCatalogTest, MetadataDefaultsAndUnreadableMetadata) {
  KeyInfo plain = Add("plain");
  KeyInfo labelled = Add("labelled");
  KeyInfo garbage = Add("garbage");
  KeyInfo future = Add("future");
  KeyInfo rsa = Add("rsa", KeyAlgorithm::kRsa2048);

  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_usage(offkey::v1::GENERAL_SIGNING);
  metadata.set_state(offkey::v1::DISABLED);
  (*metadata.mutable_labels())["team"] = "edge";
  ASSERT_THAT(store_->PutMetadata(labelled.key_id, metadata.SerializeAsString()), IsOk());
  ASSERT_THAT(store_->PutMetadata(garbage.key_id, "\xff\xff not a proto"), IsOk());
  offkey::v1::KeyMetadata v2;
  v2.set_format_version(2);
  v2.set_state(offkey::v1::ENABLED);
  ASSERT_THAT(store_->PutMetadata(future.key_id, v2.SerializeAsString()), IsOk());

  KeyCatalog catalog(store_.get(), kLong, kLong);
  // Keys made by other tools: the most restrictive reading, but usable.
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto key, catalog.Find(ByName("plain")));
  EXPECT_EQ(key->metadata.usage(), offkey::v1::TLS_SERVER);
  EXPECT_EQ(key->metadata.state(), offkey::v1::ENABLED);
  EXPECT_TRUE(key->metadata.labels().empty());
  EXPECT_TRUE(key->chain.empty());
  EXPECT_EQ(key->cert_sha256, "");

  OFFKEY_ASSERT_OK_AND_ASSIGN(key, catalog.Find(ByName("labelled")));
  EXPECT_EQ(key->metadata.usage(), offkey::v1::GENERAL_SIGNING);
  EXPECT_EQ(key->metadata.state(), offkey::v1::DISABLED);
  EXPECT_EQ(key->metadata.labels().at("team"), "edge");

  // Unreadable state never makes a key usable.
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, catalog.Find(ByName("garbage")));
  EXPECT_EQ(key->metadata.state(), offkey::v1::DISABLED);
  OFFKEY_ASSERT_OK_AND_ASSIGN(key, catalog.Find(ByName("future")));
  EXPECT_EQ(key->metadata.state(), offkey::v1::DISABLED);

  OFFKEY_ASSERT_OK_AND_ASSIGN(key, catalog.Find(ByName("rsa")));
  EXPECT_EQ(key->rsa_modulus_bytes, 256u);

  OFFKEY_ASSERT_OK_AND_ASSIGN(auto all, catalog.All());
  EXPECT_THAT(Names(all), ElementsAre("future", "garbage", "labelled", "plain", "rsa"));
}

// KeyStore::ListKeys promises no order; All() promises name order whatever the store.
TEST_F(KeyCatalogTest, AllIsSortedByNameWhateverTheStoreOrder) {
  class ReversedStore : public hsm::testing::ForwardingStore {
   public:
    using ForwardingStore::ForwardingStore;
    absl::StatusOr<std::vector<KeyInfo>> ListKeys() override {
      absl::StatusOr<std::vector<KeyInfo>> keys = ForwardingStore::ListKeys();
      if (keys.ok()) std::reverse(keys->begin(), keys->end());
      return keys;
    }
  };
  Add("b");
  Add("c");
  Add("a");
  ReversedStore reversed(store_.get());
  KeyCatalog catalog(&reversed, kLong, kLong);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto all, catalog.All());
  EXPECT_THAT(Names(all), ElementsAre("a", "b", "c"));
}

TEST(ParseKeyMetadataTest, RefusesGarbageAndUnknownVersions) {
  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_state(offkey::v1::PENDING_DESTRUCTION);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto parsed,
                              ParseKeyMetadata(metadata.SerializeAsString()));
  EXPECT_EQ(parsed.state(), offkey::v1::PENDING_DESTRUCTION);
  EXPECT_THAT(ParseKeyMetadata("\xff\xff"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseKeyMetadata(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format 0")));
  metadata.set_format_version(7);
  EXPECT_THAT(ParseKeyMetadata(metadata.SerializeAsString()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("format 7")));
}

TEST_F(KeyCatalogTest, RefresherPicksUpNewKeysAfterTtl) {
  Add("a");
  KeyCatalog catalog(store_.get(), absl::Milliseconds(200), kLong);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto all, catalog.All());
  EXPECT_THAT(Names(all), ElementsAre("a"));
  const int loads = store_->CallCount(M::kListKeys);

  Add("b");
  // Within the ttl the snapshot stands, and a miss may not reload yet.
  OFFKEY_ASSERT_OK_AND_ASSIGN(all, catalog.All());
  EXPECT_THAT(Names(all), ElementsAre("a"));
  EXPECT_THAT(catalog.Find(ByName("b")), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(store_->CallCount(M::kListKeys), loads);

  // The background refresher reloads without a lookup asking.
  ASSERT_TRUE(WaitForCall(*store_, M::kListKeys, loads));
  absl::SleepFor(absl::Milliseconds(50));  // Let it publish.
  OFFKEY_ASSERT_OK_AND_ASSIGN(all, catalog.All());
  EXPECT_THAT(Names(all), ElementsAre("a", "b"));
  EXPECT_THAT(catalog.Find(ByName("b")), IsOk());
}

TEST_F(KeyCatalogTest, RefresherDoesNothingUntilTheFirstLookup) {
  Add("a");
  KeyCatalog catalog(store_.get(), absl::Milliseconds(20), kLong);
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(store_->CallCount(M::kListKeys), 0);
}

TEST_F(KeyCatalogTest, RefreshAndInvalidateShowChangesAtOnce) {
  Add("a");
  KeyCatalog catalog(store_.get(), kLong, kLong);
  ASSERT_THAT(catalog.Find(ByName("a")), IsOk());
  KeyInfo b = Add("b");
  ASSERT_THAT(catalog.Refresh(), IsOk());
  EXPECT_THAT(catalog.Find(ByName("b")), IsOk());

  ASSERT_THAT(store_->DestroyKey(b.key_id), IsOk());
  EXPECT_THAT(catalog.Find(ByName("b")), IsOk());  // Cached until told.
  catalog.Invalidate();
  EXPECT_THAT(catalog.Find(ByName("b")), StatusIs(absl::StatusCode::kNotFound));
}

// A miss answers from memory: no store call in the request path, whatever the store's
// health, so an unknown key costs what a known one does. The reload it asks for runs in
// the background, at most once per min_miss_reload, and finds a key made meanwhile.
TEST_F(KeyCatalogTest, MissAnswersAtOnceAndReloadsInTheBackground) {
  Add("a");
  CallerThreadStore observed(store_.get());
  KeyCatalog catalog(&observed, kLong, absl::Seconds(1));
  ASSERT_THAT(catalog.Find(ByName("a")), IsOk());
  ASSERT_EQ(store_->CallCount(M::kListKeys), 1);
  const int on_caller_thread = observed.calls();

  // Misses right after a load neither call the store nor start a reload yet.
  Add("late");
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(catalog.Find(ByName("late")), StatusIs(absl::StatusCode::kNotFound));
  }
  EXPECT_EQ(store_->CallCount(M::kListKeys), 1);

  // The reload they asked for comes once min_miss_reload has passed, and only one.
  ASSERT_TRUE(WaitForCall(*store_, M::kListKeys, 1));
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (!catalog.Find(ByName("late")).ok() && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_THAT(catalog.Find(ByName("late")), IsOk());
  EXPECT_EQ(store_->CallCount(M::kListKeys), 2);

  // With the store down, a miss is still NOT_FOUND from memory, and a hit still served.
  store_->SetHealthy(false);
  for (int i = 0; i < 20; ++i) {
    EXPECT_THAT(catalog.Find(ByName("nope")), StatusIs(absl::StatusCode::kNotFound));
  }
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());
  EXPECT_EQ(observed.calls(), on_caller_thread);
}

// Even with no rate limit at all, a miss leaves the token to the background thread: a
// failing store does not turn an unknown key into the store's error.
TEST_F(KeyCatalogTest, MissDoesNotReloadInTheRequestPathEvenWhenAllowedTo) {
  Add("a");
  CallerThreadStore observed(store_.get());
  // min_miss_reload zero: under the old rule every miss walked the token synchronously.
  KeyCatalog catalog(&observed, kLong, absl::ZeroDuration());
  ASSERT_THAT(catalog.Find(ByName("a")), IsOk());
  const int on_caller_thread = observed.calls();
  store_->Fail(M::kListKeys, absl::UnavailableError("token removed"));
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT(catalog.Find(ByName("ghost")), StatusIs(absl::StatusCode::kNotFound));
  }
  EXPECT_EQ(observed.calls(), on_caller_thread);
}

TEST_F(KeyCatalogTest, FirstLookupWithTheHsmDownGivesTheStoreError) {
  Add("a");
  store_->SetHealthy(false);
  KeyCatalog catalog(store_.get(), kLong, kLong);
  EXPECT_THAT(catalog.Find(ByName("a")), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(catalog.All(), StatusIs(absl::StatusCode::kUnavailable));
  store_->SetHealthy(true);
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());
}

TEST_F(KeyCatalogTest, HsmDownKeepsTheLastGoodCatalogThenReportsUnavailable) {
  Add("a");
  const absl::Duration ttl = absl::Milliseconds(200);
  KeyCatalog catalog(store_.get(), ttl, kLong);
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto before, catalog.Find(ByName("a")));
  const int loads = store_->CallCount(M::kListKeys);
  const absl::Time loaded = absl::Now();

  store_->SetHealthy(false);
  // The refresher tries and fails; lookups keep the last good snapshot.
  ASSERT_TRUE(WaitForCall(*store_, M::kListKeys, loads));
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto during, catalog.Find(ByName("a")));
  EXPECT_EQ(during, before);
  EXPECT_THAT(catalog.All(), IsOk());
  EXPECT_THAT(catalog.Refresh(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());

  // A snapshot more than 3 ttl old is not served: the lookup reports the store's error.
  absl::SleepFor(loaded + 3 * ttl + absl::Milliseconds(50) - absl::Now());
  EXPECT_THAT(catalog.Find(ByName("a")), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(catalog.All(), StatusIs(absl::StatusCode::kUnavailable));

  // Back up: served again without intervention.
  store_->SetHealthy(true);
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());
}

TEST_F(KeyCatalogTest, InvalidateWhileHsmDownGivesTheStoreError) {
  Add("a");
  KeyCatalog catalog(store_.get(), kLong, kLong);
  ASSERT_THAT(catalog.Find(ByName("a")), IsOk());
  store_->Fail(M::kListKeys, absl::DeadlineExceededError("no session"));
  catalog.Invalidate();
  EXPECT_THAT(catalog.Find(ByName("a")),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no session")));
  store_->Clear(M::kListKeys);
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());
}

TEST_F(KeyCatalogTest, MetadataAndChainErrorsFailTheLoad) {
  Add("a");
  KeyCatalog catalog(store_.get(), kLong, kLong);
  // NOT_FOUND metadata is "none stored"; any other error is the load's.
  store_->Fail(M::kGetMetadata, absl::UnavailableError("token removed"));
  EXPECT_THAT(catalog.Find(ByName("a")), StatusIs(absl::StatusCode::kUnavailable));
  store_->Clear(M::kGetMetadata);
  store_->Fail(M::kGetCertificateChain, absl::InternalError("CKR_GENERAL_ERROR"));
  EXPECT_THAT(catalog.Find(ByName("a")), StatusIs(absl::StatusCode::kInternal));
  store_->ClearAll();
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());
}

// The header's promise: a miss reloads at most once per min_miss_reload, so unknown key
// ids cannot make offkeyd hammer the HSM. That must hold when the reload fails too —
// exactly when the HSM is in trouble.
TEST_F(KeyCatalogTest, FailedMissReloadsAreAlsoLimited) {
  Add("a");
  KeyCatalog catalog(store_.get(), kLong, absl::Milliseconds(100));
  ASSERT_THAT(catalog.Find(ByName("a")), IsOk());
  store_->Fail(M::kListKeys, absl::UnavailableError("token removed"));
  absl::SleepFor(absl::Milliseconds(150));
  const int before = store_->CallCount(M::kListKeys);
  for (int i = 0; i < 20; ++i) catalog.Find(ByName("nope")).IgnoreError();
  EXPECT_LE(store_->CallCount(M::kListKeys), before + 1);
  // Known keys are still served from the last good snapshot.
  EXPECT_THAT(catalog.Find(ByName("a")), IsOk());
}

}  // namespace
}  // namespace offkey::service
