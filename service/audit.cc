#include "service/audit.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace offkey::service {
namespace {

// JSON string escaping (RFC 8259): quotes, backslash and control characters.
std::string Json(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

}  // namespace

std::string FormatAuditLine(const AuditRecord& r) {
  std::string line = absl::StrCat(
      "{\"time\":",
      Json(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", r.time, absl::UTCTimeZone())),
      ",\"identity\":", Json(r.identity), ",\"operation\":", Json(r.operation),
      ",\"key\":", Json(r.key));
  if (!r.scheme.empty()) absl::StrAppend(&line, ",\"scheme\":", Json(r.scheme));
  if (!r.tls_version.empty()) absl::StrAppend(&line, ",\"tls\":", Json(r.tls_version));
  if (!r.sni.empty()) absl::StrAppend(&line, ",\"sni\":", Json(r.sni));
  if (!r.trust_bundle.empty()) {
    absl::StrAppend(&line, ",\"trust_bundle\":", Json(r.trust_bundle));
  }
  if (!r.verify_result.empty()) {
    absl::StrAppend(&line, ",\"verify_result\":", Json(r.verify_result));
  }
  if (!r.client.empty()) absl::StrAppend(&line, ",\"client\":", Json(r.client));
  if (r.pipeline) absl::StrAppend(&line, ",\"via\":\"pipeline\"");
  if (!r.handshake_id.empty()) {
    absl::StrAppend(&line, ",\"handshake_id\":", Json(r.handshake_id));
  }
  absl::StrAppend(&line,
                  ",\"outcome\":", Json(absl::StatusCodeToString(r.outcome.code())));
  if (!r.outcome.ok()) absl::StrAppend(&line, ",\"error\":", Json(r.outcome.message()));
  absl::StrAppendFormat(&line, ",\"latency_us\":%d}",
                        absl::ToInt64Microseconds(r.latency));
  return line;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  if (path.empty() || path == "-") {
    return std::unique_ptr<AuditLog>(new AuditLog(STDOUT_FILENO, false));
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("audit.path: cannot open '", path, "': ", strerror(errno)));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(fd, true));
}

AuditLog::~AuditLog() {
  if (owned_) close(fd_);
}

void AuditLog::Write(const AuditRecord& record) {
  std::string line = FormatAuditLine(record);
  line.push_back('\n');
  absl::MutexLock lock(&mu_);
  for (size_t done = 0; done < line.size();) {
    ssize_t n = write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // Nowhere to report it; the operation itself succeeded.
    done += static_cast<size_t>(n);
  }
}

}  // namespace offkey::service
