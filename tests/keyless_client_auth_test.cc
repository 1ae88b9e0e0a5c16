// Client authentication in the keyless TLS 1.2 server (tests/tls12) through offkeyd's
// VerifyClient: unmodified `openssl s_client` and `gnutls-cli` with good, unknown-CA,
// expired, not-yet-valid, wrong-purpose or no certificates, and a raw client whose
// CertificateVerify is signed by the wrong key. Every client also runs against a stock
// `openssl s_server -Verify 1 -verify_return_error` trusting the same CA, and each
// refusal must carry the alert that server sends.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <memory>
#include <regex>  // NOLINT(build/c++11): test output parsing only.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"
#include "service/crypto/tls_prf.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"
#include "tests/tls12/keyless_server.h"
#include "tests/tls12/tls12.h"

namespace offkey::tests {
namespace {

using ::offkey::testing::RecordPrivateKeyPem;
using ::offkey::testing::RecordSecret;
using service::dev::CertSpec;
using service::dev::IssuedCert;

void Write(const std::string& path, absl::string_view data) {
  std::ofstream(path, std::ios::binary) << data;
}

// The DER subject of the PEM certificate `pem`, for a CertificateRequest.
std::string SubjectDer(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return "";
  unsigned char* der = nullptr;
  const int len = i2d_X509_NAME(X509_get_subject_name(cert), &der);
  std::string out = len > 0 ? std::string(reinterpret_cast<char*>(der), len) : "";
  OPENSSL_free(der);
  X509_free(cert);
  return out;
}

// The alert a client reports having received: "<number> <text>", the text as the client
// prints it ("unknown ca" for s_client, "CA is unknown" for gnutls-cli); "none" if it
// reports none.
std::string ReceivedAlert(const ProcessResult& r) {
  const std::string all = r.out + r.err;
  std::smatch m;
  if (std::regex_search(all, m,
                        std::regex("(?:sslv3|tlsv1|tlsv13) alert ([a-z ]+):.*SSL alert "
                                   "number ([0-9]+)"))) {
    return absl::StrCat(m[2].str(), " ", m[1].str());
  }
  if (std::regex_search(all, m, std::regex("Received alert \\[([0-9]+)\\]: ([^\\n]+)"))) {
    return absl::StrCat(m[1].str(), " ", m[2].str());
  }
  return "none";
}

// A TLS 1.2 client of TLS_RSA_WITH_AES_128_GCM_SHA256 with the extended master secret
// that presents `certificate` (PEM) and signs its CertificateVerify (ECDSA P-256 with
// SHA-256) with `key` (PEM), which may be another certificate's key: what neither
// s_client nor gnutls-cli can be made to do. Everything else is as a correct client
// does it. Returns "finished" when the server's Finished arrives and is right, "alert N"
// for the alert the server sent instead, else what went wrong.
std::string RawClientWithCertificate(int port, const std::string& certificate,
                                     absl::string_view key) {
  namespace t = tls12;
  absl::StatusOr<std::string> certificate_der = service::dev::PemToDer(certificate);
  if (!certificate_der.ok()) return certificate_der.status().ToString();
  absl::StatusOr<int> fd = t::ConnectLoopback(port);
  if (!fd.ok()) return fd.status().ToString();
  t::Connection c(*fd);
  const std::string client_random = Random(32);
  const std::string extensions =
      absl::StrCat(t::Uint(t::kExtendedMasterSecret, 2), t::Uint(0, 2),
                   // signature_algorithms: rsa_pkcs1_sha256, ecdsa_secp256r1_sha256.
                   t::Uint(13, 2), t::Uint(6, 2), t::Uint(4, 2), t::Uint(0x0401, 2),
                   t::Uint(0x0403, 2));
  const std::string hello = t::HandshakeMessage(
      t::kClientHello,
      absl::StrCat(t::Uint(t::kVersion, 2), client_random, t::Uint(0, 1), t::Uint(4, 2),
                   t::Uint(t::kRsaAes128GcmSha256, 2), t::Uint(0x00ff, 2), t::Uint(1, 1),
                   t::Uint(0, 1), t::Uint(extensions.size(), 2), extensions));
  if (!c.Send(t::kHandshake, hello).ok()) return "send failed";
  std::string transcript = hello;
  std::string server_random, server_leaf;
  for (;;) {
    absl::StatusOr<std::string> m = c.ReceiveHandshake();
    if (!m.ok()) return std::string(m.status().message());
    transcript += *m;
    const uint8_t type = static_cast<uint8_t>((*m)[0]);
    if (type == t::kServerHello && m->size() >= 38) server_random = m->substr(6, 32);
    if (type == t::kCertificate && m->size() >= 10) {
      // certificate_list<3> then the first certificate<3>.
      const size_t n = (static_cast<uint8_t>((*m)[7]) << 16) |
                       (static_cast<uint8_t>((*m)[8]) << 8) |
                       static_cast<uint8_t>((*m)[9]);
      server_leaf = m->substr(10, n);
    }
    if (type == t::kServerHelloDone) break;
  }
  // The premaster, RSA-encrypted to the server's certificate.
  const auto* p = reinterpret_cast<const unsigned char*>(server_leaf.data());
  X509* leaf = d2i_X509(nullptr, &p, static_cast<long>(server_leaf.size()));  // NOLINT
  if (leaf == nullptr) return "the server's certificate does not parse";
  SecretBytes premaster(absl::StrCat(t::Uint(t::kVersion, 2), Random(46)));
  RecordSecret("raw client premaster", premaster.view());
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(X509_get0_pubkey(leaf), nullptr);
  std::string ciphertext(512, '\0');
  size_t ciphertext_size = ciphertext.size();
  const bool encrypted =
      EVP_PKEY_encrypt_init(ctx) == 1 &&
      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
      EVP_PKEY_encrypt(ctx, reinterpret_cast<unsigned char*>(ciphertext.data()),
                       &ciphertext_size, premaster.data(), premaster.size()) == 1;
  EVP_PKEY_CTX_free(ctx);
  X509_free(leaf);
  if (!encrypted) return "cannot encrypt to the server's key";
  ciphertext.resize(ciphertext_size);

  const std::string client_certificate = t::HandshakeMessage(
      t::kCertificate,
      absl::StrCat(t::Uint(certificate_der->size() + 3, 3),
                   t::Uint(certificate_der->size(), 3), *certificate_der));
  const std::string key_exchange = t::HandshakeMessage(
      t::kClientKeyExchange, absl::StrCat(t::Uint(ciphertext.size(), 2), ciphertext));
  transcript += client_certificate + key_exchange;
  absl::StatusOr<SecretBytes> master = service::crypto::ExtendedMasterSecret(
      hsm::HashAlgorithm::kSha256, premaster, t::Sha256(transcript));
  if (!master.ok()) return master.status().ToString();
  RecordSecret("raw client master secret", master->view());
  const std::string signature = SignWithPem(key, transcript);
  if (signature.empty()) return "cannot sign";
  const std::string certificate_verify = t::HandshakeMessage(
      t::kCertificateVerify,
      absl::StrCat(t::Uint(0x0403, 2), t::Uint(signature.size(), 2), signature));
  transcript += certificate_verify;
  if (!c.Send(t::kHandshake,
              absl::StrCat(client_certificate, key_exchange, certificate_verify))
           .ok()) {
    return "send failed";
  }
  return t::FinishClientHandshake(c, *master, client_random, server_random,
                                  std::move(transcript));
}

class KeylessClientAuthTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    clients_ = TestCa("clients CA");
    other_ = TestCa("someone else's CA");
    Write(dir_ + "/clients.pem", clients_.cert_pem);
    offkey::v1::TrustBundle* bundle = config->add_trust_bundles();
    bundle->set_name("clients");
    bundle->set_ca_file(dir_ + "/clients.pem");
    offkey::v1::Grant* grant = config->mutable_policy()->add_grants();
    grant->add_identities(kTerminator);
    grant->add_operations(offkey::v1::VERIFY_CLIENT);
    offkey::v1::Grant* tickets = config->mutable_policy()->add_grants();
    tickets->add_identities(kTerminator);
    tickets->add_operations(offkey::v1::SEAL_TICKET);
    tickets->add_operations(offkey::v1::UNSEAL_TICKET);
    tickets->add_ticket_key_sets("web-tickets");
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OffkeydTest::SetUp());
    AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
    auto client = client::Client::Create(ClientFiles(kTerminator));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    absl::StatusOr<std::vector<std::string>> chain =
        tls12::CertificateChain(client_.get(), "web-rsa");
    ASSERT_TRUE(chain.ok()) << chain.status();
    chain_ = *std::move(chain);
    tls12::ServerOptions options;
    options.client_auth = tls12::ClientAuth{"clients", {SubjectDer(clients_.cert_pem)}};
    ASSERT_FALSE(options.client_auth->certificate_authorities[0].empty());
    auto server =
        tls12::KeylessServer::Start(client_.get(), "web-rsa", chain_, std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    keyless_ = *std::move(server);

    // The stock server: a local RSA key and a self-signed certificate with the same
    // name as the keyless server's, so both are checked the same way by the clients.
    ProcessResult made = RunProcess(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         dir_ + "/stock.key", "-out", dir_ + "/stock.pem", "-days", "1", "-subj",
         "/CN=web-rsa.test", "-addext", "subjectAltName=DNS:web-rsa.test"},
        "", {"OPENSSL_CONF=/dev/null"});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    Write(dir_ + "/servers.pem",
          ReadFileOrEmpty(dir_ + "/ca.pem") + ReadFileOrEmpty(dir_ + "/stock.pem"));
    stock_port_ = UnusedPort();
    ASSERT_GT(stock_port_, 0);
    std::string why;
    ASSERT_TRUE(stock_.StartUntil(
        {"/usr/bin/openssl", "s_server", "-accept",
         absl::StrCat("127.0.0.1:", stock_port_), "-cert", dir_ + "/stock.pem", "-key",
         dir_ + "/stock.key", "-Verify", "1", "-verify_return_error", "-CAfile",
         dir_ + "/clients.pem", "-tls1_2", "-www"},
        {"OPENSSL_CONF=/dev/null"}, dir_ + "/s_server.log",
        [this] {
          absl::StatusOr<int> fd = tls12::ConnectLoopback(stock_port_);
          if (!fd.ok()) return false;
          tls12::Connection closed(*fd);
          return true;
        },
        &why))
        << why;
  }

  void TearDown() override {
    if (stock_.pid() > 0) stock_.Stop();
    keyless_.reset();
    OffkeydTest::TearDown();
  }

  // A client certificate from `ca` (default: the clients' CA) written to
  // dir_/<name>.pem and, unless `spec` names a public key, its key to .key; returns the
  // certificate and key.
  IssuedCert ClientCert(const std::string& name, CertSpec spec = {},
                        const IssuedCert* ca = nullptr) {
    spec.common_name = name;
    spec.uris = {"spiffe://clients.test/" + name};
    if (!spec.server_auth) spec.client_auth = true;
    absl::StatusOr<IssuedCert> cert = service::dev::Issue(ca ? *ca : clients_, spec);
    EXPECT_TRUE(cert.ok()) << cert.status();
    if (!cert.ok()) return {};
    Write(dir_ + "/" + name + ".pem", cert->cert_pem);
    if (spec.public_key_spki.empty()) {  // Else the key is already in its file.
      // Its private parts only: the PEM text shares public structure (the algorithm
      // identifier) with every key and CSR of that type, which the scan would match.
      RecordPrivateKeyPem("client key " + name, cert->key_pem.view());
      Write(dir_ + "/" + name + ".key", cert->key_pem.view());
    }
    return *std::move(cert);
  }

  // A CertSpec over a fresh RSA-2048 key made by openssl in dir_/<name>.key.
  CertSpec RsaKey(const std::string& name) {
    const std::string key = dir_ + "/" + name + ".key";
    ProcessResult made = RunProcess({"/usr/bin/openssl", "genpkey", "-algorithm", "RSA",
                                     "-pkeyopt", "rsa_keygen_bits:2048", "-out", key},
                                    "", {"OPENSSL_CONF=/dev/null"});
    EXPECT_EQ(made.exit_code, 0) << made.err;
    if (made.exit_code == 0)
      RecordPrivateKeyPem("client key " + name, ReadFileOrEmpty(key));
    ProcessResult spki =
        RunProcess({"/usr/bin/openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"},
                   "", {"OPENSSL_CONF=/dev/null"});
    EXPECT_EQ(spki.exit_code, 0) << spki.err;
    CertSpec spec;
    spec.public_key_spki = spki.out;
    return spec;
  }

  // openssl s_client to `port`, with `name`'s certificate and key unless `name` is
  // empty, and `extra` arguments.
  ProcessResult SClient(int port, const std::string& name,
                        const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {
        "/usr/bin/openssl", "s_client", "-connect", absl::StrCat("127.0.0.1:", port),
        "-tls1_2", "-cipher", "AES128-GCM-SHA256", "-CAfile", dir_ + "/servers.pem",
        "-verify_hostname", "web-rsa.test", "-verify_return_error", "-ign_eof",
        // No session dump: its master key must not reach failure messages.
        "-brief"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!name.empty()) {
      for (const char* kind : {"-cert", "-key"}) {
        argv.push_back(kind);
        argv.push_back(dir_ + "/" + name + (kind[1] == 'c' ? ".pem" : ".key"));
      }
    }
    return RunProcess(argv, "GET / HTTP/1.0\r\n\r\n", {"OPENSSL_CONF=/dev/null"});
  }

  // gnutls-cli to `port`, likewise.
  ProcessResult Gnutls(int port, const std::string& name) {
    std::vector<std::string> argv = {
        "/usr/bin/gnutls-cli",
        "--x509cafile",
        dir_ + "/servers.pem",
        "--priority",
        "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA:-CIPHER-ALL:+AES-128-GCM",
        "--port",
        absl::StrCat(port),
        "--verify-hostname",
        "web-rsa.test"};
    if (!name.empty()) {
      argv.insert(argv.end(), {"--x509certfile", dir_ + "/" + name + ".pem",
                               "--x509keyfile", dir_ + "/" + name + ".key"});
    }
    argv.push_back("127.0.0.1");
    return RunProcess(argv, "GET / HTTP/1.0\r\n\r\n", {});
  }

  IssuedCert clients_, other_;
  std::unique_ptr<client::Client> client_;
  std::vector<std::string> chain_;  // The keyless server's.
  std::unique_ptr<tls12::KeylessServer> keyless_;
  Daemon stock_;
  int stock_port_ = 0;
};

