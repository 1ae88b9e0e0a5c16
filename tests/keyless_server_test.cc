// Master-secret derivation in real handshakes: a minimal TLS 1.2 server (tests/tls12)
// that holds no private key and never sees the premaster completes handshakes and
// exchanges data with unmodified `openssl s_client` and `gnutls-cli`, asking offkeyd's
// DeriveMasterSecret for the extended master secret.
#include "tests/tls12/keyless_server.h"

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
  v1::GetCertificateRequest get;
  get.mutable_key()->set_name("web-rsa");
  absl::StatusOr<v1::GetCertificateResponse> chain = (*client)->GetCertificate(get);
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto server = tls12::KeylessServer::Start(
      client->get(), "web-rsa",
      {chain->certificate_chain().begin(), chain->certificate_chain().end()});
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
  const std::vector<std::string> outcomes = (*server)->outcomes();
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
  absl::Time until = absl::Now() + absl::Seconds(5);
  while ((*server)->outcomes().empty() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ((*server)->outcomes().size(), 1u);
  EXPECT_NE((*server)->outcomes()[0].find("extended master secret"), std::string::npos);
}

}  // namespace
}  // namespace offkey::tests
