#include "service/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace offkey::service {
namespace {

// What a caller is told while lines cannot be written; the reason is for the operator.
absl::Status Refused() {
  return absl::UnavailableError(
      "offkeyd cannot write its audit log, so it refuses operations; retry on another "
      "replica (offkeyd's log tells its operator why)");
}

void AppendEscape(std::string* out, uint32_t unit) {
  absl::StrAppendFormat(out, "\\u%04x", unit);
}

// The length of the well-formed UTF-8 sequence (RFC 3629) at the start of `s` that
// encodes a non-ASCII character, with the character in `*cp`; 0 if there is none
// (overlong forms, surrogates, values past U+10FFFF and cut sequences included).
size_t DecodeUtf8(absl::string_view s, uint32_t* cp) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t len;
  unsigned char low = 0x80, high = 0xbf;  // Allowed range of the second byte.
  if (lead >= 0xc2 && lead <= 0xdf) {
    len = 2;
    *cp = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    len = 3;
    *cp = lead & 0x0f;
    if (lead == 0xe0) low = 0xa0;   // Overlong.
    if (lead == 0xed) high = 0x9f;  // Surrogates.
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    len = 4;
    *cp = lead & 0x07;
    if (lead == 0xf0) low = 0x90;   // Overlong.
    if (lead == 0xf4) high = 0x8f;  // Past U+10FFFF.
  } else {
    return 0;
  }
  if (s.size() < len || byte(1) < low || byte(1) > high) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    *cp = (*cp << 6) | (byte(i) & 0x3f);
  }
  return len;
}

// Appends `s` as a JSON string (RFC 8259) of printable ASCII: at most `cap` bytes of
// it, cut at a character boundary and marked when longer.
void AppendJson(std::string* out, absl::string_view s, size_t cap) {
  const size_t original = s.size();
  const bool cut = s.size() > cap;
  if (cut) {
    size_t end = cap;
    for (int i = 0;
         i < 3 && end > 0 && (static_cast<unsigned char>(s[end]) & 0xc0) == 0x80; ++i) {
      --end;
    }
    s = s.substr(0, end);
  }
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c >= 0x20 && c < 0x7f) {
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x80) {  // Control characters and DEL.
      AppendEscape(out, c);
      ++i;
    } else {
      uint32_t cp = 0;
      const size_t len = DecodeUtf8(s.substr(i), &cp);
      if (len == 0) {
        AppendEscape(out, 0xfffd);  // One replacement per byte that is not UTF-8.
        ++i;
        continue;
      }
      if (cp >= 0x10000) {  // A surrogate pair.
        cp -= 0x10000;
        AppendEscape(out, 0xd800 + (cp >> 10));
        AppendEscape(out, 0xdc00 + (cp & 0x3ff));
      } else {
        AppendEscape(out, cp);
      }
      i += len;
    }
  }
  if (cut) absl::StrAppend(out, "...[truncated from ", original, " bytes]");
  out->push_back('"');
}

void AppendField(std::string* line, absl::string_view name, absl::string_view value,
                 size_t cap = kAuditFieldCap) {
  absl::StrAppend(line, ",\"", name, "\":");
  AppendJson(line, value, cap);
}

// A file (or standard output) written with write(2). A file that was deleted under us
// (by hand, or with its directory) is recreated at `path`, so lines never vanish into an
// unlinked inode; if that fails, the write fails.
class FdSink final : public AuditSink {
 public:
  FdSink(int fd, bool owned, std::string path)
      : fd_(fd), owned_(owned), path_(std::move(path)) {}
  ~FdSink() override {
    if (owned_) close(fd_);
  }

  absl::Status Append(absl::string_view line) override {
    if (owned_) {
      struct stat st;
      if (fstat(fd_, &st) == 0 && st.st_nlink == 0) {
        int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
          return absl::UnavailableError(absl::StrCat(
              "the file was deleted and cannot be created again: ", strerror(errno)));
        }
        close(fd_);
        fd_ = fd;
      }
    }
    for (size_t done = 0; done < line.size();) {
      ssize_t n = write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::UnavailableError(strerror(errno));
      if (n == 0) return absl::UnavailableError("write(2) took no bytes");
      done += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

 private:
  int fd_;
  const bool owned_;
  const std::string path_;
};

}  // namespace

