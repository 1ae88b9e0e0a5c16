#include "service/metrics/http_server.h"

#include <pthread.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace offkey::service::metrics {
namespace {

// Splits "host:port" / "[v6]:port".
absl::Status SplitAddress(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_address: '", address, "' is not host:port"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  if (!absl::SimpleAtoi(address.substr(colon + 1), port) || *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics_address: '", address, "' has no valid port"));
  }
  return absl::OkStatus();
}

void Probe(const HttpServer::Check& check, httplib::Response& response) {
  absl::Status status = check();
  response.status = status.ok() ? 200 : 503;
  response.set_content(
      status.ok() ? std::string("ok\n") : absl::StrCat(status.message(), "\n"),
      "text/plain; charset=utf-8");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& address,
                                                              Metrics* metrics,
                                                              const Check& live,
                                                              const Check& ready) {
  std::string host;
  int port = 0;
  if (absl::Status split = SplitAddress(address, &host, &port); !split.ok()) {
    return split;
  }
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->server_ = std::make_unique<httplib::Server>();
  httplib::Server& http = *server->server_;
  // Probes and scrapes are rare and cheap: two threads, not one per core.
  http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // One request per connection, and a short wait for it: an idle keep-alive connection
  // would otherwise hold one of the two threads, and Stop() with it.
  http.set_keep_alive_max_count(1);
  http.set_read_timeout(1, 0);
  // httplib's default adds SO_REUSEPORT, which would let a second process share the
  // port silently; a port in use must be an error.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& response) {
    response.set_content(metrics->Scrape(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [live](const httplib::Request&, httplib::Response& response) {
    Probe(live, response);
  });
  http.Get("/readyz", [ready](const httplib::Request&, httplib::Response& response) {
    Probe(ready, response);
  });
  for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
    auto not_allowed = [](const httplib::Request&, httplib::Response& response) {
      response.status = 405;
      response.set_header("Allow", "GET, HEAD");
    };
    http.Post(path, not_allowed);
    http.Put(path, not_allowed);
    http.Delete(path, not_allowed);
    http.Patch(path, not_allowed);
  }
  server->port_ = port == 0 ? http.bind_to_any_port(host)
                            : (http.bind_to_port(host, port) ? port : -1);
  if (server->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address, " for metrics (in use, or not a local address?)"));
  }
  server->thread_ = std::thread([&http] {
    // httplib's request threads start from this one and inherit its name.
    pthread_setname_np(pthread_self(), "offkey-metrics");
    http.listen_after_bind();
  });
  return server;
}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace offkey::service::metrics
