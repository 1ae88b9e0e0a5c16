#include "service/tickets/ticket_crypto.h"

#include <memory>
#include <set>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/secret_bytes.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service::tickets {
namespace {

using ::offkey::testing::IsOk;
using Result = Unsealed::Result;

// 'k' * 32, the secret of the known answers below.
std::shared_ptr<const EpochMaterial> KnownMaterial(int64_t epoch) {
  absl::StatusOr<std::shared_ptr<const EpochMaterial>> m =
      EpochMaterial::FromSecret(epoch, SecretBytes(std::string(kEpochSecretBytes, 'k')));
  EXPECT_THAT(m, IsOk());
  return *m;
}

// Material as a store would give it: a secret per root (`fill`) and epoch.
std::shared_ptr<const EpochMaterial> Material(int64_t epoch, char fill = 'k') {
  std::string secret = absl::StrCat(std::string(1, fill), ":", epoch);
  secret.resize(kEpochSecretBytes, fill);
  absl::StatusOr<std::shared_ptr<const EpochMaterial>> m =
      EpochMaterial::FromSecret(epoch, SecretBytes(secret));
  EXPECT_THAT(m, IsOk());
  return *m;
}

// A source that hands out material for any epoch and counts how often it was asked.
struct CountingSource {
  int calls = 0;
  char fill = 'k';
  MaterialSource Get() {
    return [this](int64_t epoch) -> absl::StatusOr<std::shared_ptr<const EpochMaterial>> {
      ++calls;
      return Material(epoch, fill);
    };
  }
};

TEST(EpochTest, FloorOfTimeOverPeriod) {
  const absl::Duration hour = absl::Hours(1);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(0), hour), 0);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(3599), hour), 0);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(3600), hour), 1);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(1700000000), hour), 1700000000 / 3600);
  // Sub-second time belongs to the second it is in.
  EXPECT_EQ(EpochAt(absl::FromUnixMillis(3599999), hour), 0);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(25), absl::Seconds(10)), 2);
  // Before 1970 epochs count down (floor, not truncation).
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(-1), absl::Seconds(10)), -1);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(-10), absl::Seconds(10)), -1);
  EXPECT_EQ(EpochAt(absl::FromUnixSeconds(-11), absl::Seconds(10)), -2);
}

TEST(EpochTest, SpansAreConsecutive) {
  const absl::Duration period = absl::Seconds(3600);
  const int64_t n = 472222;
  EXPECT_EQ(EpochStart(n, period), absl::FromUnixSeconds(n * 3600));
  EXPECT_EQ(EpochEnd(n, period), absl::FromUnixSeconds((n + 1) * 3600));
  EXPECT_EQ(EpochEnd(n, period), EpochStart(n + 1, period));
  // Every instant of the span maps back to its epoch, and only those.
  EXPECT_EQ(EpochAt(EpochStart(n, period), period), n);
  EXPECT_EQ(EpochAt(EpochEnd(n, period) - absl::Nanoseconds(1), period), n);
  EXPECT_EQ(EpochAt(EpochEnd(n, period), period), n + 1);
}

