// offkeyctl's ticket-key sets and ticket-key writer end to end: the real offkeyctl binary
// against a real offkeyd (the server library on 127.0.0.1, a fresh SoftHSM2 token), with
// real nginx 1.22 and haproxy 2.6 reading the files it writes. The servers' session
// tickets are checked against the keys offkeyd hands out (key name, HMAC, AES), which
// pins each file layout to what the server really does.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/testing/secret_ledger.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"
#include "tests/session_tickets.h"

namespace offkey::tests {
namespace {

using ::offkey::testing::Contains;
using ::offkey::testing::FromJson;
using ::offkey::testing::OutputPath;

constexpr char kAdmin[] = "spiffe://test.offkey/admin";
// Granted GET_TICKET_KEYS on the sets below; kTerminator (the fixture's) is not.
constexpr char kEdge[] = "spiffe://test.offkey/edge";

std::string Slurp(const std::string& path) { return ReadFileOrEmpty(path); }

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

// True when `ticket` was made with `key` (its name, HMAC key and AES key; WhyNotOpened).
::testing::AssertionResult MadeWith(const std::string& ticket,
                                    const offkey::v1::TicketKey& key) {
  const std::string why = WhyNotOpened(ticket, key);
  if (why.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << why << " (epoch " << key.epoch() << " expected)";
}

bool UnixSocketAccepts(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) return false;
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  const bool ok =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

class TicketKeysTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    offkey::v1::Grant* grant = config->mutable_policy()->add_grants();
    grant->add_identities(kEdge);
    grant->add_operations(offkey::v1::GET_TICKET_KEYS);
    for (const char* set : {"web-tickets", "fast", "hap"}) {
      grant->add_ticket_key_sets(set);
    }
  }

  void SetUp() override {
    OffkeydTest::SetUp();
    if (HasFatalFailure()) return;
    admin_files_ = ClientFiles(kAdmin);
    edge_files_ = ClientFiles(kEdge);
    terminator_files_ = ClientFiles(kTerminator);
  }

