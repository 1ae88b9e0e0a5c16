#include "service/metrics/metrics.h"

#include <map>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/secret_bytes.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "service/metrics/http_server.h"

namespace offkey::service::metrics {
namespace {

using ::offkey::testing::IsOk;

using offkey::v1::ECDSA_SECP256R1_SHA256;
using offkey::v1::SIGN;

// "series{labels}" -> value, from the text exposition format.
std::map<std::string, double> Parse(const std::string& text) {
  std::map<std::string, double> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    double value = 0;
    EXPECT_TRUE(absl::SimpleAtod(line.substr(space + 1), &value)) << line;
    out[std::string(line.substr(0, space))] = value;
  }
  return out;
}

// The one series named `name` carrying every label in `labels` ('key="value"').
double Find(const std::map<std::string, double>& series, const std::string& name,
            std::initializer_list<const char*> labels) {
  double found = -1;
  int matches = 0;
  for (const auto& [key, value] : series) {
    if (!absl::StartsWith(key, name + "{")) continue;
    bool all = true;
    for (const char* label : labels) all = all && absl::StrContains(key, label);
    if (all) {
      found = value;
      ++matches;
    }
  }
  EXPECT_LE(matches, 1) << name;
  return found;
}

TEST(MetricsTest, CountsOperationsByCodeAndTimesThemByScheme) {
  Metrics metrics;
  for (int i = 0; i < 3; ++i) {
    metrics.RecordOperation(SIGN, ECDSA_SECP256R1_SHA256, absl::StatusCode::kOk,
                            absl::Microseconds(300));
  }
  metrics.RecordOperation(SIGN, ECDSA_SECP256R1_SHA256,
                          absl::StatusCode::kPermissionDenied, absl::Microseconds(80));
  metrics.RecordOperation(offkey::v1::DECRYPT_PREMASTER,
                          offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED, absl::StatusCode::kOk,
                          absl::Milliseconds(3));
  metrics.RecordOperation(SIGN, static_cast<offkey::v1::SignatureScheme>(0x7777),
                          absl::StatusCode::kInvalidArgument, absl::Microseconds(10));
  const std::string text = metrics.Scrape();
  auto series = Parse(text);
  EXPECT_EQ((series["offkey_operations_total{code=\"OK\",operation=\"sign\"}"]), 3)
      << text;
  EXPECT_EQ(
      (series["offkey_operations_total{code=\"PERMISSION_DENIED\",operation=\"sign\"}"]),
      1);
  EXPECT_EQ((series["offkey_operation_duration_seconds_count{operation=\"sign\",scheme="
                    "\"ecdsa_secp256r1_sha256\"}"]),
            4);
  EXPECT_NEAR((series["offkey_operation_duration_seconds_sum{operation=\"sign\",scheme="
                      "\"ecdsa_secp256r1_sha256\"}"]),
              0.00098, 1e-9);
  // Buckets are cumulative: 80 µs is under 0.0001; the three 300 µs ones under 0.0005.
  EXPECT_EQ(
      Find(series, "offkey_operation_duration_seconds_bucket",
           {"le=\"0.0001\"", "operation=\"sign\"", "scheme=\"ecdsa_secp256r1_sha256\""}),
      1);
  EXPECT_EQ(
      Find(series, "offkey_operation_duration_seconds_bucket",
           {"le=\"0.0005\"", "operation=\"sign\"", "scheme=\"ecdsa_secp256r1_sha256\""}),
      4);
  EXPECT_EQ(
      Find(series, "offkey_operation_duration_seconds_bucket",
           {"le=\"+Inf\"", "operation=\"sign\"", "scheme=\"ecdsa_secp256r1_sha256\""}),
      4);
  EXPECT_EQ((series["offkey_operation_duration_seconds_count{operation=\"decrypt-"
                    "premaster\",scheme=\"none\"}"]),
            1);
  EXPECT_EQ((series["offkey_operation_duration_seconds_count{operation=\"sign\",scheme="
                    "\"unknown\"}"]),
            1);
}

TEST(MetricsTest, SamplerSetsGaugesAtScrapeTime) {
  Metrics metrics;
  int depth = 5;
  metrics.SetSampler([&depth](Metrics& m) {
    m.SetQueueDepth(depth);
    m.SetHsmSessions(2, 4);
    m.SetPipeline(1, 9);
    m.SetReady(true);
  });
  auto series = Parse(metrics.Scrape());
  EXPECT_EQ(series["offkey_worker_queue_depth"], 5);
  EXPECT_EQ(series["offkey_hsm_sessions_in_use"], 2);
  EXPECT_EQ(series["offkey_hsm_sessions_max"], 4);
  EXPECT_EQ(series["offkey_pipeline_items_in_flight"], 9);
  EXPECT_EQ(series["offkey_ready"], 1);
  depth = 0;
  EXPECT_EQ(Parse(metrics.Scrape())["offkey_worker_queue_depth"], 0);
  metrics.RecordReload(false);
  EXPECT_EQ((Parse(metrics.Scrape())["offkey_config_reloads_total{outcome=\"refused\"}"]),
            1);
}

// Secret pages that could not be locked (RLIMIT_MEMLOCK) show, so the fallback is not
// silent to an operator.
TEST(MetricsTest, ReportsSecretMemory) {
  SecretBytes secret(48);  // At least one chunk of secret pages exists.
  Metrics metrics;
  auto series = Parse(metrics.Scrape());
  ASSERT_EQ(series.count("offkey_secret_memory_lock_failures"), 1u);
  ASSERT_EQ(series.count("offkey_secret_memory_locked_bytes"), 1u);
  EXPECT_EQ(series["offkey_secret_memory_lock_failures"],
            static_cast<double>(SecretMemoryUsage().lock_failures));
  EXPECT_EQ(series["offkey_secret_memory_locked_bytes"],
            static_cast<double>(SecretMemoryUsage().locked_bytes));
}

TEST(MetricsTest, CountsAuditWriteFailures) {
  Metrics metrics;
  EXPECT_EQ(Parse(metrics.Scrape()).count("offkey_audit_write_failures_total"), 1u);
  metrics.RecordAuditFailure();
  metrics.RecordAuditFailure();
  EXPECT_EQ(Parse(metrics.Scrape())["offkey_audit_write_failures_total"], 2);
}

TEST(MetricsTest, ConcurrentRecordingLosesNothing) {
  Metrics metrics;
  constexpr int kThreads = 4, kEach = 100000;
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        metrics.RecordOperation(SIGN, ECDSA_SECP256R1_SHA256, absl::StatusCode::kOk,
                                absl::Microseconds(200));
      }
    });
  }
  for (int i = 0; i < 20; ++i) metrics.Scrape();
  for (auto& t : threads) t.join();
  printf("%.0f ns per RecordOperation (4 threads, with scrapes)\n",
         absl::ToDoubleNanoseconds(absl::Now() - start) / (kThreads * kEach) * kThreads);
  EXPECT_EQ((Parse(metrics.Scrape())["offkey_operations_total{code=\"OK\",operation="
                                     "\"sign\"}"]),
            kThreads * kEach);
}

