// A PIN the token refused is never presented again: HSMs lock the user PIN after a few
// wrong tries, so retrying it on every call (or every health check) would turn a PIN
// changed on the HSM into a locked token. Runs through the forwarding module that
// counts C_Login calls.
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/ck_rv.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(PinRefusedTest, APinTheTokenRefusedIsNotTriedAgain) {
  auto token = testing::SoftHsmToken::Create();
  ASSERT_THAT(token, IsOk());
  setenv("OFFKEY_REAL_PKCS11_MODULE", testing::SoftHsmModulePath().c_str(), 1);
  TokenOptions options = token->Options();
  options.module_path = std::string(getenv("TEST_SRCDIR")) +
                        "/offkey/hsm/pkcs11/testing/libremovable_pkcs11.so";
  auto store = Pkcs11KeyStore::Create(options);
  ASSERT_THAT(store, IsOk());
  void* shim = dlopen(options.module_path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(shim, nullptr);
  auto login_calls =
      reinterpret_cast<unsigned long (*)()>(dlsym(shim, "OffkeyTestLoginCalls"));
  ASSERT_NE(login_calls, nullptr);
  auto key = (*store)->GenerateKey("k", KeyAlgorithm::kEcP256);
  ASSERT_THAT(key, IsOk());
  const SignAlgorithm alg{SignatureKind::kEcdsa, HashAlgorithm::kSha256};

  // The operator changes the user PIN on the HSM, and our login ends (as after a
  // session loss): the PIN this store holds is now wrong.
  Token& t = (*store)->TokenForTest();
  ASSERT_THAT(t.Run("change the PIN and log out", absl::InfiniteFuture(),
                    [&](CK_SESSION_HANDLE s, int) -> absl::Status {
                      std::string old_pin = token->pin, new_pin = "changed-" + token->pin;
                      CK_RV rv = t.fn()->C_SetPIN(
                          s, reinterpret_cast<CK_UTF8CHAR*>(old_pin.data()),
                          old_pin.size(), reinterpret_cast<CK_UTF8CHAR*>(new_pin.data()),
                          new_pin.size());
                      if (rv != CKR_OK) return CkRvStatus(rv, "C_SetPIN");
                      return CkRvStatus(t.fn()->C_Logout(s), "C_Logout");
                    }),
              IsOk());
  const unsigned long before = login_calls();

  // The first call after that tries the PIN once, and the store says what is wrong.
  auto refused = (*store)->Sign(key->key_id, alg, "m", {});
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                AllOf(HasSubstr("CKR_PIN_INCORRECT"), HasSubstr("PIN"))));
  EXPECT_EQ(login_calls(), before + 1);

  // Then neither calls nor health checks present it again; health reports the PIN.
  for (int i = 0; i < 5; ++i) {
    EXPECT_THAT((*store)->Sign(key->key_id, alg, "m", {}),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("CKR_PIN_INCORRECT")));
    EXPECT_THAT((*store)->CheckHealth(),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("CKR_PIN_INCORRECT")));
  }
  EXPECT_EQ(login_calls(), before + 1);
  EXPECT_EQ(t.sessions_in_use(), 0);
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
