// offkeyctl end to end: the real offkeyctl binary against a real offkeyd process in
// development mode (SoftHSM2 token, development CA), checked with real OpenSSL. Covers
// every subcommand in table and JSON form, confirmations on a terminal, exit codes,
// actionable connection errors, bash completion, state across a restart, and two offkeyd
// processes on one token.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/testing/secret_ledger.h"
#include "base/testing/text.h"
#include "client/key_reference.h"
#include "gtest/gtest.h"
#include "hsm/testing/verify.h"
#include "offkey/v1/key_admin.pb.h"
#include "offkey/v1/key_service.pb.h"
#include "tests/process.h"

namespace offkey::tests {

using ::offkey::testing::OutputPath;
using ::offkey::testing::RecordPrivateKeyPem;
using ::offkey::testing::RecordSecret;
namespace {

using ::offkey::testing::Contains;
using ::offkey::testing::FromJson;

// One offkeyd process on the shared development state.
struct Offkeyd {
  Daemon daemon;
  int port = 0, admin_port = 0;
  std::string Endpoint() const { return absl::StrCat("127.0.0.1:", port); }
  std::string AdminEndpoint() const { return absl::StrCat("127.0.0.1:", admin_port); }
};

class OffkeyctlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new std::string(getenv("TEST_TMPDIR"));
    state_ = new std::string(*tmp_ + "/dev");
    primary_ = new Offkeyd;
    std::string why;
    ASSERT_TRUE(StartOffkeyd(primary_, "primary", /*dev=*/true, &why)) << why;
    // The development state's secrets, for the log scan.
    for (const char* pin : {"user.pin", "so.pin"}) {
      RecordSecret(pin, absl::StripAsciiWhitespace(ReadFileOrEmpty(*state_ + "/" + pin)));
    }
    for (const char* key : {"ca.key", "server.key", "terminator.key", "admin.key"}) {
      RecordPrivateKeyPem(key, ReadFileOrEmpty(*state_ + "/" + key));
    }
  }
  static void TearDownTestSuite() {
    if (primary_ != nullptr) {
      EXPECT_EQ(primary_->daemon.Stop(), 0);
    }
    delete primary_;
    delete state_;
    delete tmp_;
  }

