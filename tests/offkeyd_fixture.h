// Test fixture: a real offkeyd (the server library) on 127.0.0.1, over a fresh SoftHSM2
// token, with a development PKI and clients of several identities.
#ifndef OFFKEY_TESTS_OFFKEYD_FIXTURE_H_
#define OFFKEY_TESTS_OFFKEYD_FIXTURE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/offkey_client.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "offkey/v1/config.pb.h"
#include "offkey/v1/key_admin.grpc.pb.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "offkey/v1/metadata.pb.h"
#include "service/dev/dev_pki.h"
#include "service/server.h"

namespace offkey::tests {

inline constexpr char kTerminator[] = "spiffe://test.offkey/terminator";
inline constexpr char kReader[] = "spiffe://test.offkey/reader";
inline constexpr char kStranger[] = "spiffe://test.offkey/stranger";

// Finished operations of one kind ("sign"), any outcome, in offkeyd's /metrics text.
int OperationCountIn(absl::string_view metrics, absl::string_view operation);

class OffkeydTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Adjusts how the test opens the token (for example through a wrapping module).
  virtual void AdjustToken(hsm::pkcs11::TokenOptions* options) {}
  // Adjusts the configuration before the server starts.
  virtual void Configure(offkey::v1::ServerConfig* config) {}
  // Sets workers.run_on_rpc_threads_when_idle (before Configure); see EveryDispatch.
  virtual bool RunOnRpcThreads() const { return false; }
  // The store the server is given; tests may wrap the real one to observe calls.
  virtual hsm::KeyStore* ServedStore(hsm::KeyStore* real) { return real; }
  // Server options (reload source, log sink, health interval).
  virtual service::ServerOptions Options() { return {}; }

  // Makes a key in the token with offkey metadata and a certificate from the test CA.
  hsm::KeyInfo AddKey(const std::string& name, hsm::KeyAlgorithm algorithm,
                      offkey::v1::KeyUsage usage = offkey::v1::TLS_SERVER,
                      offkey::v1::KeyState state = offkey::v1::ENABLED,
                      const std::map<std::string, std::string>& labels = {});
  // Stores metadata for an existing key (import paths).
  void PutMetadata(const hsm::KeyInfo& key, offkey::v1::KeyUsage usage);

  // Stops the server (as offkeyd going down mid-run), and starts it again on the same
  // port with the same configuration and token.
  void StopOffkeyd();
  void RestartOffkeyd();

  // A stub whose client certificate carries `identity` (a SPIFFE URI SAN).
  std::unique_ptr<offkey::v1::KeyService::Stub> Stub(const std::string& identity);
  // A KeyAdmin stub on the admin listener (admin_listen_address must be set).
  std::unique_ptr<offkey::v1::KeyAdmin::Stub> AdminStub(const std::string& identity);
  // A stub that presents no client certificate.
  std::unique_ptr<offkey::v1::KeyService::Stub> StubWithoutCertificate();
  // A channel (a connection of its own) whose client certificate carries `identity`
  // (for other services on the same port: health, reflection).
  std::shared_ptr<grpc::Channel> Channel(const std::string& identity);
  // The same with a client certificate from `ca`, trusting only `ca` for the server.
  std::shared_ptr<grpc::Channel> Channel(const std::string& identity,
                                         const service::dev::IssuedCert& ca,
                                         int port = 0);
  // The same with a client certificate made from `spec` (client_auth is set here), for
  // certificates whose names are the point of the test.
  std::shared_ptr<grpc::Channel> Channel(service::dev::CertSpec spec,
                                         const service::dev::IssuedCert& ca, int port);
  // liboffkey options for this server: a client certificate carrying `identity` from
  // `ca` (default: the test CA), written with its key and the test CA into files.
  client::ClientOptions ClientFiles(const std::string& identity);
  client::ClientOptions ClientFiles(const std::string& identity,
                                    const service::dev::IssuedCert& ca);
  // A fresh CA for the test (its key recorded in the secret ledger).
  static service::dev::IssuedCert TestCa(absl::string_view common_name);
  // A server certificate from `ca` naming `dns_names`, or 127.0.0.1 when there are none
  // (its key recorded in the secret ledger).
  static service::dev::IssuedCert ServerCert(
      const service::dev::IssuedCert& ca, const std::vector<std::string>& dns_names = {});
  // GetTicketKeys of `set` through `stub`; the AES and HMAC keys of the answer are
  // recorded in the secret ledger (key names are not: they travel in every ticket).
  static grpc::Status GetTicketKeys(offkey::v1::KeyService::Stub* stub,
                                    const std::string& set,
                                    offkey::v1::GetTicketKeysResponse* response);
  // GET http://127.0.0.1:<metrics port><path>: {status, body}; status -1 if the
  // request failed.
  std::pair<int, std::string> HttpGet(const std::string& path);
  // offkeyd's finished operations of one kind ("sign", "derive-master-secret"), any
  // outcome, from its metrics.
  int OperationCount(const std::string& operation);
  // A metric without labels (a gauge such as "offkey_pipeline_streams") from offkeyd's
  // metrics; -1 if it is not there.
  double MetricValue(absl::string_view name);
  // Where a test that reads the audit log puts it: kept with the test's outputs, so the
  // suite's log scan covers it.
  static std::string AuditPath();
  static std::unique_ptr<grpc::ClientContext> Context(
      absl::Duration timeout = absl::Seconds(20));

  std::string dir_;
  hsm::pkcs11::testing::SoftHsmToken token_;
  std::unique_ptr<hsm::pkcs11::Pkcs11KeyStore> store_;
  service::dev::IssuedCert ca_;
  offkey::v1::ServerConfig config_;
  std::unique_ptr<service::OffkeyServer> server_;
  int channels_ = 0;
  int client_files_ = 0;
  int stopped_port_ = 0;
  hsm::KeyStore* served_store_ = nullptr;
};

// Runs a fixture's TEST_Ps both ways: every call handed to a worker ("HandOff"), and
// idle gRPC threads allowed to run calls ("RunOnRpcThreads",
// workers.run_on_rpc_threads_when_idle). Instantiate with ::testing::Bool() and
// DispatchName.
template <typename Fixture>
class EveryDispatch : public Fixture, public ::testing::WithParamInterface<bool> {
 protected:
  bool RunOnRpcThreads() const override { return this->GetParam(); }
};
inline std::string DispatchName(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "RunOnRpcThreads" : "HandOff";
}

}  // namespace offkey::tests

#endif  // OFFKEY_TESTS_OFFKEYD_FIXTURE_H_