// Threads that record into a series nobody used yet all land in one series.
TEST(MetricsTest, ConcurrentFirstUseMakesOneSeries) {
  Metrics metrics;
  constexpr int kThreads = 8, kEach = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        metrics.RecordOperation(SIGN, offkey::v1::RSA_PSS_RSAE_SHA256,
                                absl::StatusCode::kResourceExhausted,
                                absl::Microseconds(10));
        metrics.RecordHsmCall(SIGN, absl::Microseconds(5));
      }
    });
  }
  for (auto& t : threads) t.join();
  const std::string text = metrics.Scrape();
  auto series = Parse(text);
  EXPECT_EQ(Find(series, "offkey_operations_total",
                 {"operation=\"sign\"", "code=\"RESOURCE_EXHAUSTED\""}),
            kThreads * kEach);
  EXPECT_EQ(Find(series, "offkey_operation_duration_seconds_count",
                 {"operation=\"sign\"", "scheme=\"rsa_pss_rsae_sha256\""}),
            kThreads * kEach);
  EXPECT_EQ(
      Find(series, "offkey_hsm_call_duration_seconds_count", {"operation=\"sign\""}),
      kThreads * kEach);
}

// A fresh registry holds the fixed gauges and counters, a zero OK counter per
// operation and the HSM pool's queue wait: no series per operation, scheme and code.
TEST(MetricsTest, FreshMetricsHoldFewSeries) {
  Metrics metrics;
  const std::string text = metrics.Scrape();
  auto series = Parse(text);
  EXPECT_LT(series.size(), 60u) << text;
  int operations = 0;
  for (const auto& [key, value] : series) {
    EXPECT_FALSE(absl::StartsWith(key, "offkey_operation_duration_seconds")) << key;
    EXPECT_FALSE(absl::StartsWith(key, "offkey_hsm_call_duration_seconds")) << key;
    EXPECT_FALSE(absl::StartsWith(key, "offkey_certificate_expiry_days")) << key;
    if (absl::StartsWith(key, "offkey_operations_total{")) {
      EXPECT_TRUE(absl::StrContains(key, "code=\"OK\"")) << key;
      EXPECT_EQ(value, 0) << key;
      ++operations;
    }
  }
  EXPECT_EQ(operations, offkey::v1::Operation_MAX);  // One per operation, 1..MAX.
  EXPECT_EQ(series["offkey_worker_queue_wait_seconds_count{pool=\"hsm\"}"], 0) << text;
}

