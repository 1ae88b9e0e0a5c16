// What an operator watches, against a real offkeyd and SoftHSM2: grpc.health.v1 and
// /readyz following the HSM (the token pulled out and put back), reflection describing
// the services, and Prometheus metrics scraped and parsed.

#include <cstdio>
#include <cstdlib>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// Prometheus text exposition: "name{labels} value" lines, comments skipped. Keys are
// the series as written ("offkey_operations_total{code=\"OK\",operation=\"sign\"}").
std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> series;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    EXPECT_NE(space, absl::string_view::npos) << line;
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    series[std::string(line.substr(0, space))] = value;
  }
  return series;
}

// The value of the series named `name` whose labels include every `labels` entry
// (written `key="value"`), or -1 if there is none.
double Find(const std::map<std::string, double>& series, absl::string_view name,
            std::initializer_list<std::string> labels) {
  for (const auto& [key, value] : series) {
    if (!absl::StartsWith(key, absl::StrCat(name, "{")) && key != name) continue;
    bool all = true;
    for (const std::string& label : labels) {
      if (!absl::StrContains(key, label)) all = false;
    }
    if (all) return value;
  }
  return -1;
}

class ObservabilityTest : public OffkeydTest {
 protected:
  void AdjustToken(hsm::pkcs11::TokenOptions* options) override {
    // The token is reached through a forwarding module that can fake its removal.
    removed_file_ = absl::StrCat(getenv("TEST_TMPDIR"), "/token-removed");
    setenv("OFFKEY_REAL_PKCS11_MODULE", options->module_path.c_str(), 1);
    setenv("OFFKEY_TOKEN_REMOVED_FILE", removed_file_.c_str(), 1);
    options->module_path = absl::StrCat(
        getenv("TEST_SRCDIR"), "/offkey/hsm/pkcs11/testing/libremovable_pkcs11.so");
  }
  service::ServerOptions Options() override {
    service::ServerOptions options;
    options.health_interval = absl::Milliseconds(100);
    return options;
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    ec_ = AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
    health_ = grpc::health::v1::Health::NewStub(Channel(kTerminator));
  }
  void TearDown() override {
    remove(removed_file_.c_str());
    OffkeydTest::TearDown();
  }

  HealthCheckResponse::ServingStatus Health(const std::string& service) {
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    grpc::Status status = health_->Check(Context().get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  }

  // Polls until grpc.health.v1 and /readyz both show `serving`, or 20 s pass.
  bool AwaitServing(bool serving) {
    const auto want =
        serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (Health("") == want && Health("offkey.v1.KeyService") == want &&
          HttpGet("/readyz").first == (serving ? 200 : 503)) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  grpc::Status SignOnce(
      const std::string& scheme_key = "web-ec",
      offkey::v1::SignatureScheme scheme = offkey::v1::ECDSA_SECP256R1_SHA256) {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name(scheme_key);
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.set_scheme(scheme);
    request.set_message(Tls13Input());
    offkey::v1::SignResponse response;
    return Stub(kTerminator)->Sign(Context().get(), request, &response);
  }

  std::string removed_file_;
  hsm::KeyInfo ec_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

TEST_F(ObservabilityTest, HealthFollowsTheToken) {
  ASSERT_TRUE(AwaitServing(true));
  EXPECT_EQ(HttpGet("/healthz").first, 200);

  FILE* removed = fopen(removed_file_.c_str(), "w");  // The token is pulled out.
  ASSERT_NE(removed, nullptr);
  fclose(removed);
  ASSERT_TRUE(AwaitServing(false));
  std::pair<int, std::string> ready = HttpGet("/readyz");
  EXPECT_EQ(ready.first, 503);
  EXPECT_FALSE(ready.second.empty()) << "/readyz should say why";
  EXPECT_EQ(HttpGet("/healthz").first, 200) << "liveness does not depend on the HSM";
  EXPECT_FALSE(SignOnce().ok());

  ASSERT_EQ(remove(removed_file_.c_str()), 0);  // And put back.
  ASSERT_TRUE(AwaitServing(true));
  grpc::Status signed_again = SignOnce();
  EXPECT_TRUE(signed_again.ok()) << signed_again.error_message();
}

TEST_F(ObservabilityTest, ShutdownStopsServing) {
  ASSERT_TRUE(AwaitServing(true));
  server_->Shutdown(absl::Seconds(1));
  // The HTTP port outlives the gRPC listener until the server object goes.
  EXPECT_EQ(HttpGet("/readyz").first, 503);
}

TEST_F(ObservabilityTest, ReflectionDescribesTheServices) {
  auto reflection =
      grpc::reflection::v1alpha::ServerReflection::NewStub(Channel(kTerminator));
  auto context = Context();
  auto stream = reflection->ServerReflectionInfo(context.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& service : response.list_services_response().service()) {
    services.insert(service.name());
  }
  EXPECT_EQ(services.count("offkey.v1.KeyService"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
  for (const char* symbol :
       {"offkey.v1.KeyService", "grpc.health.v1.Health", "offkey.v1.PipelineRequest"}) {
    request.set_file_containing_symbol(symbol);
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_GT(response.file_descriptor_response().file_descriptor_proto_size(), 0)
        << symbol << ": " << response.error_response().error_message();
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ObservabilityTest, MetricsAreScrapedAndParsed) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(SignOnce().ok());
  // Two failures: an unknown key (PERMISSION_DENIED) and a bad scheme for the key.
  EXPECT_EQ(SignOnce("nope").error_code(), grpc::PERMISSION_DENIED);
  EXPECT_EQ(SignOnce("web-ec", offkey::v1::RSA_PSS_RSAE_SHA256).error_code(),
            grpc::INVALID_ARGUMENT);

  std::pair<int, std::string> scraped = HttpGet("/metrics");
  ASSERT_EQ(scraped.first, 200) << scraped.second;
  std::map<std::string, double> series = ParseMetrics(scraped.second);
  EXPECT_EQ(
      Find(series, "offkey_operations_total", {"operation=\"sign\"", "code=\"OK\""}), 5);
  EXPECT_EQ(Find(series, "offkey_operations_total",
                 {"operation=\"sign\"", "code=\"PERMISSION_DENIED\""}),
            1);
  EXPECT_EQ(Find(series, "offkey_operations_total",
                 {"operation=\"sign\"", "code=\"INVALID_ARGUMENT\""}),
            1);
  // Latency per operation and scheme: the P-256 signatures and the refused PSS one.
  EXPECT_EQ(Find(series, "offkey_operation_duration_seconds_count",
                 {"operation=\"sign\"", "scheme=\"ecdsa_secp256r1_sha256\""}),
            6);
  EXPECT_EQ(Find(series, "offkey_operation_duration_seconds_count",
                 {"operation=\"sign\"", "scheme=\"rsa_pss_rsae_sha256\""}),
            1);
  EXPECT_GT(Find(series, "offkey_operation_duration_seconds_sum",
                 {"operation=\"sign\"", "scheme=\"ecdsa_secp256r1_sha256\""}),
            0);
  EXPECT_EQ(Find(series, "offkey_hsm_sessions_max", {}), 4);
  EXPECT_GE(Find(series, "offkey_hsm_sessions_in_use", {}), 0);
  EXPECT_EQ(Find(series, "offkey_worker_queue_depth", {}), 0);
  EXPECT_EQ(Find(series, "offkey_ready", {}), 1);
  EXPECT_EQ(HttpGet("/nope").first, 404);
}

}  // namespace
}  // namespace offkey::tests
