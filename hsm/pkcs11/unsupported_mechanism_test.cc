// A module without a mechanism: the store refuses keys that need it with UNIMPLEMENTED
// naming the module and the mechanism.
// Its own test binary because SoftHSM2 reads its mechanism list once per process.
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

TEST(UnsupportedMechanismTest, MissingEdDsaIsUnimplemented) {
  // SoftHSM 2.6 takes an allow-list here ("-CKM_X" is not understood): everything offkey
  // uses except the Ed25519 mechanisms.
  testing::SoftHsmDirectory({.mechanisms =
                                 "CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_RSA_PKCS,CKM_RSA_X_509,"
                                 "CKM_RSA_PKCS_PSS,CKM_EC_KEY_PAIR_GEN,CKM_ECDSA,"
                                 "CKM_GENERIC_SECRET_KEY_GEN,CKM_SHA256_HMAC"});
  auto token = testing::SoftHsmToken::Create();
  ASSERT_THAT(token, IsOk());
  auto store = Pkcs11KeyStore::Create(token->Options());
  ASSERT_THAT(store, IsOk());

  // SoftHSM 2.6 itself would store the key (it does not filter key generation or
  // import by this list) and fail only at C_Sign; the store refuses at key creation,
  // naming the module and the mechanism it lacks, and stores nothing.
  EXPECT_THAT((*store)->capabilities().Summary(),
              ::testing::HasSubstr("; lacks ed25519"));
  SecretBytes pkcs8(hsm::testing::GeneratePkcs8(KeyAlgorithm::kEd25519));
  auto imported = (*store)->ImportKey("ed", pkcs8);
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kUnimplemented)
      << imported.status();
  EXPECT_THAT(imported.status().message(), ::testing::HasSubstr("CKM_EDDSA"));
  EXPECT_THAT(imported.status().message(), ::testing::HasSubstr("SoftHSM"));
  auto generated = (*store)->GenerateKey("ed", KeyAlgorithm::kEd25519);
  EXPECT_EQ(generated.status().code(), absl::StatusCode::kUnimplemented)
      << generated.status();
  EXPECT_THAT(generated.status().message(),
              ::testing::HasSubstr("CKM_EC_EDWARDS_KEY_PAIR_GEN"));
  auto keys = (*store)->ListKeys();
  ASSERT_THAT(keys, IsOk());
  EXPECT_TRUE(keys->empty());

  // Everything else still works.
  auto ec = (*store)->GenerateKey("ec", KeyAlgorithm::kEcP256);
  ASSERT_THAT(ec, IsOk());
  EXPECT_TRUE(
      (*store)
          ->Sign(ec->key_id, {SignatureKind::kEcdsa, HashAlgorithm::kSha256}, "m", {})
          .ok());
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
