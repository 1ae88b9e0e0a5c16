#include "client/offkey_client.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/client_tls.h"
#include "base/status_macros.h"
#include "grpcpp/alarm.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "grpcpp/support/channel_arguments.h"

namespace offkey::client {
namespace {

using Stub = v1::KeyService::Stub;
template <typename Request, typename Response>
using SyncMethod = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&,
                                          Response*);
template <typename Request, typename Response>
using AsyncMethod = void (Stub::async::*)(grpc::ClientContext*, const Request*, Response*,
                                          std::function<void(grpc::Status)>);

int Milliseconds(absl::Duration d) {
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

// Uniform in [b/2, b]: spreads the retries of many terminators that lost the same
// replica at the same moment.
absl::Duration Backoff(const ClientOptions& o, int retry) {
  absl::Duration b = o.initial_backoff;
  for (int i = 1; i < retry && b < o.max_backoff; ++i) b *= 2;
  b = std::min(b, o.max_backoff);
  thread_local std::minstd_rand random(std::random_device{}());
  std::uniform_real_distribution<double> half_to_one(0.5, 1.0);
  return b * half_to_one(random);
}

absl::Status Check(const ClientOptions& o) {
  if (o.target.empty()) {
    return absl::InvalidArgumentError(
        "ClientOptions.target is empty: give offkeyd's address (host:port, or "
        "dns:///name:port for every replica behind a name)");
  }
  if (o.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ClientOptions.deadline must be positive");
  }
  if (o.max_attempts < 1) {
    return absl::InvalidArgumentError("ClientOptions.max_attempts must be at least 1");
  }
  if (o.initial_backoff <= absl::ZeroDuration() || o.max_backoff < o.initial_backoff) {
    return absl::InvalidArgumentError(
        "ClientOptions backoff: initial_backoff must be positive and at most "
        "max_backoff");
  }
  if (o.keepalive_time < absl::Seconds(10) ||
      o.keepalive_timeout <= absl::ZeroDuration()) {
    // offkeyd refuses pings more often than every 10 s (too_many_pings).
    return absl::InvalidArgumentError(
        "ClientOptions keepalive: keepalive_time must be at least 10 s and "
        "keepalive_timeout positive");
  }
  if (o.insecure_plaintext_for_development) {
    if (!o.ca_file.empty() || !o.cert_file.empty() || !o.key_file.empty()) {
      return absl::InvalidArgumentError(
          "ClientOptions: TLS files given with insecure_plaintext_for_development; "
          "choose one");
    }
    return absl::OkStatus();
  }
  if (o.ca_file.empty() || o.cert_file.empty() || o.key_file.empty()) {
    return absl::InvalidArgumentError(
        "ClientOptions: ca_file, cert_file and key_file are all required for mTLS");
  }
  if (o.stream_max_age < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        "ClientOptions.stream_max_age must be at least 1 s");
  }
  if (o.certificate_refresh < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        "ClientOptions.certificate_refresh must be at least 1 s");
  }
  // Read once now so a bad file is reported here, by name, not as a TLS alert later.
  return LoadClientTlsFiles(
             {o.ca_file, absl::StrCat("'", o.ca_file, "' (ca_file)")},
             {o.cert_file, absl::StrCat("'", o.cert_file, "' (cert_file)")},
             {o.key_file, absl::StrCat("'", o.key_file, "' (key_file)")})
      .status();
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(const ClientOptions& o) {
  if (o.insecure_plaintext_for_development) return grpc::InsecureChannelCredentials();
  auto files = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      o.key_file, o.cert_file, o.ca_file,
      static_cast<unsigned int>(absl::ToInt64Seconds(o.certificate_refresh)));
  grpc::experimental::TlsChannelCredentialsOptions tls;
  tls.set_certificate_provider(files);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(tls);
}