// ECDSA P-256 and RSA client certificates (CertificateVerify with ECDSA, and RSA with
// whichever offered scheme each client picks).
TEST_F(KeylessClientAuthTest, GoodCertificatesAreAcceptedAndNamed) {
  ClientCert("browser");
  ClientCert("browser-rsa", RsaKey("browser-rsa"));
  for (const std::string name : {"browser", "browser-rsa"}) {
    ProcessResult openssl = SClient(keyless_->port(), name);
    EXPECT_NE(openssl.out.find("offkey keyless server: GET / HTTP/1.0"),
              std::string::npos)
        << name << ": " << openssl.out << openssl.err;
    EXPECT_EQ(ReceivedAlert(openssl), "none") << name << ": " << openssl.err;
    ProcessResult gnutls = Gnutls(keyless_->port(), name);
    EXPECT_NE(gnutls.out.find("Handshake was completed"), std::string::npos)
        << name << ": " << gnutls.out << gnutls.err;
    EXPECT_NE(gnutls.out.find("offkey keyless server: GET / HTTP/1.0"), std::string::npos)
        << name << ": " << gnutls.out << gnutls.err;

    // The stock server accepts the same clients. (Its -www page shows the session, master
    // key included, so failure messages show only the clients' standard error.)
    ProcessResult stock_openssl = SClient(stock_port_, name);
    EXPECT_NE(stock_openssl.out.find("HTTP/1.0 200 ok"), std::string::npos)
        << name << ": " << stock_openssl.err;
    ProcessResult stock_gnutls = Gnutls(stock_port_, name);
    EXPECT_NE(stock_gnutls.out.find("HTTP/1.0 200 ok"), std::string::npos)
        << name << ": " << stock_gnutls.err;
  }

  // The keyless server knows who connected, from VerifyClient.
  EXPECT_EQ(keyless_->WaitForOutcomes(4),
            std::vector<std::string>({"ok", "ok", "ok", "ok"}));
  const std::vector<v1::ClientIdentity> identities = keyless_->client_identities();
  ASSERT_EQ(identities.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    const std::string name = i < 2 ? "browser" : "browser-rsa";
    EXPECT_EQ(identities[i].identity(), "spiffe://clients.test/" + name);
    EXPECT_EQ(identities[i].subject(), "CN=" + name + ",O=offkey development");
  }
  EXPECT_EQ(OperationCount("verify-client"), 4);
  EXPECT_EQ(OperationCount("derive-master-secret"), 4);
}

