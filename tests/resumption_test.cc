// Session resumption across real terminators: two nginx instances, and two haproxy
// instances, all keyless (the offkey provider in front of one offkeyd over SoftHSM2),
// read the session-ticket keys of one ticket-key set, created through offkeyd and
// written for each instance by `offkeyctl ticket-keys`. A session made on one instance
// resumes on the other, in TLS 1.2 and TLS 1.3, and the resumed handshake makes no call
// to offkeyd. Each ticket is opened here with the current key offkeyd hands out, which
// pins the writer's file layouts to what nginx and haproxy read (the byte order of key
// name, AES and HMAC keys, and which key encrypts). With a 10-second rotation and the
// writer watching (reloading nginx, feeding haproxy's admin socket), a ticket of the
// previous epoch still resumes and one two epochs old gets a full handshake. An
// identity without the grant gets no keys.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"
#include "tests/provider_files.h"
#include "tests/session_tickets.h"

namespace offkey::tests {
namespace {

using ::offkey::testing::RecordSecret;
namespace v1 = offkey::v1;

inline constexpr char kAdmin[] = "spiffe://test.offkey/admin";

void Write(const std::string& path, absl::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

// What one `openssl s_client` connection showed.
struct Connection {
  bool served = false;     // The HTTP answer came.
  bool reused = false;     // "Reused, ..." rather than "New, ...".
  std::string protocol;    // "TLSv1.2", "TLSv1.3"
  std::string transcript;  // The lines that say so and standard error; no secrets.
};

enum class Kind { kNginx, kHaproxy };

std::string KindName(Kind kind) { return kind == Kind::kNginx ? "nginx" : "haproxy"; }

// The sets the terminator identity may read (and one it may not).
constexpr char kSharedSet[] = "shared";
constexpr char kRotatingSet[] = "rotating";
constexpr char kUngrantedSet[] = "elsewhere";

// Two instances ("a", "b") of one kind of server, each with a directory of its own
// (its configuration, logs and the ticket-key files offkeyctl writes in "tickets").
class ResumptionTest : public OffkeydTest, public ::testing::WithParamInterface<Kind> {
 protected:
  void Configure(v1::ServerConfig* config) override {
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    v1::Grant* tickets = config->mutable_policy()->add_grants();
    tickets->add_identities(kTerminator);
    tickets->add_operations(v1::GET_TICKET_KEYS);
    tickets->add_ticket_key_sets(kSharedSet);
    tickets->add_ticket_key_sets(kRotatingSet);
  }

  void SetUp() override {
    OffkeydTest::SetUp();
    if (HasFatalFailure()) return;
    hsm::KeyInfo key = AddKey("edge", hsm::KeyAlgorithm::kEcP256);
    WriteKeylessServerFiles(dir_, "edge", key, ca_);
    if (HasFatalFailure()) return;
    Write(dir_ + "/edge-haproxy.pem",
          ReadFileOrEmpty(dir_ + "/edge.pem") + ReadFileOrEmpty(dir_ + "/edge.ref"));
    // haproxy's admin sockets: the test's directory is too deep for a socket path.
    char sockets[] = "/tmp/offkey-resumption.XXXXXX";
    ASSERT_NE(mkdtemp(sockets), nullptr);
    sockets_ = sockets;
    admin_ = ClientFiles(kAdmin);
    terminator_ = ClientFiles(kTerminator);
    Write(dir_ + "/openssl.cnf",
          ProviderConfig(EndpointLines(server_->port(), terminator_)));
  }

  void TearDown() override {
    for (auto& writer : writers_) writer->Stop();
    for (auto& server : servers_) server->Stop();
    if (!sockets_.empty()) {
      EXPECT_EQ(system(absl::StrCat("rm -rf ", sockets_).c_str()), 0);
    }
    OffkeydTest::TearDown();
  }

  std::string Dir(const std::string& instance) const {
    return absl::StrCat(dir_, "/", instance);
  }
  std::string KeyDir(const std::string& instance) const {
    return Dir(instance) + "/tickets";
  }
  std::string AdminSocket(const std::string& instance) const {
    return absl::StrCat(sockets_, "/", instance, ".sock");
  }

  // offkeyctl's command line for `args`: the admin identity on the admin plane, `data`'s
  // on the data plane.
  std::vector<std::string> CtlArgv(const std::vector<std::string>& args,
                                   const client::ClientOptions& data) const {
    std::vector<std::string> argv = {Runfile("client/cli/offkeyctl"),
                                     "--endpoint",
                                     absl::StrCat("127.0.0.1:", server_->port()),
                                     "--admin-endpoint",
                                     absl::StrCat("127.0.0.1:", server_->admin_port()),
                                     "--tls-ca",
                                     dir_ + "/ca.pem",
                                     "--tls-cert",
                                     admin_.cert_file,
                                     "--tls-key",
                                     admin_.key_file,
                                     "--data-tls-cert",
                                     data.cert_file,
                                     "--data-tls-key",
                                     data.key_file};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // No configuration file of the user running the test.
  std::vector<std::string> CtlEnv() const { return {"HOME=" + dir_}; }

  ProcessResult Ctl(const std::vector<std::string>& args,
                    const client::ClientOptions& data) {
    return RunProcess(CtlArgv(args, data), "", CtlEnv());
  }

  void CreateSet(const std::string& set, const std::string& period) {
    ProcessResult r =
        Ctl({"ticket-key-set", "create", set, "--rotation-period", period}, terminator_);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  // `offkeyctl ticket-keys` for `instance` of this test's kind.
  std::vector<std::string> WriterArgs(const std::string& set,
                                      const std::string& instance) const {
    return {"ticket-keys",        set,     "--format",
            KindName(GetParam()), "--out", KeyDir(instance)};
  }

  // Writes the keys of `set` for `instance` once, as the terminator.
  void WriteKeys(const std::string& set, const std::string& instance) {
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", Dir(instance)).c_str()), 0);
    ProcessResult r = Ctl(WriterArgs(set, instance), terminator_);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  }

  // Keeps the keys of `set` current for `instance`, running on `pid`: the writer
  // watching, reloading nginx (SIGHUP to its master) or feeding haproxy's admin socket.
  void Watch(const std::string& set, const std::string& instance, pid_t pid) {
    std::vector<std::string> args = WriterArgs(set, instance);
    args.push_back("--watch");
    if (GetParam() == Kind::kNginx) {
      args.insert(args.end(), {"--reload-command", absl::StrCat("kill -HUP ", pid)});
    } else {
      args.insert(args.end(), {"--haproxy-socket", AdminSocket(instance)});
    }
    auto writer = std::make_unique<Daemon>();
    std::string why;
    ASSERT_TRUE(writer->Start(CtlArgv(args, terminator_), CtlEnv(),
                              Dir(instance) + "/writer.log", {}, &why))
        << why;
    writers_.push_back(std::move(writer));
  }

  // The name of an 80-byte key from a file (name first in both layouts); the rest is
  // secret.
  static std::string NameOf(const std::string& key) {
    RecordSecret("ticket AES and HMAC keys", key.substr(16));
    return key.substr(0, 16);
  }

  // The names of the keys in `instance`'s files: previous, current, next (fewer if the
  // files are not all there).
  std::vector<std::string> FileKeyNames(const std::string& instance) const {
    std::vector<std::string> names;
    if (GetParam() == Kind::kNginx) {
      for (const char* file : {"previous", "current", "next"}) {
        const std::string key =
            ReadFileOrEmpty(absl::StrCat(KeyDir(instance), "/", file, ".key"));
        if (key.size() == 80) names.push_back(NameOf(key));
      }
    } else {
      for (absl::string_view line :
           absl::StrSplit(ReadFileOrEmpty(KeyDir(instance) + "/haproxy.keys"), '\n',
                          absl::SkipEmpty())) {
        std::string key;
        if (absl::Base64Unescape(line, &key) && key.size() == 80) {
          names.push_back(NameOf(key));
        }
      }
    }
    return names;
  }

  // Starts `instance` of this test's kind on a free port with the keys WriteKeys wrote;
  // returns the port (0 on failure) and the server's process id in `*pid`.
  int StartServer(const std::string& instance, pid_t* pid = nullptr) {
    const std::string dir = Dir(instance);
    const int port = UnusedPort();
    EXPECT_GT(port, 0);
    if (port <= 0) return 0;
    std::vector<std::string> argv;
    std::string log;
    if (GetParam() == Kind::kNginx) {
      log = dir + "/error.log";
      std::string config =
          absl::StrCat("daemon off;\nmaster_process on;\nworker_processes 1;\n",
                       "user root;\n",  // The test's files are root's.
                       "pid ", dir, "/nginx.pid;\nerror_log ", log, " info;\n",
                       "events { worker_connections 64; }\nhttp {\n  access_log off;\n");
      for (const char* temp : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) {
        absl::StrAppend(&config, "  ", temp, "_temp_path ", dir, "/", temp, ";\n");
      }
      absl::StrAppend(&config, "  server {\n    listen 127.0.0.1:", port, " ssl;\n",
                      "    ssl_protocols TLSv1.2 TLSv1.3;\n", "    ssl_certificate ",
                      dir_, "/edge.pem;\n", "    ssl_certificate_key ", dir_,
                      "/edge.ref;\n");
      // The first key encrypts.
      for (const char* key : {"current", "previous", "next"}) {
        absl::StrAppend(&config, "    ssl_session_ticket_key ", KeyDir(instance), "/",
                        key, ".key;\n");
      }
      absl::StrAppend(&config, "    location / { return 200 \"", instance,
                      "\\n\"; }\n  }\n}\n");
      Write(dir + "/nginx.conf", config);
      argv = {"/usr/sbin/nginx", "-p", dir, "-e", log, "-c", dir + "/nginx.conf"};
    } else {
      log = dir + "/stderr.log";  // haproxy logs to standard error.
      // No session cache, so that only a ticket resumes a session; the admin socket
      // takes new keys from the writer.
      Write(dir + "/haproxy.cfg",
            absl::StrCat(
                "global\n  master-worker\n  nbthread 2\n  ssl-mode-async\n",
                "  tune.ssl.cachesize 0\n", "  stats socket ", AdminSocket(instance),
                " level admin\n", "  log stderr format raw local0 info\n",
                "defaults\n  mode http\n  log global\n  option httplog\n",
                "  timeout connect 5s\n  timeout client 10s\n", "  timeout server 10s\n",
                "frontend tls\n  bind 127.0.0.1:", port, " ssl crt ", dir_,
                "/edge-haproxy.pem tls-ticket-keys ", KeyDir(instance), "/haproxy.keys\n",
                "  http-request return status 200 content-type text/plain "
                "string \"",
                instance, "\"\n"));
      argv = {"/usr/sbin/haproxy", "-W", "-db", "-f", dir + "/haproxy.cfg"};
    }
    const std::string stderr_log = dir + "/stderr.log";
    auto daemon = std::make_unique<Daemon>();
    std::string why;
    EXPECT_TRUE(daemon->Start(argv, {absl::StrCat("OPENSSL_CONF=", dir_, "/openssl.cnf")},
                              stderr_log, {}, &why))
        << why;
    if (pid != nullptr) *pid = daemon->pid();
    servers_.push_back(std::move(daemon));
    const bool accepting = AwaitAccepting(port);
    // nginx's standard error has what it says before it opens its error log.
    EXPECT_TRUE(accepting) << ReadFileOrEmpty(log)
                           << (log == stderr_log ? "" : ReadFileOrEmpty(stderr_log));
    return accepting ? port : 0;
  }

  // One `openssl s_client` connection to 127.0.0.1:port that fetches "/" (so a TLS 1.3
  // client reads the NewSessionTicket messages that follow the handshake), verifying
  // the server as localhost; resumes the session in `session_in` if given, writes the
  // session to `session_out` if given.
  Connection Connect(int port, const std::string& version, const std::string& session_in,
                     const std::string& session_out) {
    std::vector<std::string> argv = {"/usr/bin/openssl",
                                     "s_client",
                                     "-connect",
                                     absl::StrCat("127.0.0.1:", port),
                                     "-CAfile",
                                     dir_ + "/ca.pem",
                                     "-servername",
                                     "localhost",
                                     "-verify_return_error",
                                     "-ign_eof",
                                     version};
    if (!session_in.empty()) argv.insert(argv.end(), {"-sess_in", session_in});
    if (!session_out.empty()) argv.insert(argv.end(), {"-sess_out", session_out});
    ProcessResult r =
        RunProcess(argv, "GET / HTTP/1.0\r\n\r\n", {"OPENSSL_CONF=/dev/null"});
    Connection c;
    // Without -brief, s_client prints whether the session was reused, and also a
    // session dump with its master secret: only the lines below are kept.
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      if (absl::StartsWith(line, "New, ") || absl::StartsWith(line, "Reused, ")) {
        c.reused = absl::StartsWith(line, "Reused, ");
        std::vector<std::string> parts = absl::StrSplit(line, ", ");
        if (parts.size() > 1) c.protocol = parts[1];
        absl::StrAppend(&c.transcript, line, "\n");
      } else if (absl::StartsWith(line, "HTTP/")) {
        c.served = absl::StrContains(line, " 200 ");
        absl::StrAppend(&c.transcript, line, "\n");
      }
    }
    c.served = c.served && r.exit_code == 0;
    absl::StrAppend(&c.transcript, "exit ", r.exit_code, "; stderr:\n", r.err);
    return c;
  }

  // Waits up to `timeout` until `instance`'s files hold keys for which `wanted` is
  // true and the instance on `port` seals new tickets with the current one of them
  // (nginx reloaded, haproxy fed); the last new session is in `session_file`.
  bool AwaitKeys(const std::string& instance, int port, const std::string& session_file,
                 const std::function<bool(const std::vector<std::string>&)>& wanted,
                 absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    while (absl::Now() < give_up) {
      const std::vector<std::string> names = FileKeyNames(instance);
      if (names.size() == 3 && wanted(names) &&
          Connect(port, "-tls1_3", "", session_file).served &&
          TicketOf(session_file).substr(0, 16) == names[1]) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
    return false;
  }

  // The keys of `set` as offkeyd hands them to the terminator identity.
  v1::GetTicketKeysResponse TicketKeys(const std::string& set) {
    v1::GetTicketKeysResponse keys;
    const grpc::Status status = GetTicketKeys(Stub(kTerminator).get(), set, &keys);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return keys;
  }

  std::string WriterLogs() const {
    return absl::StrCat("writer a:\n", ReadFileOrEmpty(Dir("a") + "/writer.log"),
                        "writer b:\n", ReadFileOrEmpty(Dir("b") + "/writer.log"));
  }

  std::string sockets_;
  client::ClientOptions admin_;
  client::ClientOptions terminator_;
  std::vector<std::unique_ptr<Daemon>> servers_;
  std::vector<std::unique_ptr<Daemon>> writers_;
};

TEST_P(ResumptionTest, ASessionFromOneInstanceResumesOnTheOtherWithNoOffkeydCall) {
  // A week's period: no rotation while the test runs.
  ASSERT_NO_FATAL_FAILURE(CreateSet(kSharedSet, "7d"));
  ASSERT_NO_FATAL_FAILURE(WriteKeys(kSharedSet, "a"));
  ASSERT_NO_FATAL_FAILURE(WriteKeys(kSharedSet, "b"));
  const int a = StartServer("a");
  const int b = StartServer("b");
  ASSERT_TRUE(a != 0 && b != 0);
  const v1::GetTicketKeysResponse keys = TicketKeys(kSharedSet);
  ASSERT_EQ(FileKeyNames("a"),
            std::vector<std::string>(
                {keys.previous().name(), keys.current().name(), keys.next().name()}));

  for (const std::string version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(absl::StrCat(KindName(GetParam()), " ", version));
    const std::string session = absl::StrCat(dir_, "/session", version, ".pem");
    int signs = OperationCount("sign");
    const Connection full = Connect(a, version, "", session);
    EXPECT_TRUE(full.served) << full.transcript;
    EXPECT_FALSE(full.reused) << full.transcript;
    EXPECT_EQ(full.protocol, version == "-tls1_2" ? "TLSv1.2" : "TLSv1.3");
    EXPECT_EQ(OperationCount("sign"), signs + 1) << "a full handshake signs once";

    // Sealed with the current key, which the files gave the server whole and in the
    // right order.
    const std::string ticket = TicketOf(session);
    ASSERT_FALSE(ticket.empty()) << "no ticket in the session from instance a";
    EXPECT_EQ(WhyNotOpened(ticket, keys.current()), "");
    EXPECT_NE(WhyNotOpened(ticket, keys.previous()), "");
    v1::TicketKey swapped = keys.current();
    swapped.set_aes_key(keys.current().hmac_key());
    swapped.set_hmac_key(keys.current().aes_key());
    EXPECT_NE(WhyNotOpened(ticket, swapped), "");

    signs = OperationCount("sign");
    const Connection resumed = Connect(b, version, session, "");
    EXPECT_TRUE(resumed.served) << resumed.transcript;
    EXPECT_TRUE(resumed.reused) << resumed.transcript;
    EXPECT_EQ(OperationCount("sign"), signs) << "the resumed handshake called offkeyd";
    EXPECT_EQ(OperationCount("decrypt-premaster"), 0);
  }
}

TEST_P(ResumptionTest, APreviousEpochsTicketResumesAfterARotationAnOlderOneDoesNot) {
  ASSERT_NO_FATAL_FAILURE(CreateSet(kRotatingSet, "10s"));
  ASSERT_NO_FATAL_FAILURE(WriteKeys(kRotatingSet, "a"));
  ASSERT_NO_FATAL_FAILURE(WriteKeys(kRotatingSet, "b"));
  pid_t a_pid = -1;
  pid_t b_pid = -1;
  const int a = StartServer("a", &a_pid);
  const int b = StartServer("b", &b_pid);
  ASSERT_TRUE(a != 0 && b != 0);
  ASSERT_NO_FATAL_FAILURE(Watch(kRotatingSet, "a", a_pid));
  ASSERT_NO_FATAL_FAILURE(Watch(kRotatingSet, "b", b_pid));
  // Each wait covers a 10 s period, the writer's 1-2 s after it and a reload.
  const absl::Duration rotation = absl::Seconds(25 * SanitizerSlowdown());

  // A session from a, its ticket sealed with a's current key (epoch N).
  const std::string old = dir_ + "/epoch-n.pem";
  auto any = [](const std::vector<std::string>&) { return true; };
  ASSERT_TRUE(AwaitKeys("a", a, old, any, rotation)) << WriterLogs();
  const std::string epoch_n = TicketOf(old).substr(0, 16);

  // One rotation later b encrypts with epoch N+1's key and still has N's.
  const std::string newer = dir_ + "/epoch-n1.pem";
  ASSERT_TRUE(AwaitKeys(
      "b", b, newer,
      [&](const std::vector<std::string>& names) { return names[0] == epoch_n; },
      rotation))
      << WriterLogs();
  int signs = OperationCount("sign");
  Connection c = Connect(b, "-tls1_3", old, "");
  EXPECT_TRUE(c.served) << c.transcript;
  EXPECT_TRUE(c.reused) << "a ticket of the previous epoch\n" << c.transcript;
  EXPECT_EQ(OperationCount("sign"), signs);

  // Two rotations later N's key is gone: a full handshake, and no error.
  const std::string epoch_n1 = TicketOf(newer).substr(0, 16);
  ASSERT_TRUE(AwaitKeys(
      "b", b, dir_ + "/epoch-n2.pem",
      [&](const std::vector<std::string>& names) { return names[0] == epoch_n1; },
      rotation))
      << WriterLogs();
  const std::vector<std::string> names = FileKeyNames("b");
  EXPECT_EQ(std::count(names.begin(), names.end(), epoch_n), 0);
  signs = OperationCount("sign");
  c = Connect(b, "-tls1_3", old, "");
  EXPECT_TRUE(c.served) << c.transcript;
  EXPECT_FALSE(c.reused) << "a ticket two epochs old\n" << c.transcript;
  EXPECT_EQ(OperationCount("sign"), signs + 1);
  // The previous epoch's ticket (N+1) resumes, on a too.
  c = Connect(b, "-tls1_3", newer, "");
  EXPECT_TRUE(c.served && c.reused) << c.transcript;
  ASSERT_TRUE(AwaitKeys(
      "a", a, dir_ + "/a-epoch-n2.pem",
      [&](const std::vector<std::string>& names) { return names[0] == epoch_n1; },
      rotation))
      << WriterLogs();
  c = Connect(a, "-tls1_3", newer, "");
  EXPECT_TRUE(c.served && c.reused) << c.transcript;
  // Only the configured command or socket was used: the servers ran throughout.
  for (const auto& server : servers_) EXPECT_EQ(kill(server->pid(), 0), 0);
}

TEST_P(ResumptionTest, AnIdentityWithoutTheGrantGetsNoKeys) {
  ASSERT_NO_FATAL_FAILURE(CreateSet(kSharedSet, "7d"));
  ASSERT_NO_FATAL_FAILURE(CreateSet(kUngrantedSet, "7d"));
  const std::string format = KindName(GetParam());
  struct Refusal {
    std::string what;
    std::string set;
    client::ClientOptions identity;
  };
  // A terminator with grants on keys but none on ticket keys; the terminator on a set
  // it is not granted.
  for (const Refusal& refusal : std::vector<Refusal>{
           {"reader on the shared set", kSharedSet, ClientFiles(kReader)},
           {"terminator on another set", kUngrantedSet, terminator_}}) {
    for (const bool watch : {false, true}) {
      SCOPED_TRACE(absl::StrCat(refusal.what, watch ? ", --watch" : ""));
      const std::string out = absl::StrCat(dir_, "/refused-", watch);
      std::vector<std::string> args = {"ticket-keys", refusal.set, "--format",
                                       format,        "--out",     out};
      if (watch) args.push_back("--watch");
      // A refusal ends the writer even when watching.
      ProcessResult r =
          RunProcess(CtlArgv(args, refusal.identity), "", CtlEnv(), absl::Seconds(30));
      EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
      EXPECT_TRUE(absl::StrContains(r.err, "GET_TICKET_KEYS")) << r.err;
      EXPECT_TRUE(absl::StrContains(r.err, refusal.set)) << r.err;
      // No file: the directory is absent or empty.
      const ProcessResult files = RunProcess({"/usr/bin/find", out, "-type", "f"});
      EXPECT_EQ(files.out, "") << files.out;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Servers, ResumptionTest,
                         ::testing::Values(Kind::kNginx, Kind::kHaproxy),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           return info.param == Kind::kNginx ? "Nginx" : "Haproxy";
                         });

}  // namespace
}  // namespace offkey::tests
