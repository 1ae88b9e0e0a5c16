// Session resumption across real terminators: two nginx instances, and two haproxy
// instances, all keyless (the offkey provider in front of one offkeyd over SoftHSM2),
// are given the session-ticket keys of one ticket-key set. A session made on one
// instance resumes on the other, in TLS 1.2 and TLS 1.3, and the resumed handshake
// makes no call to offkeyd. Each ticket is opened here with the key the files say
// sealed it, which pins each server's file layout (the byte order of key name, AES and
// HMAC keys, and which key encrypts).
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"
#include "tests/provider_files.h"

namespace offkey::tests {
namespace {

using ::offkey::testing::RecordSecret;

void Write(const std::string& path, absl::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

// One session-ticket key in RFC 5077's recommended parts (raw bytes).
struct TicketKey {
  std::string name;  // 16 bytes
  std::string aes;   // 32 bytes, AES-256-CBC
  std::string hmac;  // 32 bytes, HMAC-SHA256
};

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  EXPECT_EQ(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)),
            1);
  return out;
}

TicketKey RandomTicketKey() {
  TicketKey key{RandomBytes(16), RandomBytes(32), RandomBytes(32)};
  RecordSecret("ticket AES key", key.aes);
  RecordSecret("ticket HMAC key", key.hmac);
  return key;
}

// nginx 1.22's `ssl_session_ticket_key` file of 80 bytes: name, HMAC key, AES key.
std::string NginxKeyFile(const TicketKey& key) { return key.name + key.hmac + key.aes; }

// A line of haproxy 2.6's `tls-ticket-keys` file: base64 of name, AES key, HMAC key.
std::string HaproxyKeyLine(const TicketKey& key) {
  return absl::StrCat(absl::Base64Escape(key.name + key.aes + key.hmac), "\n");
}

// The ticket in an `openssl s_client -sess_out` file, or empty.
std::string TicketOf(const std::string& session_file) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(session_file.c_str(), "r"),
                                                BIO_free);
  if (bio == nullptr) return "";
  std::unique_ptr<SSL_SESSION, decltype(&SSL_SESSION_free)> session(
      PEM_read_bio_SSL_SESSION(bio.get(), nullptr, nullptr, nullptr), SSL_SESSION_free);
  if (session == nullptr || !SSL_SESSION_has_ticket(session.get())) return "";
  const unsigned char* ticket = nullptr;
  size_t length = 0;
  SSL_SESSION_get0_ticket(session.get(), &ticket, &length);
  return std::string(reinterpret_cast<const char*>(ticket), length);
}

// Opens `ticket` with `key` as OpenSSL's ticket format lays it out (what nginx's and
// haproxy's ticket callbacks fill in): key name (16), IV (16), the session state
// encrypted with AES-256-CBC, and an HMAC-SHA256 (32) over everything before it. Empty
// when it opens to a session OpenSSL parses, else why not.
std::string WhyNotOpened(const std::string& ticket, const TicketKey& key) {
  if (ticket.size() < 16 + 16 + 16 + 32) return "ticket too short";
  if (ticket.substr(0, 16) != key.name) return "another key's name";
  const size_t body = ticket.size() - 32;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_length = 0;
  HMAC(EVP_sha256(), key.hmac.data(), static_cast<int>(key.hmac.size()),
       reinterpret_cast<const unsigned char*>(ticket.data()), body, mac, &mac_length);
  if (std::string(reinterpret_cast<char*>(mac), mac_length) != ticket.substr(body)) {
    return "HMAC does not verify with the HMAC key";
  }
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(
      EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  const auto* in = reinterpret_cast<const unsigned char*>(ticket.data());
  std::string plain(body, '\0');
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  int n = 0;
  int last = 0;
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.aes.data()),
                         in + 16) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out, &n, in + 32, static_cast<int>(body - 32)) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), out + n, &last) != 1) {
    return "does not decrypt with the AES key";
  }
  const unsigned char* p = out;
  SSL_SESSION* session = d2i_SSL_SESSION(nullptr, &p, n + last);
  OPENSSL_cleanse(plain.data(), plain.size());
  if (session == nullptr) return "decrypts to something other than a session";
  SSL_SESSION_free(session);
  return "";
}

// What one `openssl s_client` connection showed.
struct Connection {
  bool served = false;     // The HTTP answer came.
  bool reused = false;     // "Reused, ..." rather than "New, ...".
  std::string protocol;    // "TLSv1.2", "TLSv1.3"
  std::string transcript;  // The lines that say so and standard error; no secrets.
};

// The two servers of a kind, their logs, how they are given keys.
enum class Kind { kNginx, kHaproxy };

std::string KindName(Kind kind) { return kind == Kind::kNginx ? "nginx" : "haproxy"; }

class ResumptionTest : public OffkeydTest, public ::testing::WithParamInterface<Kind> {
 protected:
  void SetUp() override {
    OffkeydTest::SetUp();
    if (HasFatalFailure()) return;
    hsm::KeyInfo key = AddKey("edge", hsm::KeyAlgorithm::kEcP256);
    WriteKeylessServerFiles(dir_, "edge", key, ca_);
    if (HasFatalFailure()) return;
    Write(dir_ + "/edge-haproxy.pem",
          ReadFileOrEmpty(dir_ + "/edge.pem") + ReadFileOrEmpty(dir_ + "/edge.ref"));
    Write(dir_ + "/openssl.cnf",
          ProviderConfig(EndpointLines(server_->port(), ClientFiles(kTerminator))));
  }

  void TearDown() override {
    for (auto& server : servers_) server->Stop();
    OffkeydTest::TearDown();
  }

