// Changing offkeyd without a restart, against a real offkeyd and SoftHSM2: the policy and
// trust bundles reloaded when the config file or a bundle file changes; a bad new config
// refused with a log line and the old one kept; server certificate and client CA files
// rotated the way Kubernetes swaps secret volumes, with clients connected throughout.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/mutex.h"
#include "google/protobuf/text_format.h"
#include "service/config/config_loader.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

size_t Count(const std::string& text, absl::string_view what) {
  return std::vector<absl::string_view>(absl::StrSplit(text, what)).size() - 1;
}

void WriteFile(const std::string& path, absl::string_view data) {
  // Written beside and renamed, so the server never reads half a file.
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.close();
  ASSERT_EQ(rename(tmp.c_str(), path.c_str()), 0) << path;
}

class ReloadTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    // The file offkeyd re-reads: the fixture's configuration, written out.
    config_file_ = dir_ + "/offkeyd.textproto";
    config->mutable_reload()->set_interval_seconds(1);
    offkey::v1::Grant* verify = config->mutable_policy()->add_grants();
    verify->add_identities(kTerminator);
    verify->add_operations(offkey::v1::VERIFY_CLIENT);
    // Trust bundle "clients": CA A for now.
    client_ca_a_ = TestCa("clients CA A");
    client_ca_b_ = TestCa("clients CA B");
    WriteFile(dir_ + "/clients.pem", client_ca_a_.cert_pem);
    offkey::v1::TrustBundle* bundle = config->add_trust_bundles();
    bundle->set_name("clients");
    bundle->set_ca_file(dir_ + "/clients.pem");
    WriteConfig(*config);
  }
  service::ServerOptions Options() override {
    service::ServerOptions options;
    options.reload_config = [this] {
      return service::config::LoadConfigFile(config_file_);
    };
    options.log = [this](const std::string& line) {
      offkey::MutexLock lock(&log_mu_);
      log_ += line + "\n";
    };
    return options;
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    ec_ = AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
  }

  void WriteConfig(const offkey::v1::ServerConfig& config) {
    std::string text;
    ASSERT_TRUE(google::protobuf::TextFormat::PrintToString(config, &text));
    WriteFile(config_file_, text);
  }
  std::string Log() {
    offkey::MutexLock lock(&log_mu_);
    return log_;
  }

  grpc::StatusCode GetCertificateAs(const std::string& identity) {
    offkey::v1::GetCertificateRequest request;
    request.mutable_key()->set_name("web-ec");
    offkey::v1::GetCertificateResponse response;
    return Stub(identity)
        ->GetCertificate(Context().get(), request, &response)
        .error_code();
  }

  // VerifyClient of a fresh client certificate from `ca` against bundle "clients".
  offkey::v1::VerifyResult VerifyClientFrom(const service::dev::IssuedCert& ca) {
    service::dev::CertSpec spec;
    spec.common_name = "browser";
    spec.uris = {"spiffe://clients.test/browser"};
    spec.client_auth = true;
    auto client = service::dev::Issue(ca, spec);
    EXPECT_TRUE(client.ok());
    offkey::v1::VerifyClientRequest request;
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.add_certificate_chain(*service::dev::PemToDer(client->cert_pem));
    request.set_trust_bundle("clients");
    request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
    const std::string content = Tls13ClientInput();
    request.set_signed_content(content);
    request.set_signature(SignWithPem(client->key_pem.view(), content));
    offkey::v1::VerifyClientResponse response;
    grpc::Status status =
        Stub(kTerminator)->VerifyClient(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.result();
  }

  std::string config_file_;
  service::dev::IssuedCert client_ca_a_, client_ca_b_;
  hsm::KeyInfo ec_;
  offkey::Mutex log_mu_;
  std::string log_ ABSL_GUARDED_BY(log_mu_);
};

TEST_F(ReloadTest, PolicyChangeTakesEffectWithoutRestart) {
  EXPECT_EQ(GetCertificateAs(kStranger), grpc::PERMISSION_DENIED);
  offkey::v1::ServerConfig next = config_;
  offkey::v1::Grant* grant = next.mutable_policy()->add_grants();
  grant->add_identities(kStranger);
  grant->add_operations(offkey::v1::GET_CERTIFICATE);
  grant->mutable_keys()->add_names("web-ec");
  WriteConfig(next);
  // The background pass (every second) picks it up; no call to ReloadNow.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (GetCertificateAs(kStranger) != grpc::OK && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(GetCertificateAs(kStranger), grpc::OK);
  EXPECT_TRUE(absl::StrContains(Log(), "configuration reloaded: policy")) << Log();
}

