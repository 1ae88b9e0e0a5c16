// ExpandSubstitute against an independent HKDF-Expand built from one-shot HMAC calls.
// ComputeSubstitute itself runs against a real token in premaster_wycheproof_test.
#include "service/crypto/substitute.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <string>

#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service::crypto {
namespace {

using ::offkey::testing::IsOk;

std::string HmacSha256(const std::string& key, const std::string& data) {
  unsigned char out[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// RFC 5869 §2.3 with L = 48: T(1) = HMAC(PRK, info || 0x01),
// T(2) = HMAC(PRK, T(1) || info || 0x02), output the first 48 bytes of T(1) || T(2).
std::string ReferenceExpand(const std::string& prk) {
  const std::string info(kSubstituteExpandInfo.data(), kSubstituteExpandInfo.size());
  const std::string t1 = HmacSha256(prk, info + '\x01');
  const std::string t2 = HmacSha256(prk, t1 + info + '\x02');
  return (t1 + t2).substr(0, 48);
}

TEST(ExpandSubstituteTest, MatchesRfc5869Expand) {
  for (int i = 0; i < 16; ++i) {
    std::string mac(32, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(mac.data()), 32);
    auto out = ExpandSubstitute(SecretBytes(mac));
    ASSERT_THAT(out, IsOk());
    ASSERT_EQ(out->size(), 48u);
    EXPECT_EQ(std::string(out->view()), ReferenceExpand(mac));
  }
}

TEST(ExpandSubstituteTest, DeterministicAndKeyDependent) {
  const std::string a(32, 'a'), b(32, 'b');
  auto a1 = ExpandSubstitute(SecretBytes(a));
  auto a2 = ExpandSubstitute(SecretBytes(a));
  auto b1 = ExpandSubstitute(SecretBytes(b));
  ASSERT_TRUE(a1.ok() && a2.ok() && b1.ok());
  EXPECT_EQ(a1->view(), a2->view());
  EXPECT_NE(a1->view(), b1->view());
}

TEST(ExpandSubstituteTest, RefusesAMacOfTheWrongSize) {
  EXPECT_EQ(ExpandSubstitute(SecretBytes(std::string(31, 'x'))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpandSubstitute(SecretBytes(std::string(48, 'x'))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpandSubstitute(SecretBytes()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace offkey::service::crypto
