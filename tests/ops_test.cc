// Day-two operations of the real offkeyd and offkeyctl binaries: --version and the
// build info metric, --check_config, SIGHUP reloads, readiness notifications, and the
// JSON operational log.
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/testing/secret_ledger.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "tests/process.h"

namespace offkey::tests {

using ::offkey::testing::OutputPath;
using ::offkey::testing::RecordPrivateKeyPem;
using ::offkey::testing::RecordSecret;
namespace {

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

// A datagram socket bound to the abstract name `name` (without its leading '@').
int BindAbstract(const std::string& name) {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  EXPECT_LT(name.size() + 1, sizeof(address.sun_path));
  memcpy(address.sun_path + 1, name.data(), name.size());
  EXPECT_EQ(
      bind(fd, reinterpret_cast<sockaddr*>(&address),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())),
      0)
      << strerror(errno);
  return fd;
}

// The next datagram on `fd`, or "<timeout>" after 30 s.
std::string NextDatagram(int fd) {
  pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 30000) != 1) return "<timeout>";
  char buffer[4096];
  const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
  return n < 0 ? "<error>" : std::string(buffer, n);
}

// Polls `done` until it holds or `timeout` passes; true if it held.
bool PollUntil(const std::function<bool()>& done,
               absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

struct VersionLine {
  std::string program, version, revision, built;
};

// Parses what --version printed; fails the test if it is not one well-formed line.
VersionLine ParseVersion(const std::string& out) {
  static const std::regex kLine(R"(^(\S+) (\S+) \(revision (\S+), built (\S+)\)\n$)");
  std::smatch m;
  VersionLine line;
  EXPECT_TRUE(std::regex_match(out, m, kLine)) << "--version printed: " << out;
  if (m.empty()) return line;
  line = {m[1], m[2], m[3], m[4]};
  EXPECT_TRUE(std::regex_match(line.revision, std::regex("[0-9a-f]{40}|unknown")))
      << line.revision;
  EXPECT_TRUE(std::regex_match(line.built,
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|unknown)")))
      << line.built;
  return line;
}

TEST(VersionTest, BothBinariesPrintVersionRevisionAndBuildTime) {
  ProcessResult d = RunProcess({Runfile("service/offkeyd"), "--version"});
  ProcessResult c = RunProcess({Runfile("client/cli/offkeyctl"), "--version"});
  EXPECT_EQ(d.exit_code, 0) << d.err;
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(d.err, "");
  EXPECT_EQ(c.err, "");
  const VersionLine dv = ParseVersion(d.out);
  const VersionLine cv = ParseVersion(c.out);
  EXPECT_EQ(dv.program, "offkeyd");
  EXPECT_EQ(cv.program, "offkeyctl");
  // Built together, so stamped together.
  EXPECT_EQ(dv.version, cv.version);
  EXPECT_EQ(dv.revision, cv.revision);
}

// A development state made once by `offkeyd --dev`, and offkeyd processes started from
// copies of its configuration file, as production runs it.
class OpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new std::string(getenv("TEST_TMPDIR"));
    state_ = new std::string(*tmp_ + "/dev");
    const std::string port_file = *tmp_ + "/dev.port";
    Daemon dev;
    std::string why;
    ASSERT_TRUE(
        dev.Start({Runfile("service/offkeyd"), "--dev", "--dev_state_dir=" + *state_,
                   "--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                   "--metrics_address=127.0.0.1:0", "--port_file=" + port_file},
                  {}, OutputPath("offkeyd-dev.log"), {port_file}, &why))
        << why;
    ASSERT_EQ(dev.Stop(), 0);
    // The development state's secrets, for the log scan.
    for (const char* pin : {"user.pin", "so.pin"}) {
      RecordSecret(pin, absl::StripAsciiWhitespace(ReadFileOrEmpty(*state_ + "/" + pin)));
    }
    for (const char* key : {"ca.key", "server.key", "terminator.key", "admin.key"}) {
      RecordPrivateKeyPem(key, ReadFileOrEmpty(*state_ + "/" + key));
    }
  }
  static void TearDownTestSuite() {
    delete state_;
    delete tmp_;
  }

  // The development configuration file's text.
  static std::string DevConfig() {
    return ReadFileOrEmpty(*state_ + "/config.textproto");
  }

  // Writes `text` as a configuration file named `name`; returns its path.
  static std::string Config(const std::string& name, const std::string& text) {
    std::string path = *tmp_ + "/" + name;
    WriteFile(path, text);
    return path;
  }

  static ProcessResult CheckConfig(const std::string& path,
                                   const std::vector<std::string>& env = {}) {
    return RunProcess({Runfile("service/offkeyd"), "--check_config=" + path}, "", env);
  }

  // Starts offkeyd from the configuration file `config` on loopback ports of its
  // choosing; its log (standard error and output) goes to offkeyd-<name>.log.
  bool Start(const std::string& name, const std::string& config,
             const std::vector<std::string>& extra_args, std::string* why,
             std::vector<std::string> env = {}) {
    const std::string port_file = *tmp_ + "/" + name + ".port";
    const std::string metrics_file = *tmp_ + "/" + name + ".metrics";
    unlink(port_file.c_str());
    unlink(metrics_file.c_str());
    std::vector<std::string> argv = {Runfile("service/offkeyd"),
                                     "--config=" + config,
                                     "--listen=127.0.0.1:0",
                                     "--admin_listen=127.0.0.1:0",
                                     "--metrics_address=127.0.0.1:0",
                                     "--port_file=" + port_file,
                                     "--metrics_port_file=" + metrics_file};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    log_ = OutputPath("offkeyd-" + name + ".log");
    env.push_back("SOFTHSM2_CONF=" + *state_ + "/softhsm2.conf");
    if (!daemon_.Start(argv, env, log_, {port_file, metrics_file}, why)) {
      return false;
    }
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(port_file)),
                            &port_) &&
           absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(metrics_file)),
                            &metrics_port_);
  }

  // The status of GetCertificate for a development key, as the terminator.
  grpc::StatusCode GetCertificate() {
    if (stub_ == nullptr) {
      grpc::SslCredentialsOptions tls;
      tls.pem_root_certs = ReadFileOrEmpty(*state_ + "/ca.pem");
      tls.pem_cert_chain = ReadFileOrEmpty(*state_ + "/terminator.pem");
      tls.pem_private_key = ReadFileOrEmpty(*state_ + "/terminator.key");
      stub_ = offkey::v1::KeyService::NewStub(grpc::CreateChannel(
          absl::StrCat("127.0.0.1:", port_), grpc::SslCredentials(tls)));
    }
    offkey::v1::GetCertificateRequest request;
    request.mutable_key()->set_name("dev-p256");
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    offkey::v1::GetCertificateResponse response;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    return stub_->GetCertificate(&context, request, &response).error_code();
  }

  // Whether offkeyd's log holds `text` (polled: it comes from another process).
  bool LogShows(const std::string& text) {
    return PollUntil([&] { return absl::StrContains(ReadFileOrEmpty(log_), text); });
  }

  std::string Metrics() {
    httplib::Client http("127.0.0.1", metrics_port_);
    httplib::Result result = http.Get("/metrics");
    EXPECT_TRUE(result && result->status == 200);
    return result ? result->body : "";
  }

 public:
  static std::string* tmp_;
  static std::string* state_;

 protected:
  Daemon daemon_;
  std::unique_ptr<offkey::v1::KeyService::Stub> stub_;
  std::string log_;
  int port_ = 0;
  int metrics_port_ = 0;
};

