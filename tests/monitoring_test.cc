// What Prometheus sees of a real offkeyd over SoftHSM2: a bounded set of series on a
// fresh server, the HSM, queue and certificate metrics once it has served calls, and a
// real Prometheus scraping it and evaluating deploy/monitoring's rules.

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"

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

// A JSON member (`name` of an object), or a null value if there is none.
const google::protobuf::Value& Field(const google::protobuf::Value& value,
                                     const std::string& name) {
  static const auto* const kNull = new google::protobuf::Value();
  if (!value.has_struct_value()) return *kNull;
  auto it = value.struct_value().fields().find(name);
  return it == value.struct_value().fields().end() ? *kNull : it->second;
}
// The elements of a JSON array (none for anything else).
const google::protobuf::RepeatedPtrField<google::protobuf::Value>& Items(
    const google::protobuf::Value& value) {
  return value.list_value().values();
}

// A real Prometheus (Debian's binary) on 127.0.0.1: it scrapes only the offkeyd given
// (a static target on loopback; no service discovery, Alertmanager or remote write),
// evaluates deploy/monitoring's rules every second, and stores in a temporary folder.
class Prometheus {
 public:
  // Starts it and waits until /-/ready answers; false with the log in `*why` if not.
  bool Start(int target_port, std::string* why) {
    const std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/prometheus");
    mkdir(dir.c_str(), 0700);
    const std::string rules = absl::StrCat(
        getenv("TEST_SRCDIR"), "/offkey/deploy/monitoring/offkeyd-rules.yaml");
    const std::string config = absl::StrCat(dir, "/prometheus.yml");
    std::ofstream(config) << "global:\n"
                          << "  scrape_interval: 1s\n"
                          << "  evaluation_interval: 1s\n"
                          << "rule_files:\n"
                          << "  - " << rules << "\n"
                          << "scrape_configs:\n"
                          << "  - job_name: offkeyd\n"
                          << "    static_configs:\n"
                          << "      - targets: ['127.0.0.1:" << target_port << "']\n";
    port_ = UnusedPort();
    if (port_ < 0) {
      *why = "no free port";
      return false;
    }
    log_ = absl::StrCat(dir, "/prometheus.log");
    if (!daemon_.Start({"/usr/bin/prometheus", absl::StrCat("--config.file=", config),
                        absl::StrCat("--storage.tsdb.path=", dir, "/data"),
                        absl::StrCat("--web.listen-address=127.0.0.1:", port_)},
                       {}, log_, {}, why)) {
      return false;
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      if (Get("/-/ready").first == 200) return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    *why = "not ready in 60 s; log:\n" + ReadFileOrEmpty(log_);
    return false;
  }
  int Stop() { return daemon_.Stop(); }

  std::pair<int, std::string> Get(const std::string& path) {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(10);
    httplib::Result result = client.Get(path);
    if (!result) return {-1, httplib::to_string(result.error())};
    return {result->status, result->body};
  }

  // GET `path` as JSON, its "data" member; a null value if the call failed.
  google::protobuf::Value Data(const std::string& path) {
    std::pair<int, std::string> answer = Get(path);
    google::protobuf::Struct body;
    if (answer.first != 200 ||
        !google::protobuf::util::JsonStringToMessage(answer.second, &body).ok()) {
      return google::protobuf::Value();
    }
    google::protobuf::Value whole;
    *whole.mutable_struct_value() = std::move(body);
    return Field(whole, "data");
  }

  // The samples of an instant query: labels and value of each.
  std::vector<std::pair<std::map<std::string, std::string>, double>> Query(
      const std::string& promql) {
    std::vector<std::pair<std::map<std::string, std::string>, double>> samples;
    google::protobuf::Value data = Data(absl::StrCat(
        "/api/v1/query?query=", httplib::detail::encode_query_param(promql)));
    for (const google::protobuf::Value& sample : Items(Field(data, "result"))) {
      std::map<std::string, std::string> labels;
      for (const auto& [name, value] : Field(sample, "metric").struct_value().fields()) {
        labels[name] = value.string_value();
      }
      // [time, "value"]
      const auto& pair = Items(Field(sample, "value"));
      double value = 0;
      EXPECT_TRUE(pair.size() == 2 && absl::SimpleAtod(pair[1].string_value(), &value))
          << promql;
      samples.emplace_back(std::move(labels), value);
    }
    return samples;
  }

  // Polls `promql` until it returns at least one sample or 60 s pass.
  std::vector<std::pair<std::map<std::string, std::string>, double>> AwaitSamples(
      const std::string& promql) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (;;) {
      auto samples = Query(promql);
      if (!samples.empty() || absl::Now() > deadline) return samples;
      absl::SleepFor(absl::Milliseconds(200));
    }
  }

