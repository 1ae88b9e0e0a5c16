// HttpServer: the plain-HTTP port for Prometheus and Kubernetes probes (whose gRPC probes
// cannot speak mTLS): GET /metrics, /healthz (liveness) and /readyz (readiness).
#ifndef OFFKEY_SERVICE_METRICS_HTTP_SERVER_H_
#define OFFKEY_SERVICE_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/metrics/metrics.h"

namespace httplib {
class Server;
}

namespace offkey::service::metrics {

class HttpServer {
 public:
  using Check = std::function<absl::Status()>;

  // Binds `address` ("host:port" or "[v6]:port"; port 0 picks one) and serves on a
  // thread of its own: /metrics from `metrics` (borrowed, must outlive this), /healthz
  // 200 "ok" when `live` is OK else 503 with its message, /readyz likewise with `ready`;
  // 404 elsewhere, 405 for methods other than GET/HEAD. Returns once the port is bound.
  // INVALID_ARGUMENT for a malformed address; UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const std::string& address,
                                                           Metrics* metrics,
                                                           const Check& live,
                                                           const Check& ready);
  ~HttpServer();  // Stops.

  int port() const { return port_; }
  // Stops serving and joins the thread. Idempotent.
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace offkey::service::metrics

#endif  // OFFKEY_SERVICE_METRICS_HTTP_SERVER_H_
