#include "service/oplog.h"

#include <unistd.h>

#include "absl/time/civil_time.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::offkey::testing::StatusIs;

absl::Time When() {
  return absl::FromCivil(absl::CivilSecond(2026, 12, 7, 4, 5, 6), absl::UTCTimeZone()) +
         absl::Milliseconds(78) + absl::Microseconds(900);
}

TEST(OpLogTest, JsonHasTimeLevelMessageAndFields) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, When(), LogLevel::kWarning, "reload refused",
                          {{"port", "8443"}}),
            "{\"time\":\"2026-12-07T04:05:06.078Z\",\"level\":\"warning\","
            "\"msg\":\"reload refused\",\"port\":\"8443\"}");
}

TEST(OpLogTest, JsonEscapesEverythingButPrintableAscii) {
  EXPECT_EQ(
      FormatLogLine(LogFormat::kJson, When(), LogLevel::kInfo,
                    "a\"b\\c\nd\te\x7f\xc3\xa9\xf0\x9f\x94\x91\xff\xc3"),
      "{\"time\":\"2026-12-07T04:05:06.078Z\",\"level\":\"info\","
      "\"msg\":\"a\\\"b\\\\c\\nd\\u0009e\\u007f\\u00e9\\ud83d\\udd11\\ufffd\\ufffd\"}");
  // Overlong and surrogate encodings are not characters.
  EXPECT_EQ(
      FormatLogLine(LogFormat::kJson, When(), LogLevel::kError, "\xc0\xaf\xed\xa0\x80"),
      "{\"time\":\"2026-12-07T04:05:06.078Z\",\"level\":\"error\","
      "\"msg\":\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"}");
}

TEST(OpLogTest, TextIsWhatOffkeydAlwaysPrinted) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, When(), LogLevel::kInfo, "stopped",
                          {{"ignored", "in text"}}),
            "offkeyd: stopped");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, When(), LogLevel::kWarning, "careful"),
            "offkeyd: WARNING: careful");
}

TEST(OpLogTest, WritesOneLinePerRecord) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const OpLog log(LogFormat::kJson, fds[1], &When);
  log.Info("one");
  log.Error("two", {{"k", "v"}});
  close(fds[1]);
  char buffer[1024];
  const ssize_t n = read(fds[0], buffer, sizeof(buffer));
  close(fds[0]);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buffer, n),
            "{\"time\":\"2026-12-07T04:05:06.078Z\",\"level\":\"info\",\"msg\":\"one\"}\n"
            "{\"time\":\"2026-12-07T04:05:06.078Z\",\"level\":\"error\",\"msg\":\"two\","
            "\"k\":\"v\"}\n");
}

TEST(OpLogTest, ParsesFormatNames) {
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_THAT(ParseLogFormat("yaml"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace offkey::service
