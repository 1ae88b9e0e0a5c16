// Master-secret derivation in real handshakes: a minimal TLS 1.2 server (tests/tls12)
// that holds no private key and never sees the premaster completes handshakes and
// exchanges data with unmodified `openssl s_client` and `gnutls-cli`, asking offkeyd's
// DeriveMasterSecret for the extended master secret; and resume sessions from tickets
// that offkeyd's SealTicket sealed, with no master secret derived.
#include "tests/tls12/keyless_server.h"

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"

namespace offkey::tests {

using ::offkey::testing::RecordSecret;
namespace {

class KeylessServerTest : public OffkeydTest {};

// s_client's output without its session dump's Master-Key line, for failure messages:
// the master secret must not reach the test log.
std::string WithoutMasterKey(const std::string& out) {
  std::string kept;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (!absl::StrContains(line, "Master-Key")) absl::StrAppend(&kept, line, "\n");
  }
  return kept;
}

TEST_F(KeylessServerTest, HandshakesAndDataWithOpensslAndGnutls) {
  hsm::KeyInfo key = AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
  auto client = client::Client::Create(ClientFiles(kTerminator));
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<std::vector<std::string>> chain =
      tls12::CertificateChain(client->get(), "web-rsa");
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto server = tls12::KeylessServer::Start(client->get(), "web-rsa", *chain);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string port = absl::StrCat((*server)->port());

  // openssl s_client: checks the chain (the test CA; the leaf names web-rsa.test) and
  // reports the master key it derived itself.
  ProcessResult openssl =
      RunProcess({"/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:" + port,
                  "-tls1_2", "-cipher", "AES128-GCM-SHA256", "-CAfile", dir_ + "/ca.pem",
                  "-verify_hostname", "web-rsa.test", "-verify_return_error", "-ign_eof"},
                 "hello from s_client\n", {"OPENSSL_CONF=/dev/null"});
  const std::string shown = WithoutMasterKey(openssl.out);
  EXPECT_NE(openssl.out.find("offkey keyless server: hello from s_client"),
            std::string::npos)
      << shown << openssl.err;
  EXPECT_NE(openssl.out.find("Extended master secret: yes"), std::string::npos) << shown;
  EXPECT_NE(openssl.out.find("Verify return code: 0 (ok)"), std::string::npos);

  ProcessResult gnutls =
      RunProcess({"/usr/bin/gnutls-cli", "--x509cafile", dir_ + "/ca.pem", "--priority",
                  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA:-CIPHER-ALL:+AES-128-GCM",
                  "--port", port, "--verify-hostname", "web-rsa.test", "127.0.0.1"},
                 "hello from gnutls-cli\n", {});
  EXPECT_NE(gnutls.out.find("Handshake was completed"), std::string::npos)
      << gnutls.out << gnutls.err;
  EXPECT_NE(gnutls.out.find("offkey keyless server: hello from gnutls-cli"),
            std::string::npos)
      << gnutls.out << gnutls.err;

  EXPECT_EQ(OperationCount("derive-master-secret"), 2);
  EXPECT_EQ(OperationCount("decrypt-premaster"), 0);
  const std::vector<std::string> outcomes = (*server)->WaitForOutcomes(2);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[0], "ok");
  EXPECT_EQ(outcomes[1], "ok");
  // The master secret offkeyd derived is the one s_client computed from its premaster.
  const std::vector<std::string> masters = (*server)->master_secrets_hex();
  ASSERT_EQ(masters.size(), 2u);
  for (const std::string& m : masters) RecordSecret("master secret (hex)", m);
  EXPECT_TRUE(openssl.out.find("Master-Key: " + absl::AsciiStrToUpper(masters[0])) !=
              std::string::npos);  // Compared without printing the secret.
}