std::string* OpsTest::tmp_ = nullptr;
std::string* OpsTest::state_ = nullptr;

std::string OpsTestDevConfig() {
  return ReadFileOrEmpty(*OpsTest::state_ + "/config.textproto");
}

TEST_F(OpsTest, MetricsCarryTheVersionThatVersionPrints) {
  const VersionLine version =
      ParseVersion(RunProcess({Runfile("service/offkeyd"), "--version"}).out);
  std::string why;
  ASSERT_TRUE(Start("metrics", *state_ + "/config.textproto", {}, &why)) << why;
  const std::string metrics = Metrics();
  EXPECT_TRUE(absl::StrContains(
      metrics, absl::StrCat("\noffkey_build_info{revision=\"", version.revision,
                            "\",version=\"", version.version, "\"} 1\n")))
      << metrics;
  EXPECT_EQ(daemon_.Stop(), 0);
}

TEST_F(OpsTest, CheckConfigAcceptsTheDevelopmentConfiguration) {
  const std::string path = Config("good.textproto", DevConfig());
  ProcessResult r = CheckConfig(path);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, absl::StrCat("configuration ", path, " is ok\n"));
  // The same file with the PIN from a variable: present, then absent.
  const std::string from_env =
      Config("env.textproto",
             absl::StrReplaceAll(DevConfig(), {{"pin_file: \"" + *state_ + "/user.pin\"",
                                                "pin_env: \"OPS_TEST_PIN\""}}));
  r = CheckConfig(from_env, {"OPS_TEST_PIN=1234"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = CheckConfig(from_env);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err,
                                "hsm.pin_env: the environment variable "
                                "'OPS_TEST_PIN' is not set or empty"))
      << r.err;
}

