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

// The series in `slot`, made by `make` (a prometheus::Family::Add) on first use. Two
// threads racing here both get the one series: Add returns the existing child for
// labels it already has.
template <typename T, typename Make>
T& Child(std::atomic<T*>& slot, Make make) {
  T* child = slot.load(std::memory_order_acquire);
  if (child == nullptr) {
    child = &make();
    slot.store(child, std::memory_order_release);
  }
  return *child;
}

const char* PoolName(Metrics::Pool pool) {
  return pool == Metrics::Pool::kHsm ? "hsm" : "verify";
}

}  // namespace

size_t Metrics::SchemeIndex(offkey::v1::SignatureScheme scheme) {
  if (scheme == offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) return 0;
  const tls::SchemeInfo* info = tls::FindScheme(scheme);
  absl::Span<const tls::SchemeInfo> all = tls::AllSchemes();
  // Row i of the table is index i + 1; past the table is "unknown".
  return info != nullptr ? static_cast<size_t>(info - all.data()) + 1 : all.size() + 1;
}

int Metrics::OperationIndex(offkey::v1::Operation op) {
  return op > 0 && op < kOperations ? static_cast<int>(op) : 0;
}

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  AddBuildInfoGauge(*registry_);
  operations_family_ = &prometheus::BuildCounter()
                            .Name("offkey_operations_total")
                            .Help("Data-plane operations finished, by outcome code.")
                            .Register(*registry_);
  durations_family_ = &prometheus::BuildHistogram()
                           .Name("offkey_operation_duration_seconds")
                           .Help("Time from a request's arrival to its answer.")
                           .Register(*registry_);
  hsm_family_ = &prometheus::BuildHistogram()
                     .Name("offkey_hsm_call_duration_seconds")
                     .Help("Time one operation spent inside key store (HSM) calls.")
                     .Register(*registry_);
  queue_wait_family_ = &prometheus::BuildHistogram()
                            .Name("offkey_worker_queue_wait_seconds")
                            .Help("Time from a call's arrival to a worker starting it.")
                            .Register(*registry_);
  scheme_names_.push_back("none");
  for (const tls::SchemeInfo& info : tls::AllSchemes()) {
    scheme_names_.push_back(std::string(info.name));
  }
  scheme_names_.push_back("unknown");
  for (int op = 0; op < kOperations; ++op) {
    durations_[op] =
        std::make_unique<std::atomic<prometheus::Histogram*>[]>(scheme_names_.size());
    if (op != 0) OperationCounter(op, static_cast<int>(absl::StatusCode::kOk));
  }
  QueueWait(Pool::kHsm);
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

prometheus::Counter& Metrics::OperationCounter(int op, int code) {
  return Child(operations_[op][code], [&]() -> prometheus::Counter& {
    return operations_family_->Add(
        {{"operation",
          std::string(OperationName(static_cast<offkey::v1::Operation>(op)))},
         {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}});
  });
}

prometheus::Histogram& Metrics::QueueWait(Pool pool) {
  return Child(queue_waits_[static_cast<int>(pool)], [&]() -> prometheus::Histogram& {
    return queue_wait_family_->Add({{"pool", PoolName(pool)}}, Buckets());
  });
}

void Metrics::RecordOperation(offkey::v1::Operation op,
                              offkey::v1::SignatureScheme scheme, absl::StatusCode code,
                              absl::Duration latency) {
  const int o = OperationIndex(op);
  const int c = static_cast<int>(code) >= 0 && static_cast<int>(code) < kCodes
                    ? static_cast<int>(code)
                    : static_cast<int>(absl::StatusCode::kUnknown);
  OperationCounter(o, c).Increment();
  const size_t s = SchemeIndex(scheme);
  Child(durations_[o][s], [&]() -> prometheus::Histogram& {
    return durations_family_->Add(
        {{"operation", std::string(OperationName(static_cast<offkey::v1::Operation>(o)))},
         {"scheme", scheme_names_[s]}},
        Buckets());
  }).Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::RecordHsmCall(offkey::v1::Operation op, absl::Duration latency) {
  const int o = OperationIndex(op);
  Child(hsm_calls_[o], [&]() -> prometheus::Histogram& {
    return hsm_family_->Add(
        {{"operation",
          std::string(OperationName(static_cast<offkey::v1::Operation>(o)))}},
        Buckets());
  }).Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::RecordQueueWait(Pool pool, absl::Duration waited) {
  QueueWait(pool).Observe(absl::ToDoubleSeconds(waited));
}

void Metrics::SetCertificateExpiries(std::vector<CertificateExpiry> certificates) {
  std::map<std::string, absl::Time> by_key;
  for (CertificateExpiry& certificate : certificates) {
    by_key[std::move(certificate.key)] = certificate.not_after;
  }
  offkey::MutexLock lock(&certificates_mu_);
  certificates_ = std::move(by_key);
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
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  prometheus::MetricFamily expiry;
  expiry.name = "offkey_certificate_expiry_days";
  expiry.help = "Days until the certificate attached to a key expires (negative after).";
  expiry.type = prometheus::MetricType::Gauge;
  {
    const absl::Time now = absl::Now();
    offkey::MutexLock lock(&certificates_mu_);
    for (const auto& [key, not_after] : certificates_) {
      prometheus::ClientMetric sample;
      sample.label.push_back({"key", key});
      sample.gauge.value = absl::FDivDuration(not_after - now, absl::Hours(24));
      expiry.metric.push_back(std::move(sample));
    }
  }
  if (!expiry.metric.empty()) families.push_back(std::move(expiry));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace offkey::service::metrics
