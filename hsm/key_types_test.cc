#include "hsm/key_types.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include <optional>
#include <set>
#include <string>

#include "base/openssl_util.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/openssl_key.h"

namespace offkey::hsm {
namespace {

using ::offkey::testing::IsOk;

constexpr KeyAlgorithm kAllKeys[] = {
    KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072, KeyAlgorithm::kRsa4096,
    KeyAlgorithm::kEcP256,  KeyAlgorithm::kEcP384,  KeyAlgorithm::kEcP521,
    KeyAlgorithm::kEd25519,
};

constexpr HashAlgorithm kAllHashes[] = {HashAlgorithm::kNone, HashAlgorithm::kSha1,
                                        HashAlgorithm::kSha256, HashAlgorithm::kSha384,
                                        HashAlgorithm::kSha512};

constexpr SignatureKind kAllKinds[] = {SignatureKind::kRsaPkcs1, SignatureKind::kRsaPss,
                                       SignatureKind::kEcdsa, SignatureKind::kEdDsa};

TEST(KeyTypesTest, NamesAreTheDocumentedStableStrings) {
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kRsa2048), "rsa-2048");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kRsa3072), "rsa-3072");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kRsa4096), "rsa-4096");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kEcP256), "ec-p256");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kEcP384), "ec-p384");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kEcP521), "ec-p521");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kEd25519), "ed25519");
  EXPECT_EQ(KeyAlgorithmName(KeyAlgorithm::kUnknown), "unknown");
}

TEST(KeyTypesTest, EveryAlgorithmNameRoundTrips) {
  std::set<std::string> seen;
  for (KeyAlgorithm algorithm : kAllKeys) {
    std::string name(KeyAlgorithmName(algorithm));
    EXPECT_TRUE(seen.insert(name).second) << "duplicate name " << name;
    std::optional<KeyAlgorithm> back = KeyAlgorithmFromName(name);
    ASSERT_TRUE(back.has_value()) << name;
    EXPECT_EQ(*back, algorithm) << name;
  }
}

TEST(KeyTypesTest, UnknownNamesGiveNullopt) {
  EXPECT_EQ(KeyAlgorithmFromName(""), std::nullopt);
  // "unknown" is what kUnknown prints; it must not parse back into a usable algorithm.
  EXPECT_EQ(KeyAlgorithmFromName("unknown"), std::nullopt);
  EXPECT_EQ(KeyAlgorithmFromName("rsa-1024"), std::nullopt);
  EXPECT_EQ(KeyAlgorithmFromName("RSA-2048"), std::nullopt);  // Names are lowercase.
  EXPECT_EQ(KeyAlgorithmFromName("ec-p256 "), std::nullopt);
  EXPECT_EQ(KeyAlgorithmFromName("ec-p25"), std::nullopt);
  EXPECT_EQ(KeyAlgorithmFromName("ed448"), std::nullopt);
}

TEST(KeyTypesTest, FamilyAndBits) {
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kRsa2048), KeyFamily::kRsa);
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kRsa3072), KeyFamily::kRsa);
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kRsa4096), KeyFamily::kRsa);
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kEcP256), KeyFamily::kEc);
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kEcP384), KeyFamily::kEc);
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kEcP521), KeyFamily::kEc);
  EXPECT_EQ(FamilyOf(KeyAlgorithm::kEd25519), KeyFamily::kEd25519);

  EXPECT_EQ(KeyBits(KeyAlgorithm::kRsa2048), 2048);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kRsa3072), 3072);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kRsa4096), 4096);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kEcP256), 256);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kEcP384), 384);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kEcP521), 521);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kEd25519), 255);
  EXPECT_EQ(KeyBits(KeyAlgorithm::kUnknown), 0);
}

TEST(KeyTypesTest, HashLengths) {
  EXPECT_EQ(HashLength(HashAlgorithm::kNone), 0u);
  EXPECT_EQ(HashLength(HashAlgorithm::kSha1), 20u);
  EXPECT_EQ(HashLength(HashAlgorithm::kSha256), 32u);
  EXPECT_EQ(HashLength(HashAlgorithm::kSha384), 48u);
  EXPECT_EQ(HashLength(HashAlgorithm::kSha512), 64u);
}

