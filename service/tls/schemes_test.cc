#include "service/tls/schemes.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/key_types.h"
#include "offkey/v1/common.pb.h"

namespace offkey::service::tls {
namespace {

using ::offkey::testing::IsOk;

using hsm::HashAlgorithm;
using hsm::KeyAlgorithm;
using hsm::SignatureKind;
using offkey::v1::SignatureScheme;
using offkey::v1::TlsVersion;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

SignatureScheme Scheme(int value) { return static_cast<SignatureScheme>(value); }
TlsVersion Version(int value) { return static_cast<TlsVersion>(value); }

// Written from RFC 8446 §4.2.3, RFC 5246/8422 and offkey's rule that its RSA keys are
// rsaEncryption keys, NOT from the table under test. Every (scheme, key) pair missing
// here must be refused in every TLS version.
struct Allowed {
  SignatureScheme scheme;
  KeyAlgorithm key;
  bool tls12;
  bool tls13;
};

constexpr Allowed kAllowed[] = {
    // RSA: PSS with rsaEncryption keys everywhere, PKCS#1 v1.5 only before TLS 1.3,
    // rsa_pss_pss_* never (no RSASSA-PSS keys in offkey).
    {offkey::v1::RSA_PSS_RSAE_SHA256, KeyAlgorithm::kRsa2048, true, true},
    {offkey::v1::RSA_PSS_RSAE_SHA384, KeyAlgorithm::kRsa2048, true, true},
    {offkey::v1::RSA_PSS_RSAE_SHA512, KeyAlgorithm::kRsa2048, true, true},
    {offkey::v1::RSA_PKCS1_SHA256, KeyAlgorithm::kRsa2048, true, false},
    {offkey::v1::RSA_PKCS1_SHA384, KeyAlgorithm::kRsa2048, true, false},
    {offkey::v1::RSA_PKCS1_SHA512, KeyAlgorithm::kRsa2048, true, false},
    {offkey::v1::RSA_PSS_RSAE_SHA256, KeyAlgorithm::kRsa3072, true, true},
    {offkey::v1::RSA_PSS_RSAE_SHA384, KeyAlgorithm::kRsa3072, true, true},
    {offkey::v1::RSA_PSS_RSAE_SHA512, KeyAlgorithm::kRsa3072, true, true},
    {offkey::v1::RSA_PKCS1_SHA256, KeyAlgorithm::kRsa3072, true, false},
    {offkey::v1::RSA_PKCS1_SHA384, KeyAlgorithm::kRsa3072, true, false},
    {offkey::v1::RSA_PKCS1_SHA512, KeyAlgorithm::kRsa3072, true, false},
    {offkey::v1::RSA_PSS_RSAE_SHA256, KeyAlgorithm::kRsa4096, true, true},
    {offkey::v1::RSA_PSS_RSAE_SHA384, KeyAlgorithm::kRsa4096, true, true},
    {offkey::v1::RSA_PSS_RSAE_SHA512, KeyAlgorithm::kRsa4096, true, true},
    {offkey::v1::RSA_PKCS1_SHA256, KeyAlgorithm::kRsa4096, true, false},
    {offkey::v1::RSA_PKCS1_SHA384, KeyAlgorithm::kRsa4096, true, false},
    {offkey::v1::RSA_PKCS1_SHA512, KeyAlgorithm::kRsa4096, true, false},
    // ECDSA: the curve is bound to the code point in TLS 1.3 only.
    {offkey::v1::ECDSA_SECP256R1_SHA256, KeyAlgorithm::kEcP256, true, true},
    {offkey::v1::ECDSA_SECP384R1_SHA384, KeyAlgorithm::kEcP256, true, false},
    {offkey::v1::ECDSA_SECP521R1_SHA512, KeyAlgorithm::kEcP256, true, false},
    {offkey::v1::ECDSA_SECP256R1_SHA256, KeyAlgorithm::kEcP384, true, false},
    {offkey::v1::ECDSA_SECP384R1_SHA384, KeyAlgorithm::kEcP384, true, true},
    {offkey::v1::ECDSA_SECP521R1_SHA512, KeyAlgorithm::kEcP384, true, false},
    {offkey::v1::ECDSA_SECP256R1_SHA256, KeyAlgorithm::kEcP521, true, false},
    {offkey::v1::ECDSA_SECP384R1_SHA384, KeyAlgorithm::kEcP521, true, false},
    {offkey::v1::ECDSA_SECP521R1_SHA512, KeyAlgorithm::kEcP521, true, true},
    // Ed25519: TLS 1.3 and, since RFC 8422, TLS 1.2.
    {offkey::v1::ED25519, KeyAlgorithm::kEd25519, true, true},
};

// The 13 schemes offkey defines, plus values it must treat as unknown: 0 (unset), IANA
// code points offkey does not support (SHA-1 and Ed448) and a made-up value.
const std::vector<SignatureScheme>& MatrixSchemes() {
  static const auto* schemes = new std::vector<SignatureScheme>{
      offkey::v1::RSA_PKCS1_SHA256,
      offkey::v1::RSA_PKCS1_SHA384,
      offkey::v1::RSA_PKCS1_SHA512,
      offkey::v1::ECDSA_SECP256R1_SHA256,
      offkey::v1::ECDSA_SECP384R1_SHA384,
      offkey::v1::ECDSA_SECP521R1_SHA512,
      offkey::v1::RSA_PSS_RSAE_SHA256,
      offkey::v1::RSA_PSS_RSAE_SHA384,
      offkey::v1::RSA_PSS_RSAE_SHA512,
      offkey::v1::ED25519,
      offkey::v1::RSA_PSS_PSS_SHA256,
      offkey::v1::RSA_PSS_PSS_SHA384,
      offkey::v1::RSA_PSS_PSS_SHA512,
      offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED,
      Scheme(0x0201),  // rsa_pkcs1_sha1
      Scheme(0x0203),  // ecdsa_sha1
      Scheme(0x0808),  // ed448
      Scheme(0x1234),
  };
  return *schemes;
}

constexpr KeyAlgorithm kAllKeys[] = {
    KeyAlgorithm::kUnknown, KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072,
    KeyAlgorithm::kRsa4096, KeyAlgorithm::kEcP256,  KeyAlgorithm::kEcP384,
    KeyAlgorithm::kEcP521,  KeyAlgorithm::kEd25519,
};

const std::vector<TlsVersion>& MatrixVersions() {
  static const auto* versions = new std::vector<TlsVersion>{
      offkey::v1::TLS_VERSION_UNSPECIFIED,
      offkey::v1::TLS_1_2,
      offkey::v1::TLS_1_3,
      Version(0x0302),  // TLS 1.1: never.
      Version(0x0305),  // Not a version yet.
  };
  return *versions;
}

bool Expected(SignatureScheme scheme, KeyAlgorithm key, TlsVersion version) {
  for (const Allowed& a : kAllowed) {
    if (a.scheme != scheme || a.key != key) continue;
    switch (static_cast<int>(version)) {
      case 0x0303:
        return a.tls12;
      case 0x0304:
        return a.tls13;
      case 0:  // Not a handshake: only whether the key can make it at all.
        return a.tls12 || a.tls13;
      default:
        return false;
    }
  }
  return false;
}

class SchemeMatrixTest : public ::testing::TestWithParam<
                             std::tuple<SignatureScheme, KeyAlgorithm, TlsVersion>> {};

TEST_P(SchemeMatrixTest, MatchesIndependentExpectation) {
  const auto [scheme, key, version] = GetParam();
  absl::Status status = CheckScheme(scheme, key, version);
  if (Expected(scheme, key, version)) {
    EXPECT_THAT(status, IsOk());
  } else {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_FALSE(status.message().empty());
  }
}

INSTANTIATE_TEST_SUITE_P(AllCombinations, SchemeMatrixTest,
                         ::testing::Combine(::testing::ValuesIn(MatrixSchemes()),
                                            ::testing::ValuesIn(kAllKeys),
                                            ::testing::ValuesIn(MatrixVersions())),
                         [](const auto& info) {
                           std::string key(
                               hsm::KeyAlgorithmName(std::get<1>(info.param)));
                           std::replace(key.begin(), key.end(), '-', '_');
                           return absl::StrFormat(
                               "s%04x_%s_v%04x",
                               static_cast<uint32_t>(std::get<0>(info.param)), key,
                               static_cast<uint32_t>(std::get<2>(info.param)));
                         });

TEST(SchemesTest, ExpectationListHasNoDuplicates) {
  std::set<std::pair<int, int>> seen;
  for (const Allowed& a : kAllowed) {
    EXPECT_TRUE(seen.insert({a.scheme, static_cast<int>(a.key)}).second)
        << a.scheme << " " << hsm::KeyAlgorithmName(a.key);
  }
}

// A key algorithm value outside the enum (a corrupted or newer record) fits nothing.
TEST(SchemesTest, OutOfRangeKeyAlgorithmIsRefused) {
  for (SignatureScheme scheme : MatrixSchemes()) {
    EXPECT_EQ(
        CheckScheme(scheme, static_cast<KeyAlgorithm>(99), offkey::v1::TLS_1_2).code(),
        absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(SchemesForKey(static_cast<KeyAlgorithm>(99)).empty());
}

TEST(SchemesTest, MessagesAreActionable) {
  EXPECT_EQ(CheckScheme(offkey::v1::RSA_PKCS1_SHA256, KeyAlgorithm::kRsa2048,
                        offkey::v1::TLS_1_3)
                .message(),
            "rsa_pkcs1_sha256 is not allowed in TLS 1.3; use rsa_pss_rsae_sha256");
  EXPECT_EQ(CheckScheme(offkey::v1::RSA_PKCS1_SHA512, KeyAlgorithm::kRsa4096,
                        offkey::v1::TLS_1_3)
                .message(),
            "rsa_pkcs1_sha512 is not allowed in TLS 1.3; use rsa_pss_rsae_sha512");
  EXPECT_THAT(
      CheckScheme(offkey::v1::ECDSA_SECP384R1_SHA384, KeyAlgorithm::kEcP256,
                  offkey::v1::TLS_1_3)
          .message(),
      HasSubstr("ecdsa_secp384r1_sha384 needs a P-384 key in TLS 1.3; key is ec-p256"));
  EXPECT_THAT(CheckScheme(offkey::v1::ECDSA_SECP384R1_SHA384, KeyAlgorithm::kEcP256,
                          offkey::v1::TLS_1_3)
                  .message(),
              HasSubstr("use ecdsa_secp256r1_sha256"));
  EXPECT_EQ(
      CheckScheme(offkey::v1::RSA_PSS_PSS_SHA256, KeyAlgorithm::kRsa2048,
                  offkey::v1::TLS_1_3)
          .message(),
      "rsa_pss_pss_sha256 needs an RSASSA-PSS key; offkey RSA keys are rsaEncryption, "
      "use rsa_pss_rsae_sha256");
  EXPECT_THAT(CheckScheme(offkey::v1::RSA_PSS_PSS_SHA384, KeyAlgorithm::kRsa3072,
                          offkey::v1::TLS_1_2)
                  .message(),
              HasSubstr("use rsa_pss_rsae_sha384"));
  EXPECT_THAT(
      CheckScheme(Scheme(0x1234), KeyAlgorithm::kRsa2048, offkey::v1::TLS_1_2).message(),
      HasSubstr("unknown signature scheme 0x1234"));
  EXPECT_THAT(CheckScheme(offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED,
                          KeyAlgorithm::kRsa2048, offkey::v1::TLS_1_2)
                  .message(),
              HasSubstr("not set"));
  EXPECT_THAT(CheckScheme(offkey::v1::ECDSA_SECP256R1_SHA256, KeyAlgorithm::kRsa2048,
                          offkey::v1::TLS_1_3)
                  .message(),
              HasSubstr("ecdsa_secp256r1_sha256 needs an EC key; key is rsa-2048; use "
                        "rsa_pss_rsae_sha256"));
  EXPECT_THAT(
      CheckScheme(offkey::v1::ED25519, KeyAlgorithm::kEcP384, offkey::v1::TLS_1_3)
          .message(),
      HasSubstr(
          "ed25519 needs an Ed25519 key; key is ec-p384; use ecdsa_secp384r1_sha384"));
  EXPECT_THAT(
      CheckScheme(offkey::v1::RSA_PSS_RSAE_SHA256, KeyAlgorithm::kEcP256, Version(0x0302))
          .message(),
      HasSubstr("TLS version 0x0302 is not supported"));
}

TEST(SchemesTest, SchemesForKeyInPreferredOrder) {
  const auto kRsa =
      ElementsAre(offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::RSA_PSS_RSAE_SHA384,
                  offkey::v1::RSA_PSS_RSAE_SHA512, offkey::v1::RSA_PKCS1_SHA256,
                  offkey::v1::RSA_PKCS1_SHA384, offkey::v1::RSA_PKCS1_SHA512);
  EXPECT_THAT(SchemesForKey(KeyAlgorithm::kRsa2048), kRsa);
  EXPECT_THAT(SchemesForKey(KeyAlgorithm::kRsa3072), kRsa);
  EXPECT_THAT(SchemesForKey(KeyAlgorithm::kRsa4096), kRsa);
  EXPECT_THAT(
      SchemesForKey(KeyAlgorithm::kEcP256),
      ElementsAre(offkey::v1::ECDSA_SECP256R1_SHA256, offkey::v1::ECDSA_SECP384R1_SHA384,
                  offkey::v1::ECDSA_SECP521R1_SHA512));
  EXPECT_THAT(
      SchemesForKey(KeyAlgorithm::kEcP384),
      ElementsAre(offkey::v1::ECDSA_SECP384R1_SHA384, offkey::v1::ECDSA_SECP256R1_SHA256,
                  offkey::v1::ECDSA_SECP521R1_SHA512));
  EXPECT_THAT(
      SchemesForKey(KeyAlgorithm::kEcP521),
      ElementsAre(offkey::v1::ECDSA_SECP521R1_SHA512, offkey::v1::ECDSA_SECP256R1_SHA256,
                  offkey::v1::ECDSA_SECP384R1_SHA384));
  EXPECT_THAT(SchemesForKey(KeyAlgorithm::kEd25519), ElementsAre(offkey::v1::ED25519));
  EXPECT_TRUE(SchemesForKey(KeyAlgorithm::kUnknown).empty());
}

// SchemesForKey and CheckScheme must agree: a listed scheme passes with the version
// unset, an unlisted one does not.
TEST(SchemesTest, SchemesForKeyAgreesWithCheckScheme) {
  for (KeyAlgorithm key : kAllKeys) {
    std::vector<SignatureScheme> listed = SchemesForKey(key);
    std::set<SignatureScheme> set(listed.begin(), listed.end());
    EXPECT_EQ(set.size(), listed.size())
        << "duplicates for " << hsm::KeyAlgorithmName(key);
    for (SignatureScheme scheme : MatrixSchemes()) {
      EXPECT_EQ(set.count(scheme) == 1,
                CheckScheme(scheme, key, offkey::v1::TLS_VERSION_UNSPECIFIED).ok())
          << SchemeName(scheme) << " " << hsm::KeyAlgorithmName(key);
    }
  }
}

TEST(SchemesTest, NamesAndWireValues) {
  struct Row {
    SignatureScheme scheme;
    int wire;
    const char* name;
  };
  const Row kRows[] = {
      {offkey::v1::RSA_PKCS1_SHA256, 0x0401, "rsa_pkcs1_sha256"},
      {offkey::v1::RSA_PKCS1_SHA384, 0x0501, "rsa_pkcs1_sha384"},
      {offkey::v1::RSA_PKCS1_SHA512, 0x0601, "rsa_pkcs1_sha512"},
      {offkey::v1::ECDSA_SECP256R1_SHA256, 0x0403, "ecdsa_secp256r1_sha256"},
      {offkey::v1::ECDSA_SECP384R1_SHA384, 0x0503, "ecdsa_secp384r1_sha384"},
      {offkey::v1::ECDSA_SECP521R1_SHA512, 0x0603, "ecdsa_secp521r1_sha512"},
      {offkey::v1::RSA_PSS_RSAE_SHA256, 0x0804, "rsa_pss_rsae_sha256"},
      {offkey::v1::RSA_PSS_RSAE_SHA384, 0x0805, "rsa_pss_rsae_sha384"},
      {offkey::v1::RSA_PSS_RSAE_SHA512, 0x0806, "rsa_pss_rsae_sha512"},
      {offkey::v1::ED25519, 0x0807, "ed25519"},
      {offkey::v1::RSA_PSS_PSS_SHA256, 0x0809, "rsa_pss_pss_sha256"},
      {offkey::v1::RSA_PSS_PSS_SHA384, 0x080a, "rsa_pss_pss_sha384"},
      {offkey::v1::RSA_PSS_PSS_SHA512, 0x080b, "rsa_pss_pss_sha512"},
  };
  for (const Row& row : kRows) {
    EXPECT_EQ(static_cast<int>(row.scheme), row.wire) << row.name;
    EXPECT_EQ(SchemeName(row.scheme), row.name);
    const SchemeInfo* info = FindScheme(row.scheme);
    ASSERT_NE(info, nullptr) << row.name;
    EXPECT_EQ(info->name, row.name);
    EXPECT_EQ(info->scheme, row.scheme);
  }
  EXPECT_EQ(SchemeName(offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED), "unspecified");
  EXPECT_EQ(SchemeName(Scheme(0x1234)), "0x1234");
  EXPECT_EQ(SchemeName(Scheme(0x0201)), "0x0201");
}

TEST(SchemesTest, UnknownValuesHaveNoRow) {
  EXPECT_EQ(FindScheme(offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED), nullptr);
  EXPECT_EQ(FindScheme(Scheme(0x1234)), nullptr);
  EXPECT_EQ(FindScheme(Scheme(0x0201)), nullptr);  // rsa_pkcs1_sha1: no SHA-1.
  EXPECT_EQ(FindScheme(Scheme(0x0808)), nullptr);  // ed448.
  EXPECT_EQ(FindScheme(Scheme(-1)), nullptr);
}

// What the HSM is asked to do per scheme; a wrong hash here makes signatures that no
// client verifies.
TEST(SchemesTest, SignAlgorithmPerScheme) {
  struct Row {
    SignatureScheme scheme;
    SignatureKind kind;
    HashAlgorithm hash;
  };
  const Row kRows[] = {
      {offkey::v1::RSA_PKCS1_SHA256, SignatureKind::kRsaPkcs1, HashAlgorithm::kSha256},
      {offkey::v1::RSA_PKCS1_SHA384, SignatureKind::kRsaPkcs1, HashAlgorithm::kSha384},
      {offkey::v1::RSA_PKCS1_SHA512, SignatureKind::kRsaPkcs1, HashAlgorithm::kSha512},
      {offkey::v1::ECDSA_SECP256R1_SHA256, SignatureKind::kEcdsa, HashAlgorithm::kSha256},
      {offkey::v1::ECDSA_SECP384R1_SHA384, SignatureKind::kEcdsa, HashAlgorithm::kSha384},
      {offkey::v1::ECDSA_SECP521R1_SHA512, SignatureKind::kEcdsa, HashAlgorithm::kSha512},
      {offkey::v1::RSA_PSS_RSAE_SHA256, SignatureKind::kRsaPss, HashAlgorithm::kSha256},
      {offkey::v1::RSA_PSS_RSAE_SHA384, SignatureKind::kRsaPss, HashAlgorithm::kSha384},
      {offkey::v1::RSA_PSS_RSAE_SHA512, SignatureKind::kRsaPss, HashAlgorithm::kSha512},
      {offkey::v1::ED25519, SignatureKind::kEdDsa, HashAlgorithm::kNone},
      {offkey::v1::RSA_PSS_PSS_SHA256, SignatureKind::kRsaPss, HashAlgorithm::kSha256},
      {offkey::v1::RSA_PSS_PSS_SHA384, SignatureKind::kRsaPss, HashAlgorithm::kSha384},
      {offkey::v1::RSA_PSS_PSS_SHA512, SignatureKind::kRsaPss, HashAlgorithm::kSha512},
  };
  for (const Row& row : kRows) {
    const SchemeInfo* info = FindScheme(row.scheme);
    ASSERT_NE(info, nullptr) << row.scheme;
    EXPECT_EQ(info->algorithm.kind, row.kind) << info->name;
    EXPECT_EQ(info->algorithm.hash, row.hash) << info->name;
  }
}

// Every value the proto defines has exactly one row, and nothing else does: adding a
// scheme to common.proto without a row fails here.
TEST(SchemesTest, TableCoversTheProtoEnumExactly) {
  const google::protobuf::EnumDescriptor* descriptor =
      offkey::v1::SignatureScheme_descriptor();
  std::set<int> proto_values;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    int value = descriptor->value(i)->number();
    if (value != offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) proto_values.insert(value);
  }
  std::set<int> table_values;
  for (const SchemeInfo& row : AllSchemes()) {
    EXPECT_TRUE(table_values.insert(row.scheme).second) << "duplicate row " << row.name;
  }
  EXPECT_EQ(proto_values, table_values);
}

// The table's family column must agree with the HSM layer's own notion of which
// algorithm a key family can run (the two are written separately).
TEST(SchemesTest, TableAgreesWithHsmKeyFit) {
  for (const SchemeInfo& row : AllSchemes()) {
    for (KeyAlgorithm key : kAllKeys) {
      if (key == KeyAlgorithm::kUnknown) continue;
      EXPECT_EQ(hsm::SignAlgorithmFitsKey(row.algorithm, key),
                hsm::FamilyOf(key) == row.family)
          << row.name << " " << hsm::KeyAlgorithmName(key);
    }
  }
}

}  // namespace
}  // namespace offkey::service::tls
