// OffkeyServer: offkeyd as a library. main() parses flags and calls Start; tests start
// it on port 0.
#ifndef OFFKEY_SERVICE_SERVER_H_
#define OFFKEY_SERVICE_SERVER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "hsm/key_store.h"
#include "offkey/v1/config.pb.h"
#include "service/key_catalog.h"
#include "service/key_service_async.h"
#include "service/operations.h"
#include "service/worker_pool.h"

namespace offkey::service {

// The data-plane listener, its worker pool and everything behind it. The KeyStore is
// borrowed and must outlive the server.
class OffkeyServer {
 public:
  // Starts serving `config` (validated, defaults applied). A listen address with port 0
  // binds a free port (see port()). Errors: INVALID_ARGUMENT for a bad policy or missing
  // TLS files (named), UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<OffkeyServer>> Start(
      const offkey::v1::ServerConfig& config, hsm::KeyStore* store);
  // Shuts down (see Shutdown) if still running.
  ~OffkeyServer();

  int port() const { return port_; }

  // Stops accepting calls, lets calls in flight finish for up to `grace`, then cancels
  // the rest. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

  // Makes the next call re-read keys from the token (after keys changed behind the
  // server's back; otherwise changes show within the catalog's TTL).
  void InvalidateKeyCache() { catalog_->Invalidate(); }

 private:
  OffkeyServer() = default;

  std::unique_ptr<KeyCatalog> catalog_;
  std::unique_ptr<Operations> operations_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<KeyServiceAsync> service_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> certificates_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_SERVER_H_
