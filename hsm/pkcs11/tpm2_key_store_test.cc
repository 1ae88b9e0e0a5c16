// Pkcs11KeyStore on tpm2-pkcs11 (1.9 here) over a software TPM (swtpm behind
// tpm2-abrmd): the KeyStore conformance suite, with the algorithms the module lacks
// declared as refused, and the start-up checks that only this module exercises.
#include <memory>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/token_store.h"
#include "hsm/pkcs11/testing/tpm2.h"
#include "hsm/testing/key_store_conformance.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::hsm::pkcs11::testing::Tpm2Installed;
using ::offkey::hsm::pkcs11::testing::Tpm2Token;
using ::offkey::hsm::testing::kAllKeyAlgorithms;
using ::offkey::hsm::testing::KeyStoreConformanceKeyTest;
using ::offkey::hsm::testing::KeyStoreConformanceTest;
using ::offkey::hsm::testing::KeyStoreFactory;
using ::offkey::hsm::testing::KeyStoreFactoryAndKeyName;
using ::offkey::hsm::testing::KeyStoreFactoryName;
using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using Store = ::offkey::hsm::pkcs11::testing::TokenStore<Tpm2Token>;

// tools/setup.sh installs tpm2-pkcs11 and swtpm; only a machine without them skips.
class RequireTpm2 : public ::testing::Environment {
  void SetUp() override {
    if (!Tpm2Installed()) {
      GTEST_SKIP() << "tpm2-pkcs11, swtpm or tpm2-abrmd is not installed "
                      "(tools/setup.sh)";
    }
  }
};
::testing::Environment* const kRequire =
    ::testing::AddGlobalTestEnvironment(new RequireTpm2);

// tpm2-pkcs11 1.9 on swtpm: RSA 1024 to 3072 bits, EC curves up to 638 bits, no Edwards
// curves; P-521 listed but broken, and no private key imports (see Capabilities::Read);
// no secret key generation, so no ticket-key sets (Capabilities::CanMakeTicketKeySets).
const KeyStoreFactory kTpm2{
    "Tpm2Pkcs11",
    &Store::Make,
    &Store::OpenAnother,
    {KeyAlgorithm::kRsa4096, KeyAlgorithm::kEcP521, KeyAlgorithm::kEd25519},
    "TPM2.0 Cryptoki",
    /*refuses_import=*/true,
    /*ticket_sets_refused=*/
    "tpm2-pkcs11 generates no secret keys (no CKM_GENERIC_SECRET_KEY_GEN), and a "
    "ticket-key set's root must be generated in the token"};
INSTANTIATE_TEST_SUITE_P(Tpm2Pkcs11, KeyStoreConformanceTest, ::testing::Values(kTpm2),
                         KeyStoreFactoryName);
INSTANTIATE_TEST_SUITE_P(Tpm2Pkcs11, KeyStoreConformanceKeyTest,
                         ::testing::Combine(::testing::Values(kTpm2),
                                            ::testing::ValuesIn(kAllKeyAlgorithms)),
                         KeyStoreFactoryAndKeyName);

TEST(Tpm2Pkcs11Test, StartUpSummaryNamesWhatTheModuleLacks) {
  auto token = Tpm2Token::Create();
  ASSERT_THAT(token, IsOk());
  auto store = Pkcs11KeyStore::Create(token->Options());
  ASSERT_THAT(store, IsOk());
  EXPECT_THAT((*store)->capabilities().Summary(),
              AllOf(HasSubstr("TPM2.0 Cryptoki"),
                    HasSubstr("makes rsa-2048 rsa-3072 ec-p256 ec-p384;"),
                    HasSubstr("lacks rsa-4096 ec-p521 ed25519")));
}

// The module cannot generate secret keys, so without a provisioned store secret the
// store refuses to start, saying how to provision one.
TEST(Tpm2Pkcs11Test, WithoutAStoreSecretStartUpFailsSayingHowToProvisionOne) {
  auto token = Tpm2Token::Create(/*store_secret=*/false);
  ASSERT_THAT(token, IsOk());
  EXPECT_THAT(Pkcs11KeyStore::Create(token->Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("TPM2.0 Cryptoki"),
                             HasSubstr("CKM_GENERIC_SECRET_KEY_GEN"),
                             HasSubstr("tpm2_ptool addkey --algorithm=hmac:sha256 "
                                       "--key-label=offkey-premaster-substitute-v1"))));
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