grpc::ChannelArguments Arguments(const ClientOptions& o) {
  grpc::ChannelArguments args;
  // One subchannel per resolved address, calls spread over the ready ones.
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, Milliseconds(o.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, Milliseconds(o.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // gRPC's default reconnect backoff grows to 120 s; a restarted replica must be used
  // again within a second or two.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Despite its name, GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is, in gRPC 1.51, the least time
  // a connection attempt (TCP connect and TLS handshake) gets before it is abandoned
  // ("Handshake timed out"): the attempt's deadline is max(it, the next backoff).
  // Between handshakes a blocking terminator (s_server in accept(), an nginx worker in
  // epoll_wait) has no thread in gRPC, and nothing reads gRPC's sockets but the
  // client channel's backup poller, every 5 s. When offkeyd closes an idle connection
  // (or restarts), the channel reconnects in the background at that pace, which takes
  // several seconds; with 100 ms here every such attempt timed out, the channel stayed
  // in TRANSIENT_FAILURE, and every call of the next handshakes failed at once
  // ("connections to all backends failing"), for as long as the terminator stayed
  // quiet. gRPC's default, 20 s, gives an attempt the time a handshake needs to come
  // and drive it (Client::AwaitConnection); the backup poller alone may still not
  // finish it in time (seen with nginx workers).
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, kMinDnsResolutionIntervalMs);
  if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  return args;
}

// Whether another attempt may succeed. UNAVAILABLE: offkeyd is unreachable or going
// away. CANCELLED: liboffkey never cancels its own calls (one that runs out of time is
// DEADLINE_EXCEEDED), so offkeyd did: a replica that stops cancels the calls that had
// reached it but not started. Every operation is free of side effects, so repeating
// one is safe.
bool Retryable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

absl::Status FromGrpc(const grpc::Status& status, const ClientOptions& o, int attempts) {
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  if (code != absl::StatusCode::kUnavailable &&
      code != absl::StatusCode::kDeadlineExceeded) {
    return absl::Status(code, status.error_message());  // offkeyd's own answer.
  }
  return absl::Status(
      code, absl::StrCat(status.error_message(), " (offkeyd at '", o.target, "', ",
                         attempts, attempts == 1 ? " attempt)" : " attempts)"));
}

}  // namespace

// One call from its first attempt to `done`: each attempt gets a fresh ClientContext;
// a retryable answer (see Retryable) schedules the next attempt on an Alarm after a
// backoff, unless attempts or the deadline are used up. Deletes itself after `done`.
template <typename Request, typename Response>
class PendingCall {
 public:
  PendingCall(Client* client, AsyncMethod<Request, Response> method, Request request,
              absl::Time deadline, Callback<Response> done)
      : client_(client),
        method_(method),
        request_(std::move(request)),
        deadline_(deadline),
        done_(std::move(done)) {}

  void Attempt() {
    ++attempts_;
    client_->attempts_.fetch_add(1, std::memory_order_relaxed);
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(absl::ToChronoTime(deadline_));
    response_.Clear();
    (client_->stub_->async()->*method_)(context_.get(), &request_, &response_,
                                        [this](grpc::Status status) { Done(status); });
  }

 private:
  void Done(const grpc::Status& status) {
    const ClientOptions& o = client_->options_;
    if (Retryable(status) && attempts_ < o.max_attempts) {
      const absl::Time retry_at = absl::Now() + Backoff(o, attempts_);
      if (retry_at < deadline_) {
        alarm_ = std::make_unique<grpc::Alarm>();
        alarm_->Set(absl::ToChronoTime(retry_at), [this](bool) { Attempt(); });
        return;
      }
    }
    Callback<Response> done = std::move(done_);
    Client* client = client_;
    const int attempts = attempts_;
    // Counted before `done` runs, so stats() already includes this call there.
    client->calls_.fetch_add(1, std::memory_order_relaxed);
    if (status.ok()) {
      done(std::move(response_));
    } else {
      done(FromGrpc(status, o, attempts));
    }
    delete this;
    client->Finished();
  }

  Client* const client_;
  const AsyncMethod<Request, Response> method_;
  const Request request_;
  const absl::Time deadline_;
  Callback<Response> done_;
  int attempts_ = 0;
  std::unique_ptr<grpc::ClientContext> context_;
  Response response_;
  std::unique_ptr<grpc::Alarm> alarm_;
};

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  OFFKEY_RETURN_IF_ERROR(Check(options));
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, Credentials(options), Arguments(options));
  if (channel == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot make a channel to '", options.target, "'"));
  }
  return std::unique_ptr<Client>(new Client(std::move(options), std::move(channel)));
}

Client::Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::KeyService::NewStub(channel_)) {}

Client::~Client() {
  offkey::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* in_flight) { return *in_flight == 0; }, &in_flight_));
}

