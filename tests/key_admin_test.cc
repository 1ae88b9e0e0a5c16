// KeyAdmin end to end: a real offkeyd with its admin listener over a real SoftHSM2
// token; every RPC, its refusals, the data plane's view of the state it sets, CSRs
// checked by `openssl req -verify`, the destruction window with an injected clock, and
// state that survives a restart and is shared by two servers on one token.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "base/openssl_util.h"
#include "base/testing/secret_ledger.h"
#include "base/testing/text.h"
#include "hsm/testing/verify.h"
#include "offkey/v1/key_admin.grpc.pb.h"
#include "service/dev/dev_pki.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {

using ::offkey::testing::Contains;
using ::offkey::testing::OutputPath;
using ::offkey::testing::RecordPrivateKeyPem;
using ::offkey::testing::RecordSecret;
namespace {

using offkey::v1::KeyAdmin;
constexpr char kAdmin[] = "spiffe://test.offkey/admin";

// Runs a shell command; returns its exit status and output (stdout and stderr).
std::pair<int, std::string> Shell(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), output};
}

class KeyAdminTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    config->mutable_audit()->set_path(AuditPath());
  }
  service::ServerOptions Options() override {
    service::ServerOptions options;
    options.clock = [this] {
      offkey::MutexLock lock(&clock_mu_);
      return now_;
    };
    options.destruction_interval = absl::Milliseconds(50);
    return options;
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    admin_ = AdminStub(kAdmin);
    terminator_ = Stub(kTerminator);
  }
  void Advance(absl::Duration d) {
    offkey::MutexLock lock(&clock_mu_);
    now_ += d;
  }

  offkey::v1::KeyInfo Create(const std::string& name, offkey::v1::KeyAlgorithm algorithm,
                             const std::map<std::string, std::string>& labels = {}) {
    offkey::v1::CreateKeyRequest request;
    request.set_name(name);
    request.set_algorithm(algorithm);
    for (const auto& [k, v] : labels) (*request.mutable_labels())[k] = v;
    offkey::v1::CreateKeyResponse response;
    grpc::Status status = admin_->CreateKey(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
    return response.key();
  }
  static offkey::v1::KeyRef Ref(const std::string& name) {
    offkey::v1::KeyRef ref;
    ref.set_name(name);
    return ref;
  }
  offkey::v1::KeyDetails Get(const std::string& name, grpc::Status* status = nullptr) {
    offkey::v1::GetKeyRequest request;
    *request.mutable_key() = Ref(name);
    offkey::v1::GetKeyResponse response;
    grpc::Status s = admin_->GetKey(Context().get(), request, &response);
    if (status != nullptr) *status = s;
    return response.key();
  }
  // A TLS 1.3 CertificateVerify signature by `name` through the data plane.
  grpc::Status DataPlaneSign(const std::string& name, offkey::v1::SignatureScheme scheme,
                             std::string* message = nullptr,
                             std::string* signature = nullptr) {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name(name);
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.set_scheme(scheme);
    request.set_message(Tls13Input());
    offkey::v1::SignResponse response;
    grpc::Status status = terminator_->Sign(Context().get(), request, &response);
    if (message != nullptr) *message = request.message();
    if (signature != nullptr) *signature = response.signature();
    return status;
  }
  // Waits (bounded) until the data plane's answer for `name` has code `code`; the
  // catalog picks up admin changes at once in this process, within its TTL elsewhere.
  ::testing::AssertionResult DataPlaneBecomes(const std::string& name,
                                              offkey::v1::SignatureScheme scheme,
                                              grpc::StatusCode code) {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    grpc::Status status;
    while (absl::Now() < deadline) {
      status = DataPlaneSign(name, scheme);
      if (status.error_code() == code) return ::testing::AssertionSuccess();
      absl::SleepFor(absl::Milliseconds(100));
    }
    return ::testing::AssertionFailure()
           << name << ": data plane answers " << status.error_code() << " "
           << status.error_message() << ", wanted " << code;
  }

  offkey::Mutex clock_mu_;
  absl::Time now_ ABSL_GUARDED_BY(clock_mu_) = absl::FromUnixSeconds(1800000000);
  std::unique_ptr<KeyAdmin::Stub> admin_;
  std::unique_ptr<offkey::v1::KeyService::Stub> terminator_;
};