  // Writes `keys` (previous, current, next) where instance `name` reads them: for nginx
  // one file per key, the current one first (nginx encrypts with its first key); for
  // haproxy one file with the current key on the penultimate line (haproxy encrypts
  // with it).
  void WriteKeys(const std::string& name, const std::vector<TicketKey>& keys) {
    ASSERT_EQ(keys.size(), 3u);
    const std::string dir = absl::StrCat(dir_, "/", name);
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir).c_str()), 0);
    if (GetParam() == Kind::kNginx) {
      Write(dir + "/current.key", NginxKeyFile(keys[1]));
      Write(dir + "/previous.key", NginxKeyFile(keys[0]));
      Write(dir + "/next.key", NginxKeyFile(keys[2]));
    } else {
      Write(dir + "/tickets.keys",
            HaproxyKeyLine(keys[0]) + HaproxyKeyLine(keys[1]) + HaproxyKeyLine(keys[2]));
    }
  }

  // Starts instance `name` of this test's kind on a free port reading the ticket keys
  // WriteKeys wrote for it; returns the port (0 on failure).
  int StartServer(const std::string& name) {
    const std::string dir = absl::StrCat(dir_, "/", name);
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
      for (const char* key : {"current", "previous", "next"}) {
        absl::StrAppend(&config, "    ssl_session_ticket_key ", dir, "/", key, ".key;\n");
      }
      absl::StrAppend(&config, "    location / { return 200 \"", name,
                      "\\n\"; }\n  }\n}\n");
      Write(dir + "/nginx.conf", config);
      argv = {"/usr/sbin/nginx", "-p", dir, "-e", log, "-c", dir + "/nginx.conf"};
    } else {
      log = dir + "/haproxy.log";
      // No session cache, so that only a ticket can resume a session.
      Write(dir + "/haproxy.cfg",
            absl::StrCat(
                "global\n  master-worker\n  nbthread 2\n  ssl-mode-async\n",
                "  tune.ssl.cachesize 0\n", "  log stderr format raw local0 info\n",
                "defaults\n  mode http\n  log global\n  option httplog\n",
                "  timeout connect 5s\n  timeout client 10s\n", "  timeout server 10s\n",
                "frontend tls\n  bind 127.0.0.1:", port, " ssl crt ", dir_,
                "/edge-haproxy.pem tls-ticket-keys ", dir, "/tickets.keys\n",
                "  http-request return status 200 content-type text/plain "
                "string \"",
                name, "\"\n"));
      argv = {"/usr/sbin/haproxy", "-W", "-db", "-f", dir + "/haproxy.cfg"};
    }
    auto daemon = std::make_unique<Daemon>();
    std::string why;
    EXPECT_TRUE(daemon->Start(argv, {absl::StrCat("OPENSSL_CONF=", dir_, "/openssl.cnf")},
                              dir + "/stderr.log", {}, &why))
        << why;
    servers_.push_back(std::move(daemon));
    const bool accepting = AwaitAccepting(port);
    EXPECT_TRUE(accepting) << ReadFileOrEmpty(log)
                           << ReadFileOrEmpty(dir + "/stderr.log");
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

  std::vector<std::unique_ptr<Daemon>> servers_;
};

TEST_P(ResumptionTest, ASessionFromOneInstanceResumesOnTheOtherWithNoOffkeydCall) {
  const std::vector<TicketKey> keys = {RandomTicketKey(), RandomTicketKey(),
                                       RandomTicketKey()};
  ASSERT_NO_FATAL_FAILURE(WriteKeys("a", keys));
  ASSERT_NO_FATAL_FAILURE(WriteKeys("b", keys));
  const int a = StartServer("a");
  const int b = StartServer("b");
  ASSERT_TRUE(a != 0 && b != 0);

  for (const std::string version : {"-tls1_2", "-tls1_3"}) {
    SCOPED_TRACE(absl::StrCat(KindName(GetParam()), " ", version));
    const std::string session = absl::StrCat(dir_, "/session", version, ".pem");
    int signs = OperationCount("sign");
    const Connection full = Connect(a, version, "", session);
    EXPECT_TRUE(full.served) << full.transcript;
    EXPECT_FALSE(full.reused) << full.transcript;
    EXPECT_EQ(full.protocol, version == "-tls1_2" ? "TLSv1.2" : "TLSv1.3");
    EXPECT_EQ(OperationCount("sign"), signs + 1) << "a full handshake signs once";

    // Sealed with the current key (the second of three), laid out as written above.
    const std::string ticket = TicketOf(session);
    ASSERT_FALSE(ticket.empty()) << "no ticket in the session from instance a";
    EXPECT_EQ(WhyNotOpened(ticket, keys[1]), "");
    EXPECT_NE(WhyNotOpened(ticket, keys[0]), "");
    // A key with its AES and HMAC parts swapped does not open it.
    EXPECT_NE(WhyNotOpened(ticket, {keys[1].name, keys[1].hmac, keys[1].aes}), "");

    signs = OperationCount("sign");
    const Connection resumed = Connect(b, version, session, "");
    EXPECT_TRUE(resumed.served) << resumed.transcript;
    EXPECT_TRUE(resumed.reused) << resumed.transcript;
    EXPECT_EQ(OperationCount("sign"), signs) << "the resumed handshake called offkeyd";
    EXPECT_EQ(OperationCount("decrypt-premaster"), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Servers, ResumptionTest,
                         ::testing::Values(Kind::kNginx, Kind::kHaproxy),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           return KindName(info.param) == "nginx" ? "Nginx" : "Haproxy";
                         });

}  // namespace
}  // namespace offkey::tests
