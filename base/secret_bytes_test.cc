#include "base/secret_bytes.h"

#include <utility>

#include "gtest/gtest.h"

namespace offkey {
namespace {

TEST(SecretBytesTest, HoldsAndCopiesExplicitly) {
  SecretBytes a(absl::string_view("premaster"));
  SecretBytes b = a.Copy();
  EXPECT_EQ(a.view(), "premaster");
  EXPECT_EQ(b.view(), "premaster");
  EXPECT_NE(a.data(), b.data());
}

TEST(SecretBytesTest, MoveLeavesSourceEmpty) {
  SecretBytes a(absl::string_view("secret"));
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test.
  EXPECT_EQ(b.view(), "secret");
  SecretBytes c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.view(), "secret");
}

TEST(SecretBytesTest, TruncateWipesTailInPlace) {
  SecretBytes a(absl::string_view("abcdef"));
  const uint8_t* base = a.data();
  a.Truncate(2);
  EXPECT_EQ(a.view(), "ab");
  // The vector keeps its allocation on shrink; the removed bytes must be zero.
  EXPECT_EQ(base, a.data());
  for (int i = 2; i < 6; ++i) EXPECT_EQ(base[i], 0) << i;
  a.Truncate(10);  // Never grows.
  EXPECT_EQ(a.size(), 2u);
}

TEST(SecretBytesTest, WipeStringClears) {
  std::string s = "pin-1234";
  WipeString(&s);
  EXPECT_TRUE(s.empty());
}

}  // namespace
}  // namespace offkey
