#include "service/server.h"

#include <malloc.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "service/call_support.h"
#include "service/clientverify/client_verifier.h"
#include "service/config/policy.h"
#include "service/config_diff.h"
#include "service/proto_convert.h"
#include "service/tls/handshake_shape.h"

namespace offkey::service {
namespace {

constexpr char kServiceName[] = "offkey.v1.KeyService";
constexpr char kAdminServiceName[] = "offkey.v1.KeyAdmin";

// A health check still running after this long has failed: the store's check waits at
// most 2 s for a session (hsm/pkcs11/token.cc), so a longer one is stuck in the HSM.
constexpr absl::Duration kHealthCheckBound = absl::Seconds(2);
// How often the serving status is published, at most: a health check stuck past its
// bound shows in grpc.health.v1 this soon (/readyz and offkey_ready ask Ready() live).
constexpr absl::Duration kPublishEvery = absl::Milliseconds(200);
// How often freed heap memory goes back to the system (glibc keeps it in per-thread
// arenas otherwise, and gRPC's and the HSM's threads each have one): RSS then tracks what
// offkeyd uses, which is what a memory limit and a leak alert look at. A trim walks
// the arenas once, well under a millisecond at offkeyd's size.
constexpr absl::Duration kTrimEvery = absl::Minutes(1);

// Clients (liboffkey) ping idle connections every 20 s so a dead replica is noticed
// before a handshake waits on it; gRPC's server default would answer pings that
// frequent with GOAWAY "too_many_pings". Pings closer than 10 s still count as abuse.
void AllowClientKeepalive(grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
}

// connections.*: offkeyd closes idle or old data-plane connections with a GOAWAY.
// liboffkey reconnects on its next call (client/offkey_client.cc explains why that
// works in a terminator whose only thread is blocked elsewhere meanwhile). A timer of
// 0 keeps gRPC's default: never. (ApplyDefaults gives max_age_ms its default.)
void CloseConnections(grpc::ServerBuilder& builder,
                      const offkey::v1::ConnectionConfig& connections) {
  if (connections.max_idle_ms() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               connections.max_idle_ms());
  }
  if (connections.max_age_ms() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, connections.max_age_ms());
  }
  if (connections.max_age_grace_ms() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               connections.max_age_grace_ms());
  }
}

// Streams one connection may have open at once (each call is a stream): a client that
// opens more waits for earlier ones to end, rather than one connection taking every
// poller and worker.
void LimitConnections(grpc::ServerBuilder& builder,
                      const offkey::v1::ServerConfig& config) {
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             config.limits().max_concurrent_streams());
}

// The admin plane's largest request is AttachCertificate with a PEM chain (at most
// 1 MiB; each RPC's own limit is checked in KeyAdminService). Anything larger is refused
// by gRPC before it is parsed.
constexpr int kMaxAdminReceiveBytes = 2 * 1024 * 1024;

// Completion-queue threads of the KeyService: one per core is enough, as they mostly
// parse and dispatch; one more when they may also run calls
// (workers.run_on_rpc_threads_when_idle), which all but one of them then may.
int RpcThreads(const offkey::v1::ServerConfig& config) {
  const int per_core =
      static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  return config.workers().run_on_rpc_threads_when_idle() ? per_core + 1 : per_core;
}

// The HSM workers: as many as HSM sessions unless configured; each identity may hold
// limits.max_calls_in_flight_per_identity of them and their queue (0: half the queue).
WorkerPool::Options HsmPoolOptions(const offkey::v1::ServerConfig& config) {
  WorkerPool::Options options;
  options.threads = config.workers().threads() > 0 ? config.workers().threads()
                                                   : config.hsm().max_sessions();
  options.queue_depth = config.workers().queue_depth();
  // A call may run on the gRPC thread that took it (workers.run_on_rpc_threads_when_idle)
  // while another such thread stays free to take the next.
  options.max_running_here =
      config.workers().run_on_rpc_threads_when_idle() ? RpcThreads(config) - 1 : 0;
  options.max_per_identity = config.limits().max_calls_in_flight_per_identity() > 0
                                 ? config.limits().max_calls_in_flight_per_identity()
                                 : std::max(1, options.queue_depth / 2);
  options.thread_name = "offkey-worker";
  options.waiting_for = "the HSM";
  return options;
}

