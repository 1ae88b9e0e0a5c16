// Metrics: offkeyd's Prometheus metrics (prometheus-cpp core, text exposition).
#ifndef OFFKEY_SERVICE_METRICS_METRICS_H_
#define OFFKEY_SERVICE_METRICS_METRICS_H_

#include <array>
#include <atomic>
#include <functional>
#include <map>
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
//   offkey_hsm_call_duration_seconds{operation}          histogram: time inside the
//                                                        key store (the HSM) alone
//   offkey_worker_queue_wait_seconds{pool="hsm"|"verify"} histogram: arrival to a
//                                                        worker starting the call
//   offkey_certificate_expiry_days{key}                  gauge, one per key with a
//                                                        certificate; negative once
//                                                        expired
//   offkey_worker_queue_depth, offkey_hsm_sessions_in_use, offkey_hsm_sessions_max,
//   offkey_pipeline_streams, offkey_pipeline_items_in_flight, offkey_ready   gauges
//   offkey_config_reloads_total{outcome="applied"|"refused"}                  counter
//   offkey_audit_write_failures_total                                         counter
//   offkey_secret_memory_locked_bytes, offkey_secret_memory_lock_failures     gauges
//                                        (base/secret_bytes.h, sampled at scrape time)
// A labelled series exists once something was recorded in it, not for every label
// combination that could occur (operations x schemes x codes would be thousands of
// mostly empty series); offkey_operations_total{code="OK"} of each operation and the
// HSM pool's queue wait exist from the start, so rates and alerts have a zero to start
// from. Label values come only from fixed enums and the scheme table, except `key`:
// the names of keys on the token (operator-chosen, one series per key, never anything
// a caller sent). Thread-safe.
class Metrics {
 public:
  // The worker pools a call may queue for.
  enum class Pool { kHsm, kVerify };
  // A key's certificate, as offkey_certificate_expiry_days reports it.
  struct CertificateExpiry {
    std::string key;  // The key's name.
    absl::Time not_after;
  };

  Metrics();

  // Counts one finished operation. After a series' first use this allocates nothing
  // and takes no lock (prometheus-cpp's atomics only); the first use adds the series
  // under prometheus-cpp's family lock.
  void RecordOperation(offkey::v1::Operation op, offkey::v1::SignatureScheme scheme,
                       absl::StatusCode code, absl::Duration latency);
  // Records the time one operation spent in key store calls (all of them, if it made
  // several), whatever they returned.
  void RecordHsmCall(offkey::v1::Operation op, absl::Duration latency);
  // Records how long a call waited between its arrival and a worker starting it.
  void RecordQueueWait(Pool pool, absl::Duration waited);
  void RecordReload(bool applied);
  // Counts one audit line that could not be written.
  void RecordAuditFailure() { audit_failures_->Increment(); }
  // Replaces the certificates offkey_certificate_expiry_days reports: one series per
  // entry (the last one wins for a repeated key), none for keys no longer given. The
  // days are computed at scrape time, so they are current whenever this was last
  // called.
  void SetCertificateExpiries(std::vector<CertificateExpiry> certificates);

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
  // offkey::v1::Operation values, 0 unused.
  static constexpr int kOperations = offkey::v1::Operation_MAX + 1;
  static constexpr int kCodes = 17;  // absl::StatusCode 0..16.
  static constexpr int kPools = 2;
  static size_t SchemeIndex(offkey::v1::SignatureScheme scheme);
  static int OperationIndex(offkey::v1::Operation op);

  prometheus::Counter& OperationCounter(int op, int code);
  prometheus::Histogram& QueueWait(Pool pool);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* operations_family_;
  prometheus::Family<prometheus::Histogram>* durations_family_;
  prometheus::Family<prometheus::Histogram>* hsm_family_;
  prometheus::Family<prometheus::Histogram>* queue_wait_family_;
  // The series made so far (null until first used): [op][code]; [op][scheme index],
  // where index 0 is "none" and the last "unknown"; [op]; [pool].
  std::array<std::array<std::atomic<prometheus::Counter*>, kCodes>, kOperations>
      operations_{};
  std::array<std::unique_ptr<std::atomic<prometheus::Histogram*>[]>, kOperations>
      durations_;
  std::array<std::atomic<prometheus::Histogram*>, kOperations> hsm_calls_{};
  std::array<std::atomic<prometheus::Histogram*>, kPools> queue_waits_{};
  std::vector<std::string> scheme_names_;  // By scheme index.
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
  offkey::Mutex certificates_mu_;
  // By key name, sorted so scrapes list them in one order.
  std::map<std::string, absl::Time> certificates_ ABSL_GUARDED_BY(certificates_mu_);
};

}  // namespace offkey::service::metrics

#endif  // OFFKEY_SERVICE_METRICS_METRICS_H_
