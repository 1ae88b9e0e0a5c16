// Pkcs11KeyStore on opencryptoki's software token (swtok, opencryptoki 3.8 here) behind
// a private pkcsslotd: the KeyStore conformance suite, with the algorithms swtok lacks
// declared as refused, and what the store reads about the module at start-up.
#include <memory>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/opencryptoki.h"
#include "hsm/pkcs11/testing/token_store.h"
#include "hsm/testing/key_store_conformance.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::hsm::pkcs11::testing::OpencryptokiInstalled;
using ::offkey::hsm::pkcs11::testing::OpencryptokiToken;
using ::offkey::hsm::testing::kAllKeyAlgorithms;
using ::offkey::hsm::testing::KeyStoreConformanceKeyTest;
using ::offkey::hsm::testing::KeyStoreConformanceTest;
using ::offkey::hsm::testing::KeyStoreFactory;
using ::offkey::hsm::testing::KeyStoreFactoryAndKeyName;
using ::offkey::hsm::testing::KeyStoreFactoryName;
using ::offkey::testing::IsOk;
using Store = ::offkey::hsm::pkcs11::testing::TokenStore<OpencryptokiToken>;

// tools/setup.sh installs opencryptoki; only a machine without it skips.
class RequireOpencryptoki : public ::testing::Environment {
  void SetUp() override {
    if (!OpencryptokiInstalled()) {
      GTEST_SKIP() << "the opencryptoki package is not installed (tools/setup.sh)";
    }
  }
};
::testing::Environment* const kRequire =
    ::testing::AddGlobalTestEnvironment(new RequireOpencryptoki);

// opencryptoki 3.8's soft token has RSA (512 to 4096 bits, raw RSA, PSS), HMAC and
// generic secrets, but no EC and no Edwards mechanisms at all.
const KeyStoreFactory kOpencryptoki{"Opencryptoki",
                                    &Store::Make,
                                    &Store::OpenAnother,
                                    {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384,
                                     KeyAlgorithm::kEcP521, KeyAlgorithm::kEd25519},
                                    "Meta PKCS11 LIBRARY"};
INSTANTIATE_TEST_SUITE_P(Opencryptoki, KeyStoreConformanceTest,
                         ::testing::Values(kOpencryptoki), KeyStoreFactoryName);
INSTANTIATE_TEST_SUITE_P(Opencryptoki, KeyStoreConformanceKeyTest,
                         ::testing::Combine(::testing::Values(kOpencryptoki),
                                            ::testing::ValuesIn(kAllKeyAlgorithms)),
                         KeyStoreFactoryAndKeyName);

TEST(OpencryptokiTest, StartUpSummaryNamesWhatTheModuleLacks) {
  auto token = OpencryptokiToken::Create();
  ASSERT_THAT(token, IsOk());
  auto store = Pkcs11KeyStore::Create(token->Options());
  ASSERT_THAT(store, IsOk());
  EXPECT_EQ((*store)->capabilities().Summary(),
            "PKCS#11 module 'IBM Meta PKCS11 LIBRARY 3.8' makes rsa-2048 rsa-3072 "
            "rsa-4096; lacks ec-p256 ec-p384 ec-p521 ed25519");
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
