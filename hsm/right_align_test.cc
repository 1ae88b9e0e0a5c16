// RightAlignConstantTime: every length from 0 to k, for moduli of several sizes, moves
// the first `len` bytes to the end and zeroes the rest, whatever the bytes after `len`.
// (That it does so in time independent of `len` is by construction: see the header.)
#include "hsm/right_align.h"

#include <string>

#include "gtest/gtest.h"

namespace offkey::hsm {
namespace {

class RightAlignTest : public ::testing::TestWithParam<size_t> {};

INSTANTIATE_TEST_SUITE_P(ModulusSizes, RightAlignTest,
                         ::testing::Values(1, 2, 3, 64, 255, 256, 257, 384, 512));

TEST_P(RightAlignTest, EveryLength) {
  const size_t k = GetParam();
  for (size_t len = 0; len <= k; ++len) {
    SCOPED_TRACE(len);
    // The module's result: `len` nonzero, position-dependent bytes, then stale bytes the
    // module did not write.
    std::string module_output(k, '\xee');
    for (size_t i = 0; i < len; ++i) {
      module_output[i] = static_cast<char>(1 + (i * 37 + len) % 251);
    }
    SecretBytes buffer(module_output);
    RightAlignConstantTime(buffer, len);
    const std::string expected =
        std::string(k - len, '\0') + module_output.substr(0, len);
    ASSERT_EQ(buffer.view(), expected);
  }
}

TEST(RightAlignTest, FullLengthIsUnchanged) {
  const std::string block = std::string("\x00\x02", 2) + std::string(254, '\x41');
  SecretBytes buffer(block);
  RightAlignConstantTime(buffer, block.size());
  EXPECT_EQ(buffer.view(), block);
}

TEST(RightAlignTest, EmptyBuffer) {
  SecretBytes buffer;
  RightAlignConstantTime(buffer, 0);
  EXPECT_TRUE(buffer.empty());
}

}  // namespace
}  // namespace offkey::hsm
