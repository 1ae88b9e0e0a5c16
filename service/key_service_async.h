// The KeyService RPCs on gRPC's completion-queue API. Poller threads take calls off the
// queues and hand them to the worker pool; a worker runs the operation (the HSM call)
// and starts the reply. No HSM call runs on a gRPC thread, and no call takes an extra
// thread hop (gRPC 1.51's callback API runs handlers on threads of its own).
#ifndef OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_
#define OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_

#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/audit.h"
#include "service/caller.h"
#include "service/metrics/metrics.h"
#include "service/operations.h"
#include "service/worker_pool.h"

namespace offkey::service {

using KeyServiceAsyncBase = offkey::v1::KeyService::AsyncService;

class PipelineStream;

class KeyServiceAsync {
 public:
  struct Options {
    bool allow_plaintext = false;
    // Items in flight per Pipeline stream before the stream stops reading.
    int stream_max_in_flight = 128;
  };

  // `audit` and `metrics` may be null; what is given must outlive this.
  KeyServiceAsync(Operations* operations, WorkerPool* pool, AuditLog* audit,
                  metrics::Metrics* metrics, Options options);
  ~KeyServiceAsync();

  // Registers the service and one completion queue per poller with `builder`.
  void Register(grpc::ServerBuilder& builder, int pollers);
  // Starts the pollers; call after the server is built.
  void Start();
  // Before grpc::Server::Shutdown: every Pipeline stream stops reading, answers the items
  // it has taken, and ends with UNAVAILABLE so its client reconnects elsewhere. Streams
  // that arrive later get the same at once. Idempotent.
  void Drain();
  // After grpc::Server::Shutdown and after the worker pool has drained: stops the
  // pollers once every call has completed.
  void Stop();

  int open_streams() const { return open_streams_.load(std::memory_order_relaxed); }
  int stream_items_in_flight() const {
    return stream_items_.load(std::memory_order_relaxed);
  }

  // What a call needs from the service (used by the per-call state machines).
  Operations* operations() { return operations_; }
  WorkerPool* pool() { return pool_; }
  IdentityCache& identities() { return identities_; }
  const Options& options() const { return options_; }
  KeyServiceAsyncBase& service() { return service_; }
  // Writes the audit line and the metrics of one finished operation.
  void Record(const AuditRecord& record, offkey::v1::Operation kind,
              offkey::v1::SignatureScheme scheme);

  // Stream registry, for Drain. Add returns false when draining has begun.
  bool AddStream(PipelineStream* stream);
  void RemoveStream(PipelineStream* stream);
  std::atomic<int>& stream_items() { return stream_items_; }
  // Unary calls accepted and not yet completed.
  std::atomic<int>& active_calls() { return active_calls_; }

 private:
  Operations* const operations_;
  WorkerPool* const pool_;
  AuditLog* const audit_;
  metrics::Metrics* const metrics_;
  const Options options_;
  IdentityCache identities_;
  KeyServiceAsyncBase service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> pollers_;

  absl::Mutex streams_mu_;
  std::set<PipelineStream*> streams_ ABSL_GUARDED_BY(streams_mu_);
  bool draining_ ABSL_GUARDED_BY(streams_mu_) = false;
  std::atomic<int> open_streams_{0};
  std::atomic<int> stream_items_{0};
  std::atomic<int> active_calls_{0};
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_