TEST(KeyTypesTest, HashAndKindNames) {
  EXPECT_EQ(HashName(HashAlgorithm::kNone), "none");
  EXPECT_EQ(HashName(HashAlgorithm::kSha1), "sha1");
  EXPECT_EQ(HashName(HashAlgorithm::kSha256), "sha256");
  EXPECT_EQ(HashName(HashAlgorithm::kSha384), "sha384");
  EXPECT_EQ(HashName(HashAlgorithm::kSha512), "sha512");
  EXPECT_EQ(SignatureKindName(SignatureKind::kRsaPkcs1), "rsa-pkcs1");
  EXPECT_EQ(SignatureKindName(SignatureKind::kRsaPss), "rsa-pss");
  EXPECT_EQ(SignatureKindName(SignatureKind::kEcdsa), "ecdsa");
  EXPECT_EQ(SignatureKindName(SignatureKind::kEdDsa), "eddsa");
}

TEST(KeyTypesTest, SignAlgorithmEquality) {
  SignAlgorithm a{SignatureKind::kRsaPss, HashAlgorithm::kSha256};
  EXPECT_TRUE(a == (SignAlgorithm{SignatureKind::kRsaPss, HashAlgorithm::kSha256}));
  EXPECT_FALSE(a == (SignAlgorithm{SignatureKind::kRsaPkcs1, HashAlgorithm::kSha256}));
  EXPECT_FALSE(a == (SignAlgorithm{SignatureKind::kRsaPss, HashAlgorithm::kSha384}));
}

TEST(KeyTypesTest, SignAlgorithmFitsKeySpotChecks) {
  using K = KeyAlgorithm;
  using H = HashAlgorithm;
  using S = SignatureKind;
  // EdDSA: only Ed25519, only without a separate hash.
  EXPECT_TRUE(SignAlgorithmFitsKey({S::kEdDsa, H::kNone}, K::kEd25519));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEdDsa, H::kSha512}, K::kEd25519));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEdDsa, H::kNone}, K::kEcP256));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEdDsa, H::kNone}, K::kRsa2048));
  // PSS and PKCS#1: only RSA, only with a hash.
  EXPECT_TRUE(SignAlgorithmFitsKey({S::kRsaPss, H::kSha256}, K::kRsa2048));
  EXPECT_TRUE(SignAlgorithmFitsKey({S::kRsaPkcs1, H::kSha1}, K::kRsa4096));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kRsaPss, H::kSha256}, K::kEcP256));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kRsaPss, H::kSha256}, K::kEd25519));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kRsaPss, H::kNone}, K::kRsa3072));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kRsaPkcs1, H::kNone}, K::kRsa3072));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kRsaPkcs1, H::kSha256}, K::kEcP384));
  // ECDSA: only EC, only with a hash.
  EXPECT_TRUE(SignAlgorithmFitsKey({S::kEcdsa, H::kSha384}, K::kEcP384));
  EXPECT_TRUE(SignAlgorithmFitsKey({S::kEcdsa, H::kSha256}, K::kEcP521));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEcdsa, H::kNone}, K::kEcP256));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEcdsa, H::kSha256}, K::kRsa2048));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEcdsa, H::kSha256}, K::kEd25519));
  // Nothing fits an unknown key.
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kRsaPkcs1, H::kSha256}, K::kUnknown));
  EXPECT_FALSE(SignAlgorithmFitsKey({S::kEdDsa, H::kNone}, K::kUnknown));
}

// Every combination against an oracle written from the rules, not from the code.
TEST(KeyTypesTest, SignAlgorithmFitsKeyExhaustive) {
  for (SignatureKind kind : kAllKinds) {
    for (HashAlgorithm hash : kAllHashes) {
      for (KeyAlgorithm key : kAllKeys) {
        bool rsa = key == KeyAlgorithm::kRsa2048 || key == KeyAlgorithm::kRsa3072 ||
                   key == KeyAlgorithm::kRsa4096;
        bool ec = key == KeyAlgorithm::kEcP256 || key == KeyAlgorithm::kEcP384 ||
                  key == KeyAlgorithm::kEcP521;
        bool ed = key == KeyAlgorithm::kEd25519;
        bool hashed = hash != HashAlgorithm::kNone;
        bool want = false;
        switch (kind) {
          case SignatureKind::kRsaPkcs1:
          case SignatureKind::kRsaPss:
            want = rsa && hashed;
            break;
          case SignatureKind::kEcdsa:
            want = ec && hashed;
            break;
          case SignatureKind::kEdDsa:
            want = ed && !hashed;
            break;
        }
        EXPECT_EQ(SignAlgorithmFitsKey({kind, hash}, key), want)
            << SignatureKindName(kind) << "/" << HashName(hash) << " with "
            << KeyAlgorithmName(key);
      }
      EXPECT_FALSE(SignAlgorithmFitsKey({kind, hash}, KeyAlgorithm::kUnknown));
    }
  }
}

