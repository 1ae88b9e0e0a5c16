// The KeyService RPCs on gRPC's completion-queue API. Poller threads take calls off the
// queues and hand them to the worker pool; a worker runs the operation (the HSM call)
// and starts the reply. No HSM call runs on a gRPC thread, and no call takes an extra
// thread hop (gRPC 1.51's callback API runs handlers on threads of its own).
#ifndef OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_
#define OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/audit.h"
#include "service/call_support.h"
#include "service/caller.h"
#include "service/metrics/metrics.h"
#include "service/operations.h"
#include "service/pipeline_reactor.h"
#include "service/worker_pool.h"

namespace offkey::service {

class KeyServiceAsync {
 public:
  struct Options {
    bool allow_plaintext = false;
    // Items in flight per Pipeline stream before the stream stops reading.
    int stream_max_in_flight = 128;
    // Where VerifyClient runs (it needs no HSM); null: on `pool`. Must outlive this.
    WorkerPool* verify_pool = nullptr;
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

  int open_streams() const { return pipeline_.open_streams(); }
  PipelineRegistry& PipelineForTest() { return pipeline_; }
  int stream_items_in_flight() const { return pipeline_.items_in_flight(); }

  // What a call needs from the service (used by the per-call state machines).
  const RpcEnvironment& env() const { return env_; }
  // Unary calls accepted and not yet completed.
  std::atomic<int>& active_calls() { return active_calls_; }

 private:
  IdentityCache identities_;
  KeyServiceAsyncBase service_;
  const RpcEnvironment env_;
  PipelineRegistry pipeline_;  // The Pipeline streams (pipeline_reactor.h).
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> pollers_;
  std::atomic<int> active_calls_{0};
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_
