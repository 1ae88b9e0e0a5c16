#include "base/big_endian.h"

#include <string>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

TEST(BigEndianTest, MostSignificantByteFirst) {
  std::string out = "x";
  AppendBigEndian64(0x0102030405060708, &out);
  EXPECT_EQ(absl::BytesToHexString(out), "780102030405060708");
  EXPECT_EQ(ReadBigEndian64(absl::string_view(out).substr(1)), 0x0102030405060708u);
}

TEST(BigEndianTest, RoundTripsEveryHighBit) {
  for (uint64_t v : {uint64_t{0}, uint64_t{0xff}, uint64_t{0x8000000000000000},
                     ~uint64_t{0}, static_cast<uint64_t>(int64_t{-5})}) {
    std::string out;
    AppendBigEndian64(v, &out);
    ASSERT_EQ(out.size(), 8u);
    EXPECT_EQ(ReadBigEndian64(out), v);
  }
}

}  // namespace
}  // namespace offkey
