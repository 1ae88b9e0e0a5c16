// A token that goes away and comes back (through a forwarding module that fakes the
// removal SoftHSM2 cannot show): calls fail cleanly while it is gone, health says so,
// and the same store serves again once it is back, without a restart.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

TEST(TokenRemovalTest, RecoversWhenTheTokenIsRemovedAndReinserted) {
  auto token = testing::SoftHsmToken::Create();
  ASSERT_THAT(token, IsOk());
  const std::string removed_file = token->directory + "/removed";
  setenv("OFFKEY_TOKEN_REMOVED_FILE", removed_file.c_str(), 1);
  setenv("OFFKEY_REAL_PKCS11_MODULE", testing::SoftHsmModulePath().c_str(), 1);
  TokenOptions options = token->Options();
  options.module_path = std::string(getenv("TEST_SRCDIR")) +
                        "/offkey/hsm/pkcs11/testing/libremovable_pkcs11.so";
  auto store = Pkcs11KeyStore::Create(options);
  ASSERT_THAT(store, IsOk());
  auto key = (*store)->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_THAT(key, IsOk());
  const SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
  ASSERT_THAT((*store)->Sign(key->key_id, alg, "before", {}), IsOk());
  EXPECT_THAT((*store)->CheckHealth(), IsOk());

  FILE* f = fopen(removed_file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  auto gone = (*store)->Sign(key->key_id, alg, "while removed", {});
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kUnavailable) << gone.status();
  EXPECT_NE(gone.status().message().find(token->label), std::string::npos)
      << "the message names the missing token: " << gone.status();
  EXPECT_EQ((*store)->CheckHealth().code(), absl::StatusCode::kUnavailable);

  ASSERT_EQ(unlink(removed_file.c_str()), 0);
  absl::Status health = (*store)->CheckHealth();
  EXPECT_THAT(health, IsOk());
  auto sig = (*store)->Sign(key->key_id, alg, "after", {});
  ASSERT_THAT(sig, IsOk());
  EXPECT_TRUE(
      hsm::testing::VerifyWithOpenSsl(key->public_key_spki, alg, "after", *sig).ok());
  EXPECT_EQ((*store)->TokenForTest().sessions_in_use(), 0);
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