TEST_F(KeylessServerTest, AClientWithoutExtendedMasterSecretIsRefused) {
  AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
  auto client = client::Client::Create(ClientFiles(kTerminator));
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = tls12::KeylessServer::Start(client->get(), "web-rsa", {});
  ASSERT_TRUE(server.ok());
  ProcessResult r =
      RunProcess({"/usr/bin/gnutls-cli", "--insecure", "--priority",
                  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA:%NO_SESSION_HASH", "--port",
                  absl::StrCat((*server)->port()), "127.0.0.1"},
                 "x\n", {});
  EXPECT_EQ(r.out.find("Handshake was completed"), std::string::npos) << r.out;
  const std::vector<std::string> outcomes = (*server)->WaitForOutcomes(1);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_NE(outcomes[0].find("extended master secret"), std::string::npos);
}

// A copy of the s_client session file `in` (PEM) with one byte of its ticket flipped,
// written to `out`; false if the session has no ticket or does not parse.
bool FlipTicketByte(const std::string& in, const std::string& out) {
  const std::string pem = ReadFileOrEmpty(in);
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  SSL_SESSION* session = PEM_read_bio_SSL_SESSION(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (session == nullptr) return false;
  const unsigned char* ticket = nullptr;
  size_t ticket_size = 0;
  SSL_SESSION_get0_ticket(session, &ticket, &ticket_size);
  unsigned char* der = nullptr;
  const int der_size = i2d_SSL_SESSION(session, &der);
  std::string encoded =
      der_size > 0 ? std::string(reinterpret_cast<char*>(der), der_size) : "";
  OPENSSL_free(der);
  const size_t at =
      ticket_size > 0
          ? encoded.find(std::string(reinterpret_cast<const char*>(ticket), ticket_size))
          : std::string::npos;
  SSL_SESSION_free(session);
  if (at == std::string::npos) return false;
  encoded[at + ticket_size / 2] ^= 0x01;
  const auto* p = reinterpret_cast<const unsigned char*>(encoded.data());
  SSL_SESSION* tampered =
      d2i_SSL_SESSION(nullptr, &p, static_cast<long>(encoded.size()));  // NOLINT
  if (tampered == nullptr) return false;
  BIO* written = BIO_new_file(out.c_str(), "w");
  const bool ok = written != nullptr && PEM_write_bio_SSL_SESSION(written, tampered) == 1;
  BIO_free(written);
  SSL_SESSION_free(tampered);
  return ok;
}

class KeylessTicketTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    offkey::v1::Grant* grant = config->mutable_policy()->add_grants();
    grant->add_identities(kTerminator);
    grant->add_operations(offkey::v1::SEAL_TICKET);
    grant->add_operations(offkey::v1::UNSEAL_TICKET);
    grant->add_ticket_key_sets("web-tickets");
    grant->add_ticket_key_sets("fast-tickets");
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OffkeydTest::SetUp());
    ASSERT_TRUE(store_->CreateTicketKeySet("web-tickets", absl::Hours(1)).ok());
    AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
    auto client = client::Client::Create(ClientFiles(kTerminator));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    absl::StatusOr<std::vector<std::string>> chain =
        tls12::CertificateChain(client_.get(), "web-rsa");
    ASSERT_TRUE(chain.ok()) << chain.status();
    chain_ = *std::move(chain);
    stub_ = Stub(kTerminator);
    server_tls_ = StartServer("web-tickets");
    ASSERT_NE(server_tls_, nullptr);
  }

  // A keyless server issuing tickets of `set`; null (and a test failure) if it does not
  // start.
  std::unique_ptr<tls12::KeylessServer> StartServer(const std::string& set) {
    tls12::ServerOptions options;
    options.tickets = tls12::Tickets{set, stub_.get()};
    auto server = tls12::KeylessServer::Start(client_.get(), "web-rsa", chain_, options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // s_client to `port` (default: server_tls_'s) with its session read from and/or
  // written to the files named in `session`.
  ProcessResult SClient(const std::string& line, const std::vector<std::string>& session,
                        int port = 0) {
    std::vector<std::string> argv = {
        "/usr/bin/openssl",
        "s_client",
        "-connect",
        absl::StrCat("127.0.0.1:", port != 0 ? port : server_tls_->port()),
        "-tls1_2",
        "-cipher",
        "AES128-GCM-SHA256",
        "-CAfile",
        dir_ + "/ca.pem",
        "-verify_hostname",
        "web-rsa.test",
        "-verify_return_error",
        "-ign_eof"};
    argv.insert(argv.end(), session.begin(), session.end());
    return RunProcess(argv, line, {"OPENSSL_CONF=/dev/null"});
  }

  std::unique_ptr<client::Client> client_;
  std::vector<std::string> chain_;  // The keyless server's.
  std::unique_ptr<offkey::v1::KeyService::Stub> stub_;
  std::unique_ptr<tls12::KeylessServer> server_tls_;
};

TEST_F(KeylessTicketTest, OpensslResumesFromATicketWithoutAMasterSecretCall) {
  const std::string session = dir_ + "/session.pem";
  ProcessResult first = SClient("first\n", {"-sess_out", session});
  EXPECT_NE(first.out.find("New, TLSv1.2"), std::string::npos)
      << WithoutMasterKey(first.out) << first.err;
  EXPECT_NE(first.out.find("TLS session ticket lifetime hint: 300"), std::string::npos)
      << WithoutMasterKey(first.out);
  EXPECT_NE(first.out.find("offkey keyless server: first"), std::string::npos)
      << WithoutMasterKey(first.out);
  ASSERT_EQ(server_tls_->master_secrets_hex().size(), 1u);
  RecordSecret("master secret (hex)", server_tls_->master_secrets_hex()[0]);
  EXPECT_EQ(OperationCount("derive-master-secret"), 1);
  EXPECT_EQ(OperationCount("seal-ticket"), 1);

  ProcessResult second = SClient("second\n", {"-sess_in", session});
  EXPECT_NE(second.out.find("Reused, TLSv1.2"), std::string::npos)
      << WithoutMasterKey(second.out) << second.err;
  EXPECT_NE(second.out.find("offkey keyless server: second"), std::string::npos)
      << WithoutMasterKey(second.out);
  // The same master secret, from the ticket: no DeriveMasterSecret call.
  EXPECT_NE(second.out.find("Master-Key: " +
                            absl::AsciiStrToUpper(server_tls_->master_secrets_hex()[0])),
            std::string::npos);
  EXPECT_EQ(server_tls_->WaitForOutcomes(2),
            std::vector<std::string>({"ok", "ok resumed"}));
  EXPECT_EQ(server_tls_->ticket_results(), std::vector<std::string>({"OPENED"}));
  EXPECT_EQ(OperationCount("derive-master-secret"), 1);
  EXPECT_EQ(OperationCount("unseal-ticket"), 1);
  EXPECT_EQ(server_tls_->master_secrets_hex().size(), 1u);
}

TEST_F(KeylessTicketTest, ATamperedTicketGetsAFullHandshake) {
  const std::string session = dir_ + "/session.pem";
  const std::string tampered = dir_ + "/tampered.pem";
  ProcessResult first = SClient("first\n", {"-sess_out", session});
  ASSERT_NE(first.out.find("offkey keyless server: first"), std::string::npos)
      << WithoutMasterKey(first.out) << first.err;
  ASSERT_TRUE(FlipTicketByte(session, tampered));
  ProcessResult second = SClient("second\n", {"-sess_in", tampered});
  EXPECT_NE(second.out.find("New, TLSv1.2"), std::string::npos)
      << WithoutMasterKey(second.out) << second.err;
  EXPECT_NE(second.out.find("offkey keyless server: second"), std::string::npos)
      << WithoutMasterKey(second.out);
  EXPECT_EQ(server_tls_->WaitForOutcomes(2), std::vector<std::string>({"ok", "ok"}));
  EXPECT_EQ(server_tls_->ticket_results(), std::vector<std::string>({"INVALID"}));
  EXPECT_EQ(OperationCount("derive-master-secret"), 2);
  for (const std::string& m : server_tls_->master_secrets_hex()) {
    RecordSecret("master secret (hex)", m);
  }
}

TEST_F(KeylessTicketTest, GnutlsResumesToo) {
  ProcessResult r =
      RunProcess({"/usr/bin/gnutls-cli", "--x509cafile", dir_ + "/ca.pem", "--priority",
                  "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA:-CIPHER-ALL:+AES-128-GCM",
                  "--port", absl::StrCat(server_tls_->port()), "--verify-hostname",
                  "web-rsa.test", "--resume", "127.0.0.1"},
                 "hello again\n", {});
  EXPECT_NE(r.out.find("This is a resumed session"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("offkey keyless server: hello again"), std::string::npos)
      << r.out << r.err;
  const std::vector<std::string> outcomes = server_tls_->WaitForOutcomes(2);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes[1], "ok resumed");
  EXPECT_EQ(OperationCount("derive-master-secret"), 1);
  for (const std::string& m : server_tls_->master_secrets_hex()) {
    RecordSecret("master secret (hex)", m);
  }
}

// Sleeps until just after the next multiple of `period` in Unix time, the start of the
// next ticket epoch (offkeyd runs on this machine's clock).
void SleepToNextEpoch(absl::Duration period) {
  const int64_t p = absl::ToInt64Seconds(period);
  const int64_t next = (absl::ToUnixSeconds(absl::Now()) / p + 1) * p;
  absl::SleepFor(absl::FromUnixSeconds(next) - absl::Now() + absl::Milliseconds(200));
}

// The ticket in s_client's session dump ("TLS session ticket:" and its hex lines).
std::string TicketShown(const std::string& out) {
  const size_t start = out.find("TLS session ticket:");
  if (start == std::string::npos) return "";
  return out.substr(start, out.find("Start Time:", start) - start);
}

// Rotation, with the shortest period offkeyd allows: a ticket from the previous epoch
// still resumes and the client gets a fresh one in the abbreviated handshake (renew);
// one from two epochs back is EXPIRED and gets a full handshake. About 30 s of waiting
// for epochs to turn.
TEST_F(KeylessTicketTest, TicketsAreRenewedAndExpireWithTheirEpochs) {
  const absl::Duration period = absl::Seconds(10);
  ASSERT_TRUE(store_->CreateTicketKeySet("fast-tickets", period).ok());
  std::unique_ptr<tls12::KeylessServer> server = StartServer("fast-tickets");
  ASSERT_NE(server, nullptr);
  const std::string session = dir_ + "/session.pem";
  auto shown = [](const ProcessResult& r) { return WithoutMasterKey(r.out) + r.err; };

  SleepToNextEpoch(period);  // Epoch N, with time to spare.
  ProcessResult first = SClient("first\n", {"-sess_out", session}, server->port());
  EXPECT_NE(first.out.find("New, TLSv1.2"), std::string::npos) << shown(first);

  SleepToNextEpoch(period);  // N + 1: the ticket opens, sealed before the current epoch.
  ProcessResult renewed = SClient("second\n", {"-sess_in", session}, server->port());
  EXPECT_NE(renewed.out.find("Reused, TLSv1.2"), std::string::npos) << shown(renewed);
  EXPECT_NE(renewed.out.find("offkey keyless server: second"), std::string::npos)
      << shown(renewed);
  // The client took the fresh ticket (s_client shows it; it saves a session only after
  // a full handshake, so the renewed ticket cannot be presented from a file).
  EXPECT_FALSE(TicketShown(first.out).empty()) << shown(first);
  EXPECT_FALSE(TicketShown(renewed.out).empty()) << shown(renewed);
  EXPECT_NE(TicketShown(renewed.out), TicketShown(first.out));

  SleepToNextEpoch(period);  // N + 2: the ticket is too old.
  ProcessResult expired = SClient("third\n", {"-sess_in", session}, server->port());
  EXPECT_NE(expired.out.find("New, TLSv1.2"), std::string::npos) << shown(expired);
  EXPECT_NE(expired.out.find("offkey keyless server: third"), std::string::npos)
      << shown(expired);

  EXPECT_EQ(server->WaitForOutcomes(3),
            std::vector<std::string>({"ok", "ok resumed", "ok"}));
  EXPECT_EQ(server->ticket_results(),
            std::vector<std::string>({"OPENED renew", "EXPIRED"}));
  // Full handshakes only: the first and the one after the expired ticket.
  EXPECT_EQ(OperationCount("derive-master-secret"), 2);
  for (const std::string& m : server->master_secrets_hex()) {
    RecordSecret("master secret (hex)", m);
  }
}

}  // namespace
}  // namespace offkey::tests
