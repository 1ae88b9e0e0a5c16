// Keyless handshakes through other PKCS#11 modules: an unmodified `openssl s_server`
// with the offkey provider and key references only, offkeyd over opencryptoki's soft
// token or tpm2-pkcs11 on a software TPM, and curl as the client. One TLS 1.3 handshake
// (a CertificateVerify signed in the module) and one TLS 1.2 RSA key exchange (raw RSA
// decryption in the module) per module, each exactly one offkeyd operation.
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/testing/opencryptoki.h"
#include "hsm/pkcs11/testing/tpm2.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"
#include "tests/provider_files.h"

namespace offkey::tests {
namespace {

namespace v1 = offkey::v1;
using hsm::pkcs11::TokenOptions;

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The modules' tokens, made before any test starts a thread: opencryptoki's private
// pkcsslotd needs this process to enter a mount namespace, which threads prevent.
struct ModuleTokens {
  absl::StatusOr<TokenOptions> opencryptoki = absl::UnknownError("not made");
  absl::StatusOr<TokenOptions> tpm2 = absl::UnknownError("not made");
};
ModuleTokens* tokens = nullptr;

class MakeModuleTokens : public ::testing::Environment {
  void SetUp() override {
    tokens = new ModuleTokens;
    if (!hsm::pkcs11::testing::OpencryptokiInstalled()) {
      tokens->opencryptoki = absl::NotFoundError("opencryptoki is not installed");
    } else if (auto t = hsm::pkcs11::testing::OpencryptokiToken::Create(); t.ok()) {
      tokens->opencryptoki = t->Options();
    } else {
      tokens->opencryptoki = t.status();
    }
    if (!hsm::pkcs11::testing::Tpm2Installed()) {
      tokens->tpm2 = absl::NotFoundError("tpm2-pkcs11 or swtpm is not installed");
    } else if (auto t = hsm::pkcs11::testing::Tpm2Token::Create(); t.ok()) {
      tokens->tpm2 = t->Options();
    } else {
      tokens->tpm2 = t.status();
    }
  }
};
::testing::Environment* const kMakeTokens =
    ::testing::AddGlobalTestEnvironment(new MakeModuleTokens);

struct Handshake {
  std::string key;                     // Which server key.
  std::vector<std::string> curl_args;  // TLS version and cipher options.
  std::string operation;               // The one offkeyd operation it makes.
};

struct ModuleCase {
  std::string name;
  absl::StatusOr<TokenOptions> ModuleTokens::*token;
  std::vector<std::pair<std::string, hsm::KeyAlgorithm>> keys;
  std::vector<Handshake> handshakes;
};

void PrintTo(const ModuleCase& c, std::ostream* os) { *os << c.name; }

const std::vector<std::string> kTls13 = {"--tlsv1.3", "--tls-max", "1.3"};
const std::vector<std::string> kTls12RsaKeyExchange = {"--tlsv1.2", "--tls-max", "1.2",
                                                       "--ciphers", "AES128-GCM-SHA256"};

class ModuleHandshakeTest : public OffkeydTest,
                            public ::testing::WithParamInterface<ModuleCase> {
 protected:
  void SetUp() override {
    const absl::StatusOr<TokenOptions>& token = tokens->*GetParam().token;
    // tools/setup.sh installs both modules; only a machine without them skips.
    if (absl::IsNotFound(token.status())) GTEST_SKIP() << token.status();
    ASSERT_TRUE(token.ok()) << token.status();
    OffkeydTest::SetUp();
  }

  void AdjustToken(TokenOptions* options) override {
    *options = *(tokens->*GetParam().token);
  }

  void Configure(v1::ServerConfig* config) override {
    const TokenOptions& token = *(tokens->*GetParam().token);
    config->mutable_hsm()->set_module_path(token.module_path);
    config->mutable_hsm()->set_token_uri(token.uri);
    config->mutable_hsm()->set_pin_file(token.pin.file);
  }

  void TearDown() override {
    for (auto& server : servers_) server->Stop();
    OffkeydTest::TearDown();
  }

  // Makes `name` in the module and writes the server's certificate and key reference.
  void AddServerKey(const std::string& name, hsm::KeyAlgorithm algorithm) {
    WriteKeylessServerFiles(dir_, name, AddKey(name, algorithm), ca_);
  }

  // A deadline well above the provider's default 2 s: tpm2-pkcs11 on swtpm takes over
  // a second per RSA operation, and over two under AddressSanitizer on a busy machine.
  void WriteProviderConfig() {
    Write(dir_ + "/openssl.cnf",
          ProviderConfig(EndpointLines(server_->port(), ClientFiles(kTerminator)) +
                         "deadline_ms = 20000\n"));
  }

  // Starts `openssl s_server -www` with the reference for `key`; returns its port.
  int StartServer(const std::string& key) {
    auto daemon = std::make_unique<Daemon>();
    const std::string log = absl::StrCat(dir_, "/s_server-", key, ".log");
    std::string why;
    EXPECT_TRUE(daemon->Start({"/usr/bin/openssl", "s_server", "-accept", "127.0.0.1:0",
                               "-www", "-cert", absl::StrCat(dir_, "/", key, ".pem"),
                               "-key", absl::StrCat(dir_, "/", key, ".ref")},
                              {absl::StrCat("OPENSSL_CONF=", dir_, "/openssl.cnf")}, log,
                              {log}, &why))
        << why;
    servers_.push_back(std::move(daemon));
    // "ACCEPT 127.0.0.1:PORT" once it listens.
    std::smatch match;
    const std::regex accept("ACCEPT 127\\.0\\.0\\.1:([0-9]+)");
    std::string text;
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (!std::regex_search(text = ReadFileOrEmpty(log), match, accept) &&
           absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    int port = 0;
    EXPECT_TRUE(!match.empty() && absl::SimpleAtoi(match[1].str(), &port))
        << "s_server did not start:\n"
        << text;
    return port;
  }

  std::vector<std::unique_ptr<Daemon>> servers_;
};

TEST_P(ModuleHandshakeTest, KeylessHandshakesThroughTheModule) {
  for (const auto& [name, algorithm] : GetParam().keys) {
    AddServerKey(name, algorithm);
    if (HasFatalFailure()) return;
  }
  WriteProviderConfig();
  std::map<std::string, int> ports;
  for (const auto& [name, algorithm] : GetParam().keys) {
    ports[name] = StartServer(name);
    ASSERT_NE(ports[name], 0);
  }
  // Loading the references made no call.
  EXPECT_EQ(OperationCount("sign"), 0);
  EXPECT_EQ(OperationCount("decrypt-premaster"), 0);
  for (const Handshake& h : GetParam().handshakes) {
    SCOPED_TRACE(absl::StrCat(h.key, " ", h.curl_args[0], " ", h.operation));
    const int before = OperationCount(h.operation);
    std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "--cacert",
                                     dir_ + "/ca.pem"};
    argv.insert(argv.end(), h.curl_args.begin(), h.curl_args.end());
    argv.push_back("--resolve");
    argv.push_back(absl::StrCat("localhost:", ports[h.key], ":127.0.0.1"));
    argv.push_back(absl::StrCat("https://localhost:", ports[h.key], "/"));
    ProcessResult r = RunProcess(argv, "", {"OPENSSL_CONF=/dev/null"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // s_server -www answers with a page naming itself and the negotiated cipher.
    EXPECT_NE(r.out.find("s_server"), std::string::npos) << r.out;
    EXPECT_EQ(OperationCount(h.operation), before + 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modules, ModuleHandshakeTest,
    ::testing::Values(
        // opencryptoki 3.8's soft token has RSA only.
        ModuleCase{"Opencryptoki",
                   &ModuleTokens::opencryptoki,
                   {{"rsa", hsm::KeyAlgorithm::kRsa2048}},
                   {{"rsa", kTls13, "sign"},
                    {"rsa", kTls12RsaKeyExchange, "decrypt-premaster"}}},
        ModuleCase{
            "Tpm2Pkcs11",
            &ModuleTokens::tpm2,
            {{"p256", hsm::KeyAlgorithm::kEcP256}, {"rsa", hsm::KeyAlgorithm::kRsa2048}},
            {{"p256", kTls13, "sign"},
             {"rsa", kTls13, "sign"},
             {"rsa", kTls12RsaKeyExchange, "decrypt-premaster"}}}),
    [](const ::testing::TestParamInfo<ModuleCase>& info) { return info.param.name; });

}  // namespace
}  // namespace offkey::tests
