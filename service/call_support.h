// What the KeyService call state machines share (internal to service/): the environment
// they run in, the completion-queue tag interface, and the table of operations with
// the audit and metrics each one writes. Used by key_service_async.cc (unary calls) and
// pipeline_reactor.cc (Pipeline streams).
#ifndef OFFKEY_SERVICE_CALL_SUPPORT_H_
#define OFFKEY_SERVICE_CALL_SUPPORT_H_

#include <chrono>
#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/audit.h"
#include "service/caller.h"
#include "service/metrics/metrics.h"
#include "service/operations.h"
#include "service/proto_convert.h"
#include "service/secret_fields.h"
#include "service/tls/schemes.h"
#include "service/worker_pool.h"

namespace offkey::service {

using KeyServiceAsyncBase = offkey::v1::KeyService::AsyncService;

// What every call needs from the service. Owned by KeyServiceAsync, which outlives its
// calls; set before the first call and read-only after, so shared without a lock.
struct RpcEnvironment {
  Operations* operations = nullptr;
  WorkerPool* pool = nullptr;           // The HSM workers.
  WorkerPool* verify_pool = nullptr;    // VerifyClient's chain building (no HSM).
  AuditLog* audit = nullptr;            // May be null.
  metrics::Metrics* metrics = nullptr;  // May be null.
  IdentityCache* identities = nullptr;
  KeyServiceAsyncBase* service = nullptr;
  bool allow_plaintext = false;