TEST_F(KeyAdminTest, CreatesEveryAlgorithmAndShowsIt) {
  const std::pair<const char*, offkey::v1::KeyAlgorithm> cases[] = {
      {"rsa-2048", offkey::v1::RSA_2048}, {"rsa-3072", offkey::v1::RSA_3072},
      {"rsa-4096", offkey::v1::RSA_4096}, {"ec-p256", offkey::v1::EC_P256},
      {"ec-p384", offkey::v1::EC_P384},   {"ed25519", offkey::v1::ED25519_KEY},
  };
  for (const auto& [name, algorithm] : cases) {
    SCOPED_TRACE(name);
    offkey::v1::KeyInfo key = Create(name, algorithm, {{"team", "edge"}});
    EXPECT_EQ(key.algorithm(), algorithm);
    EXPECT_EQ(key.state(), offkey::v1::ENABLED);
    EXPECT_EQ(key.usage(), offkey::v1::TLS_SERVER);  // The restrictive default.
    EXPECT_EQ(key.key_id().size(), 20u);
    EXPECT_EQ(key.key_id(), key.ski());
    EXPECT_EQ(key.create_time(), 1800000000);
    offkey::v1::KeyDetails details = Get(name);
    EXPECT_EQ(details.info().labels().at("team"), "edge");
    // The PEM public key is the SPKI.
    BIO* bio = BIO_new_mem_buf(details.public_key_pem().data(),
                               static_cast<int>(details.public_key_pem().size()));
    EvpPkeyPtr pub(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
    ASSERT_NE(pub, nullptr);
    EXPECT_EQ(SpkiDer(pub.get()), key.public_key_spki());
    EXPECT_TRUE(details.certificate_chain().empty());
  }
  // A new key signs on the data plane at once.
  EXPECT_TRUE(DataPlaneSign("ec-p256", offkey::v1::ECDSA_SECP256R1_SHA256).ok());

  offkey::v1::CreateKeyRequest request;
  offkey::v1::CreateKeyResponse response;
  request.set_name("ec-p256");
  request.set_algorithm(offkey::v1::EC_P256);
  EXPECT_EQ(admin_->CreateKey(Context().get(), request, &response).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
  request.set_name("-bad name");
  grpc::Status bad = admin_->CreateKey(Context().get(), request, &response);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(bad.error_message(), "name"));
  request.set_name("fine");
  request.set_algorithm(offkey::v1::KEY_ALGORITHM_UNSPECIFIED);
  EXPECT_TRUE(
      Contains(admin_->CreateKey(Context().get(), request, &response).error_message(),
               "algorithm: required"));
  request.set_algorithm(offkey::v1::EC_P256);
  (*request.mutable_labels())["Bad Key"] = "x";
  EXPECT_TRUE(
      Contains(admin_->CreateKey(Context().get(), request, &response).error_message(),
               "labels: key 'Bad Key'"));
}

TEST_F(KeyAdminTest, ImportsPkcs8PemDerAndEncryptedAndRefusesTheRest) {
  // One OpenSSL key per form (a token holds a key once); each imported key must sign
  // verifiably on the data plane.
  const std::string passphrase = "correct horse battery staple";
  RecordSecret("import passphrase", passphrase);
  auto encode = [&](EVP_PKEY* key, bool der, const EVP_CIPHER* cipher) {
    BIO* bio = BIO_new(BIO_s_mem());
    if (der) {
      i2d_PKCS8PrivateKey_bio(bio, key, cipher, const_cast<char*>(passphrase.data()),
                              static_cast<int>(passphrase.size()), nullptr, nullptr);
    } else {
      PEM_write_bio_PKCS8PrivateKey(bio, key, cipher, passphrase.data(),
                                    static_cast<int>(passphrase.size()), nullptr,
                                    nullptr);
    }
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
    std::string out(data, static_cast<size_t>(len));
    BIO_free(bio);
    return out;
  };
  const struct {
    const char* name;
    bool der;
    bool encrypted;
  } forms[] = {
      {"pem", false, false},
      {"der", true, false},
      {"encrypted-pem", false, true},
      {"encrypted-der", true, true},
  };
  std::string plain_pem, encrypted_pem, encrypted_der;
  for (const auto& form : forms) {
    SCOPED_TRACE(form.name);
    EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    ASSERT_NE(key, nullptr);
    RecordPrivateKeyPem("imported key", encode(key.get(), false, nullptr));
    const std::string spki = SpkiDer(key.get());
    const std::string input =
        encode(key.get(), form.der, form.encrypted ? EVP_aes_256_cbc() : nullptr);
    if (!form.der && !form.encrypted) plain_pem = input;
    if (!form.der && form.encrypted) encrypted_pem = input;
    if (form.der && form.encrypted) encrypted_der = input;

    offkey::v1::ImportKeyRequest request;
    request.set_name(absl::StrCat("imported-", form.name));
    request.set_private_key(input);
    request.set_passphrase(form.encrypted ? passphrase : "");
    offkey::v1::ImportKeyResponse response;
    grpc::Status status = admin_->ImportKey(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.key().public_key_spki(), spki);
    std::string message, signature;
    ASSERT_TRUE(DataPlaneSign(request.name(), offkey::v1::ECDSA_SECP256R1_SHA256,
                              &message, &signature)
                    .ok());
    EXPECT_TRUE(hsm::testing::VerifyWithOpenSsl(
                    spki, {hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha256},
                    message, signature)
                    .ok());
  }
  // The same key again is refused.
  offkey::v1::ImportKeyRequest again;
  again.set_name("imported-again");
  again.set_private_key(plain_pem);
  offkey::v1::ImportKeyResponse again_response;
  EXPECT_EQ(admin_->ImportKey(Context().get(), again, &again_response).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  // Refusals: never echoing the key or the passphrase.
  EvpPkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  const std::string rsa1024 = encode(rsa.get(), false, nullptr);
  RecordPrivateKeyPem("rsa-1024 key", rsa1024);
  std::string legacy = plain_pem;
  // A legacy (non-PKCS#8) PEM type: only the label matters, it is refused before parsing.
  legacy = absl::StrReplaceAll(legacy, {{absl::StrCat("BEGIN ", PEM_STRING_PKCS8INF),
                                         absl::StrCat("BEGIN EC ", PEM_STRING_PKCS8INF)},
                                        {absl::StrCat("END ", PEM_STRING_PKCS8INF),
                                         absl::StrCat("END EC ", PEM_STRING_PKCS8INF)}});
  const struct {
    const char* name;
    std::string input;
    std::string passphrase;
    const char* part;
  } refusals[] = {
      {"wrong passphrase", encrypted_pem, "wrong horse", "wrong passphrase"},
      {"no passphrase", encrypted_der, "", "give its passphrase"},
      {"legacy PEM", legacy, "", "openssl pkcs8 -topk8"},
      {"RSA-1024", rsa1024, "", "2048, 3072 or 4096"},
      {"garbage", "not a key at all", "", "neither PEM nor DER"},
      {"empty", "", "", "private_key: required"},
  };
  for (const auto& refusal : refusals) {
    SCOPED_TRACE(refusal.name);
    offkey::v1::ImportKeyRequest request;
    request.set_name("refused");
    request.set_private_key(refusal.input);
    request.set_passphrase(refusal.passphrase);
    offkey::v1::ImportKeyResponse response;
    grpc::Status status = admin_->ImportKey(Context().get(), request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(Contains(status.error_message(), refusal.part));
    EXPECT_EQ(status.error_message().find(passphrase), std::string::npos);
    EXPECT_EQ(status.error_message().find("horse"), std::string::npos);
  }
}

TEST_F(KeyAdminTest, ListsByLabelStateAndAlgorithmAndUpdatesLabelsAndUsage) {
  Create("a", offkey::v1::EC_P256, {{"team", "edge"}, {"env", "prod"}});
  Create("b", offkey::v1::EC_P384, {{"team", "edge"}});
  Create("c", offkey::v1::ED25519_KEY, {{"team", "core"}});
  auto names = [&](const offkey::v1::AdminListKeysRequest& request) {
    offkey::v1::AdminListKeysResponse response;
    EXPECT_TRUE(admin_->ListKeys(Context().get(), request, &response).ok());
    std::string out;
    for (const auto& key : response.keys()) out += key.name() + " ";
    return out;
  };
  offkey::v1::AdminListKeysRequest all;
  EXPECT_EQ(names(all), "a b c ");
  offkey::v1::AdminListKeysRequest edge;
  (*edge.mutable_label_selector())["team"] = "edge";
  EXPECT_EQ(names(edge), "a b ");
  (*edge.mutable_label_selector())["env"] = "prod";
  EXPECT_EQ(names(edge), "a ");
  offkey::v1::AdminListKeysRequest p384;
  p384.set_algorithm(offkey::v1::EC_P384);
  EXPECT_EQ(names(p384), "b ");

  offkey::v1::DisableKeyRequest disable;
  *disable.mutable_key() = Ref("c");
  offkey::v1::DisableKeyResponse disabled;
  ASSERT_TRUE(admin_->DisableKey(Context().get(), disable, &disabled).ok());
  offkey::v1::AdminListKeysRequest by_state;
  by_state.set_state(offkey::v1::DISABLED);
  EXPECT_EQ(names(by_state), "c ");

  // Merge, remove, replace; conflicts refused.
  offkey::v1::UpdateKeyRequest update;
  *update.mutable_key() = Ref("a");
  (*update.mutable_labels())["tier"] = "1";
  update.add_remove_labels("env");
  update.set_usage(offkey::v1::GENERAL_SIGNING);
  offkey::v1::UpdateKeyResponse updated;
  ASSERT_TRUE(admin_->UpdateKey(Context().get(), update, &updated).ok());
  EXPECT_EQ(updated.key().labels().size(), 2u);
  EXPECT_EQ(updated.key().labels().at("tier"), "1");
  EXPECT_EQ(updated.key().usage(), offkey::v1::GENERAL_SIGNING);
  EXPECT_EQ(Get("a").info().usage(), offkey::v1::GENERAL_SIGNING);
  update.Clear();
  *update.mutable_key() = Ref("a");
  update.set_replace_labels(true);
  (*update.mutable_labels())["only"] = "this";
  ASSERT_TRUE(admin_->UpdateKey(Context().get(), update, &updated).ok());
  EXPECT_EQ(updated.key().labels().size(), 1u);
  update.add_remove_labels("only");
  EXPECT_EQ(admin_->UpdateKey(Context().get(), update, &updated).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  update.set_replace_labels(false);
  EXPECT_TRUE(
      Contains(admin_->UpdateKey(Context().get(), update, &updated).error_message(),
               "both in labels and in remove_labels"));
}

TEST_F(KeyAdminTest, DisabledAndPendingKeysAreRefusedByTheDataPlane) {
  Create("web", offkey::v1::EC_P256);
  const auto scheme = offkey::v1::ECDSA_SECP256R1_SHA256;
  ASSERT_TRUE(DataPlaneSign("web", scheme).ok());
  offkey::v1::DisableKeyRequest disable;
  *disable.mutable_key() = Ref("web");
  offkey::v1::DisableKeyResponse disabled;
  ASSERT_TRUE(admin_->DisableKey(Context().get(), disable, &disabled).ok());
  EXPECT_EQ(disabled.key().state(), offkey::v1::DISABLED);
  EXPECT_TRUE(DataPlaneBecomes("web", scheme, grpc::StatusCode::FAILED_PRECONDITION));
  ASSERT_TRUE(
      admin_->DisableKey(Context().get(), disable, &disabled).ok());  // Idempotent.

  offkey::v1::EnableKeyRequest enable;
  *enable.mutable_key() = Ref("web");
  offkey::v1::EnableKeyResponse enabled;
  ASSERT_TRUE(admin_->EnableKey(Context().get(), enable, &enabled).ok());
  EXPECT_TRUE(DataPlaneBecomes("web", scheme, grpc::StatusCode::OK));

  offkey::v1::ScheduleKeyDestructionRequest schedule;
  *schedule.mutable_key() = Ref("web");
  offkey::v1::ScheduleKeyDestructionResponse scheduled;
  ASSERT_TRUE(admin_->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).ok());
  EXPECT_EQ(scheduled.key().state(), offkey::v1::PENDING_DESTRUCTION);
  EXPECT_EQ(scheduled.key().destroy_time(), 1800000000 + 7 * 24 * 3600);  // Default.
  EXPECT_TRUE(DataPlaneBecomes("web", scheme, grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_EQ(
      admin_->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(admin_->EnableKey(Context().get(), enable, &enabled).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  offkey::v1::CancelKeyDestructionRequest cancel;
  *cancel.mutable_key() = Ref("web");
  offkey::v1::CancelKeyDestructionResponse cancelled;
  ASSERT_TRUE(admin_->CancelKeyDestruction(Context().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.key().state(), offkey::v1::DISABLED);
  EXPECT_EQ(cancelled.key().destroy_time(), 0);
  EXPECT_EQ(
      admin_->CancelKeyDestruction(Context().get(), cancel, &cancelled).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(KeyAdminTest, DestructionHappensWhenTheWindowEndsAndDestroyNeedsForce) {
  Create("old", offkey::v1::EC_P256);
  Create("keep", offkey::v1::EC_P256);
  offkey::v1::ScheduleKeyDestructionRequest schedule;
  *schedule.mutable_key() = Ref("old");
  schedule.set_pending_window_seconds(3600);
  offkey::v1::ScheduleKeyDestructionResponse scheduled;
  // Under 24 hours only with force.
  EXPECT_EQ(
      admin_->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  schedule.set_force(true);
  ASSERT_TRUE(admin_->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).ok());
  schedule.set_pending_window_seconds(-1);
  EXPECT_EQ(
      admin_->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);

  Advance(absl::Seconds(3599));
  absl::SleepFor(absl::Milliseconds(300));  // Several sweeps (every 50 ms) run.
  grpc::Status status;
  Get("old", &status);
  EXPECT_TRUE(status.ok()) << "destroyed before its window ended";
  Advance(absl::Seconds(2));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    absl::SleepFor(absl::Milliseconds(50));
    Get("old", &status);
  } while (status.ok() && absl::Now() < deadline);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  Get("keep", &status);
  EXPECT_TRUE(status.ok());

  offkey::v1::DestroyKeyRequest destroy;
  *destroy.mutable_key() = Ref("keep");
  offkey::v1::DestroyKeyResponse destroyed;
  grpc::Status refused = admin_->DestroyKey(Context().get(), destroy, &destroyed);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(refused.error_message(), "force"));
  Get("keep", &status);
  EXPECT_TRUE(status.ok()) << "a refused destroy changed something";
  destroy.set_force(true);
  ASSERT_TRUE(admin_->DestroyKey(Context().get(), destroy, &destroyed).ok());
  EXPECT_EQ(destroyed.name(), "keep");
  EXPECT_EQ(destroyed.key_id().size(), 20u);
  Get("keep", &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(DataPlaneBecomes("keep", offkey::v1::ECDSA_SECP256R1_SHA256,
                               grpc::StatusCode::PERMISSION_DENIED));
}

TEST_F(KeyAdminTest, CsrsAreSignedInTheHsmAndVerifyWithOpenSsl) {
  for (const auto& [name, algorithm] :
       {std::pair<const char*, offkey::v1::KeyAlgorithm>{"csr-rsa", offkey::v1::RSA_2048},
        {"csr-p256", offkey::v1::EC_P256},
        {"csr-p384", offkey::v1::EC_P384},
        {"csr-ed25519", offkey::v1::ED25519_KEY}}) {
    SCOPED_TRACE(name);
    Create(name, algorithm);
    offkey::v1::CreateCsrRequest request;
    *request.mutable_key() = Ref(name);
    request.set_subject("CN=www.example.com,O=Example\\, Inc.,C=DE");
    request.add_dns_names("www.example.com");
    request.add_dns_names("*.example.com");
    request.add_ip_addresses("192.0.2.7");
    request.add_uris("spiffe://example.org/edge");
    offkey::v1::CreateCsrResponse response;
    grpc::Status status = admin_->CreateCsr(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    const std::string file = OutputPath(absl::StrCat(name, ".csr"));
    std::ofstream(file) << response.csr_pem();
    auto [rc, out] = Shell("openssl req -in " + file + " -verify -noout -text");
    EXPECT_EQ(rc, 0) << out;
    EXPECT_TRUE(Contains(out, "verify OK")) << out;
    EXPECT_TRUE(Contains(out, "CN = www.example.com"));
    EXPECT_TRUE(Contains(out, "O = \"Example, Inc.\""));
    EXPECT_TRUE(Contains(out, "DNS:*.example.com"));
    EXPECT_TRUE(Contains(out, "IP Address:192.0.2.7"));
    EXPECT_TRUE(Contains(out, "URI:spiffe://example.org/edge"));
  }
  // Refusals.
  offkey::v1::CreateCsrRequest bad;
  *bad.mutable_key() = Ref("csr-p256");
  offkey::v1::CreateCsrResponse response;
  bad.set_subject("XX=nope");
  EXPECT_TRUE(Contains(admin_->CreateCsr(Context().get(), bad, &response).error_message(),
                       "attribute type 'XX'"));
  bad.set_subject("");
  EXPECT_TRUE(Contains(admin_->CreateCsr(Context().get(), bad, &response).error_message(),
                       "may be empty only when"));
  bad.set_subject("CN=x");
  bad.add_ip_addresses("999.1.1.1");
  EXPECT_TRUE(Contains(admin_->CreateCsr(Context().get(), bad, &response).error_message(),
                       "ip_addresses: '999.1.1.1'"));
  bad.clear_ip_addresses();
  bad.set_scheme(offkey::v1::RSA_PSS_RSAE_SHA256);
  EXPECT_EQ(admin_->CreateCsr(Context().get(), bad, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(KeyAdminTest, AttachesOnlyMatchingOrderedValidChains) {
  offkey::v1::KeyInfo key = Create("site", offkey::v1::EC_P256);
  offkey::v1::KeyInfo other = Create("other", offkey::v1::EC_P256);
  auto issue = [&](const std::string& spki, absl::Time not_before, absl::Time not_after) {
    service::dev::CertSpec spec;
    spec.common_name = "site.example";
    spec.dns_names = {"site.example"};
    spec.server_auth = true;
    spec.public_key_spki = spki;
    spec.not_before = not_before;
    spec.not_after = not_after;
    auto cert = service::dev::Issue(ca_, spec);
    EXPECT_TRUE(cert.ok());
    return cert->cert_pem;
  };
  // The server's clock is the injected one: validity is judged against it.
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  const std::string good =
      issue(key.public_key_spki(), now - absl::Hours(1), now + absl::Hours(24 * 90));
  auto attach = [&](const std::string& pem, bool force = false) {
    offkey::v1::AttachCertificateRequest request;
    *request.mutable_key() = Ref("site");
    request.set_chain_pem(pem);
    request.set_force(force);
    offkey::v1::AttachCertificateResponse response;
    grpc::Status status = admin_->AttachCertificate(Context().get(), request, &response);
    return std::make_pair(status, response);
  };
  auto [mismatch, unused1] =
      attach(issue(other.public_key_spki(), now - absl::Hours(1), now + absl::Hours(1)) +
             ca_.cert_pem);
  EXPECT_EQ(mismatch.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Contains(mismatch.error_message(), "for another key"));
  auto [misordered, unused2] = attach(good + TestCa("unrelated CA").cert_pem);
  EXPECT_EQ(misordered.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(Contains(misordered.error_message(), "is not issued and signed by"));
  const std::string expired =
      issue(key.public_key_spki(), now - absl::Hours(48), now - absl::Hours(24));
  auto [refused, unused3] = attach(expired + ca_.cert_pem);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Contains(refused.error_message(), "expired"));
  auto [forced, unused4] = attach(expired + ca_.cert_pem, true);
  EXPECT_TRUE(forced.ok()) << forced.error_message();
  auto [bad_block, unused5] =
      attach(good + "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n");
  EXPECT_TRUE(Contains(bad_block.error_message(), "only CERTIFICATE blocks"));

  auto [ok, attached] = attach(good + ca_.cert_pem);
  ASSERT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(attached.key().certificate().dns_names(0), "site.example");
  EXPECT_EQ(Get("site").certificate_chain_size(), 2);
  // The data plane serves the chain.
  offkey::v1::GetCertificateRequest get;
  get.mutable_key()->set_name("site");
  offkey::v1::GetCertificateResponse chain;
  ASSERT_TRUE(terminator_->GetCertificate(Context().get(), get, &chain).ok());
  EXPECT_EQ(chain.certificate_chain_size(), 2);
  EXPECT_EQ(chain.certificate_chain(0), *service::dev::PemToDer(good));
}

TEST_F(KeyAdminTest, EveryAdminCallRefusesTheTerminator) {
  Create("k", offkey::v1::EC_P256);
  auto stranger = AdminStub(kTerminator);
  const std::vector<std::pair<const char*, std::function<grpc::Status()>>> calls = {
      {"CreateKey",
       [&] {
         offkey::v1::CreateKeyRequest r;
         r.set_name("x");
         r.set_algorithm(offkey::v1::EC_P256);
         offkey::v1::CreateKeyResponse out;
         return stranger->CreateKey(Context().get(), r, &out);
       }},
      {"ImportKey",
       [&] {
         offkey::v1::ImportKeyRequest r;
         r.set_name("x");
         offkey::v1::ImportKeyResponse out;
         return stranger->ImportKey(Context().get(), r, &out);
       }},
      {"ListKeys",
       [&] {
         offkey::v1::AdminListKeysResponse out;
         return stranger->ListKeys(Context().get(), {}, &out);
       }},
      {"GetKey",
       [&] {
         offkey::v1::GetKeyRequest r;
         *r.mutable_key() = Ref("k");
         offkey::v1::GetKeyResponse out;
         return stranger->GetKey(Context().get(), r, &out);
       }},
      {"UpdateKey",
       [&] {
         offkey::v1::UpdateKeyRequest r;
         *r.mutable_key() = Ref("k");
         offkey::v1::UpdateKeyResponse out;
         return stranger->UpdateKey(Context().get(), r, &out);
       }},
      {"EnableKey",
       [&] {
         offkey::v1::EnableKeyRequest r;
         *r.mutable_key() = Ref("k");
         offkey::v1::EnableKeyResponse out;
         return stranger->EnableKey(Context().get(), r, &out);
       }},
      {"DisableKey",
       [&] {
         offkey::v1::DisableKeyRequest r;
         *r.mutable_key() = Ref("k");
         offkey::v1::DisableKeyResponse out;
         return stranger->DisableKey(Context().get(), r, &out);
       }},
      {"ScheduleKeyDestruction",
       [&] {
         offkey::v1::ScheduleKeyDestructionRequest r;
         *r.mutable_key() = Ref("k");
         offkey::v1::ScheduleKeyDestructionResponse out;
         return stranger->ScheduleKeyDestruction(Context().get(), r, &out);
       }},
      {"CancelKeyDestruction",
       [&] {
         offkey::v1::CancelKeyDestructionRequest r;
         *r.mutable_key() = Ref("k");
         offkey::v1::CancelKeyDestructionResponse out;
         return stranger->CancelKeyDestruction(Context().get(), r, &out);
       }},
      {"DestroyKey",
       [&] {
         offkey::v1::DestroyKeyRequest r;
         *r.mutable_key() = Ref("k");
         r.set_force(true);
         offkey::v1::DestroyKeyResponse out;
         return stranger->DestroyKey(Context().get(), r, &out);
       }},
      {"CreateCsr",
       [&] {
         offkey::v1::CreateCsrRequest r;
         *r.mutable_key() = Ref("k");
         r.set_subject("CN=x");
         offkey::v1::CreateCsrResponse out;
         return stranger->CreateCsr(Context().get(), r, &out);
       }},
      {"AttachCertificate",
       [&] {
         offkey::v1::AttachCertificateRequest r;
         *r.mutable_key() = Ref("k");
         r.set_chain_pem(ca_.cert_pem);
         offkey::v1::AttachCertificateResponse out;
         return stranger->AttachCertificate(Context().get(), r, &out);
       }},
  };
  for (const auto& [name, call] : calls) {
    grpc::Status status = call();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << name;
    EXPECT_TRUE(Contains(status.error_message(), "admin_identities")) << name;
  }
  // Nothing changed: the key is still there and enabled.
  EXPECT_EQ(Get("k").info().state(), offkey::v1::ENABLED);
  // Admin is a separate role: the admin identity has no data-plane rights.
  auto admin_on_data_plane = Stub(kAdmin);
  offkey::v1::SignRequest sign;
  sign.mutable_key()->set_name("k");
  sign.mutable_context()->set_version(offkey::v1::TLS_1_3);
  sign.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
  sign.set_message(Tls13Input());
  offkey::v1::SignResponse signed_response;
  EXPECT_EQ(
      admin_on_data_plane->Sign(Context().get(), sign, &signed_response).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
}

// A CA that signs whatever subject it is asked for must not thereby mint the
// admin. A certificate naming the admin's SPIFFE ID only in its CN (or a DNS SAN), with
// no URI SAN, has no usable identity: offkeyd refuses it (UNAUTHENTICATED, before any
// role check) and does nothing.
TEST_F(KeyAdminTest, ASpiffeIdOutsideAUriSanIsNotTheAdmin) {
  Create("k", offkey::v1::EC_P256);
  service::dev::CertSpec in_cn;
  in_cn.common_name = kAdmin;
  service::dev::CertSpec in_dns;
  in_dns.common_name = "client";
  in_dns.dns_names = {kAdmin};
  for (const service::dev::CertSpec& spec : {in_cn, in_dns}) {
    auto spoof = KeyAdmin::NewStub(Channel(spec, ca_, server_->admin_port()));
    offkey::v1::DisableKeyRequest disable;
    *disable.mutable_key() = Ref("k");
    offkey::v1::DisableKeyResponse out;
    grpc::Status status = spoof->DisableKey(Context().get(), disable, &out);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << status.error_message();
    EXPECT_TRUE(Contains(status.error_message(), "looks like a URI"))
        << status.error_message();
  }
  EXPECT_EQ(Get("k").info().state(), offkey::v1::ENABLED);
}

TEST_F(KeyAdminTest, StateSurvivesARestartAndTwoServersOnOneTokenAgree) {
  Create("durable", offkey::v1::EC_P256, {{"team", "edge"}});
  offkey::v1::DisableKeyRequest disable;
  *disable.mutable_key() = Ref("durable");
  offkey::v1::DisableKeyResponse disabled;
  ASSERT_TRUE(admin_->DisableKey(Context().get(), disable, &disabled).ok());

  // A second server over its own store on the same token (as a second replica is).
  auto second_store = hsm::pkcs11::Pkcs11KeyStore::Create(token_.Options());
  ASSERT_TRUE(second_store.ok()) << second_store.status();
  auto second = service::OffkeyServer::Start(config_, second_store->get(), Options());
  ASSERT_TRUE(second.ok()) << second.status();
  auto second_admin =
      offkey::v1::KeyAdmin::NewStub(Channel(kAdmin, ca_, (*second)->admin_port()));
  offkey::v1::GetKeyRequest get;
  *get.mutable_key() = Ref("durable");
  offkey::v1::GetKeyResponse seen;
  ASSERT_TRUE(second_admin->GetKey(Context().get(), get, &seen).ok());
  EXPECT_EQ(seen.key().info().state(), offkey::v1::DISABLED);
  EXPECT_EQ(seen.key().info().labels().at("team"), "edge");
  // A change through the second is seen by the first.
  offkey::v1::EnableKeyRequest enable;
  *enable.mutable_key() = Ref("durable");
  offkey::v1::EnableKeyResponse enabled;
  ASSERT_TRUE(second_admin->EnableKey(Context().get(), enable, &enabled).ok());
  EXPECT_EQ(Get("durable").info().state(), offkey::v1::ENABLED);
  EXPECT_TRUE(DataPlaneBecomes("durable", offkey::v1::ECDSA_SECP256R1_SHA256,
                               grpc::StatusCode::OK));

  // Restart the first: nothing is lost.
  server_->Shutdown(absl::Seconds(1));
  server_.reset();
  (*second)->Shutdown(absl::Seconds(1));
  auto restarted = service::OffkeyServer::Start(config_, store_.get(), Options());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  server_ = *std::move(restarted);
  admin_ = AdminStub(kAdmin);
  offkey::v1::KeyDetails after = Get("durable");
  EXPECT_EQ(after.info().state(), offkey::v1::ENABLED);
  EXPECT_EQ(after.info().labels().at("team"), "edge");
  EXPECT_EQ(after.info().create_time(), 1800000000);
}

// The destruction time lives on the token: a window that ends while offkeyd is down is
// honoured by the next offkeyd to start.
TEST_F(KeyAdminTest, DestructionWindowEndingDuringARestartIsHonoured) {
  Create("doomed", offkey::v1::EC_P256);
  offkey::v1::ScheduleKeyDestructionRequest schedule;
  *schedule.mutable_key() = Ref("doomed");
  schedule.set_pending_window_seconds(3600);
  schedule.set_force(true);
  offkey::v1::ScheduleKeyDestructionResponse scheduled;
  ASSERT_TRUE(admin_->ScheduleKeyDestruction(Context().get(), schedule, &scheduled).ok());

  server_->Shutdown(absl::Seconds(1));
  server_.reset();
  Advance(absl::Seconds(3601));  // The window ends while no offkeyd runs.
  auto restarted = service::OffkeyServer::Start(config_, store_.get(), Options());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  server_ = *std::move(restarted);
  admin_ = AdminStub(kAdmin);
  grpc::Status status;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    absl::SleepFor(absl::Milliseconds(50));
    Get("doomed", &status);
  } while (status.ok() && absl::Now() < deadline);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace offkey::tests
