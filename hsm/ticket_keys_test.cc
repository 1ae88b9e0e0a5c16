#include "hsm/ticket_keys.h"

#include <string>

#include "absl/strings/escaping.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::hsm {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;

TEST(TicketKeysTest, EpochMessageIsTheDocumentedFraming) {
  const std::string expected =
      absl::StrCat(absl::string_view("offkey ticket epoch v1\0web\0", 27),
                   absl::HexStringToBytes("0000000102030405"));
  EXPECT_EQ(TicketEpochMessage("web", 0x0102030405), expected);
  EXPECT_EQ(absl::BytesToHexString(TicketEpochMessage("a", 0).substr(24)),
            "000000000000000000");
  // Neither name nor epoch can be shifted into the other.
  EXPECT_NE(TicketEpochMessage("ab", 1), TicketEpochMessage("a", 1));
  EXPECT_NE(TicketEpochMessage("a", 1), TicketEpochMessage("a", 256));
}

TEST(TicketKeysTest, SetNamesFollowTheKeyNameRules) {
  for (const char* ok : {"web", "a", "tickets.prod-1_b", "9lives"}) {
    EXPECT_THAT(ValidateTicketKeySetName(ok), IsOk()) << ok;
  }
  EXPECT_THAT(ValidateTicketKeySetName(std::string(64, 't')), IsOk());
  for (const std::string& bad :
       {std::string(), std::string(65, 't'), std::string("a/b"), std::string("a b"),
        std::string("-lead"), std::string(".hidden"), std::string("_x"),
        std::string("nul\0", 4)}) {
    EXPECT_THAT(ValidateTicketKeySetName(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << absl::CHexEscape(bad);
  }
}

TEST(TicketKeysTest, PeriodsAreWholePositiveSecondsAndEpochsNotNegative) {
  EXPECT_THAT(ValidateTicketRotationPeriod(absl::Seconds(10)), IsOk());
  EXPECT_THAT(ValidateTicketRotationPeriod(absl::Hours(24 * 7)), IsOk());
  for (absl::Duration bad : {absl::ZeroDuration(), absl::Seconds(-10),
                             absl::Milliseconds(1500), absl::InfiniteDuration()}) {
    EXPECT_THAT(ValidateTicketRotationPeriod(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(ValidateTicketEpoch(0), IsOk());
  EXPECT_THAT(ValidateTicketEpoch(-1), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace offkey::hsm