// VerifyClient's threads (OpenSSL only). One identity may hold half of its queue, and
// no more than it may hold of the HSM pool's.
WorkerPool::Options VerifyPoolOptions(const offkey::v1::ServerConfig& config) {
  WorkerPool::Options options;
  options.threads = config.limits().verify_client_threads();
  options.queue_depth = config.limits().verify_client_queue_depth();
  options.max_per_identity = std::min(std::max(1, options.queue_depth / 2),
                                      HsmPoolOptions(config).max_per_identity);
  options.thread_name = "offkey-verify";
  options.waiting_for = "client verification";
  return options;
}

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

tls::HandshakeShapeOptions ShapeOptionsOf(const offkey::v1::ServerConfig& config) {
  tls::HandshakeShapeOptions options;
  options.allow_rfc7919_dhe = config.handshake().allow_rfc7919_dhe();
  return options;
}

// The fields that make the Policy.
offkey::v1::ServerConfig PolicyPart(const offkey::v1::ServerConfig& config) {
  offkey::v1::ServerConfig part;
  *part.mutable_policy() = config.policy();
  *part.mutable_admin_identities() = config.admin_identities();
  return part;
}

// The policy and trust bundles of `config`, built and checked together so that a reload
// applies both or neither.
struct Reloadable {
  std::shared_ptr<const config::Policy> policy;
  std::shared_ptr<const clientverify::TrustStore> trust;
};

// Gives `metrics` the expiry of each named key's certificate (the leaf of its chain).
// A chain that does not parse is left out (GetCertificate reports it as it is).
void ReportCertificates(const std::vector<std::shared_ptr<const KeyRecord>>& keys,
                        metrics::Metrics* metrics) {
  std::vector<metrics::Metrics::CertificateExpiry> expiries;
  for (const std::shared_ptr<const KeyRecord>& key : keys) {
    if (key->chain.empty() || key->info.name.empty()) continue;
    absl::StatusOr<offkey::v1::CertificateSummary> leaf =
        SummarizeCertificate(key->chain[0]);
    if (!leaf.ok()) continue;
    expiries.push_back({key->info.name, absl::FromUnixSeconds(leaf->not_after())});
  }
  metrics->SetCertificateExpiries(std::move(expiries));
}

