#include "service/audit.h"

#include <fstream>
#include <sstream>

#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::offkey::testing::IsOk;

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
  (*log)->Write(r);
  (*log)->Write(r);
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

}  // namespace
}  // namespace offkey::service