Client::Stats Client::stats() const {
  Stats s;
  s.calls = calls_.load(std::memory_order_relaxed);
  s.attempts = attempts_.load(std::memory_order_relaxed);
  s.streams = streams_.load(std::memory_order_relaxed);
  return s;
}

void Client::Finished() {
  offkey::MutexLock lock(&mu_);
  --in_flight_;
}

absl::Duration Client::Timeout(const CallOptions& options) const {
  return options.timeout > absl::ZeroDuration() ? options.timeout : options_.deadline;
}

template <typename Request, typename Response, typename Method>
void Client::Start(Method method, Request request, const CallOptions& options,
                   Callback<Response> done) {
  const absl::Duration timeout = Timeout(options);
  {
    offkey::MutexLock lock(&mu_);
    ++in_flight_;
  }
  auto* call = new PendingCall<Request, Response>(this, method, std::move(request),
                                                  absl::Now() + timeout, std::move(done));
  call->Attempt();
}

// A blocking terminator has no thread in gRPC between handshakes, so a reconnect
// started then (offkeyd closed an idle connection, restarted, a keepalive failed) is
// driven only by gRPC's backup poller, every 5 s, and often times out ("connection
// attempt timed out before receiving SETTINGS frame", "Handshake timed out"), leaving
// the channel in TRANSIENT_FAILURE, where a call fails at once without polling anything
// ("connections to all backends failing"). Waiting for the channel here puts this
// thread in gRPC's poller, so the attempt in progress (or the next one, after at most
// the 2 s backoff) completes at local speed. Half the time left is kept for the call
// itself and for an UNAVAILABLE answer when offkeyd is really gone.
void Client::AwaitConnection(absl::Time deadline) {
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  if (state == GRPC_CHANNEL_READY) return;
  const absl::Time now = absl::Now();
  if (deadline <= now) return;
  const auto until = absl::ToChronoTime(now + (deadline - now) / 2);
  while (state != GRPC_CHANNEL_READY && channel_->WaitForStateChange(state, until)) {
    state = channel_->GetState(/*try_to_connect=*/true);
  }
}

template <typename Attempt>
grpc::Status Client::Retried(absl::Time deadline, Attempt attempt, int* attempts) {
  for (int n = 1;; ++n) {
    AwaitConnection(deadline);
    attempts_.fetch_add(1, std::memory_order_relaxed);
    grpc::Status status = attempt();
    if (Retryable(status) && n < options_.max_attempts) {
      const absl::Time retry_at = absl::Now() + Backoff(options_, n);
      if (retry_at < deadline) {
        absl::SleepFor(retry_at - absl::Now());
        continue;
      }
    }
    calls_.fetch_add(1, std::memory_order_relaxed);
    *attempts = n;
    return status;
  }
}

// Synchronous calls use the blocking stub: the calling thread drives the call itself,
// with no hand-off to and from a gRPC thread (a measurable cost per handshake).
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> Client::Wait(Method method, const Request& request,
                                      const CallOptions& options) {
  const absl::Time deadline = absl::Now() + Timeout(options);
  Response response;
  int attempts = 0;
  const grpc::Status status = Retried(
      deadline,
      [&] {
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(deadline));
        return (stub_.get()->*method)(&context, request, &response);
      },
      &attempts);
  if (status.ok()) return response;
  return FromGrpc(status, options_, attempts);
}

// Broken and old streams are dropped: the next caller opens a new one, on whichever
// replica the balancer picks then.
bool Client::Reusable(const PipelineStream& stream) const {
  return !stream.broken() && absl::Now() - stream.opened() <= options_.stream_max_age;
}

std::unique_ptr<PipelineStream> Client::TakeStream() {
  std::vector<std::unique_ptr<PipelineStream>> aged;  // Closed outside the lock.
  {
    offkey::MutexLock lock(&streams_mu_);
    while (!idle_streams_.empty()) {
      std::unique_ptr<PipelineStream> stream = std::move(idle_streams_.back());
      idle_streams_.pop_back();
      if (Reusable(*stream)) return stream;
      aged.push_back(std::move(stream));
    }
  }
  streams_.fetch_add(1, std::memory_order_relaxed);
  return std::make_unique<PipelineStream>(*stub_);
}