absl::StatusOr<Reloadable> BuildReloadable(const offkey::v1::ServerConfig& config) {
  OFFKEY_ASSIGN_OR_RETURN(
      config::Policy policy,
      config::Policy::Create(config.policy(), config.admin_identities()));
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const clientverify::TrustStore> trust,
                          clientverify::TrustStore::Load(config.trust_bundles()));
  return Reloadable{std::make_shared<const config::Policy>(std::move(policy)),
                    std::move(trust)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<OffkeyServer>> OffkeyServer::Start(
    const offkey::v1::ServerConfig& config, hsm::KeyStore* store, ServerOptions options) {
  std::unique_ptr<OffkeyServer> server(new OffkeyServer(std::move(options)));
  server->store_ = store;
  OFFKEY_ASSIGN_OR_RETURN(Reloadable reloadable, BuildReloadable(config));
  {
    offkey::MutexLock lock(&server->reload_mu_);
    server->config_ = config;
    server->running_restart_only_ = RestartOnlyPart(config).SerializeAsString();
    server->trust_fingerprint_ = reloadable.trust->fingerprint();
  }
  server->metrics_ = std::make_unique<metrics::Metrics>();
  server->catalog_ = std::make_unique<KeyCatalog>(
      store, absl::Seconds(5), absl::Seconds(1),
      [m = server->metrics_.get()](const auto& keys) { ReportCertificates(keys, m); });
  server->operations_ =
      std::make_unique<Operations>(store, server->catalog_.get(),
                                   std::move(reloadable.policy), server->metrics_.get());
  server->operations_->SetTrustStore(std::move(reloadable.trust));
  server->operations_->SetHandshakeShapeOptions(ShapeOptionsOf(config));
  OFFKEY_ASSIGN_OR_RETURN(server->pool_, WorkerPool::Create(HsmPoolOptions(config)));
  OFFKEY_ASSIGN_OR_RETURN(server->verify_pool_,
                          WorkerPool::Create(VerifyPoolOptions(config)));
  const bool plaintext = config.insecure_plaintext_for_development();
  AuditOptions audit_options;
  audit_options.fail_open = config.audit().fail_open();
  audit_options.log = [s = server.get()](const std::string& line) { s->Log(line); };
  audit_options.on_failure = [m = server->metrics_.get()] { m->RecordAuditFailure(); };
  OFFKEY_ASSIGN_OR_RETURN(
      server->audit_, AuditLog::Open(config.audit().path(), std::move(audit_options)));
  KeyServiceAsync::Options service_options;
  service_options.allow_plaintext = plaintext;
  service_options.stream_max_in_flight = config.stream().max_in_flight();
  service_options.verify_pool = server->verify_pool_.get();
  server->service_ = std::make_unique<KeyServiceAsync>(
      server->operations_.get(), server->pool_.get(), server->audit_.get(),
      server->metrics_.get(), service_options);

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
            config.reload().interval_seconds());
    grpc::experimental::TlsServerCredentialsOptions tls_options(server->certificates_);
    tls_options.watch_root_certs();
    tls_options.watch_identity_key_cert_pairs();
    tls_options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    credentials = grpc::experimental::TlsServerCredentials(tls_options);
  }

  // grpc.health.v1 (served by gRPC itself) and reflection, so generic tools can call.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  AllowClientKeepalive(builder);
  LimitConnections(builder, config);
  CloseConnections(builder, config.connections());
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(call_support::kMaxReceiveMessageBytes));
  builder.SetMaxSendMessageSize(static_cast<int>(call_support::kMaxSendMessageBytes));
  builder.AddListeningPort(config.listen_address(), credentials, &server->port_);
  server->service_->Register(builder, RpcThreads(config));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                               config.listen_address(),
                                               " (in use, or not a local address?)"));
  }
  server->service_->Start();

  // The admin plane: its own listener (same mTLS), its own sync threads.
  server->admin_ = std::make_unique<admin::KeyAdmin>(store, server->catalog_.get(),
                                                     server->options_.clock);
  // A set destroyed through this replica stops working here at once (elsewhere within
  // the ticket cache's recheck interval).
  server->admin_->SetTicketKeySetDestroyedHook(
      [operations = server->operations_.get()](const std::string& name) {
        operations->ticket_key_sets().Forget(name);
      });
  if (!config.admin_listen_address().empty()) {
    Operations* operations = server->operations_.get();
    server->admin_service_ = std::make_unique<admin::KeyAdminService>(
        server->admin_.get(), [operations] { return operations->policy(); },
        server->audit_.get(), plaintext);
    grpc::ServerBuilder admin_builder;
    AllowClientKeepalive(admin_builder);
    LimitConnections(admin_builder, config);
    admin_builder.SetMaxReceiveMessageSize(kMaxAdminReceiveBytes);
    admin_builder.SetMaxSendMessageSize(
        static_cast<int>(call_support::kMaxSendMessageBytes));
    admin_builder.AddListeningPort(config.admin_listen_address(), credentials,
                                   &server->admin_port_);
    admin_builder.RegisterService(server->admin_service_.get());
    admin_builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::NUM_CQS, 1);
    admin_builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                                      2);
    server->admin_server_ = admin_builder.BuildAndStart();
    if (server->admin_server_ == nullptr || server->admin_port_ == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on admin_listen_address ",
                                                 config.admin_listen_address(),
                                                 " (in use, or not a local address?)"));
    }
  }
  server->CheckHealthNow();

  OffkeyServer* self = server.get();
  server->metrics_->SetSampler([self](metrics::Metrics& metrics) {
    hsm::KeyStore::SessionUse sessions = self->store_->Sessions();
    metrics.SetQueueDepth(self->pool_->queued());
    metrics.SetHsmSessions(sessions.in_use, sessions.max);
    metrics.SetPipeline(self->service_->open_streams(),
                        self->service_->stream_items_in_flight());
    metrics.SetReady(self->Ready().ok());
  });
  OFFKEY_ASSIGN_OR_RETURN(
      server->http_,
      metrics::HttpServer::Start(
          config.metrics_address(), server->metrics_.get(),
          [] { return absl::OkStatus(); }, [self] { return self->Ready(); }));
  // Named for top, perf and tests/bench/thread_cpu.py.
  server->background_ = std::thread([self] {
    pthread_setname_np(pthread_self(), "offkey-reload");
    self->Background();
  });
  server->hsm_work_ = std::thread([self] {
    pthread_setname_np(pthread_self(), "offkey-hsm-care");
    self->HsmWork();
  });
  return server;
}

