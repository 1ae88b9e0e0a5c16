// FakeKeyStore: its fault injection here; its KeyStore contracts through the
// conformance suite every store passes.
#include "hsm/testing/fake_key_store.h"

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/testing/key_store_conformance.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::testing {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using Method = FakeKeyStore::Method;

// The fake passes the suite every store passes; another view is OpenAnother.
const KeyStoreFactory kFake{
    "Fake",
    []() -> absl::StatusOr<std::unique_ptr<KeyStore>> { return FakeKeyStore::Create(); },
    [](KeyStore& store) -> absl::StatusOr<std::unique_ptr<KeyStore>> {
      return static_cast<FakeKeyStore&>(store).OpenAnother();
    }};
INSTANTIATE_TEST_SUITE_P(Fake, KeyStoreConformanceTest, ::testing::Values(kFake),
                         KeyStoreFactoryName);
INSTANTIATE_TEST_SUITE_P(Fake, KeyStoreConformanceKeyTest,
                         ::testing::Combine(::testing::Values(kFake),
                                            ::testing::ValuesIn(kAllKeyAlgorithms)),
                         KeyStoreFactoryAndKeyName);

constexpr SignAlgorithm kEcdsaSha256{SignatureKind::kEcdsa, HashAlgorithm::kSha256};

class FakeKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OFFKEY_ASSERT_OK_AND_ASSIGN(key_, store_->GenerateKey("web", KeyAlgorithm::kEcP256));
  }

  absl::Status SignOnce() {
    return store_->Sign(key_.key_id, kEcdsaSha256, "m", {}).status();
  }

  std::unique_ptr<FakeKeyStore> store_ = FakeKeyStore::Create();
  KeyInfo key_;
};

TEST_F(FakeKeyStoreTest, SignsLikeAStore) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::string sig,
                              store_->Sign(key_.key_id, kEcdsaSha256, "hello", {}));
  EXPECT_THAT(VerifyWithOpenSsl(key_.public_key_spki, kEcdsaSha256, "hello", sig),
              IsOk());
}

TEST_F(FakeKeyStoreTest, FailReturnsTheStatusOnEveryCallUntilCleared) {
  store_->Fail(Method::kSign, absl::UnavailableError("HSM gone"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(SignOnce(), StatusIs(absl::StatusCode::kUnavailable, "HSM gone"));
  }
  // Other methods are untouched.
  EXPECT_THAT(store_->FindKey(KeyLookup::Name("web")), IsOk());
  store_->Clear(Method::kSign);
  EXPECT_THAT(SignOnce(), IsOk());
}

TEST_F(FakeKeyStoreTest, FailCallFailsOnlyTheNthCallFromNow) {
  EXPECT_THAT(SignOnce(), IsOk());  // Calls before the fault do not count towards n.
  store_->FailCall(Method::kSign, 2, absl::InternalError("once"));
  EXPECT_THAT(SignOnce(), IsOk());
  EXPECT_THAT(SignOnce(), StatusIs(absl::StatusCode::kInternal, "once"));
  EXPECT_THAT(SignOnce(), IsOk());
  EXPECT_THAT(SignOnce(), IsOk());
}

TEST_F(FakeKeyStoreTest, FailFromCallFailsTheNthCallAndEveryLaterOne) {
  store_->FailFromCall(Method::kSign, 3, absl::DeadlineExceededError("slow"));
  EXPECT_THAT(SignOnce(), IsOk());
  EXPECT_THAT(SignOnce(), IsOk());
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(SignOnce(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  }
  store_->ClearAll();
  EXPECT_THAT(SignOnce(), IsOk());
}

TEST_F(FakeKeyStoreTest, AFailedCallChangesNothing) {
  store_->Fail(Method::kDestroyKey, absl::UnavailableError("no"));
  store_->Fail(Method::kGenerateKey, absl::UnavailableError("no"));
  EXPECT_THAT(store_->DestroyKey(key_.key_id), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store_->GenerateKey("other", KeyAlgorithm::kEcP256),
              StatusIs(absl::StatusCode::kUnavailable));
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<KeyInfo> keys, store_->ListKeys());
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].name, "web");
}