TEST_F(OpsTest, CheckConfigNamesTheLineOfASyntaxError) {
  // Line 3 of the file misspells a field.
  const std::string path = Config(
      "typo.textproto", absl::StrCat("# comment\n\nlisten_adress: \"x\"\n", DevConfig()));
  ProcessResult r = CheckConfig(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(absl::StrContains(r.err, path + ":3:")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "listen_adress")) << r.err;
}

TEST_F(OpsTest, CheckConfigNamesTheFieldOfAPolicyError) {
  const std::string path =
      Config("policy.textproto",
             absl::StrReplaceAll(DevConfig(),
                                 {{"\"spiffe://offkey.dev/terminator\"", "\"*\""}}));
  ProcessResult r = CheckConfig(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "policy.grants[0].identities[0]")) << r.err;
}

TEST_F(OpsTest, CheckConfigFindsMismatchedTlsFilesAndMissingFiles) {
  const std::string path = Config(
      "files.textproto",
      absl::StrReplaceAll(DevConfig(),
                          {{*state_ + "/server.key", *state_ + "/admin.key"},
                           {*state_ + "/user.pin", *state_ + "/missing.pin"},
                           {"/usr/lib/softhsm/libsofthsm2.so", *tmp_ + "/nomodule.so"}}));
  ProcessResult r = CheckConfig(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  // Every problem, not only the first.
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat("tls.key_file: '", *state_,
                          "/admin.key' is not the key of the first certificate in '",
                          *state_, "/server.pem'")))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "hsm.pin_file: cannot read")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "hsm.module_path: '" + *tmp_ + "/nomodule.so'"))
      << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "tls.cert_file")) << r.err;
}

TEST_F(OpsTest, CheckConfigFindsACertificateFileWithoutCertificates) {
  const std::string path =
      Config("cert.textproto",
             absl::StrReplaceAll(DevConfig(),
                                 {{*state_ + "/server.pem", *state_ + "/user.pin"}}));
  ProcessResult r = CheckConfig(path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "tls.cert_file: '" + *state_ + "/user.pin'"))
      << r.err;
  // Not the PIN itself, though the check named its file as a certificate.
  EXPECT_FALSE(absl::StrContains(
      r.err, absl::StripAsciiWhitespace(ReadFileOrEmpty(*state_ + "/user.pin"))));
}

TEST_F(OpsTest, CheckConfigRefusesDevAndConfigFlags) {
  ProcessResult r = RunProcess({Runfile("service/offkeyd"), "--dev",
                                "--check_config=" + Config("x.textproto", DevConfig())});
  EXPECT_EQ(r.exit_code, 2);
}

// The development configuration without periodic reloads (only a SIGHUP reloads), and
// with or without the terminator's GET_CERTIFICATE grant.
std::string ReloadConfig(bool grant_get_certificate) {
  std::string text =
      absl::StrCat(OpsTestDevConfig(), "reload { interval_seconds: 3600 }\n");
  if (!grant_get_certificate) {
    text = absl::StrReplaceAll(text, {{"operations: GET_CERTIFICATE\n", ""}});
  }
  return text;
}

TEST_F(OpsTest, SighupAppliesANewGrantAndNamesWhatNeedsARestart) {
  const std::string path = Config("sighup.textproto", ReloadConfig(false));
  std::string why;
  ASSERT_TRUE(Start("sighup", path, {}, &why)) << why;
  EXPECT_EQ(GetCertificate(), grpc::StatusCode::PERMISSION_DENIED);

  // The grant, and a change only a restart applies.
  Config(
      "sighup.textproto",
      absl::StrReplaceAll(ReloadConfig(true), {{"max_sessions: 4", "max_sessions: 3"}}));
  ASSERT_EQ(kill(daemon_.pid(), SIGHUP), 0);
  EXPECT_TRUE(PollUntil([&] { return GetCertificate() == grpc::StatusCode::OK; }));
  EXPECT_TRUE(LogShows("configuration reloaded on SIGHUP"));
  EXPECT_TRUE(
      LogShows("changed settings that need a restart to take effect: "
               "hsm.max_sessions\n"));
  EXPECT_EQ(daemon_.Stop(), 0);
}

