// The audit log under attack, against a real offkeyd: fields a caller
// controls reach the line capped whatever their size, and an audit log that cannot be
// written refuses operations (fail closed) unless audit.fail_open says otherwise.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "gtest/gtest.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

constexpr char kAdmin[] = "spiffe://test.offkey/admin";
// What one line may take whatever a request holds (see service/audit.h).
constexpr size_t kLineBound = 24 * 1024;

offkey::v1::SignRequest SignRequest(const std::string& key) {
  offkey::v1::SignRequest request;
  request.mutable_key()->set_name(key);
  request.mutable_context()->set_version(offkey::v1::TLS_1_3);
  request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
  request.set_message(Tls13Input());
  return request;
}

class AuditFloodTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    config->mutable_audit()->set_path(AuditPath());
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    AddKey("web", hsm::KeyAlgorithm::kEcP256);
  }
  static std::vector<std::string> AuditLines() {
    std::ifstream in(AuditPath());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
};

TEST_F(AuditFloodTest, MultiMegabyteFieldsLeaveShortLines) {
  // Requests over the listener's message limit never reach a handler (gRPC refuses them
  // with RESOURCE_EXHAUSTED, limits_test), so the largest fields a line can meet are the
  // ones just under that limit: refused by the per-RPC size check, and audited.
  auto stub = Stub(kTerminator);
  const std::string big(80 << 10, 'x');
  // Unknown key, huge SNI and handshake id: refused, and audited.
  offkey::v1::SignRequest unknown = SignRequest(big);
  unknown.mutable_context()->set_sni(big);
  unknown.mutable_context()->set_handshake_id(big);
  offkey::v1::SignResponse response;
  EXPECT_FALSE(stub->Sign(Context().get(), unknown, &response).ok());
  // A real key addressed by a huge key id.
  offkey::v1::SignRequest by_id = SignRequest("");
  by_id.mutable_key()->set_key_id(std::string(200 << 10, '\x01'));
  EXPECT_FALSE(stub->Sign(Context().get(), by_id, &response).ok());
  // A good key, a handshake context as large as Sign's request limit lets through.
  const std::string large(30 << 10, 'y');
  offkey::v1::SignRequest good = SignRequest("web");
  good.mutable_context()->set_sni(large);
  good.mutable_context()->set_handshake_id(large);
  stub->Sign(Context().get(), good, &response);  // Either outcome is audited.
  // The admin plane: a huge key name.
  offkey::v1::CreateKeyRequest create;
  create.set_name(std::string(1 << 20, 'n'));
  create.set_algorithm(offkey::v1::EC_P256);
  offkey::v1::CreateKeyResponse created;
  EXPECT_FALSE(AdminStub(kAdmin)->CreateKey(Context().get(), create, &created).ok());

  std::vector<std::string> lines = AuditLines();
  ASSERT_EQ(lines.size(), 4u) << absl::StrJoin(lines, "\n").substr(0, 3000);
  for (const std::string& line : lines) {
    EXPECT_LT(line.size(), kLineBound) << line.substr(0, 300);
    EXPECT_TRUE(absl::StrContains(line, "[truncated from ")) << line.substr(0, 300);
  }
}

// audit.path /dev/full: every write fails with ENOSPC, as on a full disk.
class FullDiskTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    config->mutable_audit()->set_path("/dev/full");
    config->mutable_audit()->set_fail_open(fail_open_);
  }
  service::ServerOptions Options() override {
    service::ServerOptions options;
    options.log = [this](const std::string& line) {
      offkey::MutexLock lock(&mu_);
      log_.push_back(line);
    };
    return options;
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    AddKey("web", hsm::KeyAlgorithm::kEcP256);
  }
  int AuditComplaints() {
    offkey::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& line : log_) {
      if (absl::StrContains(line, "cannot write the audit log '/dev/full'")) ++n;
    }
    return n;
  }

  bool fail_open_ = false;
  offkey::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

