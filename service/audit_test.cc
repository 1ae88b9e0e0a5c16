#include "service/audit.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;

TEST(AuditTest, FormatsOneJsonObjectWithEscapes) {
  AuditRecord r;
  r.time = absl::FromUnixMicros(1700000000123456);
  r.identity = "spiffe://x/\"quoted\"\\";
  r.operation = "sign";
  r.key = "web";
  r.scheme = "ecdsa_secp256r1_sha256";
  r.tls_version = "TLS_1_3";
  r.handshake_id = "h\n1";
  r.outcome = absl::PermissionDeniedError("no grant");
  r.latency = absl::Microseconds(321);
  EXPECT_EQ(FormatAuditLine(r),
            "{\"time\":\"2023-11-14T22:13:20.123456Z\",\"identity\":"
            "\"spiffe://x/\\\"quoted\\\"\\\\\",\"operation\":\"sign\",\"key\":\"web\","
            "\"scheme\":\"ecdsa_secp256r1_sha256\",\"tls\":\"TLS_1_3\","
            "\"handshake_id\":\"h\\u000a1\",\"outcome\":\"PERMISSION_DENIED\","
            "\"error\":\"no grant\",\"latency_us\":321}");
}

TEST(AuditTest, AppendsWholeLinesToAFile) {
  std::string path = std::string(getenv("TEST_TMPDIR")) + "/audit.log";
  auto log = AuditLog::Open(path);
  ASSERT_THAT(log, IsOk());
  AuditRecord r;
  r.operation = "decrypt-premaster";
  r.outcome = absl::OkStatus();
  EXPECT_THAT((*log)->Write(r), IsOk());
  EXPECT_THAT((*log)->Write(r), IsOk());
  log->reset();
  std::ifstream in(path);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_NE(line.find("\"outcome\":\"OK\""), std::string::npos);
    EXPECT_EQ(line.find("error"), std::string::npos);
  }
  EXPECT_EQ(lines, 2);
  EXPECT_EQ(AuditLog::Open("/nonexistent/dir/audit.log").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Every field a caller controls, at 4 MiB: the line stays small and says what was cut.
TEST(AuditTest, CapsEveryCallerFieldWithATruncationMarker) {
  const std::string huge(4 << 20, 'a');
  AuditRecord r;
  r.identity = huge;
  r.operation = "sign";
  r.key = huge;
  r.scheme = huge;
  r.tls_version = huge;
  r.sni = huge;
  r.handshake_id = huge;
  r.trust_bundle = huge;
  r.verify_result = huge;
  r.client = huge;
  r.outcome = absl::InvalidArgumentError(std::string(4 << 20, 'e'));
  const std::string line = FormatAuditLine(r);
  EXPECT_LT(line.size(), 16u * 1024) << "a 4 MiB field reached the line";
  // identity, key, scheme, tls, sni, handshake_id, trust_bundle, verify_result, client,
  // error: each cut, each marked with the size it had.
  size_t markers = 0;
  for (size_t at = line.find("[truncated from 4194304 bytes]"); at != std::string::npos;
       at = line.find("[truncated from 4194304 bytes]", at + 1)) {
    ++markers;
  }
  EXPECT_EQ(markers, 10u) << line.substr(0, 600);
  EXPECT_TRUE(absl::StrContains(line, std::string(kAuditFieldCap, 'a')));
  EXPECT_FALSE(absl::StrContains(line, std::string(kAuditFieldCap + 1, 'a')));
  EXPECT_TRUE(absl::StrContains(line, std::string(kAuditErrorCap, 'e')));
  EXPECT_FALSE(absl::StrContains(line, std::string(kAuditErrorCap + 1, 'e')));
}

// Control characters, DEL, quotes, non-ASCII and invalid UTF-8: the line is printable
// ASCII, valid JSON, and a reader gets the valid characters back.
TEST(AuditTest, EscapesToPrintableAscii) {
  AuditRecord r;
  r.time = absl::FromUnixMicros(0);
  r.operation = "sign";
  r.sni = std::string("a\"b\\c\r\n\x1b[31m\x7f") + "\xc3\xa9" +  // é
          "\xe2\x80\xae" +                                       // RIGHT-TO-LEFT OVERRIDE
          "\xf0\x9f\x94\x91" +                                   // U+1F511 (a pair)
          "\xff\xc3" + "z" + "\xed\xa0\x80" + "\xc0\xaf";        // invalid: all replaced
  r.outcome = absl::OkStatus();
  const std::string line = FormatAuditLine(r);
  for (unsigned char c : line) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f)
        << "byte " << static_cast<int>(c) << " in " << line;
  }
  EXPECT_TRUE(absl::StrContains(
      line,
      "\"sni\":\"a\\\"b\\\\c\\u000d\\u000a\\u001b[31m\\u007f\\u00e9\\u202e"
      "\\ud83d\\udd11\\ufffd\\ufffdz\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""))
      << line;
}

// Cutting never splits a multi-byte character into invalid UTF-8.
TEST(AuditTest, CapCutsAtACharacterBoundary) {
  AuditRecord r;
  r.operation = "sign";
  r.key = std::string(kAuditFieldCap - 1, 'k') + "\xc3\xa9" + "tail";
  r.outcome = absl::OkStatus();
  const std::string line = FormatAuditLine(r);
  EXPECT_TRUE(absl::StrContains(
      line, absl::StrCat("\"key\":\"", std::string(kAuditFieldCap - 1, 'k'),
                         "...[truncated from ", kAuditFieldCap + 5, " bytes]\"")))
      << line;
}

// A sink that fails on demand, and counts what it was given.
class FlakySink : public AuditSink {
 public:
  explicit FlakySink(bool* failing) : failing_(failing) {}
  absl::Status Append(absl::string_view line) override {
    if (*failing_) return absl::ResourceExhaustedError("No space left on device");
    lines.push_back(std::string(line));
    return absl::OkStatus();
  }
  std::vector<std::string> lines;

 private:
  bool* failing_;
};

AuditRecord SignRecord() {
  AuditRecord r;
  r.identity = "spiffe://x/terminator";
  r.operation = "sign";
  r.key = "web";
  r.outcome = absl::OkStatus();
  return r;
}

TEST(AuditTest, FailingSinkRefusesOperationsAndSaysSoOnce) {
  bool failing = false;
  auto sink = std::make_unique<FlakySink>(&failing);
  FlakySink* lines = sink.get();
  std::vector<std::string> logged;
  int failures = 0;
  AuditOptions options;
  options.log = [&](const std::string& line) { logged.push_back(line); };
  options.on_failure = [&] { ++failures; };
  std::unique_ptr<AuditLog> log = AuditLog::WithSink(std::move(sink), options);

  EXPECT_THAT(log->Write(SignRecord()), IsOk());
  EXPECT_THAT(log->Check(), IsOk());
  ASSERT_EQ(lines->lines.size(), 1u);
  EXPECT_EQ(lines->lines[0].back(), '\n');

  failing = true;
  for (int i = 0; i < 100; ++i) {
    EXPECT_THAT(log->Write(SignRecord()), StatusIs(absl::StatusCode::kUnavailable,
                                                   ::testing::HasSubstr("audit log")));
    EXPECT_THAT(log->Check(), StatusIs(absl::StatusCode::kUnavailable));
  }
  EXPECT_EQ(failures, 100);
  EXPECT_EQ(log->write_failures(), 100);
  // One line for the operator, not one per request; it says why and what to do.
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_TRUE(absl::StrContains(logged[0], "No space left on device")) << logged[0];
  EXPECT_TRUE(absl::StrContains(logged[0], "fail_open")) << logged[0];

  failing = false;
  EXPECT_THAT(log->Write(SignRecord()), IsOk());
  EXPECT_THAT(log->Check(), IsOk());
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_TRUE(absl::StrContains(logged[1], "100")) << logged[1];  // Lines lost.
  EXPECT_EQ(lines->lines.size(), 2u);
}

TEST(AuditTest, FailOpenKeepsServingButStillCountsAndLogs) {
  bool failing = true;
  std::vector<std::string> logged;
  int failures = 0;
  AuditOptions options;
  options.fail_open = true;
  options.log = [&](const std::string& line) { logged.push_back(line); };
  options.on_failure = [&] { ++failures; };
  std::unique_ptr<AuditLog> log =
      AuditLog::WithSink(std::make_unique<FlakySink>(&failing), options);
  EXPECT_THAT(log->Write(SignRecord()), IsOk());
  EXPECT_THAT(log->Write(SignRecord()), IsOk());
  EXPECT_THAT(log->Check(), IsOk());
  EXPECT_EQ(failures, 2);
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_TRUE(absl::StrContains(logged[0], "fail_open")) << logged[0];
}

// /dev/full fails every write with ENOSPC: a full disk.
TEST(AuditTest, FullFileSystemIsReported) {
  std::vector<std::string> logged;
  AuditOptions options;
  options.log = [&](const std::string& line) { logged.push_back(line); };
  auto log = AuditLog::Open("/dev/full", options);
  ASSERT_THAT(log, IsOk());
  EXPECT_THAT((*log)->Write(SignRecord()), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_TRUE(absl::StrContains(logged[0], "/dev/full")) << logged[0];
  EXPECT_TRUE(absl::StrContains(logged[0], strerror(ENOSPC))) << logged[0];
}

// A deleted audit file is created again; while its directory is gone, writes fail
// rather than vanish into the unlinked file.
TEST(AuditTest, DeletedFileIsRecreatedAndAMissingDirectoryFails) {
  const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/vanishing";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  const std::string path = dir + "/audit.log";
  std::vector<std::string> logged;
  AuditOptions options;
  options.log = [&](const std::string& line) { logged.push_back(line); };
  auto log = AuditLog::Open(path, options);
  ASSERT_THAT(log, IsOk());
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_EQ(rmdir(dir.c_str()), 0);
  EXPECT_THAT((*log)->Write(SignRecord()), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_TRUE(absl::StrContains(logged[0], "deleted")) << logged[0];

  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  EXPECT_THAT((*log)->Write(SignRecord()), IsOk());
  std::ifstream in(path);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_TRUE(absl::StrContains(line, "\"key\":\"web\"")) << line;
}

}  // namespace
}  // namespace offkey::service
