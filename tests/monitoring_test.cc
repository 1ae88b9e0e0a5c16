// What Prometheus sees of a real offkeyd over SoftHSM2: a bounded set of series on a
// fresh server, and the HSM, queue and certificate metrics once it has served calls.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

// Sample lines of a Prometheus text exposition ("name{labels} value"), keyed by
// everything before the value.
std::map<std::string, double> Samples(const std::string& text) {
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(space != line.npos && absl::SimpleAtod(line.substr(space + 1), &value))
        << line;
    samples[std::string(line.substr(0, space))] = value;
  }
  return samples;
}

class MonitoringTest : public OffkeydTest {
 protected:
  grpc::Status SignOnce(const std::string& key) {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name(key);
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
    request.set_message(Tls13Input());
    offkey::v1::SignResponse response;
    return Stub(kTerminator)->Sign(Context().get(), request, &response);
  }

  std::map<std::string, double> Scrape() {
    std::pair<int, std::string> scraped = HttpGet("/metrics");
    EXPECT_EQ(scraped.first, 200) << scraped.second;
    return Samples(scraped.second);
  }
};

// Series are made for what happens, not for every operation, scheme and status code
// that could: a fresh offkeyd exposes a few hundred samples at most.
TEST_F(MonitoringTest, FreshOffkeydExposesFewSeries) {
  const size_t fresh = Scrape().size();
  std::printf("samples on a fresh offkeyd: %zu\n", fresh);
  EXPECT_LT(fresh, 300u);
}
// The HSM's share of each call, the wait for a worker, and the days each attached
// certificate has left, on a real offkeyd over SoftHSM2.
TEST_F(MonitoringTest, TimesTheHsmAndTheQueueAndReportsCertificateExpiry) {
  AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(SignOnce("web-ec").ok());
  // Refused before the HSM: queued and answered, but no time in the key store.
  EXPECT_EQ(SignOnce("nope").error_code(), grpc::PERMISSION_DENIED);

  std::map<std::string, double> samples = Scrape();
  EXPECT_EQ(samples["offkey_hsm_call_duration_seconds_count{operation=\"sign\"}"], 3);
  EXPECT_GT(samples["offkey_hsm_call_duration_seconds_sum{operation=\"sign\"}"], 0);
  // The HSM's share is part of the whole.
  EXPECT_LT(samples["offkey_hsm_call_duration_seconds_sum{operation=\"sign\"}"],
            samples["offkey_operation_duration_seconds_sum{operation=\"sign\","
                    "scheme=\"ecdsa_secp256r1_sha256\"}"]);
  EXPECT_EQ(samples["offkey_worker_queue_wait_seconds_count{pool=\"hsm\"}"], 4);
  // A year's certificate from the test CA, issued a moment ago.
  EXPECT_NEAR(samples["offkey_certificate_expiry_days{key=\"web-ec\"}"], 365, 0.01);

  // A key added behind offkeyd's back shows once the catalog reloads (every 5 s).
  AddKey("later-ec", hsm::KeyAlgorithm::kEcP256);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (Scrape().count("offkey_certificate_expiry_days{key=\"later-ec\"}") == 0 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  samples = Scrape();
  EXPECT_NEAR(samples["offkey_certificate_expiry_days{key=\"later-ec\"}"], 365, 0.01);
  EXPECT_NEAR(samples["offkey_certificate_expiry_days{key=\"web-ec\"}"], 365, 0.01);
  EXPECT_EQ(samples.count("offkey_certificate_expiry_days{key=\"nope\"}"), 0u);
}

}  // namespace
}  // namespace offkey::tests
