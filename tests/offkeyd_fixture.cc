#include "tests/offkeyd_fixture.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/testing/secret_ledger.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "service/config/config_loader.h"

namespace offkey::tests {

using ::offkey::testing::OutputPath;
using ::offkey::testing::RecordPrivateKeyPem;
namespace {

void Write(const std::string& path, absl::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

}  // namespace

void OffkeydTest::SetUp() {
  auto token = hsm::pkcs11::testing::SoftHsmToken::Create("offkeyd");
  ASSERT_TRUE(token.ok()) << token.status();
  token_ = *token;
  dir_ = absl::StrCat(token_.directory, "/", token_.label);
  ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir_).c_str()), 0);
  hsm::pkcs11::TokenOptions options = token_.Options();
  AdjustToken(&options);
  auto store = hsm::pkcs11::Pkcs11KeyStore::Create(options);
  ASSERT_TRUE(store.ok()) << store.status();
  store_ = std::move(*store);

  ca_ = TestCa("offkey test CA");
  service::dev::IssuedCert server_cert = ServerCert(ca_);
  Write(dir_ + "/ca.pem", ca_.cert_pem);
  Write(dir_ + "/server.pem", server_cert.cert_pem);
  Write(dir_ + "/server.key", server_cert.key_pem.view());

  config_.set_listen_address("127.0.0.1:0");
  config_.set_metrics_address("127.0.0.1:0");
  config_.mutable_tls()->set_cert_file(dir_ + "/server.pem");
  config_.mutable_tls()->set_key_file(dir_ + "/server.key");
  config_.mutable_tls()->set_client_ca_file(dir_ + "/ca.pem");
  config_.mutable_hsm()->set_module_path(options.module_path);
  config_.mutable_hsm()->set_token_uri(token_.Uri());
  config_.mutable_hsm()->set_pin_file(token_.pin_file);
  config_.mutable_hsm()->set_max_sessions(4);
  offkey::v1::Grant* all = config_.mutable_policy()->add_grants();
  all->add_identities(kTerminator);
  for (auto op :
       {offkey::v1::SIGN, offkey::v1::DECRYPT_PREMASTER, offkey::v1::DERIVE_MASTER_SECRET,
        offkey::v1::GET_CERTIFICATE, offkey::v1::LIST_KEYS}) {
    all->add_operations(op);
  }
  all->mutable_keys()->set_all_keys(true);
  offkey::v1::Grant* reader = config_.mutable_policy()->add_grants();
  reader->add_identities(kReader);
  reader->add_operations(offkey::v1::GET_CERTIFICATE);
  reader->add_operations(offkey::v1::LIST_KEYS);
  (*reader->mutable_keys()->mutable_labels())["team"] = "public";
  config_.mutable_workers()->set_run_on_rpc_threads_when_idle(RunOnRpcThreads());
  Configure(&config_);
  service::config::ApplyDefaults(&config_);
  ASSERT_TRUE(service::config::ValidateConfig(config_).ok())
      << service::config::ValidateConfig(config_);
  served_store_ = ServedStore(store_.get());
  auto started = service::OffkeyServer::Start(config_, served_store_, Options());
  ASSERT_TRUE(started.ok()) << started.status();
  server_ = std::move(*started);
}

void OffkeydTest::TearDown() {
  if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
  server_.reset();
}

void OffkeydTest::StopOffkeyd() {
  stopped_port_ = server_->port();
  server_->Shutdown(absl::Seconds(1));
  server_.reset();
}

void OffkeydTest::RestartOffkeyd() {
  ASSERT_NE(stopped_port_, 0) << "RestartOffkeyd without StopOffkeyd";
  offkey::v1::ServerConfig config = config_;
  config.set_listen_address(absl::StrCat("127.0.0.1:", stopped_port_));
  auto restarted = service::OffkeyServer::Start(config, served_store_, Options());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  server_ = *std::move(restarted);
}