TEST(KeyTypesTest, KeyNamesAreShortAndPlain) {
  for (const char* ok : {"a", "web-1", "api.example.com", "A_b-9"}) {
    EXPECT_THAT(ValidateKeyName(ok), IsOk());
  }
  EXPECT_THAT(ValidateKeyName(std::string(64, 'k')), IsOk());
  for (const std::string& bad :
       {std::string(), std::string(65, 'k'), std::string("a/b"), std::string("a b"),
        std::string("a\0b", 3), std::string("caf\xc3\xa9")}) {
    EXPECT_EQ(ValidateKeyName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(KeyAlgorithmTableTest, OneRowPerAlgorithmInEnumOrder) {
  ASSERT_EQ(AllKeyAlgorithms().size(), std::size(kAllKeys));
  for (size_t i = 0; i < std::size(kAllKeys); ++i) {
    EXPECT_EQ(AllKeyAlgorithms()[i].algorithm, kAllKeys[i]);
    ASSERT_NE(FindKeyAlgorithm(kAllKeys[i]), nullptr);
    EXPECT_EQ(FindKeyAlgorithm(kAllKeys[i]), &AllKeyAlgorithms()[i]);
  }
  EXPECT_EQ(FindKeyAlgorithm(KeyAlgorithm::kUnknown), nullptr);
  EXPECT_EQ(FindKeyAlgorithm(static_cast<KeyAlgorithm>(99)), nullptr);
}

TEST(KeyAlgorithmTableTest, ReverseLookups) {
  EXPECT_EQ(RsaAlgorithmForBits(2048), KeyAlgorithm::kRsa2048);
  EXPECT_EQ(RsaAlgorithmForBits(4096), KeyAlgorithm::kRsa4096);
  EXPECT_EQ(RsaAlgorithmForBits(1024), KeyAlgorithm::kUnknown);
  EXPECT_EQ(RsaAlgorithmForBits(256), KeyAlgorithm::kUnknown);  // Not an EC row.
  EXPECT_EQ(EcAlgorithmForGroup("prime256v1"), KeyAlgorithm::kEcP256);
  EXPECT_EQ(EcAlgorithmForGroup("P-256"), KeyAlgorithm::kEcP256);
  EXPECT_EQ(EcAlgorithmForGroup("secp384r1"), KeyAlgorithm::kEcP384);
  EXPECT_EQ(EcAlgorithmForGroup("P-521"), KeyAlgorithm::kEcP521);
  EXPECT_EQ(EcAlgorithmForGroup("secp256k1"), KeyAlgorithm::kUnknown);
  EXPECT_EQ(EcAlgorithmForGroup(""), KeyAlgorithm::kUnknown);  // RSA rows have "".
  EXPECT_EQ(AlgorithmFromEcParams(""), KeyAlgorithm::kUnknown);
  EXPECT_EQ(SupportedSizes(KeyFamily::kRsa), "2048, 3072 or 4096");
  EXPECT_EQ(SupportedSizes(KeyFamily::kEc), "P-256, P-384 or P-521");
  EXPECT_EQ(SupportedSizes(KeyFamily::kEd25519), "Ed25519");
}

std::string OidDer(int nid) {
  const ASN1_OBJECT* obj = OBJ_nid2obj(nid);
  int len = i2d_ASN1_OBJECT(obj, nullptr);
  if (len <= 0) return "";
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_ASN1_OBJECT(obj, &p);
  return der;
}

// Every row against OpenSSL: the names resolve to the curve whose OID is the row's
// CKA_EC_PARAMS, and a key generated from the row has the row's sizes and maps back to
// it.
TEST(KeyAlgorithmTableTest, EveryRowAgreesWithOpenSsl) {
  for (const KeyAlgorithmInfo& row : AllKeyAlgorithms()) {
    SCOPED_TRACE(std::string(row.name));
    EXPECT_EQ(KeyAlgorithmFromName(row.name), row.algorithm);
    EXPECT_TRUE(SignAlgorithmFitsKey(row.csr_signature, row.algorithm));
    EXPECT_EQ(AlgorithmFromEcParams(row.ec_params),
              row.ec_params.empty() ? KeyAlgorithm::kUnknown : row.algorithm);
    if (!row.ec_params_alias.empty()) {
      EXPECT_EQ(AlgorithmFromEcParams(row.ec_params_alias), row.algorithm);
    }

    EvpPkeyPtr key = GenerateOpenSslKey(row.algorithm);
    ASSERT_NE(key, nullptr);
    EXPECT_TRUE(EVP_PKEY_is_a(key.get(), row.openssl_type));
    EXPECT_EQ(KeyAlgorithmOf(key.get()), row.algorithm);

    switch (row.family) {
      case KeyFamily::kRsa:
        EXPECT_EQ(row.pkcs11_key_type, kPkcs11KeyTypeRsa);
        EXPECT_EQ(EVP_PKEY_get_bits(key.get()), row.bits);
        EXPECT_EQ(RsaAlgorithmForBits(row.bits), row.algorithm);
        EXPECT_TRUE(row.ec_params.empty());
        EXPECT_EQ(row.public_point_length, 0u);
        EXPECT_STREQ(row.openssl_group, "");
        EXPECT_EQ(row.csr_signature.kind, SignatureKind::kRsaPkcs1);
        break;
      case KeyFamily::kEc: {
        EXPECT_EQ(row.pkcs11_key_type, kPkcs11KeyTypeEc);
        const int nid = OBJ_txt2nid(row.openssl_group);
        ASSERT_NE(nid, NID_undef);
        EXPECT_EQ(EC_curve_nist2nid(row.nist_name), nid);
        EXPECT_EQ(OidDer(nid), std::string(row.ec_params));
        EXPECT_EQ(EcGroupOf(key.get()), row.openssl_group);
        EXPECT_EQ(EcAlgorithmForGroup(row.openssl_group), row.algorithm);
        EXPECT_EQ(EcAlgorithmForGroup(row.nist_name), row.algorithm);
        EXPECT_EQ(EVP_PKEY_get_bits(key.get()), row.bits);
        unsigned char point[256];
        size_t point_len = 0;
        ASSERT_EQ(
            EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                            point, sizeof(point), &point_len),
            1);
        EXPECT_EQ(point_len, row.public_point_length);
        EXPECT_EQ(point[0], 0x04);  // Uncompressed.
        EXPECT_EQ(row.csr_signature.kind, SignatureKind::kEcdsa);
        break;
      }
      case KeyFamily::kEd25519: {
        EXPECT_EQ(row.pkcs11_key_type, kPkcs11KeyTypeEcEdwards);
        EXPECT_EQ(OidDer(EVP_PKEY_get_base_id(key.get())), std::string(row.ec_params));
        size_t len = 0;
        ASSERT_EQ(EVP_PKEY_get_raw_public_key(key.get(), nullptr, &len), 1);
        EXPECT_EQ(len, row.public_point_length);
        EXPECT_EQ(row.csr_signature.kind, SignatureKind::kEdDsa);
        break;
      }
    }
  }
}

TEST(KeyAlgorithmTableTest, KeysOffkeyDoesNotHoldMapToUnknown) {
  EvpPkeyPtr rsa1024(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  EXPECT_EQ(KeyAlgorithmOf(rsa1024.get()), KeyAlgorithm::kUnknown);
  EvpPkeyPtr k256(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1"));
  EXPECT_EQ(KeyAlgorithmOf(k256.get()), KeyAlgorithm::kUnknown);
  EvpPkeyPtr ed448(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448"));
  EXPECT_EQ(KeyAlgorithmOf(ed448.get()), KeyAlgorithm::kUnknown);
  EXPECT_EQ(KeyAlgorithmOf(nullptr), KeyAlgorithm::kUnknown);
  EXPECT_EQ(GenerateOpenSslKey(KeyAlgorithm::kUnknown), nullptr);
}

}  // namespace
}  // namespace offkey::hsm