  // Writes the audit line and the metrics of one finished operation. UNAVAILABLE when
  // the line could not be written (and audit.fail_open is off): a successful result
  // must then be withheld.
  absl::Status Record(const AuditRecord& record, offkey::v1::Operation kind,
                      offkey::v1::SignatureScheme scheme) const {
    absl::Status audited = audit != nullptr ? audit->Write(record) : absl::OkStatus();
    if (metrics != nullptr) {
      metrics->RecordOperation(kind, scheme, record.outcome.code(), record.latency);
    }
    return audited;
  }
};

namespace call_support {

namespace v1 = offkey::v1;

// What the audit line says about each request: identifiers only.
inline void Describe(const v1::TlsContext& context, AuditRecord* record) {
  if (context.version() != v1::TLS_VERSION_UNSPECIFIED) {
    record->tls_version = v1::TlsVersion_Name(context.version());
  }
  record->sni = context.sni();
  record->handshake_id = context.handshake_id();
}
// Requests that name a key and a handshake.
template <typename Request>
void Describe(const Request& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  Describe(r.context(), record);
}
inline void Describe(const v1::SignRequest& r, AuditRecord* record) {
  record->key = KeyRefText(r.key());
  record->scheme = tls::SchemeName(r.scheme());
  Describe(r.context(), record);
}
inline void Describe(const v1::VerifyClientRequest& r, AuditRecord* record) {
  record->trust_bundle = r.trust_bundle().substr(0, 128);
  record->scheme = tls::SchemeName(r.scheme());
  Describe(r.context(), record);
}
inline void Describe(const v1::ListKeysRequest&, AuditRecord*) {}
// Ticket operations name a set, not a key; never the session state or the ticket.
inline void Describe(const v1::GetTicketKeysRequest& r, AuditRecord* record) {
  record->ticket_key_set = r.ticket_key_set();
}
inline void Describe(const v1::SealTicketRequest& r, AuditRecord* record) {
  record->ticket_key_set = r.ticket_key_set();
  Describe(r.context(), record);
}
inline void Describe(const v1::UnsealTicketRequest& r, AuditRecord* record) {
  record->ticket_key_set = r.ticket_key_set();
  Describe(r.context(), record);
}

// What the audit line says about a response: only VerifyClient's and UnsealTicket's
// verdicts.
template <typename Response>
void DescribeResult(const Response&, AuditRecord*) {}
inline void DescribeResult(const v1::VerifyClientResponse& r, AuditRecord* record) {
  record->verify_result = v1::VerifyResult_Name(r.result());
  record->client = r.identity().spiffe_id().empty() ? r.identity().subject()
                                                    : r.identity().spiffe_id();
}
inline void DescribeResult(const v1::UnsealTicketResponse& r, AuditRecord* record) {
  record->ticket_result = v1::UnsealTicketResponse::Result_Name(r.result());
}

// The largest request each RPC accepts, serialized (unknown fields included), checked
// when the request is first seen, before it queues or touches the HSM. Each is the
// largest legitimate request with room to spare:
//   Sign: a TLS 1.3 CertificateVerify input is ~100 bytes and a TLS 1.2
//     ServerKeyExchange input at most ~2 KiB (ffdhe8192), but GENERAL_SIGNING keys
//     sign up to 64 KiB (SignRequest.message); plus 1 KiB for key and context.
//   DecryptPremaster, DeriveMasterSecret: one RSA modulus (2 KiB covers 16384 bits),
//     randoms or a session hash, key and context.
//   VerifyClient: a client chain and, for TLS 1.2, every handshake message so far
//     (which carries the server's chain and the CertificateRequest's CA names).
//   GetCertificate: a key reference and a context. ListKeys: a label selector.
//   GetTicketKeys: a set name. SealTicket, UnsealTicket: a set name, a context and at
//     most 16 KiB of session state (+ 64 bytes sealed); the fields' own limits are
//     checked by the operation (RESOURCE_EXHAUSTED naming the field).
// A Pipeline item is held to the limit of its operation. gRPC itself refuses any
// message above kMaxReceiveMessageBytes before parsing it.
inline constexpr size_t kMaxSignRequestBytes = 65 * 1024;
inline constexpr size_t kMaxPremasterRequestBytes = 4 * 1024;
inline constexpr size_t kMaxVerifyClientRequestBytes = 256 * 1024;
inline constexpr size_t kMaxGetCertificateRequestBytes = 4 * 1024;
inline constexpr size_t kMaxListKeysRequestBytes = 16 * 1024;
inline constexpr size_t kMaxGetTicketKeysRequestBytes = 1024;
inline constexpr size_t kMaxTicketRequestBytes = 18 * 1024;
// The largest message of any RPC (a Pipeline item wraps its operation in a few bytes).
inline constexpr size_t kMaxReceiveMessageBytes = kMaxVerifyClientRequestBytes + 1024;
// Answers are small but for certificate chains and key lists; 4 MiB is also what a
// gRPC client accepts by default.
inline constexpr size_t kMaxSendMessageBytes = 4 * 1024 * 1024;

// One row per operation: its kind, how to run it, the scheme it reports in metrics, the
// largest request it takes and the pool it runs on.
template <typename Request>
struct Op;
// Operations that make no signature report no scheme.
struct NoScheme {
  template <typename Request>
  static v1::SignatureScheme Scheme(const Request&) {
    return v1::SIGNATURE_SCHEME_UNSPECIFIED;
  }
};
// Operations that may reach the HSM run on its workers.
struct OnHsmPool {
  static WorkerPool* Pool(const RpcEnvironment& env) { return env.pool; }
};
template <>
struct Op<v1::SignRequest> : OnHsmPool {
  using Response = v1::SignResponse;
  static constexpr v1::Operation kKind = v1::SIGN;
  static constexpr auto kRun = &Operations::Sign;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestSign;
  static constexpr size_t kMaxRequestBytes = kMaxSignRequestBytes;
  static v1::SignatureScheme Scheme(const v1::SignRequest& r) { return r.scheme(); }
};
template <>
struct Op<v1::DecryptPremasterRequest> : NoScheme, OnHsmPool {
  using Response = v1::DecryptPremasterResponse;
  static constexpr v1::Operation kKind = v1::DECRYPT_PREMASTER;
  static constexpr auto kRun = &Operations::DecryptPremaster;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestDecryptPremaster;
  static constexpr size_t kMaxRequestBytes = kMaxPremasterRequestBytes;
};
template <>
struct Op<v1::DeriveMasterSecretRequest> : NoScheme, OnHsmPool {
  using Response = v1::DeriveMasterSecretResponse;
  static constexpr v1::Operation kKind = v1::DERIVE_MASTER_SECRET;
  static constexpr auto kRun = &Operations::DeriveMasterSecret;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestDeriveMasterSecret;
  static constexpr size_t kMaxRequestBytes = kMaxPremasterRequestBytes;
};
template <>
struct Op<v1::VerifyClientRequest> {
  using Response = v1::VerifyClientResponse;
  static constexpr v1::Operation kKind = v1::VERIFY_CLIENT;
  static constexpr auto kRun = &Operations::VerifyClient;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestVerifyClient;
  static constexpr size_t kMaxRequestBytes = kMaxVerifyClientRequestBytes;
  static v1::SignatureScheme Scheme(const v1::VerifyClientRequest& r) {
    return r.scheme();
  }
  // Policy and OpenSSL only (Operations::VerifyClient): its own pool, so building
  // chains never holds an HSM worker and a burst of them never delays a handshake.
  static WorkerPool* Pool(const RpcEnvironment& env) { return env.verify_pool; }
};
template <>
struct Op<v1::GetCertificateRequest> : NoScheme, OnHsmPool {
  using Response = v1::GetCertificateResponse;
  static constexpr v1::Operation kKind = v1::GET_CERTIFICATE;
  static constexpr auto kRun = &Operations::GetCertificate;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestGetCertificate;
  static constexpr size_t kMaxRequestBytes = kMaxGetCertificateRequestBytes;
};
template <>
struct Op<v1::ListKeysRequest> : NoScheme, OnHsmPool {
  using Response = v1::ListKeysResponse;
  static constexpr v1::Operation kKind = v1::LIST_KEYS;
  static constexpr auto kRun = &Operations::ListKeys;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestListKeys;
  static constexpr size_t kMaxRequestBytes = kMaxListKeysRequestBytes;
};

// Ticket operations: key material comes from the store (through a cache), so they run
// on the HSM workers too.
template <>
struct Op<v1::GetTicketKeysRequest> : NoScheme, OnHsmPool {
  using Response = v1::GetTicketKeysResponse;
  static constexpr v1::Operation kKind = v1::GET_TICKET_KEYS;
  static constexpr auto kRun = &Operations::GetTicketKeys;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestGetTicketKeys;
  static constexpr size_t kMaxRequestBytes = kMaxGetTicketKeysRequestBytes;
};
template <>
struct Op<v1::SealTicketRequest> : NoScheme, OnHsmPool {
  using Response = v1::SealTicketResponse;
  static constexpr v1::Operation kKind = v1::SEAL_TICKET;
  static constexpr auto kRun = &Operations::SealTicket;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestSealTicket;
  static constexpr size_t kMaxRequestBytes = kMaxTicketRequestBytes;
};
template <>
struct Op<v1::UnsealTicketRequest> : NoScheme, OnHsmPool {
  using Response = v1::UnsealTicketResponse;
  static constexpr v1::Operation kKind = v1::UNSEAL_TICKET;
  static constexpr auto kRun = &Operations::UnsealTicket;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestUnsealTicket;
  static constexpr size_t kMaxRequestBytes = kMaxTicketRequestBytes;
};

// RESOURCE_EXHAUSTED, naming the limit, when `request` is larger than its operation
// takes (gRPC's own code for a message over its size limit).
template <typename Request>
absl::Status CheckRequestSize(const Request& request) {
  const size_t size = request.ByteSizeLong();
  if (size <= Op<Request>::kMaxRequestBytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      OperationName(Op<Request>::kKind), " request is ", size,
      " bytes; offkeyd takes at most ", Op<Request>::kMaxRequestBytes,
      " bytes for this operation (the largest legitimate request, with room)"));
}

// Audits and counts one finished operation. `response` is null unless it succeeded.
// Returns whether the audit line was written (see RpcEnvironment::Record).
template <typename Request>
absl::Status RecordOutcome(const RpcEnvironment& env, const std::string& identity,
                           const Request& request, absl::Time arrived,
                           const absl::Status& outcome,
                           const typename Op<Request>::Response* response,
                           bool pipeline) {
  AuditRecord record;
  record.time = arrived;
  record.identity = identity;
  record.operation = std::string(OperationName(Op<Request>::kKind));
  Describe(request, &record);
  if (response != nullptr) DescribeResult(*response, &record);
  record.pipeline = pipeline;
  record.outcome = outcome;
  record.latency = absl::Now() - arrived;
  return env.Record(record, Op<Request>::kKind, Op<Request>::Scheme(request));
}

// Runs one operation on a worker: DEADLINE_EXCEEDED without touching the HSM when the
// deadline passed while it queued. Audited and counted here. Fail closed: while the
// audit log cannot be written the operation is refused before it runs, and a result
// whose line could not be written is withheld (UNAVAILABLE), so no result leaves
// unaudited unless audit.fail_open says so. Errors are returned either way.
template <typename Request>
absl::StatusOr<typename Op<Request>::Response> Perform(
    const RpcEnvironment& env, const Caller& caller, const Request& request,
    absl::Time arrived, absl::Time deadline, bool expired, bool pipeline) {
  if (env.metrics != nullptr) {
    env.metrics->RecordQueueWait(Op<Request>::Pool(env) == env.pool
                                     ? metrics::Metrics::Pool::kHsm
                                     : metrics::Metrics::Pool::kVerify,
                                 absl::Now() - arrived);
  }
  const absl::Status audit_ready =
      env.audit != nullptr ? env.audit->Check() : absl::OkStatus();
  absl::StatusOr<typename Op<Request>::Response> result =
      expired ? absl::DeadlineExceededError("deadline passed while queued for the HSM")
      : !audit_ready.ok()
          ? audit_ready
          : (env.operations->*Op<Request>::kRun)(caller, request, deadline);
  absl::Status audited =
      RecordOutcome(env, caller.identity, request, arrived, result.status(),
                    result.ok() ? &*result : nullptr, pipeline);
  if (result.ok() && !audited.ok()) {
    WipeSecrets(&*result);  // Withheld: a premaster in it is not freed as is.
    return audited;
  }
  return result;
}

inline absl::Time DeadlineOf(const grpc::ServerContext& context) {
  auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(deadline);
}

// A completion-queue tag: the call it belongs to moves on when its event arrives.
class Call {
 public:
  virtual ~Call() = default;
  virtual void Proceed(bool ok) = 0;
};

}  // namespace call_support
}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_CALL_SUPPORT_H_