// RFC 5869 appendix A.1: the Expand step of test case 1.
TEST(HkdfTest, Rfc5869TestCase1Expand) {
  const SecretBytes prk(absl::HexStringToBytes(
      "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"));
  const std::string info = absl::HexStringToBytes("f0f1f2f3f4f5f6f7f8f9");
  absl::StatusOr<SecretBytes> okm = HkdfSha256Expand(prk, info, 42);
  ASSERT_THAT(okm, IsOk());
  EXPECT_EQ(absl::BytesToHexString(okm->view()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8"
            "87185865");
}

// Expected values computed with an independent implementation (Python's cryptography
// package: HKDFExpand and AESGCM) from the secret 'k' * 32.
TEST(EpochMaterialTest, KnownAnswer) {
  std::shared_ptr<const EpochMaterial> m = KnownMaterial(5);
  EXPECT_EQ(m->epoch(), 5);
  const std::string ticket_key = absl::HexStringToBytes(
      "3e81004a77f0ead8fc1527a58e305f23e3910540a5a9e5ff911503bad1b2478cc21c7900c81b402e"
      "ccbf06a9cee062c99d37bc7fcf456aa5ad70d29ddcb3b871c300f5b07f008c1bbc8cc02aaf7abedb");
  EXPECT_EQ(m->name(), ticket_key.substr(0, 16));
  EXPECT_EQ(m->aes_key(), ticket_key.substr(16, 32));
  EXPECT_EQ(m->hmac_key(), ticket_key.substr(48, 32));
  EXPECT_EQ(absl::BytesToHexString(m->seal_key().view()),
            "40226929a5e0b0b1415e4a1fbcbc3731bfb29e5906dfa50ebdf23394bd543d2f");
}

TEST(EpochMaterialTest, RefusesSecretsOfOtherSizes) {
  EXPECT_FALSE(EpochMaterial::FromSecret(1, SecretBytes(std::string(31, 'k'))).ok());
  EXPECT_FALSE(EpochMaterial::FromSecret(1, SecretBytes()).ok());
}

TEST(EpochMaterialTest, DifferentSecretsDifferentKeys) {
  std::shared_ptr<const EpochMaterial> a = Material(1, 'a');
  std::shared_ptr<const EpochMaterial> b = Material(1, 'b');
  EXPECT_NE(a->name(), b->name());
  EXPECT_NE(a->aes_key(), b->aes_key());
  EXPECT_NE(a->hmac_key(), b->hmac_key());
  EXPECT_NE(a->seal_key().view(), b->seal_key().view());
  // The sealing key is not a part of the ticket key handed to terminators.
  EXPECT_EQ(std::string(a->aes_key()).find(std::string(a->seal_key().view())),
            std::string::npos);
  EXPECT_NE(a->aes_key(), a->seal_key().view());
  EXPECT_NE(a->hmac_key(), a->seal_key().view());
}

TEST(SealTest, OpensAKnownAnswerFromAnotherImplementation) {
  const std::string sealed = absl::HexStringToBytes(
      "010000000000000005000102030405060708090a0b845e8905a6f2657e0534f650cee8143f0d7711"
      "2535f09dff627517890d30c321");
  absl::StatusOr<Unsealed> got =
      Unseal("edge", sealed, 5,
             [](int64_t epoch) -> absl::StatusOr<std::shared_ptr<const EpochMaterial>> {
               return KnownMaterial(epoch);
             });
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->result, Result::kOpened);
  EXPECT_EQ(got->plaintext.view(), "resumption state");
  EXPECT_FALSE(got->renew);
  EXPECT_EQ(got->epoch, 5);
}

TEST(SealTest, LayoutAndRoundTrip) {
  std::shared_ptr<const EpochMaterial> m = Material(0x0102030405060708);
  absl::StatusOr<std::string> sealed = Seal(*m, "edge", "state");
  ASSERT_THAT(sealed, IsOk());
  ASSERT_EQ(sealed->size(), 1 + 8 + 12 + 5 + 16);
  EXPECT_EQ((*sealed)[0], '\x01');
  EXPECT_EQ(sealed->substr(1, 8), absl::HexStringToBytes("0102030405060708"));
  std::optional<SealedParts> parts = ParseSealed(*sealed);
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(parts->epoch, 0x0102030405060708);
  EXPECT_EQ(parts->ciphertext.size(), 5u);
  EXPECT_NE(parts->ciphertext, "state");
  CountingSource source;
  absl::StatusOr<Unsealed> got = Unseal("edge", *sealed, m->epoch(), source.Get());
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->result, Result::kOpened);
  EXPECT_EQ(got->plaintext.view(), "state");
  EXPECT_EQ(source.calls, 1);
}

TEST(SealTest, FreshNonceEachTime) {
  std::shared_ptr<const EpochMaterial> m = Material(7);
  std::set<std::string> seen;
  for (int i = 0; i < 32; ++i) {
    absl::StatusOr<std::string> sealed = Seal(*m, "edge", "same state");
    ASSERT_THAT(sealed, IsOk());
    seen.insert(sealed->substr(9, kNonceBytes));
  }
  EXPECT_EQ(seen.size(), 32u);
}

TEST(SealTest, SizeLimits) {
  std::shared_ptr<const EpochMaterial> m = Material(7);
  EXPECT_FALSE(Seal(*m, "edge", "").ok());
  EXPECT_FALSE(Seal(*m, "edge", std::string(kMaxPlaintextBytes + 1, 'x')).ok());
  absl::StatusOr<std::string> largest =
      Seal(*m, "edge", std::string(kMaxPlaintextBytes, 'x'));
  ASSERT_THAT(largest, IsOk());
  EXPECT_LE(largest->size(), kMaxPlaintextBytes + 64);
  CountingSource source;
  absl::StatusOr<Unsealed> got = Unseal("edge", *largest, 7, source.Get());
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->result, Result::kOpened);
}

