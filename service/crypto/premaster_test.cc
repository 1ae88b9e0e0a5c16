// SelectPremaster and SubstituteInput: every malformed-block class, the version rule, and
// the exact substitute encoding.
//
// Constant-time review points. Timing tests flake on shared machines and prove little, so
// this file does not measure time; instead, a reviewer of premaster.cc checks that:
//   1. The only branches in SelectPremaster are on sizes (k and the substitute's size),
//      which are public. No `if`, `?:`, `&&`, `||`, early `return`, `break` or loop bound
//      depends on a byte of `decrypted`.
//   2. Every index into `decrypted` is a function of k alone (0, 1, 2..k-50, k-49,
//      k-48..k-1): no position is found by searching for the separator, so the memory
//      access pattern (and cache lines touched) is the same for every input of size k.
//   3. Checks accumulate into a 32-bit mask with arithmetic only (CtIsZero8, CtEq8); no
//      comparison operator is applied to secret bytes (a compiler may lower `==` on a
//      secret to a flag and a branch).
//   4. The output is built byte by byte with CtSelect8 from both candidates, and the mask
//      passes through ValueBarrier so the optimiser cannot specialise on it.
//   5. The substitute is an input: it was computed before any secret byte was inspected,
//      so its cost cannot depend on the outcome. Callers (offkeyd's handlers) must keep
//      it so, and must not log, count or branch on whether the result is the substitute.
//   6. Disassembly check, when touching premaster.cc: `objdump -d` of SelectPremaster
//      should show no conditional jumps other than the two size checks and loop counters.
// The tests below pin down the function's input/output behaviour exhaustively enough that
// such a rewrite cannot silently change which blocks are accepted.
#include "service/crypto/premaster.h"