  const std::string& log() const { return log_; }

 private:
  Daemon daemon_;
  int port_ = -1;
  std::string log_;
};

// Prometheus scrapes a real offkeyd and evaluates the alerting and recording rules over
// what it scraped: every rule evaluates without error, the target is up and ready, the
// operation rate is recorded, and the certificate's days remain arrive.
TEST_F(MonitoringTest, PrometheusScrapesOffkeydAndEvaluatesTheRules) {
  AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
  Prometheus prometheus;
  std::string why;
  ASSERT_TRUE(prometheus.Start(server_->metrics_port(), &why)) << why;

  // Scraped: the target is up and offkeyd says it is ready (OffkeydNotReady's series).
  auto ready = prometheus.AwaitSamples("offkey_ready{job=\"offkeyd\"} == 1");
  ASSERT_EQ(ready.size(), 1u) << ReadFileOrEmpty(prometheus.log());
  EXPECT_EQ(ready[0].first["instance"],
            absl::StrCat("127.0.0.1:", server_->metrics_port()));
  EXPECT_EQ(prometheus.Query("up{job=\"offkeyd\"} == 0").size(), 0u);

  // Signatures show in a recording rule once two scrapes saw them.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(SignOnce("web-ec").ok());
  auto rate = prometheus.AwaitSamples(
      "offkey:operations:rate5m{job=\"offkeyd\",operation=\"sign\"} > 0");
  ASSERT_EQ(rate.size(), 1u) << ReadFileOrEmpty(prometheus.log());
  auto ratio = prometheus.AwaitSamples("offkey:server_error_ratio:rate5m");
  ASSERT_EQ(ratio.size(), 1u);
  EXPECT_EQ(ratio[0].second, 0);
  auto days = prometheus.AwaitSamples("offkey_certificate_expiry_days{key=\"web-ec\"}");
  ASSERT_EQ(days.size(), 1u);
  EXPECT_GT(days[0].second, 300);

  // Every rule of deploy/monitoring was loaded and evaluated without error; no alert
  // fires against a healthy offkeyd.
  google::protobuf::Value groups;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  int evaluated = 0, rules = 0;
  std::string errors;
  while (absl::Now() < deadline) {
    evaluated = rules = 0;
    errors.clear();
    groups = prometheus.Data("/api/v1/rules");
    for (const auto& group : Items(Field(groups, "groups"))) {
      for (const auto& rule : Items(Field(group, "rules"))) {
        ++rules;
        const std::string& health = Field(rule, "health").string_value();
        if (health == "ok") ++evaluated;
        if (health == "err") {
          absl::StrAppend(&errors, Field(rule, "name").string_value(), ": ",
                          Field(rule, "lastError").string_value(), "\n");
        }
      }
    }
    if (rules > 0 && evaluated == rules) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_GT(rules, 15);
  EXPECT_EQ(evaluated, rules) << errors;
  EXPECT_EQ(prometheus.Query("ALERTS{alertstate=\"firing\"}").size(), 0u);

  // Nothing but the loopback target: no Alertmanager, every target on 127.0.0.1.
  google::protobuf::Value alertmanagers = prometheus.Data("/api/v1/alertmanagers");
  EXPECT_EQ(Items(Field(alertmanagers, "activeAlertmanagers")).size(), 0);
  google::protobuf::Value targets = prometheus.Data("/api/v1/targets");
  const auto& active = Items(Field(targets, "activeTargets"));
  ASSERT_EQ(active.size(), 1);
  EXPECT_EQ(Field(active[0], "scrapeUrl").string_value(),
            absl::StrCat("http://127.0.0.1:", server_->metrics_port(), "/metrics"));
  EXPECT_EQ(prometheus.Stop(), 0) << ReadFileOrEmpty(prometheus.log());
}

}  // namespace
}  // namespace offkey::tests