  // Starts offkeyd on loopback ports of its choosing: in development mode (`dev`), or as
  // a second replica from the development config file, as production runs it.
  static bool StartOffkeyd(Offkeyd* d, const std::string& name, bool dev,
                           std::string* why) {
    const std::string port_file = *tmp_ + "/" + name + ".port";
    const std::string admin_file = *tmp_ + "/" + name + ".admin";
    std::vector<std::string> argv = {Runfile("service/offkeyd")};
    std::vector<std::string> env;
    if (dev) {
      argv.insert(argv.end(), {"--dev", "--dev_state_dir=" + *state_});
    } else {
      argv.push_back("--config=" + *state_ + "/config.textproto");
      env.push_back("SOFTHSM2_CONF=" + *state_ + "/softhsm2.conf");
    }
    argv.insert(argv.end(), {"--listen=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                             "--metrics_address=127.0.0.1:0", "--port_file=" + port_file,
                             "--admin_port_file=" + admin_file});
    if (!d->daemon.Start(argv, env, OutputPath("offkeyd-" + name + ".log"),
                         {port_file, admin_file}, why)) {
      return false;
    }
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(port_file)),
                            &d->port) &&
           absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(admin_file)),
                            &d->admin_port);
  }

  // offkeyctl against the primary, by way of --dev-dir.
  static ProcessResult Ctl(std::vector<std::string> args, const std::string& input = "",
                           const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), {Runfile("client/cli/offkeyctl"), "--dev-dir=" + *state_});
    return RunProcess(args, input, env);
  }
  // The same on a terminal, typing `typed`.
  static ProcessResult CtlOnTerminal(std::vector<std::string> args,
                                     const std::string& prompt,
                                     const std::string& typed) {
    args.insert(args.begin(), {Runfile("client/cli/offkeyctl"), "--dev-dir=" + *state_});
    return RunOnTerminal(args, prompt, typed);
  }

  static std::string Write(const std::string& name, const std::string& contents) {
    std::string path = *tmp_ + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  // Creates a key and checks it worked.
  static offkey::v1::KeyInfo Create(const std::string& name, const std::string& algorithm,
                                    std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"create",  name, "--algorithm",
                                     algorithm, "-o", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FromJson<offkey::v1::CreateKeyResponse>(r.out).key();
  }

  static offkey::v1::KeyDetails Show(const std::string& key) {
    ProcessResult r = Ctl({"show", key, "-o", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FromJson<offkey::v1::GetKeyResponse>(r.out).key();
  }

  // A certificate for the key behind `csr_path`, issued by the development CA with
  // OpenSSL, followed by the CA certificate.
  static std::string IssueChain(const std::string& csr_path, const std::string& name,
                                const std::string& days = "30") {
    const std::string cert = *tmp_ + "/" + name + ".pem";
    ProcessResult r =
        RunProcess({"/usr/bin/openssl", "x509", "-req", "-in", csr_path, "-CA",
                    *state_ + "/ca.pem", "-CAkey", *state_ + "/ca.key", "-days", days,
                    "-copy_extensions", "copy", "-out", cert});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return ReadFileOrEmpty(cert) + ReadFileOrEmpty(*state_ + "/ca.pem");
  }

  static std::string* tmp_;
  static std::string* state_;
  static Offkeyd* primary_;
};

std::string* OffkeyctlTest::tmp_ = nullptr;
std::string* OffkeyctlTest::state_ = nullptr;
Offkeyd* OffkeyctlTest::primary_ = nullptr;

// The whole life of a key with offkeyctl alone: create, CSR, certificate, key reference,
// use by a terminator, disablement, destruction window, destruction.
TEST_F(OffkeyctlTest, KeyLifecycleEndToEnd) {
  ProcessResult r = Ctl({"create", "web", "--algorithm", "ec-p256", "-l", "env=prod",
                         "--label", "team=edge"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "NAME"));
  EXPECT_TRUE(Contains(r.out, "web"));
  EXPECT_TRUE(Contains(r.out, "ec-p256"));
  EXPECT_TRUE(Contains(r.out, "tls-server"));  // The default usage.
  EXPECT_TRUE(Contains(r.out, "enabled"));
  EXPECT_TRUE(Contains(r.out, "env=prod,team=edge"));

  r = Ctl({"show", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const offkey::v1::KeyDetails details = Show("web");
  EXPECT_TRUE(Contains(r.out, absl::BytesToHexString(details.info().key_id())));
  EXPECT_TRUE(Contains(r.out, "certificate:  none"));
  EXPECT_TRUE(Contains(r.out, details.public_key_pem()));

  // CSR, signed in the HSM, verified by OpenSSL.
  const std::string csr = *tmp_ + "/web.csr";
  r = Ctl({"csr", "web", "--subject", "CN=www.example.com,O=Example", "--dns",
           "www.example.com", "--ip", "192.0.2.7", "--uri", "spiffe://example.org/web",
           "--out", csr});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = RunProcess({"/usr/bin/openssl", "req", "-in", csr, "-verify", "-noout", "-text"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out + r.err, "verify OK"));
  EXPECT_TRUE(Contains(r.out, "CN = www.example.com"));
  EXPECT_TRUE(Contains(r.out, "DNS:www.example.com"));
  EXPECT_TRUE(Contains(r.out, "IP Address:192.0.2.7"));
  EXPECT_TRUE(Contains(r.out, "URI:spiffe://example.org/web"));
  // The CSR file is not overwritten by accident.
  r = Ctl({"csr", "web", "--subject", "CN=x", "--out", csr});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "--overwrite"));

  // The certificate from the CA, attached.
  const std::string chain = Write("web-chain.pem", IssueChain(csr, "web"));
  r = Ctl({"attach-cert", "web", "--chain", chain});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "expires "));
  r = Ctl({"show", "web"});
  EXPECT_TRUE(Contains(r.out, "CN=www.example.com"));
  EXPECT_TRUE(Contains(r.out, "DNS:www.example.com, IP:192.0.2.7"));
  EXPECT_TRUE(Contains(r.out, "2 certificates"));

  // The key reference the provider will load.
  const std::string ref_path = *tmp_ + "/web.ref";
  r = Ctl({"ref", "web", "--out", ref_path, "--chain-out", ref_path + ".chain"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The chain file is the attached chain, byte for byte as PEM.
  EXPECT_EQ(ReadFileOrEmpty(ref_path + ".chain"), ReadFileOrEmpty(chain));
  // The URI form carries the same reference.
  r = Ctl({"ref", "web", "--uri"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string uri_bytes;
  ASSERT_TRUE(absl::StartsWith(r.out, "offkey:")) << r.out;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(
      absl::StripTrailingAsciiWhitespace(r.out.substr(7)), &uri_bytes));
  absl::StatusOr<offkey::v1::KeyReference> from_uri =
      client::ParseKeyReference(uri_bytes);
  ASSERT_TRUE(from_uri.ok()) << from_uri.status();
  EXPECT_EQ(from_uri->key_id(), details.info().key_id());
  absl::StatusOr<offkey::v1::KeyReference> ref =
      client::DecodeKeyReference(ReadFileOrEmpty(ref_path));
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->key_id(), details.info().key_id());
  EXPECT_EQ(ref->public_key_spki(), details.info().public_key_spki());
  EXPECT_EQ(ref->service(), primary_->Endpoint());
  EXPECT_EQ(ref->algorithm(), offkey::v1::EC_P256);

  // Used as a terminator uses it: a TLS 1.3 CertificateVerify signature over the data
  // plane, verified with OpenSSL.
  const std::string transcript_hash(32, '\x5a');
  auto sign = [&] {
    return Ctl({"sign", "web", "--tls13-transcript-hash",
                absl::BytesToHexString(transcript_hash)});
  };
  r = sign();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string message =
      absl::StrCat(std::string(64, ' '), "TLS 1.3, server CertificateVerify",
                   std::string(1, '\0'), transcript_hash);
  EXPECT_TRUE(hsm::testing::VerifyWithOpenSsl(
                  details.info().public_key_spki(),
                  {hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha256}, message,
                  absl::HexStringToBytes(absl::StripAsciiWhitespace(r.out)))
                  .ok());

  // Disabled: the data plane refuses it; enabled again: it signs.
  r = Ctl({"disable", "web", "--yes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "disabled"));
  r = sign();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "FAILED_PRECONDITION"));
  r = Ctl({"enable", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(sign().exit_code, 0);

  // A window under 24 hours is a usage error without --force; nothing is sent.
  r = Ctl({"schedule-destroy", "web", "--window", "2h", "--yes"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "--force")) << r.err;
  EXPECT_EQ(Show("web").info().state(), offkey::v1::ENABLED);
  // Scheduled for destruction: refused at once, listed as pending, can be cancelled.
  r = Ctl({"schedule-destroy", "web", "--window", "2h", "--force", "--yes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "pending-destruction (in "));
  EXPECT_TRUE(Contains(r.err, "cancel-destroy web"));
  const offkey::v1::KeyInfo pending = Show("web").info();
  EXPECT_NEAR(pending.destroy_time() - absl::ToUnixSeconds(absl::Now()), 7200, 60);
  EXPECT_EQ(sign().exit_code, 1);
  r = Ctl({"list", "--state", "pending", "-o", "name"});
  EXPECT_TRUE(Contains(r.out, "web\n"));
  r = Ctl({"cancel-destroy", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Show("web").info().state(), offkey::v1::DISABLED);

  // Destroyed for good.
  r = Ctl({"destroy", "web", "--force", "--yes"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(
      Contains(r.out, absl::StrCat("destroyed key 'web' (key id ",
                                   absl::BytesToHexString(details.info().key_id()))));
  r = Ctl({"show", "web"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "NOT_FOUND"));
}

TEST_F(OffkeyctlTest, JsonOutputIsTheProtoJsonMapping) {
  const offkey::v1::KeyInfo created =
      Create("json-key", "ed25519", {"--usage", "general-signing", "-l", "tier=gold"});
  EXPECT_EQ(created.name(), "json-key");
  EXPECT_EQ(created.algorithm(), offkey::v1::ED25519_KEY);
  EXPECT_EQ(created.usage(), offkey::v1::GENERAL_SIGNING);
  EXPECT_EQ(created.labels().at("tier"), "gold");
  EXPECT_EQ(created.key_id().size(), 20u);

  ProcessResult r = Ctl({"list", "-o", "json", "--label", "tier=gold"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto list = FromJson<offkey::v1::AdminListKeysResponse>(r.out);
  ASSERT_EQ(list.keys_size(), 1);
  EXPECT_EQ(list.keys(0).key_id(), created.key_id());

  r = Ctl({"list", "--algorithm", "ed25519", "-o", "name"});
  EXPECT_TRUE(Contains(r.out, "json-key\n"));
  EXPECT_FALSE(absl::StrContains(r.out, "dev-p256"));

  // A general-signing key signs any message; the JSON carries the signature.
  const std::string message_file = Write("message.bin", "any message at all");
  r = Ctl({"sign", "json-key", "--in", message_file, "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto signed_ = FromJson<offkey::v1::SignResponse>(r.out);
  EXPECT_EQ(signed_.key_id(), created.key_id());
  EXPECT_TRUE(hsm::testing::VerifyWithOpenSsl(
                  created.public_key_spki(),
                  {hsm::SignatureKind::kEdDsa, hsm::HashAlgorithm::kNone},
                  "any message at all", signed_.signature())
                  .ok());

  r = Ctl({"health", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "\"status\": \"SERVING\""));
  r = Ctl({"health"});
  EXPECT_TRUE(
      Contains(r.out, absl::StrCat("data   ", primary_->Endpoint(), "  SERVING")));
  EXPECT_TRUE(Contains(r.out, absl::StrCat("admin  ", primary_->AdminEndpoint())));
}

TEST_F(OffkeyctlTest, ImportUpdateAndLabels) {
  // An encrypted PKCS#8 key made by OpenSSL, as a site migrating its keys has.
  const std::string plain = *tmp_ + "/migrate.key", encrypted = *tmp_ + "/migrate.p8";
  ASSERT_EQ(RunProcess({"/usr/bin/openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-384", "-out", plain})
                .exit_code,
            0);
  RecordPrivateKeyPem("imported key", ReadFileOrEmpty(plain));
  const std::string passphrase = "correct horse battery staple";
  RecordSecret("import passphrase", passphrase);
  ASSERT_EQ(RunProcess({"/usr/bin/openssl", "pkcs8", "-topk8", "-in", plain, "-out",
                        encrypted, "-passout", "pass:" + passphrase})
                .exit_code,
            0);

  // No passphrase and no terminal to ask on: a usage error, nothing sent.
  ProcessResult r = Ctl({"import", "migrated", "--file", encrypted});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "--passphrase-file"));
  // A wrong passphrase: offkeyd refuses; the passphrase is not echoed.
  const std::string wrong = Write("wrong.pass", "not the passphrase\n");
  r = Ctl({"import", "migrated", "--file", encrypted, "--passphrase-file", wrong});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "INVALID_ARGUMENT"));
  EXPECT_FALSE(absl::StrContains(r.err, "not the passphrase"));
  // Typed at the prompt on a terminal.
  r = CtlOnTerminal({"import", "migrated", "--file", encrypted, "-l", "origin=legacy"},
                    "Passphrase for", passphrase + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(Contains(r.out, "Passphrase for"));
  EXPECT_FALSE(absl::StrContains(r.out, passphrase));  // Not echoed.
  EXPECT_EQ(Show("migrated").info().algorithm(), offkey::v1::EC_P384);
  // The same key again, from a passphrase in the environment: offkeyd sees a duplicate.
  r = Ctl({"import", "again", "--file", encrypted, "--passphrase-env", "IMPORT_PASS"}, "",
          {"IMPORT_PASS=" + passphrase});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "ALREADY_EXISTS"));

  r = Ctl({"update", "migrated", "-l", "env=prod", "--usage", "general-signing"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "env=prod,origin=legacy"));
  EXPECT_TRUE(Contains(r.out, "general-signing"));
  r = Ctl({"update", "migrated", "--remove-label", "origin"});
  EXPECT_TRUE(Contains(r.out, "env=prod"));
  EXPECT_FALSE(absl::StrContains(r.out, "origin"));
  r = Ctl({"update", "migrated", "--replace-labels"});
  EXPECT_EQ(Show("migrated").info().labels_size(), 0);
  r = Ctl({"update", "migrated"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "nothing to change"));
  r = Ctl({"update", "migrated", "-l", "Bad Label=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "INVALID_ARGUMENT"));
}

TEST_F(OffkeyctlTest, CertificateForAnotherKeyIsRefused) {
  Create("mine", "ec-p256");
  Create("theirs", "ec-p256");
  const std::string csr = *tmp_ + "/theirs.csr";
  ASSERT_EQ(Ctl({"csr", "theirs", "--dns", "theirs.example", "--out", csr}).exit_code, 0);
  const std::string chain = Write("theirs-chain.pem", IssueChain(csr, "theirs"));
  ProcessResult r = Ctl({"attach-cert", "mine", "--chain", chain, "--force"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "FAILED_PRECONDITION"));
  EXPECT_TRUE(Contains(r.err, "for another key"));
  EXPECT_EQ(Show("mine").info().certificate().not_after(), 0);
  // An expired certificate needs --force.
  const std::string expired_chain =
      Write("expired.pem", IssueChain(csr, "theirs-old", "-1"));
  r = Ctl({"attach-cert", "theirs", "--chain", expired_chain});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "FAILED_PRECONDITION"));
  EXPECT_EQ(Ctl({"attach-cert", "theirs", "--chain", expired_chain, "--force"}).exit_code,
            0);
}

TEST_F(OffkeyctlTest, TerminatorIdentityIsRefusedOnEveryAdminCall) {
  Create("guarded", "ec-p256");
  const std::string chain = Write("any.pem", ReadFileOrEmpty(*state_ + "/server.pem"));
  // Never read: the role is checked first.
  const std::string key_file = Write("any.key", "placeholder, not a key\n");
  const std::vector<std::vector<std::string>> calls = {
      {"create", "evil", "--algorithm", "ec-p256"},
      {"import", "evil", "--file", key_file},
      {"list"},
      {"show", "guarded"},
      {"update", "guarded", "-l", "x=y"},
      {"enable", "guarded"},
      {"disable", "guarded", "--yes"},
      {"schedule-destroy", "guarded", "--yes"},
      {"cancel-destroy", "guarded"},
      {"destroy", "guarded", "--force", "--yes"},
      {"csr", "guarded", "--dns", "x.example"},
      {"attach-cert", "guarded", "--chain", chain},
      {"ref", "guarded"},
  };
  for (std::vector<std::string> call : calls) {
    call.insert(call.end(), {"--tls-cert", *state_ + "/terminator.pem", "--tls-key",
                             *state_ + "/terminator.key"});
    ProcessResult r = Ctl(call);
    EXPECT_EQ(r.exit_code, 1) << call[0] << ": " << r.err;
    EXPECT_TRUE(Contains(r.err, "PERMISSION_DENIED")) << call[0];
    EXPECT_TRUE(Contains(r.err, "does not hold the admin role")) << call[0];
    EXPECT_TRUE(Contains(r.err, "identity 'spiffe://offkey.dev/terminator'")) << call[0];
  }
  const offkey::v1::KeyInfo after = Show("guarded").info();
  EXPECT_EQ(after.state(), offkey::v1::ENABLED);
  EXPECT_EQ(after.labels_size(), 0);
}

TEST_F(OffkeyctlTest, ConfirmationsAndUsageErrors) {
  Create("careful", "ec-p256");
  // No terminal and no --yes: refused as a usage error, nothing changed.
  ProcessResult r = Ctl({"disable", "careful"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "pass --yes"));
  // On a terminal: "n" keeps it, "y" disables it.
  r = CtlOnTerminal({"disable", "careful"}, "[y/N]", "n\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.out, "Continue? [y/N]"));
  EXPECT_TRUE(Contains(r.out, "not confirmed"));
  EXPECT_EQ(Show("careful").info().state(), offkey::v1::ENABLED);
  r = CtlOnTerminal({"disable", "careful"}, "[y/N]", "y\n");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(Show("careful").info().state(), offkey::v1::DISABLED);

  // destroy needs --force, then the key's name typed in full.
  r = Ctl({"destroy", "careful", "--yes"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "schedule-destroy careful"));
  r = CtlOnTerminal({"destroy", "careful", "--force"}, "to confirm:", "y\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.out, "Type the key name (careful)"));
  EXPECT_EQ(Show("careful").info().name(), "careful");
  r = CtlOnTerminal({"destroy", "careful", "--force"}, "to confirm:", "careful\n");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(Ctl({"show", "careful"}).exit_code, 1);

  // Usage errors: exit 2 with the accepted values.
  r = Ctl({"create", "x", "--algorithm", "dsa"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "use one of: rsa-2048, rsa-3072"));
  r = Ctl({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  r = Ctl({"create", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "--algorithm is required"));
  r = Ctl({"show", "id:xyz"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "not hex"));
  r = Ctl({"schedule-destroy", "x", "--window", "soon", "--yes"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "e.g. 7d"));
  r = Ctl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(Contains(r.out, "schedule-destroy"));
  EXPECT_TRUE(Contains(r.out, "Exit status: 0 success, 1 failure"));
}

TEST_F(OffkeyctlTest, ConnectionSettingsAndErrorsSayWhatToFix) {
  const std::string ctl = Runfile("client/cli/offkeyctl");
  // Nothing configured at all.
  ProcessResult r = RunProcess({ctl, "list"}, "", {"HOME=" + *tmp_ + "/nohome"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(
      Contains(r.err, "give --admin-endpoint HOST:PORT, set $OFFKEY_ADMIN_ENDPOINT"));

  // A configuration file with relative paths.
  const std::string config = Write(
      "offkeyctl.textproto", absl::StrCat("admin_endpoint: \"", primary_->AdminEndpoint(),
                                          "\"\nca_file: \"dev/ca.pem\"\n"
                                          "cert_file: \"dev/admin.pem\"\n"
                                          "key_file: \"dev/admin.key\"\n"));
  r = RunProcess({ctl, "--config", config, "list", "-o", "name"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "dev-p256\n"));
  // The environment, overriding nothing in particular.
  r = RunProcess({ctl, "list", "-o", "name"}, "",
                 {"OFFKEY_ADMIN_ENDPOINT=" + primary_->AdminEndpoint(),
                  "OFFKEY_TLS_CA=" + *state_ + "/ca.pem",
                  "OFFKEY_TLS_CERT=" + *state_ + "/admin.pem",
                  "OFFKEY_TLS_KEY=" + *state_ + "/admin.key"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A flag beats the configuration file: a port where nothing listens.
  r = RunProcess({ctl, "--config", config, "--admin-endpoint", "127.0.0.1:9", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err,
                       "cannot reach offkeyd's admin listener at '127.0.0.1:9' "
                       "(--admin-endpoint): Connection refused"));
  // A bad configuration file names its line.
  const std::string bad =
      Write("bad.textproto", "admin_endpoint: \"x\"\nca_fil: \"y\"\n");
  r = RunProcess({ctl, "--config", bad, "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(Contains(r.err, "bad.textproto:2:"));

  // Certificates: a CA that did not sign offkeyd's certificate; a client certificate
  // from a CA offkeyd does not trust; a missing file.
  const std::string other_key = *tmp_ + "/other.key", other_cert = *tmp_ + "/other.pem";
  ASSERT_EQ(RunProcess({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", other_key, "-out",
                        other_cert, "-subj", "/CN=stranger", "-days", "2"})
                .exit_code,
            0);
  RecordPrivateKeyPem("stranger key", ReadFileOrEmpty(other_key));
  r = Ctl({"--tls-ca", other_cert, "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "presented a server certificate that the CA file"));
  EXPECT_TRUE(Contains(r.err, "(--tls-ca) does not vouch for"));
  EXPECT_FALSE(
      absl::StrContains(r.err, "ssl_transport_security"));  // gRPC's log is quiet.
  r = Ctl({"--tls-cert", other_cert, "--tls-key", other_key, "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "refused the client certificate"));
  EXPECT_TRUE(Contains(r.err, "tls.client_ca_file"));
  r = Ctl({"--tls-cert", *tmp_ + "/absent.pem", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "cannot read the client certificate"));
  r = Ctl({"--server-name", "elsewhere.example", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "does not name 'elsewhere.example'"));
  // health reports an unreachable plane and fails.
  r = Ctl({"--endpoint", "127.0.0.1:9", "health"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.out, "UNREACHABLE"));
  EXPECT_TRUE(Contains(r.out, "SERVING"));
}

TEST_F(OffkeyctlTest, BashCompletion) {
  const std::string ctl = Runfile("client/cli/offkeyctl");
  ProcessResult script = Ctl({"completion", "bash"});
  ASSERT_EQ(script.exit_code, 0);
  const std::string path = Write("offkeyctl.bash", script.out);
  auto complete = [&](const std::string& words, int cword) {
    ProcessResult r = RunProcess(
        {"/bin/bash", "-c",
         absl::StrCat("source ", path, "; COMP_WORDS=(", words, "); COMP_CWORD=", cword,
                      "; _offkeyctl; printf '%s\\n' \"${COMPREPLY[@]}\"")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  EXPECT_TRUE(Contains(complete(ctl + " sched", 1), "schedule-destroy\n"));
  EXPECT_TRUE(Contains(complete(ctl + " create k --algorithm ec", 4), "ec-p384\n"));
  EXPECT_TRUE(Contains(complete(ctl + " list --state ''", 3), "pending-destruction\n"));
  EXPECT_TRUE(Contains(complete(ctl + " csr k --sub", 3), "--subject\n"));
  // Key names come from offkeyd, with the connection flags already typed.
  const std::string keys =
      complete(absl::StrCat(ctl, " --dev-dir ", *state_, " show dev-"), 4);
  EXPECT_TRUE(Contains(keys, "dev-p256\n"));
  EXPECT_TRUE(Contains(keys, "dev-rsa2048\n"));
}

// `offkeyd --dev` makes the ticket-key set "dev" and grants it to its terminator, so the
// writer works with --dev alone (README's quickstart); the admin identity gets no keys.
TEST_F(OffkeyctlTest, DevTicketKeySetWorksWithDevCredentials) {
  ProcessResult r = Ctl({"ticket-key-set", "list", "-o", "name"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "dev\n"));
  const std::string dir = *tmp_ + "/dev-tickets";
  r = Ctl({"ticket-keys", "dev", "--format", "nginx", "--out", dir});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(
      Contains(r.out, absl::StrCat("ssl_session_ticket_key ", dir, "/current.key;")));
  EXPECT_EQ(ReadFileOrEmpty(dir + "/next.key").size(), 80u);
  // The data plane with the admin identity: refused, and told what grant is missing.
  r = Ctl({"ticket-keys", "dev", "--format", "nginx", "--out", dir, "--data-tls-cert",
           *state_ + "/admin.pem", "--data-tls-key", *state_ + "/admin.key"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "identity 'spiffe://offkey.dev/admin'"));
  EXPECT_TRUE(Contains(r.err, "operation GET_TICKET_KEYS and ticket_key_sets: \"dev\""));
}

// Keys, labels, state and certificates live on the token: a second offkeyd process on the
// same token (started from the config file, as a production replica) sees what the first
// wrote and the reverse, and a restart loses nothing.
TEST_F(OffkeyctlTest, TwoProcessesOnOneTokenAgreeAndStateSurvivesRestart) {
  Create("shared", "ec-p256", {"-l", "site=a"});
  ASSERT_EQ(Ctl({"disable", "shared", "--yes"}).exit_code, 0);
  Create("served", "rsa-2048");

  Offkeyd replica;
  std::string why;
  ASSERT_TRUE(StartOffkeyd(&replica, "replica", /*dev=*/false, &why)) << why;
  auto at = [&](const Offkeyd& d, std::vector<std::string> args) {
    args.insert(args.begin(),
                {"--admin-endpoint", d.AdminEndpoint(), "--endpoint", d.Endpoint()});
    return Ctl(args);
  };
  ProcessResult r = at(replica, {"show", "shared", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto seen = FromJson<offkey::v1::GetKeyResponse>(r.out).key().info();
  EXPECT_EQ(seen.state(), offkey::v1::DISABLED);
  EXPECT_EQ(seen.labels().at("site"), "a");
  // Made on the replica, seen by the primary.
  r = at(replica, {"create", "from-replica", "--algorithm", "ed25519"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = at(*primary_, {"list", "-o", "name"});
  EXPECT_TRUE(Contains(r.out, "from-replica\n"));
  // The replica's data plane signs with a key the primary made.
  r = at(replica, {"sign", "served", "--tls13-transcript-hash", std::string(96, 'a')});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A state change on one shows on the other's admin plane at once.
  ASSERT_EQ(at(replica, {"enable", "shared"}).exit_code, 0);
  r = at(*primary_, {"show", "shared", "-o", "json"});
  EXPECT_EQ(FromJson<offkey::v1::GetKeyResponse>(r.out).key().info().state(),
            offkey::v1::ENABLED);
  EXPECT_EQ(replica.daemon.Stop(), 0);

  // Restart the primary: every key, label and state is still there.
  const std::string before = at(*primary_, {"list", "-o", "json"}).out;
  ASSERT_EQ(primary_->daemon.Stop(), 0);
  ASSERT_TRUE(StartOffkeyd(primary_, "primary", /*dev=*/true, &why)) << why;
  r = Ctl({"list", "-o", "json"});  // --dev finds the new ports through the state dir.
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, before);
  EXPECT_TRUE(Contains(r.out, "\"from-replica\""));
}

}  // namespace
}  // namespace offkey::tests