OffkeyServer::~OffkeyServer() {
  {
    offkey::MutexLock lock(&stop_mu_);
    stopping_ = true;
  }
  if (background_.joinable()) background_.join();
  // Waits for a health check inside the HSM to return, as the pool below waits for the
  // operations inside it.
  if (hsm_work_.joinable()) hsm_work_.join();
  Shutdown(absl::Seconds(5));
  // Order matters: the server has stopped taking calls; the pools finish the queued
  // ones (their replies still need the pollers); then the pollers stop once every call
  // has completed; only then do the pools go, as a poller still in a call that arrived
  // during the shutdown may yet submit to one (and be refused).
  if (pool_ != nullptr) pool_->Drain();
  if (verify_pool_ != nullptr) verify_pool_->Drain();
  admin_server_.reset();
  if (service_ != nullptr) service_->Stop();
  pool_.reset();
  verify_pool_.reset();
  server_.reset();
  service_.reset();
  http_.reset();
}

void OffkeyServer::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    fprintf(stderr, "offkeyd: %s\n", line.c_str());
  }
}

absl::Status OffkeyServer::Ready() const {
  if (draining_.load()) return absl::UnavailableError("shutting down");
  offkey::MutexLock lock(&health_mu_);
  // A call into a hung HSM never returns, so neither does the check that made it: past
  // its bound, a check under way is a failed one.
  const absl::Duration running = absl::Now() - health_check_since_;
  if (running > kHealthCheckBound) {
    return absl::UnavailableError(
        absl::StrCat("the HSM health check has not returned for ",
                     absl::FormatDuration(absl::Trunc(running, absl::Milliseconds(100))),
                     " (a hung HSM call?)"));
  }
  return hsm_health_;
}

bool OffkeyServer::HealthCheckStuck() const {
  offkey::MutexLock lock(&health_mu_);
  return absl::Now() - health_check_since_ > kHealthCheckBound;
}

void OffkeyServer::CheckHealthNow() {
  {
    offkey::MutexLock lock(&health_mu_);
    health_check_since_ = absl::Now();
  }
  absl::Status health = store_->CheckHealth();
  {
    offkey::MutexLock lock(&health_mu_);
    health_check_since_ = absl::InfiniteFuture();
    if (health.ok() != hsm_health_.ok() || health.message() != hsm_health_.message()) {
      Log(health.ok()
              ? std::string("HSM available; serving")
              : absl::StrCat("HSM unavailable; not serving: ", health.ToString()));
    }
    hsm_health_ = health;
  }
  PublishServing();
}

