// AuditLog: one structured line per operation.
#ifndef OFFKEY_SERVICE_AUDIT_H_
#define OFFKEY_SERVICE_AUDIT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/mutex.h"

namespace offkey::service {

// What an audit line says. Identifiers only: never a message, digest, ciphertext,
// signature, premaster or master secret. For DecryptPremaster a good and a bad padding
// produce the same line (both are OK), so the log is no padding oracle either.
// Fields may hold anything a caller sent (unvalidated, any size): FormatAuditLine caps
// and escapes every one of them.
struct AuditRecord {
  absl::Time time;
  std::string identity;   // Caller ("" when unauthenticated).
  std::string operation;  // "sign", "decrypt-premaster", ...
  std::string key;        // The key reference as given: name, or id/ski/cert as hex.
  std::string scheme;     // Signature scheme name, for sign.
  std::string tls_version;
  std::string sni;
  std::string handshake_id;
  std::string trust_bundle;   // VerifyClient: the bundle named.
  std::string verify_result;  // VerifyClient: "VERIFIED", "EXPIRED", ...
  std::string client;         // VerifyClient: the verified client's SPIFFE ID or subject.
  std::string ticket_key_set;  // Ticket operations: the set named.
  std::string ticket_result;   // UnsealTicket: "OPENED", "EXPIRED", "INVALID".
  bool pipeline = false;       // Carried by a Pipeline stream rather than a unary call.
  absl::Status outcome;        // Its code and, for errors, its message.
  absl::Duration latency;
};

// Bytes of each field that reach the line (the error message has its own, larger cap).
// Longer values are cut at a UTF-8 character boundary and end "...[truncated from N
// bytes]". Escaping at most sextuples a byte, so a line stays under about 24 KiB
// whatever a request holds.
inline constexpr size_t kAuditFieldCap = 256;
inline constexpr size_t kAuditErrorCap = 1024;

// Renders `record` as one JSON object without a trailing newline: printable ASCII only
// (quotes, backslash, control characters, DEL and every non-ASCII character escaped as
// \uXXXX; bytes that are not UTF-8 become U+FFFD), each field capped as above.
std::string FormatAuditLine(const AuditRecord& record);

// Where audit lines go. Implementations are thread-compatible: AuditLog serializes
// Append calls.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Appends `line` (ending in '\n') whole. OK once all of it was accepted; otherwise
  // an error whose message says why (it reaches offkeyd's log, not callers).
  virtual absl::Status Append(absl::string_view line) = 0;
};

struct AuditOptions {
  // AuditConfig.fail_open: when a line cannot be written, keep serving (the operation
  // goes unaudited). Default false: operations are refused until lines can be written.
  bool fail_open = false;
  // offkeyd's operational log: one line when writes start failing (then at most one per
  // `log_interval` while they keep failing) and one when they succeed again.
  // Default: standard error.
  std::function<void(const std::string& line)> log;
  absl::Duration log_interval = absl::Minutes(1);
  // Called once per line that could not be written (the audit failure metric).
  std::function<void()> on_failure;
};

// Appends lines to a file or standard output with one write(2) each (no stdio buffer
// to lose, no flush to wait for). Thread-safe; each line is written whole or reported
// as failed.
class AuditLog {
 public:
  // `path`: a file (created 0600 or appended to), or "" / "-" for standard output.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                        AuditOptions options = {});
  // Lines go to `sink` (tests inject failing sinks).
  static std::unique_ptr<AuditLog> WithSink(std::unique_ptr<AuditSink> sink,
                                            AuditOptions options);

  // Writes the line of `record`. OK if it was written (or under fail_open); UNAVAILABLE
  // if it was not: the caller must then withhold the operation's result.
  absl::Status Write(const AuditRecord& record);
  // UNAVAILABLE while the last write failed (not under fail_open), so that a caller can
  // refuse an operation before doing its work; the refusal's own line, once written,
  // ends that state.
  absl::Status Check() const;
  // Lines that could not be written since start.
  int64_t write_failures() const;

 private:
  AuditLog(std::unique_ptr<AuditSink> sink, std::string where, AuditOptions options);
  void Log(const std::string& line) const;

  const std::unique_ptr<AuditSink> sink_;
  const std::string where_;  // The path, for the operator's log.
  const AuditOptions options_;
  mutable offkey::Mutex mu_;  // Keeps a line whole if the kernel takes it in pieces.
  // Written under mu_; read without it by Check, which every operation calls.
  std::atomic<bool> failing_{false};
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lost_since_logged_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t lost_in_outage_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_logged_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_AUDIT_H_
