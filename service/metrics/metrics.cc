#include "service/metrics/metrics.h"

#include <utility>

#include "base/secret_bytes.h"
#include "prometheus/text_serializer.h"
#include "service/metrics/build_info_gauge.h"
#include "service/operation_names.h"
#include "service/tls/schemes.h"

namespace offkey::service::metrics {
namespace {

// Upper bounds in seconds: 50 µs .. 2 s, dense around the sub-millisecond HSM range.
const prometheus::Histogram::BucketBoundaries& Buckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.0025, 0.005,
      0.0075,  0.01,   0.025,   0.05,   0.1,     0.25,  0.5,    1,      2};
  return *buckets;
}

}  // namespace

size_t Metrics::SchemeIndex(offkey::v1::SignatureScheme scheme) {
  if (scheme == offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) return 0;
  const tls::SchemeInfo* info = tls::FindScheme(scheme);
  absl::Span<const tls::SchemeInfo> all = tls::AllSchemes();
  // Row i of the table is index i + 1; past the table is "unknown".
  return info != nullptr ? static_cast<size_t>(info - all.data()) + 1 : all.size() + 1;
}

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  AddBuildInfoGauge(*registry_);
  auto& operations = prometheus::BuildCounter()
                         .Name("offkey_operations_total")
                         .Help("Data-plane operations finished, by outcome code.")
                         .Register(*registry_);
  auto& durations = prometheus::BuildHistogram()
                        .Name("offkey_operation_duration_seconds")
                        .Help("Time from a request's arrival to its answer.")
                        .Register(*registry_);
  std::vector<std::string> schemes = {"none"};
  for (const tls::SchemeInfo& info : tls::AllSchemes()) {
    schemes.push_back(std::string(info.name));
  }
  schemes.push_back("unknown");
  for (int op = 0; op < kOperations; ++op) {
    const std::string name(OperationName(static_cast<offkey::v1::Operation>(op)));
    for (int code = 0; code < kCodes; ++code) {
      operations_[op][code] = &operations.Add(
          {{"operation", name},
           {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}});
    }
    for (const std::string& scheme : schemes) {
      durations_[op].push_back(
          &durations.Add({{"operation", name}, {"scheme", scheme}}, Buckets()));
    }
  }
  auto& reloads = prometheus::BuildCounter()
                      .Name("offkey_config_reloads_total")
                      .Help("Configuration changes applied or refused while running.")
                      .Register(*registry_);
  reloads_applied_ = &reloads.Add({{"outcome", "applied"}});
  reloads_refused_ = &reloads.Add({{"outcome", "refused"}});
  audit_failures_ =
      &prometheus::BuildCounter()
           .Name("offkey_audit_write_failures_total")
           .Help("Audit lines that could not be written (see audit.fail_open).")
           .Register(*registry_)
           .Add({});
  auto gauge = [this](const char* name, const char* help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_).Add({});
  };
  queue_depth_ =
      gauge("offkey_worker_queue_depth", "Requests waiting for an HSM worker.");
  sessions_in_use_ = gauge("offkey_hsm_sessions_in_use", "HSM sessions in use.");
  sessions_max_ = gauge("offkey_hsm_sessions_max", "HSM sessions at most.");
  streams_ = gauge("offkey_pipeline_streams", "Open Pipeline streams.");
  items_ = gauge("offkey_pipeline_items_in_flight",
                 "Pipeline items taken and not yet answered.");
  ready_ = gauge("offkey_ready", "1 while the HSM is usable and offkeyd serving.");
  secret_locked_bytes_ =
      gauge("offkey_secret_memory_locked_bytes", "Bytes of secret pages locked in RAM.");
  secret_lock_failures_ =
      gauge("offkey_secret_memory_lock_failures",
            "Times secret pages could not be locked in RAM (RLIMIT_MEMLOCK) since "
            "start; they are used unlocked, still out of core dumps.");
}

void Metrics::RecordOperation(offkey::v1::Operation op,
                              offkey::v1::SignatureScheme scheme, absl::StatusCode code,
                              absl::Duration latency) {
  const int o = op > 0 && op < kOperations ? op : 0;
  const int c = static_cast<int>(code) >= 0 && static_cast<int>(code) < kCodes
                    ? static_cast<int>(code)
                    : static_cast<int>(absl::StatusCode::kUnknown);
  operations_[o][c]->Increment();
  durations_[o][SchemeIndex(scheme)]->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::RecordReload(bool applied) {
  (applied ? reloads_applied_ : reloads_refused_)->Increment();
}

void Metrics::SetSampler(std::function<void(Metrics&)> sampler) {
  offkey::MutexLock lock(&sampler_mu_);
  sampler_ = std::move(sampler);
}

std::string Metrics::Scrape() {
  {
    offkey::MutexLock lock(&sampler_mu_);
    if (sampler_) sampler_(*this);
  }
  const SecretMemoryStats secrets = SecretMemoryUsage();
  secret_locked_bytes_->Set(static_cast<double>(secrets.locked_bytes));
  secret_lock_failures_->Set(static_cast<double>(secrets.lock_failures));
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace offkey::service::metrics