TEST_F(OpsTest, SighupWithABrokenFileKeepsServingTheRunningPolicy) {
  const std::string path = Config("broken.textproto", ReloadConfig(true));
  std::string why;
  ASSERT_TRUE(Start("broken", path, {}, &why)) << why;
  EXPECT_EQ(GetCertificate(), grpc::StatusCode::OK);

  // Without the grant, but broken: refused as a whole.
  Config("broken.textproto",
         absl::StrReplaceAll(ReloadConfig(false),
                             {{"operations: SIGN\n", "operations: NO_SUCH_OP\n"}}));
  ASSERT_EQ(kill(daemon_.pid(), SIGHUP), 0);
  EXPECT_TRUE(
      LogShows("configuration reload on SIGHUP refused, keeping the running one: "));
  EXPECT_TRUE(LogShows("NO_SUCH_OP"));
  EXPECT_EQ(GetCertificate(), grpc::StatusCode::OK);

  // Fixed, the next SIGHUP applies it.
  Config("broken.textproto", ReloadConfig(false));
  ASSERT_EQ(kill(daemon_.pid(), SIGHUP), 0);
  EXPECT_TRUE(
      PollUntil([&] { return GetCertificate() == grpc::StatusCode::PERMISSION_DENIED; }));
  EXPECT_EQ(daemon_.Stop(), 0);
}

TEST_F(OpsTest, NotifiesTheServiceManagerOfReadinessReloadsAndStopping) {
  const std::string name = absl::StrCat("offkey-ops-test-", getpid());
  const int fd = BindAbstract(name);
  std::string why;
  ASSERT_TRUE(Start("notify", Config("notify.textproto", ReloadConfig(true)), {}, &why,
                    {"NOTIFY_SOCKET=@" + name}))
      << why;
  EXPECT_EQ(NextDatagram(fd), "STATUS=opening the HSM token");
  EXPECT_EQ(NextDatagram(fd), absl::StrCat("READY=1\nSTATUS=serving on port ", port_));
  EXPECT_EQ(GetCertificate(), grpc::StatusCode::OK);

  ASSERT_EQ(kill(daemon_.pid(), SIGHUP), 0);
  const std::string reloading = NextDatagram(fd);
  EXPECT_TRUE(absl::StartsWith(reloading, "RELOADING=1\nMONOTONIC_USEC=")) << reloading;
  EXPECT_TRUE(absl::EndsWith(reloading, "\nSTATUS=reloading the configuration"))
      << reloading;
  EXPECT_EQ(NextDatagram(fd), "READY=1\nSTATUS=serving; configuration reloaded");

  EXPECT_EQ(daemon_.Stop(), 0);
  EXPECT_EQ(NextDatagram(fd), "STOPPING=1\nSTATUS=finishing calls in flight");
  close(fd);
}

TEST_F(OpsTest, JsonLogLinesAreObjectsWithTimeLevelMessageAndNoAuditRecords) {
  const std::string audit = *tmp_ + "/json-audit.log";
  const std::string config_text =
      absl::StrCat(ReloadConfig(true), "audit { path: \"", audit, "\" }\n");
  const std::string path = Config("json.textproto", config_text);
  std::string why;
  ASSERT_TRUE(Start("json", path, {"--log_format=json"}, &why)) << why;
  EXPECT_EQ(GetCertificate(), grpc::StatusCode::OK);
  // An error line too: a reload of a broken file.
  Config("json.textproto", absl::StrCat(config_text, "no_such_field: 1\n"));
  ASSERT_EQ(kill(daemon_.pid(), SIGHUP), 0);
  EXPECT_TRUE(LogShows("configuration reload on SIGHUP refused"));
  EXPECT_EQ(daemon_.Stop(), 0);

  // The audit record went to its own file.
  EXPECT_TRUE(
      absl::StrContains(ReadFileOrEmpty(audit), "\"operation\":\"get-certificate\""))
      << ReadFileOrEmpty(audit);
  const std::regex time(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  std::vector<std::string> messages, levels;
  for (absl::string_view line :
       absl::StrSplit(ReadFileOrEmpty(log_), '\n', absl::SkipEmpty())) {
    google::protobuf::Struct record;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(std::string(line), &record).ok())
        << "not JSON: " << line;
    const auto& fields = record.fields();
    ASSERT_TRUE(fields.contains("time") && fields.contains("level") &&
                fields.contains("msg"))
        << line;
    EXPECT_TRUE(std::regex_match(fields.at("time").string_value(), time)) << line;
    levels.push_back(fields.at("level").string_value());
    messages.push_back(fields.at("msg").string_value());
    EXPECT_FALSE(fields.contains("operation") || fields.contains("identity")) << line;
    EXPECT_FALSE(absl::StrContains(line, "get-certificate")) << line;
  }
  ASSERT_FALSE(messages.empty());
  EXPECT_TRUE(absl::StartsWith(messages.front(), "PKCS#11 module")) << messages.front();
  EXPECT_EQ(messages.back(), "stopped");
  EXPECT_NE(std::find(levels.begin(), levels.end(), "error"), levels.end());
  for (const std::string& level : levels) {
    EXPECT_TRUE(level == "info" || level == "warning" || level == "error") << level;
  }
}

}  // namespace
}  // namespace offkey::tests