TEST_F(ReloadTest, BadConfigIsRefusedAndTheOldOneKept) {
  WriteFile(config_file_, "policy { grants { identities: \"*\" } }\nlisten_adress: 1\n");
  absl::Status refused = server_->ReloadNow();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_TRUE(absl::StrContains(Log(), "configuration reload refused")) << Log();
  EXPECT_TRUE(absl::StrContains(Log(), "offkeyd.textproto:2")) << "names the line";
  EXPECT_EQ(GetCertificateAs(kTerminator), grpc::OK);
  EXPECT_EQ(GetCertificateAs(kStranger), grpc::PERMISSION_DENIED);

  // A config that parses but whose trust bundle file is missing: refused whole, so the
  // policy change in it does not apply either.
  offkey::v1::ServerConfig next = config_;
  next.mutable_trust_bundles(0)->set_ca_file(dir_ + "/missing.pem");
  offkey::v1::Grant* grant = next.mutable_policy()->add_grants();
  grant->add_identities(kStranger);
  grant->add_operations(offkey::v1::GET_CERTIFICATE);
  grant->mutable_keys()->add_names("web-ec");
  WriteConfig(next);
  EXPECT_FALSE(server_->ReloadNow().ok());
  EXPECT_EQ(GetCertificateAs(kStranger), grpc::PERMISSION_DENIED);
  // Refusals of the same problem are logged once, not every pass.
  const size_t refusals = Count(Log(), "reload refused");
  EXPECT_FALSE(server_->ReloadNow().ok());
  EXPECT_EQ(Count(Log(), "reload refused"), refusals);
}

TEST_F(ReloadTest, TrustBundleFileChangeIsPickedUp) {
  EXPECT_EQ(VerifyClientFrom(client_ca_a_), offkey::v1::VERIFIED);
  EXPECT_EQ(VerifyClientFrom(client_ca_b_), offkey::v1::UNTRUSTED_ISSUER);
  WriteFile(dir_ + "/clients.pem", client_ca_b_.cert_pem);  // Same config, new file.
  ASSERT_TRUE(server_->ReloadNow().ok());
  EXPECT_EQ(VerifyClientFrom(client_ca_b_), offkey::v1::VERIFIED);
  EXPECT_EQ(VerifyClientFrom(client_ca_a_), offkey::v1::UNTRUSTED_ISSUER);
  EXPECT_TRUE(absl::StrContains(Log(), "trust_bundles")) << Log();
}

TEST_F(ReloadTest, RestartOnlyChangesAreReportedNotApplied) {
  offkey::v1::ServerConfig next = config_;
  next.mutable_workers()->set_queue_depth(7);
  WriteConfig(next);
  ASSERT_TRUE(server_->ReloadNow().ok());
  ASSERT_TRUE(server_->ReloadNow().ok());
  EXPECT_EQ(Count(Log(), "next restart"), 1u) << Log();
}

// The DHE switch (handshake.allow_rfc7919_dhe) is reloaded live both ways.
TEST_F(ReloadTest, HandshakeSwitchTakesEffectWithoutRestart) {
  AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
  offkey::v1::SignRequest request;
  request.mutable_key()->set_name("web-rsa");
  request.mutable_context()->set_version(offkey::v1::TLS_1_2);
  request.set_scheme(offkey::v1::RSA_PSS_RSAE_SHA256);
  request.set_message(Tls12DheInput());
  auto sign = [&] {
    offkey::v1::SignResponse response;
    return Stub(kTerminator)->Sign(Context().get(), request, &response).error_code();
  };
  EXPECT_EQ(sign(), grpc::PERMISSION_DENIED);

  offkey::v1::ServerConfig next = config_;
  next.mutable_handshake()->set_allow_rfc7919_dhe(true);
  WriteConfig(next);
  ASSERT_TRUE(server_->ReloadNow().ok());
  EXPECT_EQ(sign(), grpc::OK);
  EXPECT_TRUE(absl::StrContains(Log(), "configuration reloaded: handshake")) << Log();
  EXPECT_EQ(Count(Log(), "next restart"), 0u) << "handshake is not restart-only";

  WriteConfig(config_);
  ASSERT_TRUE(server_->ReloadNow().ok());
  EXPECT_EQ(sign(), grpc::PERMISSION_DENIED);
}