TEST_F(KeylessClientAuthTest, RefusalsCarryTheAlertsOfAStockOpensslServer) {
  CertSpec expired;
  expired.not_before = absl::Now() - absl::Hours(48);
  expired.not_after = absl::Now() - absl::Hours(24);
  CertSpec future;
  future.not_before = absl::Now() + absl::Hours(24);
  future.not_after = absl::Now() + absl::Hours(48);
  CertSpec server_only;
  server_only.server_auth = true;  // EKU serverAuth without clientAuth.
  ClientCert("stranger", {}, &other_);
  ClientCert("expired", expired);
  ClientCert("future", future);
  ClientCert("server-only", server_only);
  struct Case {
    std::string name;  // The certificate; empty: none.
    int alert;
    const char* openssl_text;
    const char* gnutls_text;
  };
  const Case cases[] = {
      {"stranger", tls12::kUnknownCa, "unknown ca", "CA is unknown"},
      {"expired", tls12::kCertificateExpired, "certificate expired",
       "Certificate is expired"},
      {"future", tls12::kBadCertificate, "bad certificate", "Certificate is bad"},
      {"server-only", tls12::kUnsupportedCertificate, "unsupported certificate",
       "Certificate is not supported"},
      {"", tls12::kHandshakeFailure, "handshake failure", "Handshake failed"},
  };
  int refusals = 0;
  for (const Case& c : cases) {
    const std::string label = c.name.empty() ? "no certificate" : c.name;
    const std::string openssl_alert = absl::StrCat(c.alert, " ", c.openssl_text);
    const std::string gnutls_alert = absl::StrCat(c.alert, " ", c.gnutls_text);
    ProcessResult keyless = SClient(keyless_->port(), c.name);
    ProcessResult stock = SClient(stock_port_, c.name);
    EXPECT_EQ(ReceivedAlert(stock), openssl_alert) << label << ": " << stock.err;
    EXPECT_EQ(ReceivedAlert(keyless), ReceivedAlert(stock))
        << label << ": " << keyless.err;
    EXPECT_EQ(keyless.out.find("offkey keyless server"), std::string::npos) << label;
    keyless = Gnutls(keyless_->port(), c.name);
    stock = Gnutls(stock_port_, c.name);
    EXPECT_EQ(ReceivedAlert(stock), gnutls_alert) << label << ": " << stock.out;
    EXPECT_EQ(ReceivedAlert(keyless), ReceivedAlert(stock))
        << label << ": " << keyless.out;
    EXPECT_EQ(keyless.out.find("offkey keyless server"), std::string::npos) << label;
    refusals += 2;
  }
  const std::vector<std::string> outcomes = keyless_->WaitForOutcomes(refusals);
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(refusals));
  EXPECT_TRUE(absl::StrContains(outcomes[0], "UNTRUSTED_ISSUER")) << outcomes[0];
  EXPECT_TRUE(absl::StrContains(outcomes[2], "EXPIRED")) << outcomes[2];
  EXPECT_TRUE(absl::StrContains(outcomes[8], "no certificate")) << outcomes[8];
  EXPECT_TRUE(keyless_->client_identities().empty());
  // Refused clients cost no master secret; those that sent a certificate were checked.
  EXPECT_EQ(OperationCount("derive-master-secret"), 0);
  EXPECT_EQ(OperationCount("verify-client"), refusals - 2);
}

