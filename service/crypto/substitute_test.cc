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

// RFC 5869 §2.3 with L = 46: T(1) = HMAC(PRK, info || 0x01),
// T(2) = HMAC(PRK, T(1) || info || 0x02), output the first 46 bytes of T(1) || T(2).
std::string ReferenceExpand(const std::string& prk) {
  const std::string info(kSubstituteExpandInfo.data(), kSubstituteExpandInfo.size());
  const std::string t1 = HmacSha256(prk, info + '\x01');
  const std::string t2 = HmacSha256(prk, t1 + info + '\x02');
  return (t1 + t2).substr(0, 46);
}

TEST(ExpandSubstituteTest, MatchesRfc5869Expand) {
  for (int i = 0; i < 16; ++i) {
    std::string mac(32, '\0');
    RAND_bytes(reinterpret_cast<unsigned char*>(mac.data()), 32);
    auto out = ExpandSubstitute(SecretBytes(mac), 0x0303);
    ASSERT_THAT(out, IsOk());
    ASSERT_EQ(out->size(), 48u);
    EXPECT_EQ(std::string(out->view()), "\x03\x03" + ReferenceExpand(mac));
  }
}

TEST(ExpandSubstituteTest, DeterministicAndKeyDependent) {
  const std::string a(32, 'a'), b(32, 'b');
  auto a1 = ExpandSubstitute(SecretBytes(a), 0x0303);
  auto a2 = ExpandSubstitute(SecretBytes(a), 0x0303);
  auto b1 = ExpandSubstitute(SecretBytes(b), 0x0303);
  ASSERT_TRUE(a1.ok() && a2.ok() && b1.ok());
  EXPECT_EQ(a1->view(), a2->view());
  EXPECT_NE(a1->view(), b1->view());
}

// The substitute starts with the client version, as a real premaster
// does (RFC 5246 §7.4.7.1), so its first two bytes do not give it away.
TEST(ExpandSubstituteTest, StartsWithTheClientVersion) {
  const std::string mac(32, 'm');
  for (uint16_t version : {0x0303, 0x0301, 0x0000, 0xffff, 0xfefd}) {
    auto out = ExpandSubstitute(SecretBytes(mac), version);
    ASSERT_THAT(out, IsOk());
    ASSERT_EQ(out->size(), 48u);
    EXPECT_EQ((*out)[0], version >> 8);
    EXPECT_EQ((*out)[1], version & 0xff);
    EXPECT_EQ(std::string(out->view().substr(2)), ReferenceExpand(mac));
  }
}

TEST(ExpandSubstituteTest, RefusesAMacOfTheWrongSize) {
  EXPECT_EQ(ExpandSubstitute(SecretBytes(std::string(31, 'x')), 0x0303).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpandSubstitute(SecretBytes(std::string(48, 'x')), 0x0303).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ExpandSubstitute(SecretBytes(), 0x0303).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace offkey::service::crypto
