// A module without a mechanism: the store reports UNIMPLEMENTED naming the CKR code.
// Its own test binary because SoftHSM2 reads its mechanism list once per process.
#include "base/testing/status_matchers.h"
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

  // The key is stored (SoftHSM 2.6 does not filter key generation or import by this
  // list), but signing with it needs CKM_EDDSA, which the module refuses.
  SecretBytes pkcs8(hsm::testing::GeneratePkcs8(KeyAlgorithm::kEd25519));
  auto imported = (*store)->ImportKey("ed", pkcs8);
  ASSERT_THAT(imported, IsOk());
  auto sig = (*store)->Sign(imported->key_id,
                            {SignatureKind::kEdDsa, HashAlgorithm::kNone}, "m", {});
  EXPECT_EQ(sig.status().code(), absl::StatusCode::kUnimplemented) << sig.status();
  EXPECT_NE(sig.status().message().find("C_Sign"), std::string::npos);
  EXPECT_NE(sig.status().message().find("CKR_MECHANISM_INVALID"), std::string::npos);

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