TEST(MetricsTest, TimesHsmCallsAndQueueWaits) {
  Metrics metrics;
  metrics.RecordHsmCall(SIGN, absl::Microseconds(400));
  metrics.RecordHsmCall(SIGN, absl::Milliseconds(30));
  metrics.RecordHsmCall(offkey::v1::DECRYPT_PREMASTER, absl::Milliseconds(2));
  metrics.RecordQueueWait(Metrics::Pool::kHsm, absl::Microseconds(70));
  metrics.RecordQueueWait(Metrics::Pool::kVerify, absl::Milliseconds(3));
  metrics.RecordQueueWait(Metrics::Pool::kVerify, absl::Milliseconds(4));
  const std::string text = metrics.Scrape();
  auto series = Parse(text);
  EXPECT_EQ(
      Find(series, "offkey_hsm_call_duration_seconds_count", {"operation=\"sign\""}), 2)
      << text;
  EXPECT_NEAR(
      Find(series, "offkey_hsm_call_duration_seconds_sum", {"operation=\"sign\""}),
      0.0304, 1e-9);
  EXPECT_EQ(Find(series, "offkey_hsm_call_duration_seconds_bucket",
                 {"operation=\"sign\"", "le=\"0.0005\""}),
            1);
  EXPECT_EQ(Find(series, "offkey_hsm_call_duration_seconds_count",
                 {"operation=\"decrypt-premaster\""}),
            1);
  EXPECT_EQ(Find(series, "offkey_worker_queue_wait_seconds_count", {"pool=\"hsm\""}), 1);
  EXPECT_EQ(Find(series, "offkey_worker_queue_wait_seconds_count", {"pool=\"verify\""}),
            2);
  EXPECT_NEAR(Find(series, "offkey_worker_queue_wait_seconds_sum", {"pool=\"verify\""}),
              0.007, 1e-9);
}