TEST_F(FakeKeyStoreTest, LatencyDelaysEveryCallUntilCleared) {
  store_->SetLatency(Method::kSign, absl::Milliseconds(60));
  absl::Time start = absl::Now();
  EXPECT_THAT(SignOnce(), IsOk());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(60));
  // Latency and a status together: the status comes after the wait.
  store_->Fail(Method::kSign, absl::UnavailableError("late and broken"));
  start = absl::Now();
  EXPECT_THAT(SignOnce(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(60));
  store_->Clear(Method::kSign);
  start = absl::Now();
  EXPECT_THAT(SignOnce(), IsOk());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(60));
}

TEST_F(FakeKeyStoreTest, CountsEveryCallPerMethodFailedOrNot) {
  EXPECT_EQ(store_->CallCount(Method::kGenerateKey), 1);  // SetUp's.
  EXPECT_EQ(store_->CallCount(Method::kSign), 0);
  EXPECT_THAT(SignOnce(), IsOk());
  store_->Fail(Method::kSign, absl::InternalError("x"));
  EXPECT_THAT(SignOnce(), StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(store_->GetMetadata(key_.key_id), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(store_->CallCount(Method::kSign), 2);
  EXPECT_EQ(store_->CallCount(Method::kGetMetadata), 1);
  EXPECT_EQ(store_->CallCount(Method::kCheckHealth), 0);
}

TEST_F(FakeKeyStoreTest, UnhealthyStoreIsUnavailableEverywhereUntilHealthyAgain) {
  store_->SetHealthy(false);
  EXPECT_THAT(store_->CheckHealth(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(SignOnce(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store_->ListKeys(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store_->HmacWithStoreSecret("d", {}),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store_->ListTicketKeySets(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(store_->CreateTicketKeySet("t", absl::Hours(1)),
              StatusIs(absl::StatusCode::kUnavailable));
  store_->SetHealthy(true);
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<TicketKeySetInfo> sets,
                              store_->ListTicketKeySets());
  EXPECT_TRUE(sets.empty());
  EXPECT_THAT(store_->CheckHealth(), IsOk());
  EXPECT_THAT(SignOnce(), IsOk());
}

TEST_F(FakeKeyStoreTest, AnotherStoreSharesKeysButNotFaults) {
  std::unique_ptr<FakeKeyStore> other = store_->OpenAnother();
  store_->Fail(Method::kSign, absl::UnavailableError("only the first"));
  EXPECT_THAT(other->Sign(key_.key_id, kEcdsaSha256, "m", {}), IsOk());
  EXPECT_EQ(other->CallCount(Method::kSign), 1);
  EXPECT_EQ(store_->CallCount(Method::kSign), 0);
  ASSERT_THAT(other->PutMetadata(key_.key_id, "shared"), IsOk());
  EXPECT_THAT(store_->GetMetadata(key_.key_id), IsOk());
  store_.reset();  // The other store keeps the keys alive.
  EXPECT_THAT(other->FindKey(KeyLookup::Name("web")), IsOk());
}

TEST_F(FakeKeyStoreTest, TicketDerivationFaultsLeaveTheSetAlone) {
  ASSERT_THAT(store_->CreateTicketKeySet("tickets", absl::Hours(1)), IsOk());
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes before,
                              store_->DeriveTicketEpochSecret("tickets", 3, {}));
  store_->FailCall(Method::kDeriveTicketEpochSecret, 1,
                   absl::UnavailableError("HSM busy"));
  EXPECT_THAT(store_->DeriveTicketEpochSecret("tickets", 3, {}),
              StatusIs(absl::StatusCode::kUnavailable));
  OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes after,
                              store_->DeriveTicketEpochSecret("tickets", 3, {}));
  EXPECT_EQ(after.view(), before.view());
  EXPECT_EQ(store_->CallCount(Method::kDeriveTicketEpochSecret), 3);
  EXPECT_EQ(store_->CallCount(Method::kCreateTicketKeySet), 1);
}

TEST(FakeKeyStoreMethodTest, NamesEveryMethod) {
  EXPECT_EQ(FakeKeyStore::MethodName(Method::kCreateTicketKeySet), "kCreateTicketKeySet");
  EXPECT_EQ(FakeKeyStore::MethodName(Method::kDeriveTicketEpochSecret),
            "kDeriveTicketEpochSecret");
  EXPECT_EQ(FakeKeyStore::MethodName(Method::kGenerateKey), "kGenerateKey");
  EXPECT_EQ(FakeKeyStore::MethodName(Method::kCheckHealth), "kCheckHealth");
  EXPECT_EQ(FakeKeyStore::MethodName(Method::kRsaDecryptRaw), "kRsaDecryptRaw");
}

}  // namespace
}  // namespace offkey::hsm::testing