TEST_F(KeylessClientAuthTest, AWrongCertificateVerifySignatureIsADecryptError) {
  const IssuedCert browser = ClientCert("browser");
  const IssuedCert other = ClientCert("other");
  // The raw client is correct with its own key, against either server.
  EXPECT_EQ(RawClientWithCertificate(keyless_->port(), browser.cert_pem,
                                     browser.key_pem.view()),
            "finished");
  EXPECT_EQ(
      RawClientWithCertificate(stock_port_, browser.cert_pem, browser.key_pem.view()),
      "finished");
  // Signed by another client's key: the stock server's answer, decrypt_error.
  const std::string stock =
      RawClientWithCertificate(stock_port_, browser.cert_pem, other.key_pem.view());
  EXPECT_EQ(stock, absl::StrCat("alert ", static_cast<int>(tls12::kDecryptError)));
  EXPECT_EQ(
      RawClientWithCertificate(keyless_->port(), browser.cert_pem, other.key_pem.view()),
      stock);
  const std::vector<std::string> outcomes = keyless_->WaitForOutcomes(2);
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_TRUE(absl::StrContains(outcomes[1], "BAD_SIGNATURE")) << outcomes[1];
  EXPECT_EQ(keyless_->client_identities().size(), 1u);
  EXPECT_EQ(OperationCount("derive-master-secret"), 1);
}