void OffkeyServer::PublishServing() {
  const bool serving = Ready().ok();
  if (server_ != nullptr && server_->GetHealthCheckService() != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(serving);
    server_->GetHealthCheckService()->SetServingStatus(kServiceName, serving);
  }
  // The admin listener answers health checks too (offkeyctl health), with the same
  // verdict.
  if (admin_server_ != nullptr && admin_server_->GetHealthCheckService() != nullptr) {
    admin_server_->GetHealthCheckService()->SetServingStatus(serving);
    admin_server_->GetHealthCheckService()->SetServingStatus(kAdminServiceName, serving);
  }
}

absl::Status OffkeyServer::ReloadNow() {
  offkey::MutexLock lock(&reload_mu_);
  absl::StatusOr<offkey::v1::ServerConfig> next =
      options_.reload_config ? options_.reload_config() : config_;
  absl::StatusOr<Reloadable> built =
      next.ok() ? BuildReloadable(*next) : absl::StatusOr<Reloadable>(next.status());
  if (!built.ok()) {
    // Said once per distinct problem: a bad file is refused every pass until fixed.
    if (built.status().ToString() != last_refusal_) {
      last_refusal_ = built.status().ToString();
      Log(absl::StrCat("configuration reload refused, keeping the running one: ",
                       last_refusal_));
    }
    metrics_->RecordReload(false);
    return built.status();
  }
  last_refusal_.clear();
  const bool policy_changed =
      PolicyPart(*next).SerializeAsString() != PolicyPart(config_).SerializeAsString();
  const std::string fingerprint = built->trust->fingerprint();
  const bool trust_changed = fingerprint != trust_fingerprint_;
  const std::string restart_only = RestartOnlyPart(*next).SerializeAsString();
  if (restart_only != running_restart_only_ && restart_only != reported_restart_only_) {
    reported_restart_only_ = restart_only;
    Log("configuration changed outside policy, admin_identities, trust_bundles and "
        "handshake; those changes take effect at the next restart");
  }
  const bool handshake_changed =
      next->handshake().SerializeAsString() != config_.handshake().SerializeAsString();
  if (policy_changed) operations_->SetPolicy(std::move(built->policy));
  if (trust_changed) operations_->SetTrustStore(std::move(built->trust));
  if (handshake_changed) operations_->SetHandshakeShapeOptions(ShapeOptionsOf(*next));
  if (policy_changed || trust_changed || handshake_changed) {
    Log(absl::StrCat("configuration reloaded:", policy_changed ? " policy" : "",
                     trust_changed ? " trust_bundles" : "",
                     handshake_changed ? " handshake" : ""));
    metrics_->RecordReload(true);
  }
  config_ = *std::move(next);
  trust_fingerprint_ = fingerprint;
  return absl::OkStatus();
}

void OffkeyServer::Background() {
  absl::Duration reload_every;
  {
    offkey::MutexLock lock(&reload_mu_);
    reload_every = absl::Seconds(config_.reload().interval_seconds());
  }
  const absl::Duration publish_every = std::min(options_.health_interval, kPublishEvery);
  absl::Time next_publish = absl::Now() + publish_every;
  absl::Time next_reload = absl::Now() + reload_every;
  absl::Time next_trim = absl::Now() + kTrimEvery;
  bool said_stuck = false;
  offkey::MutexLock lock(&stop_mu_);
  while (!stopping_) {
    const absl::Time wake = std::min({next_publish, next_reload, next_trim});
    if (stop_mu_.AwaitWithDeadline(absl::Condition(&stopping_), wake)) break;
    stop_mu_.Unlock();
    if (absl::Now() >= next_trim) {
      malloc_trim(0);
      next_trim = absl::Now() + kTrimEvery;
    }
    if (absl::Now() >= next_publish) {
      PublishServing();
      // A stuck check cannot log for itself.
      const bool stuck = HealthCheckStuck();
      if (stuck != said_stuck) {
        const absl::Status ready = Ready();
        Log(ready.ok()
                ? std::string("HSM available; serving")
                : absl::StrCat("HSM unavailable; not serving: ", ready.ToString()));
      }
      said_stuck = stuck;
      next_publish = absl::Now() + publish_every;
    }
    if (absl::Now() >= next_reload) {
      ReloadNow().IgnoreError();  // Logged inside.
      next_reload = absl::Now() + reload_every;
    }
    stop_mu_.Lock();
  }
}