TEST(UnsealTest, WindowAndRenew) {
  for (int64_t sealed_in : {9, 10, 11}) {
    absl::StatusOr<std::string> sealed = Seal(*Material(sealed_in), "edge", "state");
    ASSERT_THAT(sealed, IsOk());
    CountingSource source;
    absl::StatusOr<Unsealed> got = Unseal("edge", *sealed, 10, source.Get());
    ASSERT_THAT(got, IsOk());
    EXPECT_EQ(got->result, Result::kOpened) << sealed_in;
    EXPECT_EQ(got->renew, sealed_in < 10) << sealed_in;
    EXPECT_EQ(got->epoch, sealed_in);
  }
  // Outside the window: EXPIRED, decided before any key is asked for.
  for (int64_t sealed_in : {int64_t{8}, int64_t{12}, int64_t{-5}, INT64_MIN, INT64_MAX}) {
    absl::StatusOr<std::string> sealed = Seal(*Material(sealed_in), "edge", "state");
    ASSERT_THAT(sealed, IsOk());
    CountingSource source;
    absl::StatusOr<Unsealed> got = Unseal("edge", *sealed, 10, source.Get());
    ASSERT_THAT(got, IsOk());
    EXPECT_EQ(got->result, Result::kExpired) << sealed_in;
    EXPECT_EQ(got->epoch, sealed_in);
    EXPECT_TRUE(got->plaintext.empty());
    EXPECT_EQ(source.calls, 0);
  }
  // The window holds at the ends of int64 too.
  absl::StatusOr<std::string> top = Seal(*Material(INT64_MAX), "edge", "state");
  ASSERT_THAT(top, IsOk());
  CountingSource source;
  EXPECT_EQ(Unseal("edge", *top, INT64_MAX - 1, source.Get())->result, Result::kOpened);
  EXPECT_EQ(Unseal("edge", *top, INT64_MIN, source.Get())->result, Result::kExpired);
}

TEST(UnsealTest, TamperedOrForeignIsInvalid) {
  std::shared_ptr<const EpochMaterial> m = Material(10);
  absl::StatusOr<std::string> sealed = Seal(*m, "edge", "session state");
  ASSERT_THAT(sealed, IsOk());
  // Every single-bit flip, anywhere but the epoch (a changed epoch may leave the
  // window), fails as INVALID.
  for (size_t i = 0; i < sealed->size(); ++i) {
    if (i >= 1 && i < 9) continue;
    std::string bad = *sealed;
    bad[i] ^= 0x01;
    CountingSource source;
    absl::StatusOr<Unsealed> got = Unseal("edge", bad, 10, source.Get());
    ASSERT_THAT(got, IsOk());
    EXPECT_EQ(got->result, Result::kInvalid) << "byte " << i;
    EXPECT_TRUE(got->plaintext.empty());
  }
  // An epoch changed within the window: another key, so INVALID.
  std::string moved = *sealed;
  moved[8] ^= 0x01;  // 10 -> 11
  CountingSource source;
  EXPECT_EQ(Unseal("edge", moved, 10, source.Get())->result, Result::kInvalid);
  // Another set (associated data), another root secret.
  EXPECT_EQ(Unseal("edge2", *sealed, 10, source.Get())->result, Result::kInvalid);
  CountingSource other_root;
  other_root.fill = 'z';
  EXPECT_EQ(Unseal("edge", *sealed, 10, other_root.Get())->result, Result::kInvalid);
  // Truncated, extended, wrong version, empty: malformed, no epoch reported.
  for (const std::string& bad : {sealed->substr(0, kSealedOverheadBytes), std::string(),
                                 std::string("\x02") + sealed->substr(1),
                                 std::string(kMaxSealedBytes + 1, '\x01')}) {
    absl::StatusOr<Unsealed> got = Unseal("edge", bad, 10, source.Get());
    ASSERT_THAT(got, IsOk());
    EXPECT_EQ(got->result, Result::kInvalid);
    EXPECT_FALSE(got->epoch.has_value());
  }
}

TEST(UnsealTest, StoreErrorsAreErrors) {
  absl::StatusOr<std::string> sealed = Seal(*Material(10), "edge", "state");
  ASSERT_THAT(sealed, IsOk());
  absl::StatusOr<Unsealed> got =
      Unseal("edge", *sealed, 10,
             [](int64_t) -> absl::StatusOr<std::shared_ptr<const EpochMaterial>> {
               return absl::UnavailableError("token gone");
             });
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace offkey::service::tickets