TEST(MetricsTest, ReportsDaysUntilCertificatesExpire) {
  Metrics metrics;
  const absl::Time now = absl::Now();
  metrics.SetCertificateExpiries({{"web-ec", now + absl::Hours(24 * 30 + 12)},
                                  {"old", now - absl::Hours(36)},
                                  {"web-rsa", now + absl::Hours(24 * 2)}});
  std::string text = metrics.Scrape();
  auto series = Parse(text);
  // Scraped a moment after `now`: a little less than the days set.
  const double tolerance = 1.0 / 24 / 60;  // A minute.
  EXPECT_NEAR(series["offkey_certificate_expiry_days{key=\"web-ec\"}"], 30.5, tolerance)
      << text;
  EXPECT_NEAR(series["offkey_certificate_expiry_days{key=\"old\"}"], -1.5, tolerance);
  EXPECT_NEAR(series["offkey_certificate_expiry_days{key=\"web-rsa\"}"], 2, tolerance);
  EXPECT_TRUE(absl::StrContains(text, "# TYPE offkey_certificate_expiry_days gauge"));

  // The set is replaced: a key whose certificate went is no longer reported.
  metrics.SetCertificateExpiries({{"web-ec", now + absl::Hours(24 * 90)}});
  series = Parse(metrics.Scrape());
  EXPECT_EQ(series.count("offkey_certificate_expiry_days{key=\"old\"}"), 0u);
  EXPECT_EQ(series.count("offkey_certificate_expiry_days{key=\"web-rsa\"}"), 0u);
  EXPECT_NEAR(series["offkey_certificate_expiry_days{key=\"web-ec\"}"], 90, tolerance);
  metrics.SetCertificateExpiries({});
  EXPECT_FALSE(absl::StrContains(metrics.Scrape(), "offkey_certificate_expiry_days"));
}

TEST(HttpServerTest, ServesMetricsAndProbes) {
  Metrics metrics;
  metrics.RecordOperation(SIGN, ECDSA_SECP256R1_SHA256, absl::StatusCode::kOk,
                          absl::Microseconds(100));
  absl::Status ready = absl::OkStatus();
  auto server = HttpServer::Start(
      "127.0.0.1:0", &metrics, [] { return absl::OkStatus(); }, [&] { return ready; });
  ASSERT_THAT(server, IsOk());
  httplib::Client client("127.0.0.1", (*server)->port());
  auto scraped = client.Get("/metrics");
  ASSERT_TRUE(scraped);
  EXPECT_EQ(scraped->status, 200);
  EXPECT_TRUE(absl::StartsWith(scraped->get_header_value("Content-Type"), "text/plain"));
  EXPECT_EQ(
      (Parse(scraped->body)["offkey_operations_total{code=\"OK\",operation=\"sign\"}"]),
      1);
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  EXPECT_EQ(client.Get("/readyz")->status, 200);
  ready = absl::UnavailableError("HSM token not present");
  auto not_ready = client.Get("/readyz");
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_TRUE(absl::StrContains(not_ready->body, "HSM token not present"));
  ready = absl::OkStatus();
  EXPECT_EQ(client.Get("/readyz")->status, 200);
  EXPECT_EQ(client.Get("/nope")->status, 404);
  EXPECT_EQ(client.Post("/metrics", "", "text/plain")->status, 405);

  // The port is taken: a second server cannot have it.
  auto clash = HttpServer::Start(
      absl::StrCat("127.0.0.1:", (*server)->port()), &metrics,
      [] { return absl::OkStatus(); }, [] { return absl::OkStatus(); });
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kUnavailable);
  (*server)->Stop();
  EXPECT_FALSE(client.Get("/healthz"));
}

TEST(HttpServerTest, RefusesMalformedAddresses) {
  Metrics metrics;
  for (const char* bad : {"nohost", "127.0.0.1:http", "127.0.0.1:70000"}) {
    auto server = HttpServer::Start(
        bad, &metrics, [] { return absl::OkStatus(); }, [] { return absl::OkStatus(); });
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace offkey::service::metrics
