// liboffkey: the client a TLS terminator links to call offkeyd's data plane.
//
//   offkey::client::ClientOptions options;
//   options.target = "dns:///offkeyd-headless.offkey.svc.cluster.local:8443";
//   options.ca_file = "/etc/offkey/tls/ca.crt";
//   options.cert_file = "/etc/offkey/tls/tls.crt";
//   options.key_file = "/etc/offkey/tls/tls.key";
//   auto client = offkey::client::Client::Create(options);
//   if (!client.ok()) return client.status();  // Names the bad option or file.
//
//   offkey::v1::SignRequest request;
//   request.mutable_key()->set_key_name("www");
//   request.mutable_context()->set_version(offkey::v1::TLS_1_3);
//   request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
//   request.set_message(certificate_verify_input);
//   absl::StatusOr<offkey::v1::SignResponse> signed_ = (*client)->Sign(request);
//
//   // Or without blocking; `done` runs on a gRPC thread and must not block.
//   (*client)->SignAsync(request, {}, [](absl::StatusOr<offkey::v1::SignResponse> r) {
//     ...
//   });
//
// Every call has a deadline (ClientOptions.deadline unless CallOptions says otherwise).
// A call that fails with UNAVAILABLE (no replica reachable, or the one that answered has
// lost its HSM) or that offkeyd CANCELLED (a replica shutting down) is retried with
// exponential backoff and jitter while attempts and the deadline allow; each retry may
// land on another replica. Calls are spread round-robin over every address the target
// resolves to (a Kubernetes headless Service gives one per replica). Keepalive pings
// notice a dead replica before a handshake waits on it. A synchronous call that finds the
// channel not connected (offkeyd closed an idle connection, or restarted) first waits for
// it, polling it from the calling thread, for up to half of what is left of its deadline:
// in a terminator that runs no other gRPC thread, that is what completes the reconnect
// (see AwaitConnection in the .cc).
//
// With ClientOptions.pipeline, the synchronous calls (but ListKeys) travel on Pipeline
// streams instead: each calling thread borrows a stream from a pool and drives it
// itself, which saves the per-call cost of a new HTTP/2 stream. Retries, deadlines and
// statuses are the same. A stream stays on the replica it opened to, so load spreads by
// stream (one per busy thread) rather than by call, and streams are reopened after
// stream_max_age so that new replicas get their share.
//
// Thread safety: a Client is safe to use from many threads. It is not fork-safe: gRPC
// is not, once used, so a process that forks makes its Client after the fork.
#ifndef OFFKEY_CLIENT_OFFKEY_CLIENT_H_
#define OFFKEY_CLIENT_OFFKEY_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/mutex.h"
#include "client/pipeline_stream.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"

namespace offkey::client {

// A client resolves a DNS target again at most this often, so new replicas behind a
// name are noticed within it (and a connection that ages out sooner waits for it).
constexpr int kMinDnsResolutionIntervalMs = 5000;

struct ClientOptions {
  // gRPC target: "host:port", "dns:///name:port" (every address of the name), or
  // "ipv4:127.0.0.1:8443,127.0.0.2:8443". Required.
  std::string target;
  // mTLS: the CA that signed offkeyd's certificate, and this client's certificate and
  // key (PEM files). They are re-read when they change, so rotating them needs no
  // restart. Required unless insecure_plaintext_for_development.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // The name offkeyd's certificate must carry, when it is not the target's host.
  std::string server_name;
  // Plaintext, for a development offkeyd started with the same flag. Never in production.
  bool insecure_plaintext_for_development = false;

  // Deadline of a call, retries included.
  absl::Duration deadline = absl::Seconds(2);
  // Attempts per call (the first one included) when the answer is UNAVAILABLE or
  // CANCELLED (by offkeyd).
  int max_attempts = 3;
  // Backoff before retry n is drawn from [b/2, b], b = min(initial * 2^(n-1), max).
  absl::Duration initial_backoff = absl::Milliseconds(20);
  absl::Duration max_backoff = absl::Milliseconds(500);
  // HTTP/2 pings on an idle connection, and how long to wait for their answer.
  absl::Duration keepalive_time = absl::Seconds(20);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  // How often the TLS files are checked for changes.
  absl::Duration certificate_refresh = absl::Seconds(60);
  // Synchronous calls on Pipeline streams (see above), each used for at most
  // stream_max_age.
  bool pipeline = false;
  absl::Duration stream_max_age = absl::Seconds(30);
};

struct CallOptions {
  // Overrides ClientOptions.deadline for this call when not zero.
  absl::Duration timeout = absl::ZeroDuration();
};

template <typename Response>
using Callback = std::function<void(absl::StatusOr<Response>)>;

class Client {
 public:
  // Checks the options and the TLS files (readable, the key matches the certificate,
  // the certificate is valid now) and makes the channel; connects lazily. On failure:
  // INVALID_ARGUMENT for a bad option, FAILED_PRECONDITION for a bad file, naming it.
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);