void OffkeydTest::PutMetadata(const hsm::KeyInfo& key, offkey::v1::KeyUsage usage) {
  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_usage(usage);
  metadata.set_state(offkey::v1::ENABLED);
  ASSERT_TRUE(store_->PutMetadata(key.key_id, metadata.SerializeAsString()).ok());
  if (server_ != nullptr) server_->InvalidateKeyCache();
}

hsm::KeyInfo OffkeydTest::AddKey(const std::string& name, hsm::KeyAlgorithm algorithm,
                                 offkey::v1::KeyUsage usage, offkey::v1::KeyState state,
                                 const std::map<std::string, std::string>& labels) {
  auto key = store_->GenerateKey(name, algorithm);
  EXPECT_TRUE(key.ok()) << key.status();
  if (!key.ok()) return {};
  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_usage(usage);
  metadata.set_state(state);
  for (const auto& [k, v] : labels) (*metadata.mutable_labels())[k] = v;
  EXPECT_TRUE(store_->PutMetadata(key->key_id, metadata.SerializeAsString()).ok());
  service::dev::CertSpec spec;
  spec.common_name = name;
  spec.dns_names = {name + ".test"};
  spec.server_auth = true;
  spec.public_key_spki = key->public_key_spki;
  auto cert = service::dev::Issue(ca_, spec);
  EXPECT_TRUE(cert.ok()) << cert.status();
  EXPECT_TRUE(
      store_
          ->PutCertificateChain(key->key_id, {*service::dev::PemToDer(cert->cert_pem),
                                              *service::dev::PemToDer(ca_.cert_pem)})
          .ok());
  if (server_ != nullptr) server_->InvalidateKeyCache();
  return *key;
}

std::unique_ptr<offkey::v1::KeyService::Stub> OffkeydTest::Stub(
    const std::string& identity) {
  return offkey::v1::KeyService::NewStub(Channel(identity));
}

std::shared_ptr<grpc::Channel> OffkeydTest::Channel(const std::string& identity) {
  return Channel(identity, ca_);
}

std::unique_ptr<offkey::v1::KeyAdmin::Stub> OffkeydTest::AdminStub(
    const std::string& identity) {
  return offkey::v1::KeyAdmin::NewStub(Channel(identity, ca_, server_->admin_port()));
}

std::shared_ptr<grpc::Channel> OffkeydTest::Channel(const std::string& identity,
                                                    const service::dev::IssuedCert& ca,
                                                    int port) {
  service::dev::CertSpec spec;
  spec.common_name = "client";
  spec.uris = {identity};
  return Channel(std::move(spec), ca, port);
}

std::shared_ptr<grpc::Channel> OffkeydTest::Channel(service::dev::CertSpec spec,
                                                    const service::dev::IssuedCert& ca,
                                                    int port) {
  spec.client_auth = true;
  auto cert = service::dev::Issue(ca, spec);
  EXPECT_TRUE(cert.ok());
  RecordPrivateKeyPem("client key", cert->key_pem.view());
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca.cert_pem;
  tls.pem_cert_chain = cert->cert_pem;
  tls.pem_private_key = std::string(cert->key_pem.view());
  grpc::ChannelArguments args;
  args.SetInt("grpc.channel_id", ++channels_);  // A connection of its own.
  return grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", port != 0 ? port : server_->port()),
      grpc::SslCredentials(tls), args);
}

client::ClientOptions OffkeydTest::ClientFiles(const std::string& identity) {
  return ClientFiles(identity, ca_);
}

client::ClientOptions OffkeydTest::ClientFiles(const std::string& identity,
                                               const service::dev::IssuedCert& ca) {
  service::dev::CertSpec spec;
  spec.common_name = "client";
  spec.uris = {identity};
  spec.client_auth = true;
  auto cert = service::dev::Issue(ca, spec);
  EXPECT_TRUE(cert.ok()) << cert.status();
  RecordPrivateKeyPem("client key", cert->key_pem.view());
  const std::string base = absl::StrCat(dir_, "/client-", ++client_files_);
  Write(base + "-ca.pem", ca_.cert_pem);
  Write(base + ".pem", cert->cert_pem);
  Write(base + ".key", cert->key_pem.view());
  client::ClientOptions o;
  o.target = absl::StrCat("127.0.0.1:", server_->port());
  o.ca_file = base + "-ca.pem";
  o.cert_file = base + ".pem";
  o.key_file = base + ".key";
  o.deadline = absl::Seconds(10);
  return o;
}