void Client::ReturnStream(std::unique_ptr<PipelineStream> stream) {
  if (!Reusable(*stream)) return;
  offkey::MutexLock lock(&streams_mu_);
  idle_streams_.push_back(std::move(stream));
}

template <typename Request, typename Response>
absl::StatusOr<Response> Client::Pipelined(PipelineField<Request, Response> field,
                                           const Request& request,
                                           const CallOptions& options) {
  const absl::Time deadline = absl::Now() + Timeout(options);
  v1::PipelineRequest item;
  *(item.*field.request)() = request;
  v1::PipelineResponse answer;
  int attempts = 0;
  const grpc::Status status = Retried(
      deadline,
      [&] {
        std::unique_ptr<PipelineStream> stream = TakeStream();
        grpc::Status sent = stream->Exchange(item, &answer, deadline);
        ReturnStream(std::move(stream));
        if (!sent.ok()) return sent;
        // The item's own status; UNAVAILABLE from offkeyd (a store being reopened) is
        // retried like the transport's.
        return grpc::Status(static_cast<grpc::StatusCode>(answer.status().code()),
                            answer.status().message());
      },
      &attempts);
  if (!status.ok()) return FromGrpc(status, options_, attempts);
  if (!(answer.*field.has_response)()) {
    return absl::InternalError(
        absl::StrCat("offkeyd answered a Pipeline item with the wrong result (",
                     answer.result_case(), ")"));
  }
  return std::move(*(answer.*field.response)());
}

// Each operation, once synchronous and once asynchronous, on the same machinery.
#define OFFKEY_CLIENT_SYNC(Name)                                                    \
  absl::StatusOr<v1::Name##Response> Client::Name(const v1::Name##Request& request, \
                                                  const CallOptions& options) {     \
    SyncMethod<v1::Name##Request, v1::Name##Response> method = &Stub::Name;         \
    return Wait<v1::Name##Request, v1::Name##Response>(method, request, options);   \
  }
#define OFFKEY_CLIENT_SYNC_PIPELINED(Name, field)                                     \
  absl::StatusOr<v1::Name##Response> Client::Name(const v1::Name##Request& request,   \
                                                  const CallOptions& options) {       \
    if (options_.pipeline) {                                                          \
      return Pipelined<v1::Name##Request, v1::Name##Response>(                        \
          {&v1::PipelineRequest::mutable_##field, &v1::PipelineResponse::has_##field, \
           &v1::PipelineResponse::mutable_##field},                                   \
          request, options);                                                          \
    }                                                                                 \
    SyncMethod<v1::Name##Request, v1::Name##Response> method = &Stub::Name;           \
    return Wait<v1::Name##Request, v1::Name##Response>(method, request, options);     \
  }
#define OFFKEY_CLIENT_ASYNC(Name)                                                     \
  void Client::Name##Async(v1::Name##Request request, const CallOptions& options,     \
                           Callback<v1::Name##Response> done) {                       \
    AsyncMethod<v1::Name##Request, v1::Name##Response> method = &Stub::async::Name;   \
    Start<v1::Name##Request, v1::Name##Response>(method, std::move(request), options, \
                                                 std::move(done));                    \
  }

OFFKEY_CLIENT_SYNC_PIPELINED(Sign, sign)
OFFKEY_CLIENT_SYNC_PIPELINED(DecryptPremaster, decrypt_premaster)
OFFKEY_CLIENT_SYNC_PIPELINED(DeriveMasterSecret, derive_master_secret)
OFFKEY_CLIENT_SYNC_PIPELINED(VerifyClient, verify_client)
OFFKEY_CLIENT_SYNC_PIPELINED(GetCertificate, get_certificate)
OFFKEY_CLIENT_SYNC(ListKeys)  // Not a Pipeline operation.
OFFKEY_CLIENT_ASYNC(Sign)
OFFKEY_CLIENT_ASYNC(DecryptPremaster)
OFFKEY_CLIENT_ASYNC(DeriveMasterSecret)
OFFKEY_CLIENT_ASYNC(VerifyClient)
OFFKEY_CLIENT_ASYNC(GetCertificate)
OFFKEY_CLIENT_ASYNC(ListKeys)

#undef OFFKEY_CLIENT_SYNC
#undef OFFKEY_CLIENT_SYNC_PIPELINED
#undef OFFKEY_CLIENT_ASYNC

}  // namespace offkey::client