  // offkeyctl with `files`' identity on both planes.
  std::vector<std::string> CtlArgs(const client::ClientOptions& files,
                                   const std::vector<std::string>& args) {
    std::vector<std::string> argv = {Runfile("client/cli/offkeyctl"),
                                     "--admin-endpoint",
                                     absl::StrCat("127.0.0.1:", server_->admin_port()),
                                     "--endpoint",
                                     absl::StrCat("127.0.0.1:", server_->port()),
                                     "--tls-ca",
                                     files.ca_file,
                                     "--tls-cert",
                                     files.cert_file,
                                     "--tls-key",
                                     files.key_file};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  ProcessResult Admin(const std::vector<std::string>& args) {
    return RunProcess(CtlArgs(admin_files_, args));
  }
  ProcessResult Edge(const std::vector<std::string>& args) {
    return RunProcess(CtlArgs(edge_files_, args));
  }

  // The keys offkeyd hands the edge identity now, recorded as secrets for the log scan.
  offkey::v1::GetTicketKeysResponse Keys(const std::string& set) {
    offkey::v1::GetTicketKeysResponse response;
    grpc::Status status = GetTicketKeys(Stub(kEdge).get(), set, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  void CreateSet(const std::string& name, const std::string& period) {
    ProcessResult r =
        Admin({"ticket-key-set", "create", name, "--rotation-period", period});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // A TLS 1.2 session ticket from the server on `port` (openssl s_client).
  std::string TicketFrom(int port) {
    const std::string session = absl::StrCat(dir_, "/session-", ++sessions_, ".pem");
    ProcessResult r = RunProcess({"/usr/bin/openssl", "s_client", "-connect",
                                  absl::StrCat("127.0.0.1:", port), "-tls1_2", "-brief",
                                  "-sess_out", session});
    if (r.exit_code != 0) return "";
    std::string ticket = TicketOf(session);
    unlink(session.c_str());  // It holds the session's master secret.
    return ticket;
  }

  // Waits (at most `limit`) until the server on `port` issues tickets under the current
  // key of `set` for an epoch after `after`; that key, or an empty one on timeout.
  offkey::v1::TicketKey AwaitTicketsUnderEpochAfter(int port, const std::string& set,
                                                    int64_t after, std::string* ticket,
                                                    absl::Duration limit) {
    const absl::Time give_up = absl::Now() + limit;
    while (absl::Now() < give_up) {
      const offkey::v1::GetTicketKeysResponse keys = Keys(set);
      *ticket = TicketFrom(port);
      if (keys.current().epoch() > after && ticket->size() > 16 &&
          ticket->substr(0, 16) == keys.current().name()) {
        return keys.current();
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
    return {};
  }

  // A server certificate and key for nginx and haproxy (session tickets need no keyless
  // key), as PEM files; returns {cert, key}.
  std::pair<std::string, std::string> ServerFiles() {
    service::dev::IssuedCert cert = ServerCert(ca_);
    const std::string cert_path = dir_ + "/site.pem", key_path = dir_ + "/site.key";
    std::ofstream(cert_path) << cert.cert_pem;
    std::ofstream(key_path) << cert.key_pem.view();
    return {cert_path, key_path};
  }

  client::ClientOptions admin_files_, edge_files_, terminator_files_;
  int sessions_ = 0;
};

TEST_F(TicketKeysTest, AdminCommandsEndToEnd) {
  ProcessResult r = Admin({"ticket-key-set", "create", "web-tickets"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "NAME"));
  EXPECT_TRUE(Contains(r.out, "web-tickets  1h"));  // The default period.
  r = Admin(
      {"ticket-key-set", "create", "fast", "--rotation-period", "90s", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto created = FromJson<offkey::v1::CreateTicketKeySetResponse>(r.out);
  EXPECT_EQ(created.ticket_key_set().name(), "fast");
  EXPECT_EQ(created.ticket_key_set().rotation_period_seconds(), 90);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  EXPECT_NEAR(created.ticket_key_set().create_time(), now, 60);
  EXPECT_EQ(created.ticket_key_set().current_epoch(),
            created.ticket_key_set().next_rotation_time() / 90 - 1);
  // Compound durations too, as the table prints them.
  r = Admin(
      {"ticket-key-set", "create", "hap", "--rotation-period", "1h30m", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(FromJson<offkey::v1::CreateTicketKeySetResponse>(r.out)
                .ticket_key_set()
                .rotation_period_seconds(),
            5400);

  r = Admin({"ticket-key-set", "create", "fast"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "ALREADY_EXISTS"));
  // Out of range or malformed: usage errors, nothing sent.
  r = Admin({"ticket-key-set", "create", "slow", "--rotation-period", "30d"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "outside 10s..7d"));
  r = Admin({"ticket-key-set", "create", "odd", "--rotation-period", "soon"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "e.g. 1h"));

  r = Admin({"ticket-key-set", "list", "-o", "name"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "fast\nhap\nweb-tickets\n");
  r = Admin({"ticket-key-set", "list"});
  EXPECT_TRUE(Contains(r.out, "ROTATION"));
  EXPECT_TRUE(Contains(r.out, "1h30m"));
  r = Admin({"ticket-key-set", "list", "-o", "json"});
  EXPECT_EQ(FromJson<offkey::v1::ListTicketKeySetsResponse>(r.out).ticket_key_sets_size(),
            3);

  r = Admin({"ticket-key-set", "show", "fast"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "rotation period:  1m30s"));
  EXPECT_TRUE(Contains(r.out, "current epoch:"));
  EXPECT_TRUE(Contains(r.out, "never extractable"));
  r = Admin({"ticket-key-set", "show", "absent"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "NOT_FOUND"));

  // The edge identity holds data-plane grants only, no admin role.
  r = Edge({"ticket-key-set", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "PERMISSION_DENIED"));
  EXPECT_TRUE(Contains(r.err, kEdge));

  // destroy: --force, then the name typed (or --yes); then it is gone.
  r = Admin({"ticket-key-set", "destroy", "hap", "--yes"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "--force"));
  r = Admin({"ticket-key-set", "destroy", "hap", "--force"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "pass --yes"));
  r = Admin({"ticket-key-set", "destroy", "hap", "--force", "--yes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "destroyed ticket-key set 'hap'\n");
  EXPECT_EQ(Admin({"ticket-key-set", "list", "-o", "name"}).out, "fast\nweb-tickets\n");
  // A destroyed set hands out no keys: refused like a set never granted.
  r = Edge({"ticket-keys", "hap", "--format", "nginx", "--out", dir_ + "/gone"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "PERMISSION_DENIED"));
}

TEST_F(TicketKeysTest, WritesTheKeysOffkeydHandsOut) {
  CreateSet("web-tickets", "7d");  // No rotation during the test, all but surely.
  const std::string nginx_dir = dir_ + "/nginx-keys";
  ProcessResult r =
      Edge({"ticket-keys", "web-tickets", "--format", "nginx", "--out", nginx_dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const offkey::v1::GetTicketKeysResponse keys = Keys("web-tickets");
  // The configuration lines, current first.
  EXPECT_EQ(r.out,
            absl::StrCat("# nginx, in the server block (the first key encrypts, all "
                         "decrypt; reload nginx after each rotation):\n",
                         "ssl_session_ticket_key ", nginx_dir, "/current.key;\n",
                         "ssl_session_ticket_key ", nginx_dir, "/previous.key;\n",
                         "ssl_session_ticket_key ", nginx_dir, "/next.key;\n"));
  EXPECT_EQ(ModeOf(nginx_dir), 0700u);
  for (const auto& [file, key] : {std::pair<const char*, const offkey::v1::TicketKey*>{
                                      "current.key", &keys.current()},
                                  {"previous.key", &keys.previous()},
                                  {"next.key", &keys.next()}}) {
    const std::string path = absl::StrCat(nginx_dir, "/", file);
    EXPECT_EQ(ModeOf(path), 0600u) << file;
    EXPECT_EQ(Slurp(path), key->name() + key->hmac_key() + key->aes_key()) << file;
  }
  EXPECT_EQ(keys.current().epoch(), keys.previous().epoch() + 1);
  EXPECT_EQ(keys.next().epoch(), keys.current().epoch() + 1);
  // Key bytes never reach the output, in any form.
  for (const std::string& secret :
       {keys.current().aes_key(), keys.current().hmac_key()}) {
    EXPECT_FALSE(Contains(r.out + r.err, absl::BytesToHexString(secret)));
    EXPECT_FALSE(Contains(r.out + r.err, absl::Base64Escape(secret)));
  }

  const std::string haproxy_dir = dir_ + "/haproxy-keys";
  r = Edge({"ticket-keys", "web-tickets", "--format", "haproxy", "--out", haproxy_dir,
            "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(
      r.out, absl::StrCat("\"tls-ticket-keys ", haproxy_dir, "/haproxy.keys\"")));
  EXPECT_TRUE(
      Contains(r.out, absl::StrCat("\"current_epoch\": ", keys.current().epoch())));
  const std::string haproxy_file = haproxy_dir + "/haproxy.keys";
  EXPECT_EQ(ModeOf(haproxy_file), 0600u);
  std::vector<std::string> lines =
      absl::StrSplit(Slurp(haproxy_file), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  const offkey::v1::TicketKey* order[] = {&keys.previous(), &keys.current(),
                                          &keys.next()};
  for (int i = 0; i < 3; ++i) {
    std::string raw;
    ASSERT_TRUE(absl::Base64Unescape(lines[i], &raw));
    EXPECT_EQ(raw, order[i]->name() + order[i]->aes_key() + order[i]->hmac_key()) << i;
  }
  // Written again with the same keys: the files are left alone.
  struct stat before {};
  ASSERT_EQ(stat(haproxy_file.c_str(), &before), 0);
  ASSERT_EQ(
      Edge({"ticket-keys", "web-tickets", "--format", "haproxy", "--out", haproxy_dir})
          .exit_code,
      0);
  struct stat after {};
  ASSERT_EQ(stat(haproxy_file.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
}

TEST_F(TicketKeysTest, RefusedWithoutTheGrant) {
  CreateSet("web-tickets", "1h");
  CreateSet("ungranted", "1h");
  const std::string out = dir_ + "/refused";
  // The fixture's terminator holds data-plane grants on keys, none on ticket-key sets.
  ProcessResult r =
      RunProcess(CtlArgs(terminator_files_, {"ticket-keys", "web-tickets", "--format",
                                             "nginx", "--out", out}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "get the ticket keys of set 'web-tickets'")) << r.err;
  EXPECT_TRUE(Contains(r.err, "PERMISSION_DENIED"));
  EXPECT_TRUE(Contains(r.err, kTerminator));
  EXPECT_TRUE(Contains(r.err, "GET_TICKET_KEYS and ticket_key_sets: \"web-tickets\""));
  EXPECT_EQ(access((out + "/current.key").c_str(), F_OK), -1);
  // The edge identity holds a grant, but not on this set. --watch does not retry it.
  r = Edge({"ticket-keys", "ungranted", "--format", "haproxy", "--out", out, "--watch"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "PERMISSION_DENIED"));
  EXPECT_EQ(access((out + "/haproxy.keys").c_str(), F_OK), -1);
  // Usage errors send nothing.
  r = Edge({"ticket-keys", "web-tickets", "--format", "apache", "--out", out});
  EXPECT_EQ(r.exit_code, 2);
  r = Edge({"ticket-keys", "web-tickets", "--format", "nginx"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "--out is required"));
}

// The writer keeps nginx current across a rotation: it rewrites the files, reloads nginx
// with --reload-command, and nginx then issues tickets under the new epoch's key.
TEST_F(TicketKeysTest, WatchRotatesNginxKeysAndReloadsNginx) {
  CreateSet("fast", "10s");
  const std::string keys_dir = dir_ + "/nginx-tickets";
  ProcessResult once =
      Edge({"ticket-keys", "fast", "--format", "nginx", "--out", keys_dir});
  ASSERT_EQ(once.exit_code, 0) << once.err;

  // nginx with the printed configuration lines.
  const auto [cert, key] = ServerFiles();
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  const std::string n = dir_ + "/nginx";
  ASSERT_EQ(mkdir(n.c_str(), 0700), 0);
  std::string ticket_lines;
  for (absl::string_view line : absl::StrSplit(once.out, '\n')) {
    if (absl::StartsWith(line, "ssl_session_ticket_key ")) {
      absl::StrAppend(&ticket_lines, "    ", line, "\n");
    }
  }
  ASSERT_EQ(std::count(ticket_lines.begin(), ticket_lines.end(), '\n'), 3);
  std::ofstream(n + "/nginx.conf") << absl::StrCat(
      "worker_processes 1;\ndaemon off;\npid ", n, "/nginx.pid;\nerror_log ", n,
      "/error.log info;\nevents {}\nhttp {\n  access_log off;\n",
      "  client_body_temp_path ", n, "/body;\n  proxy_temp_path ", n,
      "/proxy;\n  fastcgi_temp_path ", n, "/fastcgi;\n  uwsgi_temp_path ", n,
      "/uwsgi;\n  scgi_temp_path ", n, "/scgi;\n  server {\n    listen 127.0.0.1:", port,
      " ssl;\n    ssl_certificate ", cert, ";\n    ssl_certificate_key ", key,
      ";\n    ssl_protocols TLSv1.2;\n    ssl_session_tickets on;\n", ticket_lines,
      "    location / { return 200 \"ok\\n\"; }\n  }\n}\n");
  Daemon nginx;
  std::string why;
  ASSERT_TRUE(nginx.StartUntil(
      {"/usr/sbin/nginx", "-p", n, "-e", n + "/error.log", "-c", n + "/nginx.conf"}, {},
      OutputPath("nginx.log"), [&] { return !TicketFrom(port).empty(); }, &why))
      << why << ReadFileOrEmpty(n + "/error.log");
  // nginx encrypts with the first file's key: the current epoch's.
  const offkey::v1::GetTicketKeysResponse first = Keys("fast");
  std::string ticket = TicketFrom(port);
  if (Keys("fast").current().epoch() == first.current().epoch()) {
    EXPECT_TRUE(MadeWith(ticket, first.current()));
  }

  // The writer, reloading nginx (and counting reloads) after each change.
  const std::string reloads = dir_ + "/reloads";
  Daemon writer;
  ASSERT_TRUE(writer.Start(
      CtlArgs(edge_files_, {"ticket-keys", "fast", "--format", "nginx", "--out", keys_dir,
                            "--watch", "--reload-command",
                            absl::StrCat("kill -HUP \"$(cat ", n,
                                         "/nginx.pid)\" && echo reloaded >> ", reloads)}),
      {}, OutputPath("writer-nginx.log"), {}, &why))
      << why;
  const offkey::v1::TicketKey rotated = AwaitTicketsUnderEpochAfter(
      port, "fast", first.current().epoch(), &ticket, absl::Seconds(45));
  ASSERT_FALSE(rotated.name().empty()) << "nginx never encrypted under a later epoch\n"
                                       << ReadFileOrEmpty(OutputPath("writer-nginx.log"));
  EXPECT_TRUE(MadeWith(ticket, rotated));
  EXPECT_TRUE(Contains(Slurp(reloads), "reloaded\n"));
  EXPECT_EQ(writer.Stop(), 0);  // SIGTERM: a clean exit.
  const std::string log = ReadFileOrEmpty(OutputPath("writer-nginx.log"));
  EXPECT_TRUE(Contains(log, "` exited with status 0"));
  EXPECT_TRUE(Contains(log, "stopping on SIGTERM"));
  EXPECT_EQ(nginx.Stop(), 0);
}

// haproxy gets each new key through its admin socket (`set ssl tls-key`), without a
// reload, and then encrypts with the new current key; the file is rewritten too.
TEST_F(TicketKeysTest, WatchFeedsHaproxyThroughItsAdminSocket) {
  CreateSet("hap", "10s");
  const std::string keys_dir = dir_ + "/haproxy-tickets";
  ProcessResult once =
      Edge({"ticket-keys", "hap", "--format", "haproxy", "--out", keys_dir});
  ASSERT_EQ(once.exit_code, 0) << once.err;
  const std::string keys_file = keys_dir + "/haproxy.keys";

  const auto [cert, key] = ServerFiles();
  const std::string pem = dir_ + "/haproxy-site.pem";
  std::ofstream(pem) << Slurp(cert) << Slurp(key);
  // A Unix socket path has at most 107 bytes; the test's directory is deeper.
  char socket_dir[] = "/tmp/offkey-haproxy-XXXXXX";
  ASSERT_NE(mkdtemp(socket_dir), nullptr);
  const std::string socket_path = absl::StrCat(socket_dir, "/admin.sock");
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  std::ofstream(dir_ + "/haproxy.cfg") << absl::StrCat(
      "global\n  stats socket ", socket_path,
      " level admin\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n"
      "  timeout server 5s\nfrontend fe\n  bind 127.0.0.1:",
      port, " ssl crt ", pem, " ssl-max-ver TLSv1.2 tls-ticket-keys ", keys_file,
      "\n  http-request return status 200 content-type text/plain string ok\n");
  Daemon haproxy;
  std::string why;
  ASSERT_TRUE(haproxy.StartUntil(
      {"/usr/sbin/haproxy", "-db", "-f", dir_ + "/haproxy.cfg"}, {},
      OutputPath("haproxy.log"), [&] { return UnixSocketAccepts(socket_path); }, &why))
      << why;
  // The file's middle key (current) encrypts.
  const offkey::v1::GetTicketKeysResponse first = Keys("hap");
  std::string ticket = TicketFrom(port);
  if (Keys("hap").current().epoch() == first.current().epoch()) {
    EXPECT_TRUE(MadeWith(ticket, first.current()));
  }

  Daemon writer;
  ASSERT_TRUE(writer.Start(
      CtlArgs(edge_files_, {"ticket-keys", "hap", "--format", "haproxy", "--out",
                            keys_dir, "--watch", "--haproxy-socket", socket_path}),
      {}, OutputPath("writer-haproxy.log"), {}, &why))
      << why;
  const offkey::v1::TicketKey rotated = AwaitTicketsUnderEpochAfter(
      port, "hap", first.current().epoch(), &ticket, absl::Seconds(45));
  ASSERT_FALSE(rotated.name().empty())
      << "haproxy never encrypted under a later epoch\n"
      << ReadFileOrEmpty(OutputPath("writer-haproxy.log"));
  EXPECT_TRUE(MadeWith(ticket, rotated));
  // Still the first haproxy process: no reload or restart.
  EXPECT_EQ(kill(haproxy.pid(), 0), 0);
  // The file follows too (for haproxy's next start): it holds the new key (for three
  // epochs, so a further rotation meanwhile does not matter).
  bool in_file = false;
  for (absl::string_view line : absl::StrSplit(Slurp(keys_file), '\n')) {
    std::string raw;
    in_file = in_file || (absl::Base64Unescape(line, &raw) &&
                          raw == rotated.name() + rotated.aes_key() + rotated.hmac_key());
  }
  EXPECT_TRUE(in_file);
  EXPECT_EQ(writer.Stop(), 0);
  EXPECT_TRUE(Contains(ReadFileOrEmpty(OutputPath("writer-haproxy.log")),
                       "now encrypts with epoch"));
  EXPECT_NE(haproxy.Stop(), -1);  // haproxy -db ends by the signal itself (143).
  unlink(socket_path.c_str());
  rmdir(socket_dir);
}

TEST_F(TicketKeysTest, BashCompletionKnowsVerbsFlagsAndSets) {
  CreateSet("web-tickets", "1h");
  CreateSet("fast", "1h");
  ProcessResult script =
      RunProcess({Runfile("client/cli/offkeyctl"), "completion", "bash"});
  ASSERT_EQ(script.exit_code, 0);
  const std::string path = dir_ + "/offkeyctl.bash";
  std::ofstream(path) << script.out;
  auto complete = [&](const std::vector<std::string>& words) {
    std::string quoted;
    for (const std::string& w : words) absl::StrAppend(&quoted, "'", w, "' ");
    ProcessResult r =
        RunProcess({"/bin/bash", "-c",
                    absl::StrCat("source ", path, "; COMP_WORDS=(", quoted,
                                 "); COMP_CWORD=", words.size() - 1,
                                 "; _offkeyctl; printf '%s\\n' \"${COMPREPLY[@]}\"")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string ctl = Runfile("client/cli/offkeyctl");
  EXPECT_EQ(complete({ctl, "ticket-"}), "ticket-key-set\nticket-keys\n");
  EXPECT_EQ(complete({ctl, "ticket-key-set", ""}), "create\nlist\nshow\ndestroy\n");
  EXPECT_TRUE(Contains(complete({ctl, "ticket-key-set", "create", "x", "--rot"}),
                       "--rotation-period\n"));
  EXPECT_EQ(complete({ctl, "ticket-keys", "s", "--format", ""}), "nginx\nhaproxy\n");
  EXPECT_TRUE(
      Contains(complete({ctl, "ticket-keys", "s", "--haproxy-s"}), "--haproxy-socket\n"));
  // Set names come from offkeyd, with the connection flags already typed.
  std::vector<std::string> words = CtlArgs(admin_files_, {"ticket-key-set", "show", ""});
  EXPECT_EQ(complete(words), "fast\nweb-tickets\n");
  words = CtlArgs(admin_files_, {"ticket-keys", "we"});
  EXPECT_EQ(complete(words), "web-tickets\n");
  // Key commands still complete key names (printf prints one empty line for none).
  AddKey("tls-key", hsm::KeyAlgorithm::kEcP256);
  words = CtlArgs(admin_files_, {"show", ""});
  EXPECT_EQ(complete(words), "tls-key\n");
}

// While offkeyd is down the writer keeps the last files and retries; when it is back the
// writer carries on. SIGINT stops it cleanly.
TEST_F(TicketKeysTest, WatchRetriesWhileOffkeydIsDown) {
  // The keys written before and after offkeyd's restart are compared: no rotation in
  // between, all but surely (with "1h", a run across the full hour failed).
  CreateSet("web-tickets", "7d");
  const std::string keys_dir = dir_ + "/retry";
  Daemon writer;
  std::string why;
  ASSERT_TRUE(writer.Start(CtlArgs(edge_files_, {"ticket-keys", "web-tickets", "--format",
                                                 "nginx", "--out", keys_dir, "--watch"}),
                           {}, OutputPath("writer-retry.log"),
                           {keys_dir + "/current.key"}, &why))
      << why;
  const std::string current = Slurp(keys_dir + "/current.key");
  EXPECT_EQ(current.size(), 80u);
  EXPECT_EQ(kill(writer.pid(), SIGINT), 0);
  EXPECT_EQ(writer.Wait(absl::Seconds(20)), 0);
  EXPECT_TRUE(
      Contains(ReadFileOrEmpty(OutputPath("writer-retry.log")), "stopping on SIGINT"));

  // Started while offkeyd is down: it waits and retries, then writes.
  const std::vector<std::string> patient_args =
      CtlArgs(edge_files_, {"ticket-keys", "web-tickets", "--format", "nginx", "--out",
                            keys_dir, "--watch", "--timeout", "2"});
  StopOffkeyd();
  std::remove((keys_dir + "/current.key").c_str());
  Daemon patient;
  const std::string log = OutputPath("writer-patient.log");
  ASSERT_TRUE(patient.StartUntil(
      patient_args, {}, log,
      [&] { return Contains(ReadFileOrEmpty(log), "retrying in"); }, &why))
      << why;
  EXPECT_TRUE(Contains(ReadFileOrEmpty(log), "Connection refused"));
  RestartOffkeyd();
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (access((keys_dir + "/current.key").c_str(), F_OK) != 0 &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(Slurp(keys_dir + "/current.key"), current) << ReadFileOrEmpty(log);
  EXPECT_EQ(patient.Stop(), 0);
}

}  // namespace
}  // namespace offkey::tests
