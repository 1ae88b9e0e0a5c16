// The KeyService RPCs on gRPC's completion-queue API. Poller threads take calls off the
// queues and hand them to the worker pool; a worker runs the operation (the HSM call)
// and starts the reply. No HSM call runs on a gRPC thread, and no call takes an extra
// thread hop (gRPC 1.51's callback API runs handlers on threads of its own).
#ifndef OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_
#define OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_

#include <memory>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/audit.h"
#include "service/caller.h"
#include "service/operations.h"
#include "service/worker_pool.h"

namespace offkey::service {

// The five handshake RPCs are served asynchronously; VerifyClient and Pipeline keep the
// generated defaults (UNIMPLEMENTED) until they are built.
using KeyServiceAsyncBase = offkey::v1::KeyService::WithAsyncMethod_Sign<
    offkey::v1::KeyService::WithAsyncMethod_DecryptPremaster<
        offkey::v1::KeyService::WithAsyncMethod_DeriveMasterSecret<
            offkey::v1::KeyService::WithAsyncMethod_GetCertificate<
                offkey::v1::KeyService::WithAsyncMethod_ListKeys<
                    offkey::v1::KeyService::Service>>>>>;

class KeyServiceAsync {
 public:
  // `audit` may be null (no audit lines); it must outlive this.
  KeyServiceAsync(Operations* operations, WorkerPool* pool, AuditLog* audit,
                  bool allow_plaintext);
  ~KeyServiceAsync();

  // Registers the service and one completion queue per poller with `builder`.
  void Register(grpc::ServerBuilder& builder, int pollers);
  // Starts the pollers; call after the server is built.
  void Start();
  // After grpc::Server::Shutdown and after the worker pool has drained: stops the
  // pollers once every call has completed.
  void Stop();

  // What a call needs from the service (used by the per-call state machines).
  Operations* operations() { return operations_; }
  WorkerPool* pool() { return pool_; }
  IdentityCache& identities() { return identities_; }
  AuditLog* audit() { return audit_; }
  bool allow_plaintext() const { return allow_plaintext_; }
  KeyServiceAsyncBase& service() { return service_; }

 private:
  Operations* const operations_;
  WorkerPool* const pool_;
  AuditLog* const audit_;
  const bool allow_plaintext_;
  IdentityCache identities_;
  KeyServiceAsyncBase service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues_;
  std::vector<std::thread> pollers_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_KEY_SERVICE_ASYNC_H_
