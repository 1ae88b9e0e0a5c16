// What the KeyService call state machines share (internal to service/): the environment
// they run in, the completion-queue tag interface, and the table of operations with
// the audit and metrics each one writes. Used by key_service_async.cc (unary calls) and
// pipeline_reactor.cc (Pipeline streams).
#ifndef OFFKEY_SERVICE_CALL_SUPPORT_H_
#define OFFKEY_SERVICE_CALL_SUPPORT_H_

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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
  WorkerPool* pool = nullptr;
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

// What the audit line says about a response: only VerifyClient's verdict.
template <typename Response>
void DescribeResult(const Response&, AuditRecord*) {}
inline void DescribeResult(const v1::VerifyClientResponse& r, AuditRecord* record) {
  record->verify_result = v1::VerifyResult_Name(r.result());
  record->client = r.identity().spiffe_id().empty() ? r.identity().subject()
                                                    : r.identity().spiffe_id();
}

// One row per operation: its kind, how to run it, and the scheme it reports in metrics.
template <typename Request>
struct Op;
// Operations that make no signature report no scheme.
struct NoScheme {
  template <typename Request>
  static v1::SignatureScheme Scheme(const Request&) {
    return v1::SIGNATURE_SCHEME_UNSPECIFIED;
  }
};
template <>
struct Op<v1::SignRequest> {
  using Response = v1::SignResponse;
  static constexpr v1::Operation kKind = v1::SIGN;
  static constexpr auto kRun = &Operations::Sign;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestSign;
  static v1::SignatureScheme Scheme(const v1::SignRequest& r) { return r.scheme(); }
};
template <>
struct Op<v1::DecryptPremasterRequest> : NoScheme {
  using Response = v1::DecryptPremasterResponse;
  static constexpr v1::Operation kKind = v1::DECRYPT_PREMASTER;
  static constexpr auto kRun = &Operations::DecryptPremaster;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestDecryptPremaster;
};
template <>
struct Op<v1::DeriveMasterSecretRequest> : NoScheme {
  using Response = v1::DeriveMasterSecretResponse;
  static constexpr v1::Operation kKind = v1::DERIVE_MASTER_SECRET;
  static constexpr auto kRun = &Operations::DeriveMasterSecret;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestDeriveMasterSecret;
};
template <>
struct Op<v1::VerifyClientRequest> {
  using Response = v1::VerifyClientResponse;
  static constexpr v1::Operation kKind = v1::VERIFY_CLIENT;
  static constexpr auto kRun = &Operations::VerifyClient;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestVerifyClient;
  static v1::SignatureScheme Scheme(const v1::VerifyClientRequest& r) {
    return r.scheme();
  }
};
template <>
struct Op<v1::GetCertificateRequest> : NoScheme {
  using Response = v1::GetCertificateResponse;
  static constexpr v1::Operation kKind = v1::GET_CERTIFICATE;
  static constexpr auto kRun = &Operations::GetCertificate;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestGetCertificate;
};
template <>
struct Op<v1::ListKeysRequest> : NoScheme {
  using Response = v1::ListKeysResponse;
  static constexpr v1::Operation kKind = v1::LIST_KEYS;
  static constexpr auto kRun = &Operations::ListKeys;
  static constexpr auto kRequest = &KeyServiceAsyncBase::RequestListKeys;
};

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
