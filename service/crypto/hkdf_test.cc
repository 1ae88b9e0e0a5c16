#include "service/crypto/hkdf.h"

#include <string>

#include "absl/strings/escaping.h"
#include "base/secret_bytes.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service::crypto {
namespace {

using ::offkey::testing::IsOk;

// RFC 5869 appendix A: the Expand steps of test cases 1 and 3 (empty info).
TEST(HkdfTest, Rfc5869Expand) {
  const SecretBytes prk1(absl::HexStringToBytes(
      "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"));
  absl::StatusOr<SecretBytes> okm1 =
      HkdfSha256Expand(prk1, absl::HexStringToBytes("f0f1f2f3f4f5f6f7f8f9"), 42, "test");
  ASSERT_THAT(okm1, IsOk());
  EXPECT_EQ(absl::BytesToHexString(okm1->view()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8"
            "87185865");
  const SecretBytes prk3(absl::HexStringToBytes(
      "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"));
  absl::StatusOr<SecretBytes> okm3 = HkdfSha256Expand(prk3, "", 42, "test");
  ASSERT_THAT(okm3, IsOk());
  EXPECT_EQ(absl::BytesToHexString(okm3->view()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4"
            "b61a96c8");
}

TEST(HkdfTest, TooLongIsAnError) {
  const SecretBytes prk(std::string(32, 'k'));
  EXPECT_FALSE(HkdfSha256Expand(prk, "x", 255 * 32 + 1, "test").ok());
}

}  // namespace
}  // namespace offkey::service::crypto