  // Waits for the callbacks of calls in flight (their deadlines bound the wait).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Synchronous calls: block until the answer, the deadline or the last retry. The
  // status is offkeyd's (see key_service.proto), or UNAVAILABLE / DEADLINE_EXCEEDED
  // from the transport with the target and the attempts made in the message. Do not
  // call them from an async callback.
  absl::StatusOr<v1::SignResponse> Sign(const v1::SignRequest& request,
                                        const CallOptions& options = {});
  absl::StatusOr<v1::DecryptPremasterResponse> DecryptPremaster(
      const v1::DecryptPremasterRequest& request, const CallOptions& options = {});
  absl::StatusOr<v1::DeriveMasterSecretResponse> DeriveMasterSecret(
      const v1::DeriveMasterSecretRequest& request, const CallOptions& options = {});
  absl::StatusOr<v1::VerifyClientResponse> VerifyClient(
      const v1::VerifyClientRequest& request, const CallOptions& options = {});
  absl::StatusOr<v1::GetCertificateResponse> GetCertificate(
      const v1::GetCertificateRequest& request, const CallOptions& options = {});
  absl::StatusOr<v1::ListKeysResponse> ListKeys(const v1::ListKeysRequest& request,
                                                const CallOptions& options = {});

  // Asynchronous calls: return at once; `done` runs exactly once, on a gRPC thread,
  // with what the synchronous call would have returned. It must not block.
  void SignAsync(v1::SignRequest request, const CallOptions& options,
                 Callback<v1::SignResponse> done);
  void DecryptPremasterAsync(v1::DecryptPremasterRequest request,
                             const CallOptions& options,
                             Callback<v1::DecryptPremasterResponse> done);
  void DeriveMasterSecretAsync(v1::DeriveMasterSecretRequest request,
                               const CallOptions& options,
                               Callback<v1::DeriveMasterSecretResponse> done);
  void VerifyClientAsync(v1::VerifyClientRequest request, const CallOptions& options,
                         Callback<v1::VerifyClientResponse> done);
  void GetCertificateAsync(v1::GetCertificateRequest request, const CallOptions& options,
                           Callback<v1::GetCertificateResponse> done);
  void ListKeysAsync(v1::ListKeysRequest request, const CallOptions& options,
                     Callback<v1::ListKeysResponse> done);

  struct Stats {
    int64_t calls = 0;     // Calls finished.
    int64_t attempts = 0;  // RPCs sent (calls plus retries).
    int64_t streams = 0;   // Pipeline streams opened.
  };
  Stats stats() const;

  const ClientOptions& options() const { return options_; }

 private:
  template <typename Request, typename Response>
  friend class PendingCall;

  Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  template <typename Request, typename Response, typename Method>
  void Start(Method method, Request request, const CallOptions& options,
             Callback<Response> done);
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Wait(Method method, const Request& request,
                                const CallOptions& options);
  // Runs `attempt` (returning a grpc::Status) again after a backoff while it answers
  // UNAVAILABLE or CANCELLED, attempts remain and the backoff ends before `deadline`.
  // Returns the last status; *attempts is how many were made.
  template <typename Attempt>
  grpc::Status Retried(absl::Time deadline, Attempt attempt, int* attempts);
  // When the channel is not READY, waits (polling it from this thread) until it is, for
  // at most half the time left before `deadline`. Synchronous calls only.
  void AwaitConnection(absl::Time deadline);
  // Where a request and its answer sit in Pipeline items.
  template <typename Request, typename Response>
  struct PipelineField {
    Request* (v1::PipelineRequest::*request)();
    bool (v1::PipelineResponse::*has_response)() const;
    Response* (v1::PipelineResponse::*response)();
  };
  // A synchronous call on a pooled Pipeline stream, with Wait's retries and statuses.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Pipelined(PipelineField<Request, Response> field,
                                     const Request& request, const CallOptions& options);
  bool Reusable(const PipelineStream& stream) const;
  std::unique_ptr<PipelineStream> TakeStream();
  void ReturnStream(std::unique_ptr<PipelineStream> stream);
  // An async call's callback has returned.
  void Finished();
  absl::Duration Timeout(const CallOptions& options) const;

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KeyService::Stub> stub_;

  std::atomic<int64_t> calls_{0};
  std::atomic<int64_t> attempts_{0};
  std::atomic<int64_t> streams_{0};
  mutable offkey::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;

  // Idle Pipeline streams; destroyed before the stub and channel they use.
  offkey::Mutex streams_mu_;
  std::vector<std::unique_ptr<PipelineStream>> idle_streams_ ABSL_GUARDED_BY(streams_mu_);
};

}  // namespace offkey::client

#endif  // OFFKEY_CLIENT_OFFKEY_CLIENT_H_