void OffkeyServer::HsmWork() {
  absl::Time next_health = absl::Now() + options_.health_interval;
  absl::Time next_destruction = absl::Now();
  offkey::MutexLock lock(&stop_mu_);
  while (!stopping_) {
    const absl::Time wake = std::min(next_health, next_destruction);
    if (stop_mu_.AwaitWithDeadline(absl::Condition(&stopping_), wake)) break;
    stop_mu_.Unlock();
    if (absl::Now() >= next_health) {
      CheckHealthNow();
      next_health = absl::Now() + options_.health_interval;
    }
    if (absl::Now() >= next_destruction) {
      DestroyDueKeys();
      next_destruction = absl::Now() + options_.destruction_interval;
    }
    stop_mu_.Lock();
  }
}

void OffkeyServer::DestroyDueKeys() {
  // Fail closed: no destruction while its audit line could not be written. The line
  // saying so is the probe: once it is written, the next pass destroys.
  if (absl::Status ready = audit_->Check(); !ready.ok()) {
    AuditRecord record;
    record.time = absl::Now();
    record.identity = "offkeyd";
    record.operation = "admin.destroy-due-keys";
    record.outcome = ready;
    audit_->Write(record).IgnoreError();
    return;
  }
  absl::StatusOr<std::vector<std::string>> destroyed = admin_->DestroyDue();
  if (!destroyed.ok()) {
    // Retried every interval; said once per distinct problem, not every interval.
    if (destroyed.status().ToString() != last_destruction_error_) {
      last_destruction_error_ = destroyed.status().ToString();
      Log(absl::StrCat("cannot destroy keys whose pending window ended (will retry): ",
                       last_destruction_error_));
    }
    return;
  }
  last_destruction_error_.clear();
  for (const std::string& name : *destroyed) {
    Log(absl::StrCat("destroyed key '", name, "': its pending destruction window ended"));
    AuditRecord record;
    record.time = absl::Now();
    record.identity = "offkeyd";
    record.operation = "admin.destroy-key";
    record.key = name;
    audit_->Write(record).IgnoreError();  // Done already; the audit log says why not.
  }
}

void OffkeyServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  draining_ = true;
  if (server_->GetHealthCheckService() != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
  }
  // gRPC cancels calls that reached the transport but were not yet taken by a poller
  // when the listener shuts down; a burst in flight at SIGTERM would lose some. So first
  // keep serving (streams included) until nothing is in flight for a moment (or half the
  // grace is gone), then end the streams and stop the listener.
  const absl::Time give_up = absl::Now() + grace / 2;
  int quiet = 0;
  while (quiet < 5 && absl::Now() < give_up) {
    const bool idle = service_->active_calls().load() == 0 &&
                      service_->stream_items_in_flight() == 0 && pool_->queued() == 0 &&
                      verify_pool_->queued() == 0;
    quiet = idle ? quiet + 1 : 0;
    absl::SleepFor(absl::Milliseconds(20));
  }
  service_->Drain();
  if (admin_server_ != nullptr) {
    admin_server_->Shutdown(absl::ToChronoTime(absl::Now() + grace / 2));
  }
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  pool_->Shutdown();
  verify_pool_->Shutdown();
}

void OffkeyServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace offkey::service
