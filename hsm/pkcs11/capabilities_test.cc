#include "hsm/pkcs11/capabilities.h"

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// The mechanism list tpm2-pkcs11 1.9 reports on swtpm (the parts offkey looks at).
Capabilities Tpm2Like() {
  Capabilities::MechanismMap m;
  m[CKM_RSA_PKCS_KEY_PAIR_GEN] = {1024, 3072, CKF_GENERATE_KEY_PAIR};
  m[CKM_RSA_PKCS] = {1024, 3072, CKF_SIGN | CKF_DECRYPT};
  m[CKM_RSA_PKCS_PSS] = {1024, 3072, CKF_SIGN};
  m[CKM_RSA_X_509] = {1024, 3072, CKF_SIGN | CKF_DECRYPT};
  m[CKM_EC_KEY_PAIR_GEN] = {192, 638, CKF_GENERATE_KEY_PAIR};
  m[CKM_ECDSA] = {192, 638, CKF_SIGN};
  m[CKM_SHA256_HMAC] = {32, 32, CKF_SIGN};
  return Capabilities("tpm2-software.github.io TPM2.0 Cryptoki 1.9", std::move(m));
}

TEST(CapabilitiesTest, KeySizesOutsideTheMechanismRangeAreUnimplemented) {
  Capabilities caps = Tpm2Like();
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kRsa2048), IsOk());
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kRsa3072), IsOk());
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kRsa4096),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("TPM2.0 Cryptoki"), HasSubstr("rsa-4096"),
                             HasSubstr("CKM_RSA_PKCS_KEY_PAIR_GEN"),
                             HasSubstr("1024 to 3072 bits"))));
  EXPECT_THAT(caps.CanSign(KeyAlgorithm::kRsa4096),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("CKM_RSA_PKCS ")));
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kEcP521), IsOk());
}

TEST(CapabilitiesTest, MissingMechanismIsUnimplementedNamingIt) {
  Capabilities caps = Tpm2Like();
  EXPECT_THAT(
      caps.CanGenerate(KeyAlgorithm::kEd25519),
      StatusIs(absl::StatusCode::kUnimplemented,
               AllOf(HasSubstr("TPM2.0 Cryptoki"),
                     HasSubstr("CKM_EC_EDWARDS_KEY_PAIR_GEN"), HasSubstr("ed25519"))));
  EXPECT_THAT(caps.CanSign(KeyAlgorithm::kEd25519),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("CKM_EDDSA")));
}

TEST(CapabilitiesTest, MechanismWithoutTheNeededFlagDoesNotCount) {
  Capabilities::MechanismMap m;
  m[CKM_EC_KEY_PAIR_GEN] = {256, 521, CKF_GENERATE_KEY_PAIR};
  m[CKM_ECDSA] = {256, 521, CKF_VERIFY};  // Verification only.
  m[CKM_RSA_X_509] = {1024, 4096, CKF_ENCRYPT};
  Capabilities caps("m", std::move(m));
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kEcP256),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("CKM_ECDSA")));
  EXPECT_THAT(caps.CanDecryptRaw(KeyAlgorithm::kRsa2048),
              StatusIs(absl::StatusCode::kUnimplemented,
                       HasSubstr("CKM_RSA_X_509 (raw RSA) decryption")));
}

TEST(CapabilitiesTest, UnstatedOrByteSizedEcLimitsAreLeftToTheModule) {
  Capabilities::MechanismMap m;
  m[CKM_EC_KEY_PAIR_GEN] = {0, 0, CKF_GENERATE_KEY_PAIR};
  m[CKM_ECDSA] = {32, 66, CKF_SIGN};  // Bytes, as a few modules report.
  Capabilities caps("m", std::move(m));
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kEcP521), IsOk());
}

TEST(CapabilitiesTest, AlgorithmsKnownBrokenAreRefusedWithTheReason) {
  Capabilities::MechanismMap m;
  m[CKM_EC_KEY_PAIR_GEN] = {192, 638, CKF_GENERATE_KEY_PAIR};
  m[CKM_ECDSA] = {192, 638, CKF_SIGN};
  Capabilities caps("m", std::move(m), {{KeyAlgorithm::kEcP521, "it drops zeros"}});
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kEcP384), IsOk());
  EXPECT_THAT(caps.CanSign(KeyAlgorithm::kEcP521),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("'m'"), HasSubstr("ec-p521"),
                             HasSubstr("it drops zeros"))));
  EXPECT_THAT(caps.CanGenerate(KeyAlgorithm::kEcP521),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(CapabilitiesTest, ImportRefusedWhenTheModuleTakesNoPrivateKeys) {
  EXPECT_THAT(Tpm2Like().CanImport(KeyAlgorithm::kEcP256), IsOk());
  Capabilities::MechanismMap m;
  m[CKM_ECDSA] = {192, 638, CKF_SIGN};
  Capabilities caps("m", std::move(m), {}, /*imports_private_keys=*/false);
  EXPECT_THAT(caps.CanSign(KeyAlgorithm::kEcP256), IsOk());
  EXPECT_THAT(caps.CanImport(KeyAlgorithm::kEcP256),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("'m'"), HasSubstr("cannot import ec-p256"))));
}

TEST(CapabilitiesTest, StoreSecretNeedsHmacAndGenerationOrProvisioning) {
  Capabilities caps = Tpm2Like();
  EXPECT_THAT(caps.CanUseStoreSecret(false, "secret-label"), IsOk());
  EXPECT_THAT(caps.CanUseStoreSecret(true, "secret-label"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("CKM_GENERIC_SECRET_KEY_GEN"),
                             HasSubstr("--key-label=secret-label"))));
  Capabilities none("bare", {});
  EXPECT_THAT(none.CanUseStoreSecret(false, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("'bare'"), HasSubstr("CKM_SHA256_HMAC"))));
}

TEST(CapabilitiesTest, TicketKeySetsNeedSecretKeyGenerationAndHmacSigning) {
  EXPECT_THAT(Tpm2Like().CanMakeTicketKeySets(),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("TPM2.0 Cryptoki"),
                             HasSubstr("CKM_GENERIC_SECRET_KEY_GEN"))));
  Capabilities::MechanismMap m;
  m[CKM_GENERIC_SECRET_KEY_GEN] = {32, 32, CKF_GENERATE};
  m[CKM_SHA256_HMAC] = {32, 32, CKF_VERIFY};  // Verification only.
  EXPECT_THAT(Capabilities("m", m).CanMakeTicketKeySets(),
              StatusIs(absl::StatusCode::kUnimplemented,
                       AllOf(HasSubstr("'m'"), HasSubstr("CKM_SHA256_HMAC"))));
  m[CKM_SHA256_HMAC].flags |= CKF_SIGN;
  EXPECT_THAT(Capabilities("m", m).CanMakeTicketKeySets(), IsOk());
}

TEST(CapabilitiesTest, SummaryListsWhatWorksAndWhatIsLacking) {
  EXPECT_EQ(Tpm2Like().Summary(),
            "PKCS#11 module 'tpm2-software.github.io TPM2.0 Cryptoki 1.9' makes rsa-2048 "
            "rsa-3072 ec-p256 ec-p384 ec-p521; lacks rsa-4096 ed25519");
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
