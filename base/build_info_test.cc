#include "base/build_info.h"

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

TEST(BuildInfoTest, UnknownUntilSetThenWhatWasSet) {
  EXPECT_EQ(GetBuildInfo().version, "unknown");
  EXPECT_EQ(GetBuildInfo().revision, "unknown");
  EXPECT_EQ(VersionLine("offkeyd", GetBuildInfo()),
            "offkeyd unknown (revision unknown, built unknown)");
  BuildInfo info;
  info.version = "v1.0.0";
  info.revision = "abcdef0123";
  SetBuildInfo(info);
  EXPECT_EQ(GetBuildInfo().version, "v1.0.0");
  EXPECT_EQ(GetBuildInfo().revision, "abcdef0123");
}

TEST(BuildInfoTest, VersionLineHasVersionRevisionAndUtcTime) {
  BuildInfo info;
  info.version = "v1.0.0-2-gabcdef0-dirty";
  info.revision = "abcdef0123";
  info.time =
      absl::FromCivil(absl::CivilSecond(2026, 12, 7, 4, 5, 6), absl::UTCTimeZone());
  EXPECT_EQ(VersionLine("offkeyctl", info),
            "offkeyctl v1.0.0-2-gabcdef0-dirty (revision abcdef0123, built "
            "2026-12-07T04:05:06Z)");
}

}  // namespace
}  // namespace offkey
