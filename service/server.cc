#include "service/server.h"

#include <unistd.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "service/config/policy.h"

namespace offkey::service {
namespace {

// How often the TLS files are re-read: rotated certificates take effect within this.
constexpr unsigned int kCertificateRefreshSeconds = 5;

absl::Status CheckReadable(const std::string& path, absl::string_view field) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": required (or set insecure_plaintext_for_development for local tests)"));
  }
  if (access(path.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": cannot read '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<OffkeyServer>> OffkeyServer::Start(
    const offkey::v1::ServerConfig& config, hsm::KeyStore* store) {
  std::unique_ptr<OffkeyServer> server(new OffkeyServer());
  OFFKEY_ASSIGN_OR_RETURN(
      config::Policy policy,
      config::Policy::Create(config.policy(), config.admin_identities()));
  server->catalog_ = std::make_unique<KeyCatalog>(store);
  server->operations_ = std::make_unique<Operations>(
      store, server->catalog_.get(),
      std::make_shared<const config::Policy>(std::move(policy)));
  int threads = config.workers().threads() > 0 ? config.workers().threads()
                                               : config.hsm().max_sessions();
  OFFKEY_ASSIGN_OR_RETURN(server->pool_,
                          WorkerPool::Create(threads, config.workers().queue_depth()));
  const bool plaintext = config.insecure_plaintext_for_development();
  OFFKEY_ASSIGN_OR_RETURN(server->audit_, AuditLog::Open(config.audit().path()));
  server->service_ = std::make_unique<KeyServiceAsync>(
      server->operations_.get(), server->pool_.get(), server->audit_.get(), plaintext);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (plaintext) {
    credentials = grpc::InsecureServerCredentials();
  } else {
    const auto& tls = config.tls();
    OFFKEY_RETURN_IF_ERROR(CheckReadable(tls.cert_file(), "tls.cert_file"));
    OFFKEY_RETURN_IF_ERROR(CheckReadable(tls.key_file(), "tls.key_file"));
    OFFKEY_RETURN_IF_ERROR(CheckReadable(tls.client_ca_file(), "tls.client_ca_file"));
    // Re-reads the files as they change (Kubernetes swaps secret volumes in place), so
    // rotation needs no restart and drops no connection.
    server->certificates_ =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            tls.key_file(), tls.cert_file(), tls.client_ca_file(),
            kCertificateRefreshSeconds);
    grpc::experimental::TlsServerCredentialsOptions options(server->certificates_);
    options.watch_root_certs();
    options.watch_identity_key_cert_pairs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    credentials = grpc::experimental::TlsServerCredentials(options);
  }

  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen_address(), credentials, &server->port_);
  // One completion-queue poller per core is enough: pollers only parse and dispatch.
  server->service_->Register(
      builder, static_cast<int>(std::max(2u, std::thread::hardware_concurrency())));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                               config.listen_address(),
                                               " (in use, or not a local address?)"));
  }
  server->service_->Start();
  return server;
}

OffkeyServer::~OffkeyServer() {
  Shutdown(absl::Seconds(5));
  // Order matters: the server has stopped taking calls; the pool finishes the queued
  // ones (their replies still need the pollers); then the pollers stop once every call
  // has completed; then the server goes.
  pool_.reset();
  service_->Stop();
  server_.reset();
  service_.reset();
}

void OffkeyServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  pool_->Shutdown();
}

void OffkeyServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace offkey::service