std::string FormatAuditLine(const AuditRecord& r) {
  std::string line = "{\"time\":";
  AppendJson(&line, absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", r.time, absl::UTCTimeZone()),
             kAuditFieldCap);
  AppendField(&line, "identity", r.identity);
  AppendField(&line, "operation", r.operation);
  AppendField(&line, "key", r.key);
  if (!r.scheme.empty()) AppendField(&line, "scheme", r.scheme);
  if (!r.tls_version.empty()) AppendField(&line, "tls", r.tls_version);
  if (!r.sni.empty()) AppendField(&line, "sni", r.sni);
  if (!r.trust_bundle.empty()) AppendField(&line, "trust_bundle", r.trust_bundle);
  if (!r.verify_result.empty()) AppendField(&line, "verify_result", r.verify_result);
  if (!r.client.empty()) AppendField(&line, "client", r.client);
  if (!r.ticket_key_set.empty()) AppendField(&line, "ticket_key_set", r.ticket_key_set);
  if (!r.ticket_result.empty()) AppendField(&line, "ticket_result", r.ticket_result);
  if (r.pipeline) absl::StrAppend(&line, ",\"via\":\"pipeline\"");
  if (!r.handshake_id.empty()) AppendField(&line, "handshake_id", r.handshake_id);
  AppendField(&line, "outcome", absl::StatusCodeToString(r.outcome.code()));
  if (!r.outcome.ok()) AppendField(&line, "error", r.outcome.message(), kAuditErrorCap);
  absl::StrAppendFormat(&line, ",\"latency_us\":%d}",
                        absl::ToInt64Microseconds(r.latency));
  return line;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path,
                                                         AuditOptions options) {
  if (path.empty() || path == "-") {
    return std::unique_ptr<AuditLog>(
        new AuditLog(std::make_unique<FdSink>(STDOUT_FILENO, false, ""),
                     "on standard output", std::move(options)));
  }
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("audit.path: cannot open '", path, "': ", strerror(errno)));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(std::make_unique<FdSink>(fd, true, path),
                                                absl::StrCat("'", path, "'"),
                                                std::move(options)));
}

std::unique_ptr<AuditLog> AuditLog::WithSink(std::unique_ptr<AuditSink> sink,
                                             AuditOptions options) {
  return std::unique_ptr<AuditLog>(
      new AuditLog(std::move(sink), "(injected sink)", std::move(options)));
}

AuditLog::AuditLog(std::unique_ptr<AuditSink> sink, std::string where,
                   AuditOptions options)
    : sink_(std::move(sink)), where_(std::move(where)), options_(std::move(options)) {}

void AuditLog::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    fprintf(stderr, "offkeyd: %s\n", line.c_str());
  }
}

absl::Status AuditLog::Write(const AuditRecord& record) {
  std::string line = FormatAuditLine(record);
  line.push_back('\n');
  offkey::MutexLock lock(&mu_);
  absl::Status written = sink_->Append(line);
  if (written.ok()) {
    if (failing_.load(std::memory_order_relaxed)) {
      Log(absl::StrCat("audit log ", where_, " is writable again; ", lost_in_outage_,
                       " lines could not be written while it failed"));
      failing_.store(false, std::memory_order_relaxed);
      lost_in_outage_ = 0;
    }
    return absl::OkStatus();
  }
  ++failures_;
  ++lost_in_outage_;
  ++lost_since_logged_;
  if (options_.on_failure) options_.on_failure();
  // One line when the trouble starts, then one per interval: a flood of requests must
  // not become a flood of log lines.
  const absl::Time now = absl::Now();
  if (!failing_.load(std::memory_order_relaxed) ||
      now - last_logged_ >= options_.log_interval) {
    Log(absl::StrCat(
        "cannot write the audit log ", where_, ": ", written.message(), " (",
        lost_since_logged_, " lines lost since the last report); ",
        options_.fail_open
            ? "audit.fail_open is set, so operations go on WITHOUT audit lines"
            : "refusing operations until it can be written: free space or fix "
              "audit.path (audit.fail_open would keep serving unaudited)"));
    last_logged_ = now;
    lost_since_logged_ = 0;
  }
  failing_.store(true, std::memory_order_relaxed);
  if (options_.fail_open) return absl::OkStatus();
  return Refused();
}

absl::Status AuditLog::Check() const {
  if (options_.fail_open || !failing_.load(std::memory_order_relaxed)) {
    return absl::OkStatus();
  }
  return Refused();
}

int64_t AuditLog::write_failures() const {
  offkey::MutexLock lock(&mu_);
  return failures_;
}

}  // namespace offkey::service
