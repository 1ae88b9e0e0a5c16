// A module that returns raw RSA results without their leading zero bytes (through a
// forwarding module over SoftHSM2): RsaDecryptRaw still returns the k-byte big-endian
// plaintext for every number of leading zeros, including an all-zero one, by the
// constant-time right-alignment (hsm/right_align.h).
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

TEST(StripLeadingZerosTest, RawRsaResultsAreRightAligned) {
  auto token = testing::SoftHsmToken::Create();
  ASSERT_THAT(token, IsOk());
  setenv("OFFKEY_REAL_PKCS11_MODULE", testing::SoftHsmModulePath().c_str(), 1);
  TokenOptions options = token->Options();
  options.module_path = std::string(getenv("TEST_SRCDIR")) +
                        "/offkey/hsm/pkcs11/testing/libstrip_zeros_pkcs11.so";
  auto store = Pkcs11KeyStore::Create(options);
  ASSERT_THAT(store, IsOk());
  // The module the store loaded, for its count of stripped bytes.
  void* module = dlopen(options.module_path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  ASSERT_NE(module, nullptr);
  auto stripped =
      reinterpret_cast<unsigned long (*)()>(dlsym(module, "OffkeyStrippedZeroBytes"));
  ASSERT_NE(stripped, nullptr);

  auto key = (*store)->GenerateKey("k", KeyAlgorithm::kRsa2048);
  ASSERT_THAT(key, IsOk());
  const size_t k = 256;
  unsigned long expected_stripped = stripped();
  for (size_t zeros : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{17},
                       size_t{128}, size_t{255}, k}) {
    SCOPED_TRACE(absl::StrCat(zeros, " leading zero bytes"));
    std::string plaintext(zeros, '\0');
    for (size_t i = zeros; i < k; ++i) plaintext += static_cast<char>(1 + i % 200);
    // Below the modulus: its top byte is nonzero for a 2048-bit key, so keep ours small.
    if (zeros == 0) plaintext[0] = '\x01';
    const std::string ciphertext =
        hsm::testing::RsaEncryptRaw(key->public_key_spki, plaintext);
    ASSERT_EQ(ciphertext.size(), k);
    auto decrypted = (*store)->RsaDecryptRaw(key->key_id, ciphertext, {});
    ASSERT_THAT(decrypted, IsOk());
    EXPECT_EQ(decrypted->view(), plaintext);
    expected_stripped += zeros;
  }
  // The module did strip them: the store put them back.
  EXPECT_EQ(stripped(), expected_stripped);
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
