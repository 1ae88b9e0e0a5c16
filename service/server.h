// OffkeyServer: offkeyd as a library. main() parses flags and calls Start; tests start
// it on port 0.
#ifndef OFFKEY_SERVICE_SERVER_H_
#define OFFKEY_SERVICE_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "hsm/key_store.h"
#include "offkey/v1/config.pb.h"
#include "service/admin/key_admin.h"
#include "service/admin/key_admin_service.h"
#include "service/key_catalog.h"
#include "service/key_service_async.h"
#include "service/metrics/http_server.h"
#include "service/metrics/metrics.h"
#include "service/operations.h"
#include "service/worker_pool.h"

namespace offkey::service {

struct ServerOptions {
  // Produces the configuration again (the file re-read, flags re-applied, defaults and
  // validation done) for hot reload; null: the configuration is not re-read, though the
  // TLS files and trust bundles it names still are.
  std::function<absl::StatusOr<offkey::v1::ServerConfig>()> reload_config;
  // How often the HSM's health is checked (readiness, grpc.health.v1).
  absl::Duration health_interval = absl::Seconds(1);
  // Where operational log lines go (never secrets). Default: standard error.
  std::function<void(const std::string& line)> log;
  // What time it is for the admin plane (destruction windows); tests inject a clock.
  std::function<absl::Time()> clock = &absl::Now;
  // How often keys whose destruction window has ended are destroyed.
  absl::Duration destruction_interval = absl::Seconds(10);
};

// The data-plane listener, its worker pool and everything behind it: health, metrics,
// reflection, reloads. The KeyStore is borrowed and must outlive the server.
class OffkeyServer {
 public:
  // Starts serving `config` (validated, defaults applied). A listen address with port 0
  // binds a free port (see port(), metrics_port()). Errors: INVALID_ARGUMENT for a bad
  // policy, trust bundle or missing TLS files (named), UNAVAILABLE if an address cannot
  // be bound.
  static absl::StatusOr<std::unique_ptr<OffkeyServer>> Start(
      const offkey::v1::ServerConfig& config, hsm::KeyStore* store,
      ServerOptions options = {});
  // Shuts down (see Shutdown) if still running.
  ~OffkeyServer();

  int port() const { return port_; }
  // The admin listener's port; 0 when admin_listen_address is not set.
  int admin_port() const { return admin_port_; }
  int metrics_port() const { return http_->port(); }

  // Graceful drain: readiness and health go NOT_SERVING; calls and streams keep being
  // served until none is in flight for 100 ms (at most grace/2); then Pipeline streams
  // answer what they took and end with UNAVAILABLE, the listener stops accepting calls,
  // calls in flight finish for up to `grace`, and the rest are cancelled. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until the server has shut down.
  void Wait();

  // Makes the next call re-read keys from the token (after keys changed behind the
  // server's back; otherwise changes show within the catalog's TTL).
  void InvalidateKeyCache() { catalog_->Invalidate(); }

  // Runs one reload pass now (what the background thread does every interval). OK when
  // nothing changed or the change was applied; the error when a new config was refused.
  absl::Status ReloadNow();

 private:
  explicit OffkeyServer(ServerOptions options) : options_(std::move(options)) {}

  void Log(const std::string& line) const;
  // Asks the store for its health (which may hang inside a hung HSM), then publishes.
  void CheckHealthNow();
  // Sets grpc.health.v1's serving status from Ready(). Never touches the HSM.
  void PublishServing();
  // Reloads and publishes serving status: never held up by the HSM.
  void Background();
  // Health checks and due key destructions: the periodic work that calls the HSM.
  void HsmWork();
  void DestroyDueKeys();
  // UNAVAILABLE while draining, while the last health check failed, and while one has
  // been running past its bound (stuck in a hung HSM).
  absl::Status Ready() const;
  bool HealthCheckStuck() const;

  ServerOptions options_;
  // Before everything that records into it (the catalog's thread, the audit log), so it
  // is destroyed after them.
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<KeyCatalog> catalog_;
  std::unique_ptr<Operations> operations_;
  std::unique_ptr<WorkerPool> pool_;         // HSM work.
  std::unique_ptr<WorkerPool> verify_pool_;  // VerifyClient (no HSM).
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<KeyServiceAsync> service_;
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> certificates_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<admin::KeyAdmin> admin_;
  std::unique_ptr<admin::KeyAdminService> admin_service_;
  std::unique_ptr<grpc::Server> admin_server_;  // Null without admin_listen_address.
  int admin_port_ = 0;
  std::unique_ptr<metrics::HttpServer> http_;
  hsm::KeyStore* store_ = nullptr;
  int port_ = 0;

  // Reload state: what the running configuration was made from.
  offkey::Mutex reload_mu_;
  offkey::v1::ServerConfig config_ ABSL_GUARDED_BY(reload_mu_);
  std::string trust_fingerprint_ ABSL_GUARDED_BY(reload_mu_);
  std::string last_refusal_ ABSL_GUARDED_BY(reload_mu_);
  // Serialized fields a reload cannot change: as started, and as last reported changed.
  std::string running_restart_only_ ABSL_GUARDED_BY(reload_mu_);
  std::string reported_restart_only_ ABSL_GUARDED_BY(reload_mu_);

  mutable offkey::Mutex health_mu_;
  absl::Status hsm_health_ ABSL_GUARDED_BY(health_mu_);
  // When the health check under way began; InfiniteFuture when none is.
  absl::Time health_check_since_ ABSL_GUARDED_BY(health_mu_) = absl::InfiniteFuture();
  std::atomic<bool> draining_{false};

  offkey::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread background_;
  std::thread hsm_work_;
  std::string last_destruction_error_;  // HsmWork thread only.
  bool shut_down_ = false;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_SERVER_H_
