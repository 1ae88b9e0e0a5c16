// AuditLog: one structured line per operation.
#ifndef OFFKEY_SERVICE_AUDIT_H_
#define OFFKEY_SERVICE_AUDIT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace offkey::service {

// What an audit line says. Identifiers only: never a message, digest, ciphertext,
// signature, premaster or master secret. For DecryptPremaster a good and a bad padding
// produce the same line (both are OK), so the log is no padding oracle either.
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
  bool pipeline = false;      // Carried by a Pipeline stream rather than a unary call.
  absl::Status outcome;       // Its code and, for errors, its message.
  absl::Duration latency;
};

// Renders `record` as one JSON object without a trailing newline.
std::string FormatAuditLine(const AuditRecord& record);

// Appends lines to a file or standard output with one write(2) each (no stdio buffer
// to lose, no flush to wait for). Thread-safe; each line is written whole.
class AuditLog {
 public:
  // `path`: a file (created 0600 or appended to), or "" / "-" for standard output.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();

  void Write(const AuditRecord& record);

 private:
  AuditLog(int fd, bool owned) : fd_(fd), owned_(owned) {}
  absl::Mutex mu_;  // Keeps a line whole if the kernel takes it in pieces.
  const int fd_;
  const bool owned_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_AUDIT_H_