TEST_F(FullDiskTest, RefusesOperationsCountsAndLogsOnce) {
  auto stub = Stub(kTerminator);
  for (int i = 0; i < 20; ++i) {
    offkey::v1::SignResponse response;
    grpc::Status status = stub->Sign(Context().get(), SignRequest("web"), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << i;
    EXPECT_TRUE(absl::StrContains(status.error_message(), "audit log"))
        << status.error_message();
    EXPECT_TRUE(response.signature().empty());
  }
  // The Pipeline stream refuses its items the same way.
  {
    grpc::ClientContext context;
    auto stream = stub->Pipeline(&context);
    offkey::v1::PipelineRequest item;
    item.set_id(7);
    *item.mutable_sign() = SignRequest("web");
    ASSERT_TRUE(stream->Write(item));
    stream->WritesDone();
    offkey::v1::PipelineResponse answer;
    ASSERT_TRUE(stream->Read(&answer));
    EXPECT_EQ(answer.status().code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_FALSE(answer.has_sign());
    EXPECT_TRUE(stream->Finish().ok());
  }
  // The admin plane creates nothing it cannot audit.
  offkey::v1::CreateKeyRequest create;
  create.set_name("unaudited");
  create.set_algorithm(offkey::v1::EC_P256);
  offkey::v1::CreateKeyResponse created;
  EXPECT_EQ(AdminStub(kAdmin)->CreateKey(Context().get(), create, &created).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  absl::StatusOr<std::vector<hsm::KeyInfo>> keys = store_->ListKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  for (const hsm::KeyInfo& key : *keys) EXPECT_NE(key.name, "unaudited");

  EXPECT_EQ(MetricValue("offkey_audit_write_failures_total"), 22);
  EXPECT_EQ(AuditComplaints(), 1);  // Not one per request.
}

class FailOpenTest : public FullDiskTest {
 protected:
  void SetUp() override {
    fail_open_ = true;
    FullDiskTest::SetUp();
  }
};

TEST_F(FailOpenTest, KeepsServingUnauditedAndSaysSo) {
  auto stub = Stub(kTerminator);
  for (int i = 0; i < 3; ++i) {
    offkey::v1::SignResponse response;
    grpc::Status status = stub->Sign(Context().get(), SignRequest("web"), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_FALSE(response.signature().empty());
  }
  EXPECT_EQ(MetricValue("offkey_audit_write_failures_total"), 3);
  EXPECT_EQ(AuditComplaints(), 1);
}

// The audit file's directory disappears: key destruction, due meanwhile, waits until
// its line can be written, then happens.
class VanishingAuditTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    audit_dir_ = std::string(getenv("TEST_TMPDIR")) + "/vanishing";
    ASSERT_EQ(mkdir(audit_dir_.c_str(), 0700), 0);
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    config->mutable_audit()->set_path(audit_dir_ + "/audit.log");
  }
  service::ServerOptions Options() override {
    service::ServerOptions options;
    options.clock = [this] {
      offkey::MutexLock lock(&mu_);
      return now_;
    };
    options.destruction_interval = absl::Milliseconds(50);
    return options;
  }
  bool KeyExists(const std::string& name) {
    absl::StatusOr<std::vector<hsm::KeyInfo>> keys = store_->ListKeys();
    EXPECT_TRUE(keys.ok()) << keys.status();
    if (!keys.ok()) return false;
    for (const hsm::KeyInfo& key : *keys) {
      if (key.name == name) return true;
    }
    return false;
  }
  // Polls `done` until it holds or 20 s pass.
  static bool Eventually(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!done()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return true;
  }

  std::string audit_dir_;
  offkey::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::Now();
};

TEST_F(VanishingAuditTest, DueDestructionWaitsForTheAuditLog) {
  auto admin = AdminStub(kAdmin);
  offkey::v1::CreateKeyRequest create;
  create.set_name("old");
  create.set_algorithm(offkey::v1::EC_P256);
  offkey::v1::CreateKeyResponse created;
  ASSERT_TRUE(admin->CreateKey(Context().get(), create, &created).ok());
  offkey::v1::ScheduleKeyDestructionRequest schedule;
  schedule.mutable_key()->set_name("old");
  schedule.set_pending_window_seconds(3600);
  schedule.set_force(true);  // Under the 24-hour floor.
  offkey::v1::ScheduleKeyDestructionResponse scheduled;
  ASSERT_TRUE(admin->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).ok());

  ASSERT_EQ(unlink((audit_dir_ + "/audit.log").c_str()), 0);
  ASSERT_EQ(rmdir(audit_dir_.c_str()), 0);
  offkey::v1::ListKeysResponse listed;
  EXPECT_EQ(Stub(kTerminator)
                ->ListKeys(Context().get(), offkey::v1::ListKeysRequest(), &listed)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
  {
    offkey::MutexLock lock(&mu_);
    now_ += absl::Seconds(3601);
  }
  // Sweeps run and are postponed: each one's line fails too.
  const double failures = MetricValue("offkey_audit_write_failures_total");
  ASSERT_TRUE(Eventually(
      [&] { return MetricValue("offkey_audit_write_failures_total") >= failures + 3; }));
  EXPECT_TRUE(KeyExists("old")) << "destroyed while its audit line could not be written";

  ASSERT_EQ(mkdir(audit_dir_.c_str(), 0700), 0);
  // The sweep writes the key's line just after destroying it (and republishing the
  // catalog), so the line, not the key's absence, is what to wait for.
  std::string audit;
  EXPECT_TRUE(Eventually([&] {
    std::ifstream in(audit_dir_ + "/audit.log");
    audit.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return absl::StrContains(audit,
                             "\"operation\":\"admin.destroy-key\",\"key\":\"old\"");
  })) << audit;
  EXPECT_FALSE(KeyExists("old"));
}

}  // namespace
}  // namespace offkey::tests