service::dev::IssuedCert OffkeydTest::TestCa(absl::string_view common_name) {
  auto ca = service::dev::MakeCa(common_name);
  EXPECT_TRUE(ca.ok()) << ca.status();
  if (!ca.ok()) return {};
  RecordPrivateKeyPem("CA key", ca->key_pem.view());
  return *std::move(ca);
}

service::dev::IssuedCert OffkeydTest::ServerCert(
    const service::dev::IssuedCert& ca, const std::vector<std::string>& dns_names) {
  service::dev::CertSpec spec;
  spec.common_name = "offkeyd";
  if (dns_names.empty()) {
    spec.ip_addresses = {"127.0.0.1"};
  } else {
    spec.dns_names = dns_names;
  }
  spec.server_auth = true;
  auto cert = service::dev::Issue(ca, spec);
  EXPECT_TRUE(cert.ok()) << cert.status();
  RecordPrivateKeyPem("server key", cert->key_pem.view());
  return *std::move(cert);
}

double OffkeydTest::MetricValue(absl::string_view name) {
  std::pair<int, std::string> metrics = HttpGet("/metrics");
  EXPECT_EQ(metrics.first, 200);
  const std::string prefix = absl::StrCat(name, " ");
  for (absl::string_view line : absl::StrSplit(metrics.second, '\n')) {
    double value = 0;
    if (absl::StartsWith(line, prefix) &&
        absl::SimpleAtod(line.substr(prefix.size()), &value)) {
      return value;
    }
  }
  return -1;
}

int OperationCountIn(absl::string_view metrics, absl::string_view operation) {
  int total = 0;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(line, "offkey_operations_total{") ||
        line.find(absl::StrCat("operation=\"", operation, "\"")) == line.npos) {
      continue;
    }
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) {
      total += static_cast<int>(value);
    }
  }
  return total;
}

grpc::Status OffkeydTest::GetTicketKeys(offkey::v1::KeyService::Stub* stub,
                                        const std::string& set,
                                        offkey::v1::GetTicketKeysResponse* response) {
  offkey::v1::GetTicketKeysRequest request;
  request.set_ticket_key_set(set);
  grpc::Status status = stub->GetTicketKeys(Context().get(), request, response);
  for (const offkey::v1::TicketKey* key :
       {&response->previous(), &response->current(), &response->next()}) {
    offkey::testing::RecordSecret("ticket AES key", key->aes_key());
    offkey::testing::RecordSecret("ticket HMAC key", key->hmac_key());
  }
  return status;
}

int OffkeydTest::OperationCount(const std::string& operation) {
  std::pair<int, std::string> metrics = HttpGet("/metrics");
  EXPECT_EQ(metrics.first, 200);
  return OperationCountIn(metrics.second, operation);
}

std::string OffkeydTest::AuditPath() {
  const ::testing::TestInfo* test =
      ::testing::UnitTest::GetInstance()->current_test_info();
  // Parameterized tests' names hold '/'.
  return OutputPath(absl::StrReplaceAll(
      absl::StrCat(test->test_suite_name(), ".", test->name(), ".audit.jsonl"),
      {{"/", "-"}}));
}

std::pair<int, std::string> OffkeydTest::HttpGet(const std::string& path) {
  httplib::Client client("127.0.0.1", server_->metrics_port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  httplib::Result result = client.Get(path);
  if (!result) return {-1, httplib::to_string(result.error())};
  return {result->status, result->body};
}

std::unique_ptr<offkey::v1::KeyService::Stub> OffkeydTest::StubWithoutCertificate() {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca_.cert_pem;
  return offkey::v1::KeyService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server_->port()), grpc::SslCredentials(tls)));
}

std::unique_ptr<grpc::ClientContext> OffkeydTest::Context(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

}  // namespace offkey::tests
