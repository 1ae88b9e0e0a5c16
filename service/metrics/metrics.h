// Metrics: offkeyd's Prometheus metrics (prometheus-cpp core, text exposition).
#ifndef OFFKEY_SERVICE_METRICS_METRICS_H_
#define OFFKEY_SERVICE_METRICS_METRICS_H_

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "offkey/v1/common.pb.h"
#include "offkey/v1/config.pb.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace offkey::service::metrics {

// The series:
//   offkey_operations_total{operation,code}              counter
//   offkey_operation_duration_seconds{operation,scheme}  histogram (scheme "none" for
//                                                        operations without one)
//   offkey_worker_queue_depth, offkey_hsm_sessions_in_use, offkey_hsm_sessions_max,
//   offkey_pipeline_streams, offkey_pipeline_items_in_flight, offkey_ready   gauges
//   offkey_config_reloads_total{outcome="applied"|"refused"}                  counter
//   offkey_audit_write_failures_total                                         counter
//   offkey_secret_memory_locked_bytes, offkey_secret_memory_lock_failures     gauges
//                                        (base/secret_bytes.h, sampled at scrape time)
// Label values come only from fixed enums and the scheme table: never a key name, an
// identity or anything else a caller sent. Thread-safe.
class Metrics {
 public:
  Metrics();

  // Counts one finished operation. Every child series exists from construction, so
  // this allocates nothing and takes no lock (prometheus-cpp's atomics only).
  void RecordOperation(offkey::v1::Operation op, offkey::v1::SignatureScheme scheme,
                       absl::StatusCode code, absl::Duration latency);
  void RecordReload(bool applied);
  // Counts one audit line that could not be written.
  void RecordAuditFailure() { audit_failures_->Increment(); }

  // Called at the start of every Scrape, to set the gauges below from live state.
  void SetSampler(std::function<void(Metrics&)> sampler);
  void SetQueueDepth(int depth) { queue_depth_->Set(depth); }
  void SetHsmSessions(int in_use, int max) {
    sessions_in_use_->Set(in_use);
    sessions_max_->Set(max);
  }
  void SetPipeline(int streams, int items) {
    streams_->Set(streams);
    items_->Set(items);
  }
  void SetReady(bool ready) { ready_->Set(ready ? 1 : 0); }

  // Everything in the Prometheus text exposition format (version 0.0.4).
  std::string Scrape();

 private:
  static constexpr int kOperations = 7;  // offkey::v1::Operation values, 0 unused.
  static constexpr int kCodes = 17;      // absl::StatusCode 0..16.
  static size_t SchemeIndex(offkey::v1::SignatureScheme scheme);

  std::shared_ptr<prometheus::Registry> registry_;
  // [op][code]; [op][scheme index]: index 0 is "none", the last is "unknown".
  std::array<std::array<prometheus::Counter*, kCodes>, kOperations> operations_{};
  std::array<std::vector<prometheus::Histogram*>, kOperations> durations_{};
  prometheus::Counter* reloads_applied_;
  prometheus::Counter* reloads_refused_;
  prometheus::Counter* audit_failures_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* sessions_in_use_;
  prometheus::Gauge* sessions_max_;
  prometheus::Gauge* streams_;
  prometheus::Gauge* items_;
  prometheus::Gauge* ready_;
  prometheus::Gauge* secret_locked_bytes_;
  prometheus::Gauge* secret_lock_failures_;
  offkey::Mutex sampler_mu_;  // One scrape samples at a time.
  std::function<void(Metrics&)> sampler_ ABSL_GUARDED_BY(sampler_mu_);
};

}  // namespace offkey::service::metrics

#endif  // OFFKEY_SERVICE_METRICS_METRICS_H_
