#include "service/oplog.h"

#include <errno.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace offkey::service {
namespace {

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// The code point of the UTF-8 sequence at the start of `s`, and its length; -1 and 1
// for a byte that does not start a well-formed sequence (overlong, surrogate, too
// large, truncated).
std::pair<int32_t, size_t> DecodeUtf8(absl::string_view s) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  size_t length;
  int32_t min;
  int32_t cp;
  if (b0 < 0x80) return {b0, 1};
  if ((b0 & 0xE0) == 0xC0) {
    length = 2, min = 0x80, cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3, min = 0x800, cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, cp = b0 & 0x07;
  } else {
    return {-1, 1};
  }
  if (s.size() < length) return {-1, 1};
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return {-1, 1};
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {-1, 1};
  return {cp, length};
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  while (!s.empty()) {
    auto [cp, length] = DecodeUtf8(s);
    s.remove_prefix(length);
    if (cp == '"' || cp == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(cp));
    } else if (cp >= 0x20 && cp < 0x7F) {
      out->push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out->append("\\n");
    } else if (cp < 0) {
      out->append("\\ufffd");
    } else if (cp >= 0x10000) {  // A surrogate pair.
      const int32_t v = cp - 0x10000;
      absl::StrAppendFormat(out, "\\u%04x\\u%04x", 0xD800 + (v >> 10),
                            0xDC00 + (v & 0x3FF));
    } else {
      absl::StrAppendFormat(out, "\\u%04x", cp);
    }
  }
  out->push_back('"');
}

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("log format '", name, "': use text or json"));
}

std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view msg, const LogFields& fields) {
  if (format == LogFormat::kText) {
    std::string line =
        absl::StrCat("offkeyd: ", level == LogLevel::kWarning ? "WARNING: " : "", msg);
    return line;
  }
  std::string line = "{\"time\":";
  AppendJsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone()),
                   &line);
  line.append(",\"level\":");
  AppendJsonString(LevelName(level), &line);
  line.append(",\"msg\":");
  AppendJsonString(msg, &line);
  for (const auto& [key, value] : fields) {
    line.push_back(',');
    AppendJsonString(key, &line);
    line.push_back(':');
    AppendJsonString(value, &line);
  }
  line.push_back('}');
  return line;
}

void OpLog::Log(LogLevel level, absl::string_view msg, const LogFields& fields) const {
  std::string line = FormatLogLine(format_, clock_(), level, msg, fields);
  line.push_back('\n');
  absl::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = write(fd_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // Nowhere left to report it.
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace offkey::service