// Kubernetes mounts a secret as a directory whose files are symlinks through "..data",
// itself a symlink that kubelet swaps atomically to a new timestamped directory.
class SecretVolume {
 public:
  explicit SecretVolume(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
  }
  void Publish(const std::map<std::string, std::string>& files) {
    const std::string version = absl::StrCat("..v", ++generation_);
    std::filesystem::create_directories(dir_ + "/" + version);
    for (const auto& [name, data] : files) {
      std::ofstream(absl::StrCat(dir_, "/", version, "/", name), std::ios::binary)
          << data;
      const std::string link = dir_ + "/" + name;
      if (!std::filesystem::is_symlink(link)) {
        std::filesystem::create_symlink("..data/" + name, link);
      }
    }
    const std::string tmp = dir_ + "/..data_tmp";
    std::filesystem::remove(tmp);
    std::filesystem::create_symlink(version, tmp);
    ASSERT_EQ(rename(tmp.c_str(), (dir_ + "/..data").c_str()), 0);
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  const std::string dir_;
  int generation_ = 0;
};

class RotationTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->mutable_reload()->set_interval_seconds(1);
    volume_ = std::make_unique<SecretVolume>(dir_ + "/tls");
    auto server_cert = ServerCert(ca_);
    volume_->Publish({{"tls.crt", server_cert.cert_pem},
                      {"tls.key", std::string(server_cert.key_pem.view())},
                      {"ca.crt", ca_.cert_pem}});
    config->mutable_tls()->set_cert_file(volume_->path("tls.crt"));
    config->mutable_tls()->set_key_file(volume_->path("tls.key"));
    config->mutable_tls()->set_client_ca_file(volume_->path("ca.crt"));
  }
  // A stub trusting only `ca` and presenting a terminator certificate from it.
  std::unique_ptr<offkey::v1::KeyService::Stub> StubWith(
      const service::dev::IssuedCert& ca) {
    return offkey::v1::KeyService::NewStub(Channel(kTerminator, ca));
  }
  static bool ListOk(offkey::v1::KeyService::Stub* stub) {
    offkey::v1::ListKeysRequest request;
    offkey::v1::ListKeysResponse response;
    return stub->ListKeys(Context(absl::Seconds(5)).get(), request, &response).ok();
  }

  std::unique_ptr<SecretVolume> volume_;
};

TEST_F(RotationTest, CertificatesRotateUnderConnectedClients) {
  auto old_client = StubWith(ca_);
  ASSERT_TRUE(ListOk(old_client.get()));
  // A client calling back to back through the whole rotation, on one connection.
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, failures{0};
  std::thread busy([&] {
    while (!stop) {
      if (!ListOk(old_client.get())) ++failures;
      ++calls;
    }
  });

  // New server certificate from a new CA; the client CA bundle now trusts both CAs.
  const service::dev::IssuedCert ca2 = TestCa("offkey test CA 2");
  auto server2 = ServerCert(ca2);
  volume_->Publish({{"tls.crt", server2.cert_pem},
                    {"tls.key", std::string(server2.key_pem.view())},
                    {"ca.crt", ca_.cert_pem + ca2.cert_pem}});

  // Within a few refresh intervals a new connection sees the new certificate, and a
  // client certificate from the new CA is accepted.
  auto new_client = StubWith(ca2);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool rotated = false;
  while (!rotated && absl::Now() < deadline) {
    rotated = ListOk(new_client.get());
    if (!rotated) {
      new_client = StubWith(ca2);
      absl::SleepFor(absl::Milliseconds(200));
    }
  }
  EXPECT_TRUE(rotated) << "the new server certificate was never served";
  // A fresh connection that trusts only the old CA now fails: the server changed.
  EXPECT_FALSE(ListOk(StubWith(ca_).get()));
  stop = true;
  busy.join();
  EXPECT_GT(calls.load(), 0);
  EXPECT_EQ(failures.load(), 0) << "the connected client lost calls during rotation";
  EXPECT_TRUE(ListOk(old_client.get())) << "the old connection was dropped";
}

}  // namespace
}  // namespace offkey::tests