#include <openssl/rand.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace offkey::service::crypto {
namespace {

constexpr uint16_t kTls12 = 0x0303;

std::string Random(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

// Random bytes with no zero byte (PKCS#1 padding string).
std::string NonzeroRandom(size_t n) {
  std::string out = Random(n);
  for (char& c : out) {
    if (c == 0) c = 0x5a;
  }
  return out;
}

// A 48-byte premaster starting with `version`.
std::string Premaster(uint16_t version = kTls12) {
  std::string out = Random(kPremasterSize);
  out[0] = static_cast<char>(version >> 8);
  out[1] = static_cast<char>(version & 0xff);
  return out;
}

// A well-formed PKCS#1 v1.5 type-2 block of `k` bytes around `message`.
std::string Block(size_t k, const std::string& message) {
  std::string em;
  em += '\x00';
  em += '\x02';
  em += NonzeroRandom(k - 3 - message.size());
  em += '\x00';
  em += message;
  return em;
}

std::string Select(const std::string& em, uint16_t version, const std::string& sub) {
  SecretBytes out = SelectPremaster(SecretBytes(em), version, SecretBytes(sub));
  EXPECT_EQ(out.size(), kPremasterSize);
  return std::string(out.view());
}

class SelectPremasterTest : public ::testing::TestWithParam<size_t> {
 protected:
  size_t k() const { return GetParam(); }
  // The 48 bytes SelectPremaster must return on failure.
  std::string Substitute() const { return substitute_.substr(0, kPremasterSize); }

  // Fresh per test; longer than 48 to check that only the first 48 bytes are used.
  const std::string substitute_ = Random(64);
};

INSTANTIATE_TEST_SUITE_P(ModulusSizes, SelectPremasterTest,
                         ::testing::Values(64, 65, 128, 256, 384, 512),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return absl::StrCat("k", info.param);
                         });

TEST_P(SelectPremasterTest, ValidBlockGivesTheMessage) {
  const std::string pm = Premaster();
  EXPECT_EQ(Select(Block(k(), pm), kTls12, substitute_), pm);
}

TEST_P(SelectPremasterTest, VersionCheckPassesForOtherVersions) {
  for (uint16_t version : {0x0300, 0x0301, 0x0302, 0x0303, 0x0000, 0xffff}) {
    SCOPED_TRACE(version);
    const std::string pm = Premaster(version);
    EXPECT_EQ(Select(Block(k(), pm), version, substitute_), pm);
  }
}

TEST_P(SelectPremasterTest, ExactlyFortyEightBytesOfSubstituteAreUsed) {
  const std::string pm = Premaster();
  std::string em = Block(k(), pm);
  em[0] = 1;
  EXPECT_EQ(Select(em, kTls12, substitute_), Substitute());
  // A substitute of exactly 48 bytes works as well.
  EXPECT_EQ(Select(em, kTls12, Substitute()), Substitute());
}

TEST_P(SelectPremasterTest, FirstByteNotZero) {
  for (char first : {'\x01', '\x02', '\x80', '\xff'}) {
    std::string em = Block(k(), Premaster());
    em[0] = first;
    EXPECT_EQ(Select(em, kTls12, substitute_), Substitute()) << int{first};
  }
}

TEST_P(SelectPremasterTest, WrongBlockType) {
  for (char type : {'\x00', '\x01', '\x03', '\xff'}) {
    std::string em = Block(k(), Premaster());
    em[1] = type;
    EXPECT_EQ(Select(em, kTls12, substitute_), Substitute()) << int{type};
  }
}

TEST_P(SelectPremasterTest, NoZeroSeparatorAnywhere) {
  // A premaster without zero bytes, so that the block has no zero after byte 0 at all.
  std::string em = Block(k(), "\x03\x03" + NonzeroRandom(46));
  em[k() - 49] = '\x17';
  ASSERT_EQ(em.find('\0', 1), std::string::npos);
  EXPECT_EQ(Select(em, kTls12, substitute_), Substitute());
}

TEST_P(SelectPremasterTest, SeparatorTooEarlyMessageOf49Bytes) {
  const std::string msg = "\x03\x03" + Random(47);
  EXPECT_EQ(Select(Block(k(), msg), kTls12, substitute_), Substitute());
}

TEST_P(SelectPremasterTest, SeparatorTooEarlyMessageStartingWithZero) {
  // A 49-byte message 0x00 || premaster: the last 48 bytes and byte k-49 look exactly
  // like a valid block, but the first zero (the real separator) is at k-50.
  const std::string pm = Premaster();
  EXPECT_EQ(Select(Block(k(), std::string(1, '\0') + pm), kTls12, substitute_),
            Substitute());
}

TEST_P(SelectPremasterTest, SeparatorTooLateMessageOf47Bytes) {
  const std::string msg = "\x03\x03" + Random(45);
  EXPECT_EQ(Select(Block(k(), msg), kTls12, substitute_), Substitute());
}

TEST_P(SelectPremasterTest, SeparatorTooLateEmptyMessage) {
  EXPECT_EQ(Select(Block(k(), ""), kTls12, substitute_), Substitute());
}

TEST_P(SelectPremasterTest, OtherMessageLengths) {
  for (size_t len : {1, 2, 46, 50, 64}) {
    if (len + 11 > k()) continue;
    const std::string msg = "\x03\x03" + Random(len - std::min<size_t>(len, 2));
    EXPECT_EQ(Select(Block(k(), msg.substr(0, len)), kTls12, substitute_), Substitute())
        << len;
  }
}

TEST_P(SelectPremasterTest, ZeroInsideTheFirstEightPaddingBytes) {
  for (size_t i = 2; i < 10; ++i) {
    std::string em = Block(k(), Premaster());
    em[i] = '\0';
    EXPECT_EQ(Select(em, kTls12, substitute_), Substitute()) << "zero at " << i;
  }
}

TEST_P(SelectPremasterTest, PaddingShorterThanEightBytes) {
  // 0x00 0x02, 7 padding bytes, 0x00, then k-10 message bytes.
  const std::string msg = "\x03\x03" + Random(k() - 12);
  std::string em = Block(k(), msg);
  ASSERT_EQ(em[9], '\0');
  EXPECT_EQ(Select(em, kTls12, substitute_), Substitute());
}

TEST_P(SelectPremasterTest, WrongVersion) {
  const std::string pm = Premaster(0x0303);
  const std::string em = Block(k(), pm);
  EXPECT_EQ(Select(em, 0x0301, substitute_), Substitute()) << "second byte differs";
  EXPECT_EQ(Select(em, 0x0203, substitute_), Substitute()) << "first byte differs";
  EXPECT_EQ(Select(em, 0x0000, substitute_), Substitute()) << "both bytes differ";
  EXPECT_EQ(Select(em, 0x0302, substitute_), Substitute())
      << "negotiated version instead of the offered one";
  EXPECT_EQ(Select(em, 0x0303, substitute_), pm) << "the check passes when equal";
}

// Structural sweep: for every position of a valid block, changing that one byte either
// must be caught (header, padding, separator, version) or must flow into the result
// (the 46 random premaster bytes). This pins the exact acceptance region.
TEST_P(SelectPremasterTest, EverySingleByteChangeHasTheRightEffect) {
  const std::string pm = Premaster();
  const std::string em = Block(k(), pm);
  const size_t msg = k() - kPremasterSize;
  for (size_t i = 0; i < k(); ++i) {
    std::string changed = em;
    // Padding bytes must become zero to be wrong; any other byte just changes value.
    const bool padding = i >= 2 && i < msg - 1;
    changed[i] = padding ? '\0' : static_cast<char>(em[i] ^ 0x41);
    const std::string got = Select(changed, kTls12, substitute_);
    if (i >= msg + 2) {
      EXPECT_EQ(got, changed.substr(msg)) << "byte " << i << " belongs to the premaster";
    } else {
      EXPECT_EQ(got, Substitute()) << "byte " << i << " must be checked";
    }
    // A nonzero change inside the padding is still a valid block.
    if (padding) {
      changed[i] = static_cast<char>(em[i] == '\x01' ? 0x02 : 0x01);
      EXPECT_EQ(Select(changed, kTls12, substitute_), pm) << "byte " << i;
    }
  }
}

TEST_P(SelectPremasterTest, AllZeroAndAllOnesBlocks) {
  EXPECT_EQ(Select(std::string(k(), '\0'), 0x0000, substitute_), Substitute());
  EXPECT_EQ(Select(std::string(k(), '\xff'), 0xffff, substitute_), Substitute());
}

TEST(SelectPremasterDeathTest, SizePreconditionsAbort) {
  const std::string sub = Random(kPremasterSize);
  EXPECT_DEATH(Select(Block(63, Premaster()), kTls12, sub), "shorter than 64");
  EXPECT_DEATH(Select(Block(256, Premaster()), kTls12, sub.substr(0, 47)),
               "shorter than 48");
}

TEST(SubstituteInputTest, ExactEncoding) {
  const std::string key_id = "\x01\x02\x03";
  const std::string ct = "\xaa\xbb";
  EXPECT_EQ(SubstituteInput(key_id, 0x0303, ct),
            std::string("offkey premaster substitute v2") + std::string("\x03\x03", 2) +
                std::string("\x00\x00\x00\x03\x01\x02\x03", 7) +
                std::string("\x00\x00\x00\x02\xaa\xbb", 6));
  EXPECT_EQ(SubstituteInput("", 0, ""),
            std::string("offkey premaster substitute v2") + std::string(10, '\0'));
}

TEST(SubstituteInputTest, LengthsAreBigEndianFourBytes) {
  const std::string key_id(20, 'k');
  const std::string ct(0x1234, 'c');
  const std::string in = SubstituteInput(key_id, 0xfefd, ct);
  const size_t label = kSubstituteLabel.size();
  ASSERT_EQ(in.size(), label + 2 + 4 + 20 + 4 + 0x1234);
  EXPECT_EQ(in.substr(label, 2), std::string("\xfe\xfd", 2));
  EXPECT_EQ(in.substr(label + 2, 4), std::string("\x00\x00\x00\x14", 4));
  EXPECT_EQ(in.substr(label + 26, 4), std::string("\x00\x00\x12\x34", 4));
}

TEST(SubstituteInputTest, DifferentInputsNeverCollide) {
  // Moving bytes between key id and ciphertext changes the encoding.
  EXPECT_NE(SubstituteInput("ab", 0x0303, "c"), SubstituteInput("a", 0x0303, "bc"));
  EXPECT_NE(SubstituteInput("", 0x0303, "abc"), SubstituteInput("abc", 0x0303, ""));
  EXPECT_NE(SubstituteInput("key", 0x0303, "ct1"), SubstituteInput("key", 0x0303, "ct2"));
  EXPECT_NE(SubstituteInput("key1", 0x0303, "ct"), SubstituteInput("key2", 0x0303, "ct"));
  // The client version is bound: one ciphertext with two versions MACs two inputs.
  EXPECT_NE(SubstituteInput("key", 0x0303, "ct"), SubstituteInput("key", 0x0302, "ct"));
  EXPECT_NE(SubstituteInput("key", 0x0003, "ct"), SubstituteInput("key", 0x0300, "ct"));
  // A key id that embeds what looks like a length prefix cannot fake another pair.
  EXPECT_NE(SubstituteInput(std::string("a\x00\x00\x00\x01", 5) + "b", 0x0303, "c"),
            SubstituteInput("a", 0x0303, "bc"));
}

}  // namespace
}  // namespace offkey::service::crypto
