// offkeyd's operational log on standard error: start-up, reloads, health changes,
// shutdown. Never secrets. The audit log (service/audit.h) is a separate stream with its
// own sink; nothing here writes audit records.
//
// Two formats (offkeyd --log_format):
//   text  "offkeyd: <msg>" ("offkeyd: WARNING: <msg>" for warnings), one line per call
//         (a message may itself span lines). The default: what people and this
//         repository's scripts read.
//   json  one JSON object per line: "time" (RFC 3339, UTC, milliseconds), "level"
//         ("debug", "info", "warning", "error"), "msg", then the call's fields, all as
//         strings. Printable ASCII only: quotes, backslashes, control characters and
//         every non-ASCII character are escaped (\uXXXX); bytes that are not UTF-8
//         become U+FFFD.
#ifndef OFFKEY_SERVICE_OPLOG_H_
#define OFFKEY_SERVICE_OPLOG_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace offkey::service {

enum class LogFormat { kText, kJson };
enum class LogLevel { kDebug, kInfo, kWarning, kError };

// "text" or "json"; INVALID_ARGUMENT otherwise.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

using LogFields = std::vector<std::pair<std::string, std::string>>;

// The line for one record, without a trailing newline.
std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view msg, const LogFields& fields = {});

// Writes records to a file descriptor, each with one write(2) so that lines from
// several threads never interleave. Thread-safe.
class OpLog {
 public:
  explicit OpLog(LogFormat format, int fd = 2,
                 std::function<absl::Time()> clock = &absl::Now)
      : format_(format), fd_(fd), clock_(std::move(clock)) {}

  LogFormat format() const { return format_; }
  void Log(LogLevel level, absl::string_view msg, const LogFields& fields = {}) const;
  void Info(absl::string_view msg, const LogFields& fields = {}) const {
    Log(LogLevel::kInfo, msg, fields);
  }
  void Warning(absl::string_view msg, const LogFields& fields = {}) const {
    Log(LogLevel::kWarning, msg, fields);
  }
  void Error(absl::string_view msg, const LogFields& fields = {}) const {
    Log(LogLevel::kError, msg, fields);
  }

 private:
  const LogFormat format_;
  const int fd_;
  const std::function<absl::Time()> clock_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_OPLOG_H_