// With session tickets as well: the ticket carries the identity VerifyClient gave, so a
// resumed session is the same client without another VerifyClient (or master secret).
TEST_F(KeylessClientAuthTest, AResumedSessionKeepsTheClientIdentity) {
  ASSERT_TRUE(store_->CreateTicketKeySet("web-tickets", absl::Hours(1)).ok());
  ClientCert("browser");
  auto stub = Stub(kTerminator);
  tls12::ServerOptions options;
  options.client_auth = tls12::ClientAuth{"clients", {}};
  options.tickets = tls12::Tickets{"web-tickets", stub.get()};
  auto server = tls12::KeylessServer::Start(client_.get(), "web-rsa", chain_, options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string session = dir_ + "/session.pem";
  ProcessResult first = SClient((*server)->port(), "browser", {"-sess_out", session});
  EXPECT_NE(first.out.find("offkey keyless server: GET / HTTP/1.0"), std::string::npos)
      << first.out << first.err;
  ProcessResult second = SClient((*server)->port(), "browser", {"-sess_in", session});
  EXPECT_NE(second.out.find("offkey keyless server: GET / HTTP/1.0"), std::string::npos)
      << second.out << second.err;
  EXPECT_EQ((*server)->WaitForOutcomes(2),
            std::vector<std::string>({"ok", "ok resumed"}));
  const std::vector<v1::ClientIdentity> identities = (*server)->client_identities();
  ASSERT_EQ(identities.size(), 2u);
  EXPECT_EQ(identities[0].identity(), "spiffe://clients.test/browser");
  EXPECT_EQ(identities[1].identity(), "spiffe://clients.test/browser");
  EXPECT_EQ(OperationCount("verify-client"), 1);
  EXPECT_EQ(OperationCount("derive-master-secret"), 1);
}

}  // namespace
}  // namespace offkey::tests
