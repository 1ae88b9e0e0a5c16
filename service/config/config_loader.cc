#include "service/config/config_loader.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "service/config/field_errors.h"
#include "service/config/policy.h"

namespace offkey::service::config {
namespace {

using google::protobuf::TextFormat;
using offkey::v1::ServerConfig;

constexpr char kDefaultListenAddress[] = "127.0.0.1:8443";
constexpr char kDefaultAdminListenAddress[] = "127.0.0.1:8444";
constexpr char kDefaultMetricsAddress[] = "127.0.0.1:9090";
constexpr int kDefaultMaxSessions = 4;
constexpr int kMaxSessions = 1024;
constexpr int kMaxThreads = 1024;
constexpr int kDefaultQueueDepth = 256;
constexpr int kMaxQueueDepth = 65536;
constexpr int kDefaultStreamInFlight = 128;
constexpr int kMaxStreamInFlight = 4096;
constexpr int kDefaultMaxConcurrentStreams = 256;
constexpr int kMaxConcurrentStreams = 65536;
constexpr int kDefaultVerifyClientThreads = 2;
constexpr int kMaxVerifyClientThreads = 64;
constexpr int kDefaultVerifyClientQueueDepth = 64;
constexpr int kMaxVerifyClientQueueDepth = 65536;
constexpr int kDefaultReloadSeconds = 5;
constexpr int kDefaultMaxAgeMs = 120000;
constexpr int kDefaultMaxAgeGraceMs = 40000;
constexpr int kMaxReloadSeconds = 3600;
constexpr int kMinConnectionTimerMs = 1000;
constexpr int kMaxConnectionTimerMs = 86400000;
constexpr size_t kMaxTrustBundleName = 128;
constexpr size_t kMaxConfigBytes = 1 << 20;

// The tokenizer's column for byte `offset` of `line`: tabs advance to the next multiple
// of 8 (google/protobuf/io/tokenizer.h).
int TokenizerColumn(absl::string_view line, size_t offset) {
  int column = 0;
  for (size_t i = 0; i < offset && i < line.size(); ++i) {
    column = line[i] == '\t' ? column + 8 - column % 8 : column + 1;
  }
  return column;
}

// The parser reports most errors at the token after the culprit (an unknown field name
// at the ':' that follows it, a bad enum name just past it). Moves `column` back to the
// nearest start, before `column` on `line`, of a name that `message` quotes, so the
// column points at the culprit; otherwise leaves it.
int CulpritColumn(absl::string_view line, int column, absl::string_view message) {
  std::vector<absl::string_view> pieces = absl::StrSplit(message, '"');
  for (size_t i = 1; i < pieces.size(); i += 2) {
    absl::string_view quoted = pieces[i];
    if (quoted.empty()) continue;
    int best = -1;
    for (size_t pos = line.find(quoted); pos != absl::string_view::npos;
         pos = line.find(quoted, pos + 1)) {
      int start = TokenizerColumn(line, pos);
      if (start >= column) break;
      best = start;
    }
    if (best >= 0) return best;
  }
  return column;
}

// Keeps the parser's first error (it stops there) as "source:line:col: message".
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  // `text` is what is parsed; it must outlive the collector.
  FirstErrorCollector(absl::string_view source_name, absl::string_view text)
      : source_name_(source_name), text_(text) {}

  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!first_error_.empty()) return;
    if (line < 0) {
      first_error_ = absl::StrCat(source_name_, ": ", message);
      return;
    }
    absl::string_view this_line = Line(line);
    first_error_ =
        absl::StrCat(source_name_, ":", line + 1, ":",
                     CulpritColumn(this_line, column, message) + 1, ": ", message);
  }

  // Warnings (for example deprecated fields) do not stop a load.
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}

  const std::string& first_error() const { return first_error_; }

 private:
  // Zero-based line `n` of the text ("" past its end).
  absl::string_view Line(int n) const {
    size_t start = 0;
    for (int i = 0; i < n; ++i) {
      start = text_.find('\n', start);
      if (start == absl::string_view::npos) return "";
      ++start;
    }
    size_t end = text_.find('\n', start);
    return text_.substr(start, end == absl::string_view::npos ? end : end - start);
  }

  std::string source_name_;
  absl::string_view text_;
  std::string first_error_;
};

// (absl::StrContainsIgnoreCase is newer than Debian's Abseil.)
bool ContainsIgnoreCase(absl::string_view text, absl::string_view part) {
  return absl::StrContains(absl::AsciiStrToLower(text), absl::AsciiStrToLower(part));
}

std::string Quoted(absl::string_view s) {
  if (s.size() > 80) s = s.substr(0, 80);
  return absl::StrCat("'", absl::CHexEscape(s), "'");
}

bool IsPort(absl::string_view port) {
  uint32_t value = 0;
  if (port.empty() || port.size() > 5) return false;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(port, &value) && value <= 65535;
}

// "host:port" with a DNS name or IPv4 address, or "[IPv6]:port". Port 0 means any.
bool IsHostPort(absl::string_view address) {
  absl::string_view host;
  absl::string_view port;
  if (!address.empty() && address.front() == '[') {
    size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return false;
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
    if (host.find(':') == absl::string_view::npos) return false;
    for (char c : host) {
      // Hex digits, ':' and '.' (embedded IPv4), '%' and a zone name.
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != ':' && c != '.' &&
          c != '%') {
        return false;
      }
    }
  } else {
    size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) return false;
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.empty()) return false;
    for (char c : host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' &&
          c != '_') {
        return false;
      }
    }
  }
  return IsPort(port);
}

void CheckAddress(const std::string& address, absl::string_view field,
                  const MessageCursor& root) {
  if (!IsHostPort(address)) {
    root.Error(field, -1,
               absl::StrCat(Quoted(address),
                            " is not host:port (for example '0.0.0.0:8443', "
                            "'localhost:8443' or '[::]:8443')"));
  }
}

bool IsEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name.front()))) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

void CheckRange(int value, int low, int high, absl::string_view field,
                const MessageCursor& where, absl::string_view note = "") {
  if (value < low || value > high) {
    where.Error(field, -1,
                absl::StrCat("must be ", low, "..", high, note, " (is ", value, ")"));
  }
}

void CheckTls(const ServerConfig& config, Completeness completeness,
              const MessageCursor& root) {
  if (config.insecure_plaintext_for_development()) return;
  const offkey::v1::TlsConfig& tls = config.tls();
  const bool any = !tls.cert_file().empty() || !tls.key_file().empty() ||
                   !tls.client_ca_file().empty();
  // No flag supplies TLS files, so a half-written tls block is wrong in any case; an
  // absent one may yet be excused by --insecure_plaintext_for_development.
  if (!any && completeness == Completeness::kAllowIncomplete) return;
  MessageCursor where = root.Nested("tls");
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string*>{"cert_file", &tls.cert_file()},
        {"key_file", &tls.key_file()},
        {"client_ca_file", &tls.client_ca_file()}}) {
    if (value->empty()) {
      where.Error(field, -1, "required unless insecure_plaintext_for_development is set");
    }
  }
}

void CheckHsm(const offkey::v1::HsmConfig& hsm, Completeness completeness,
              const MessageCursor& root) {
  MessageCursor where = root.Nested("hsm");
  const bool complete = completeness == Completeness::kComplete;
  const std::string& uri = hsm.token_uri();
  if (uri.empty()) {
    if (complete) {
      where.Error("token_uri", -1,
                  "required: an RFC 7512 PKCS#11 URI selecting the token, e.g. "
                  "'pkcs11:token=offkey'");
    }
  } else if (!absl::StartsWithIgnoreCase(uri, "pkcs11:")) {
    where.Error(
        "token_uri", -1,
        absl::StrCat(Quoted(uri),
                     " is not a PKCS#11 URI; it starts with 'pkcs11:' (RFC 7512), "
                     "e.g. 'pkcs11:token=offkey'"));
  } else if (ContainsIgnoreCase(uri, "pin-value=")) {
    where.Error("token_uri", -1,
                "pin-value is refused (URIs end up in logs); use hsm.pin_file or "
                "hsm.pin_env");
  }
  if (complete && hsm.module_path().empty() && !ContainsIgnoreCase(uri, "module-path=")) {
    where.Error("module_path", -1,
                "required (the PKCS#11 module to load, e.g. "
                "'/usr/lib/softhsm/libsofthsm2.so') unless token_uri has module-path");
  }
  if (!hsm.pin_file().empty() && !hsm.pin_env().empty()) {
    where.Error("pin_env", -1, "set only one of pin_file and pin_env");
  } else if (complete && hsm.pin_file().empty() && hsm.pin_env().empty() &&
             !ContainsIgnoreCase(uri, "pin-source=")) {
    where.Error("pin_file", -1,
                "required: set pin_file or pin_env (or pin-source in token_uri)");
  }
  if (!hsm.pin_env().empty() && !IsEnvName(hsm.pin_env())) {
    where.Error(
        "pin_env", -1,
        absl::StrCat(Quoted(hsm.pin_env()),
                     " is not an environment variable name (letters, digits, '_')"));
  }
  CheckRange(hsm.max_sessions(), 1, kMaxSessions, "max_sessions", where);
}

void CheckTrustBundles(const ServerConfig& config, const MessageCursor& root) {
  std::set<std::string> names;
  for (int i = 0; i < config.trust_bundles_size(); ++i) {
    const offkey::v1::TrustBundle& bundle = config.trust_bundles(i);
    MessageCursor where = root.Nested("trust_bundles", i);
    if (bundle.name().empty() || bundle.name().size() > kMaxTrustBundleName) {
      where.Error("name", -1, "required, 1..128 bytes (VerifyClient names the bundle)");
    } else if (!names.insert(bundle.name()).second) {
      where.Error("name", -1, absl::StrCat(Quoted(bundle.name()), " is defined twice"));
    }
    if (bundle.ca_file().empty()) {
      where.Error("ca_file", -1, "required: a PEM file of the CA certificates to trust");
    }
    for (int j = 0; j < bundle.crl_files_size(); ++j) {
      if (bundle.crl_files(j).empty()) where.Error("crl_files", j, "empty path");
    }
    for (int j = 0; j < bundle.allowed_schemes_size(); ++j) {
      if (bundle.allowed_schemes(j) == offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) {
        where.Error("allowed_schemes", j, "SIGNATURE_SCHEME_UNSPECIFIED is not a scheme");
      }
    }
  }
}

// `config` has its defaults applied.
void Validate(const ServerConfig& config, Completeness completeness,
              const MessageCursor& root) {
  CheckAddress(config.listen_address(), "listen_address", root);
  CheckAddress(config.admin_listen_address(), "admin_listen_address", root);
  CheckAddress(config.metrics_address(), "metrics_address", root);
  auto fixed_port = [](const std::string& address) {
    return !absl::EndsWith(address, ":0");
  };
  if (config.admin_listen_address() == config.listen_address() &&
      fixed_port(config.listen_address())) {
    root.Error("admin_listen_address", -1,
               absl::StrCat(Quoted(config.admin_listen_address()),
                            " is also listen_address; the admin plane needs its own "
                            "listener"));
  }
  if (fixed_port(config.metrics_address()) &&
      (config.metrics_address() == config.listen_address() ||
       config.metrics_address() == config.admin_listen_address())) {
    root.Error(
        "metrics_address", -1,
        absl::StrCat(Quoted(config.metrics_address()),
                     " is also a gRPC listen address; metrics need their own port"));
  }
  CheckTls(config, completeness, root);
  CheckHsm(config.hsm(), completeness, root);
  MessageCursor workers = root.Nested("workers");
  CheckRange(config.workers().threads(), 0, kMaxThreads, "threads", workers,
             " (0 = hsm.max_sessions)");
  CheckRange(config.workers().queue_depth(), 1, kMaxQueueDepth, "queue_depth", workers);
  CheckPolicy(config.policy(), config.admin_identities(), root);
  CheckTrustBundles(config, root);
  CheckRange(config.stream().max_in_flight(), 1, kMaxStreamInFlight, "max_in_flight",
             root.Nested("stream"));
  CheckRange(config.reload().interval_seconds(), 1, kMaxReloadSeconds, "interval_seconds",
             root.Nested("reload"));
  const offkey::v1::LimitsConfig& limits = config.limits();
  MessageCursor where = root.Nested("limits");
  CheckRange(limits.max_calls_in_flight_per_identity(), 0, config.workers().queue_depth(),
             "max_calls_in_flight_per_identity", where,
             " (0 = half of workers.queue_depth)");
  CheckRange(limits.max_concurrent_streams(), 1, kMaxConcurrentStreams,
             "max_concurrent_streams", where);
  CheckRange(limits.verify_client_threads(), 1, kMaxVerifyClientThreads,
             "verify_client_threads", where);
  CheckRange(limits.verify_client_queue_depth(), 1, kMaxVerifyClientQueueDepth,
             "verify_client_queue_depth", where);
  MessageCursor connections = root.Nested("connections");
  for (const auto& [value, name] :
       {std::pair<int, const char*>{config.connections().max_idle_ms(), "max_idle_ms"},
        {config.connections().max_age_ms(), "max_age_ms"},
        {config.connections().max_age_grace_ms(), "max_age_grace_ms"}}) {
    // 0 is "never"; shorter than a second would close connections between handshakes.
    if (value != 0) {
      CheckRange(value, kMinConnectionTimerMs, kMaxConnectionTimerMs, name, connections,
                 " (0 = never)");
    }
  }
}

}  // namespace

void ApplyDefaults(ServerConfig* config) {
  offkey::v1::ConnectionConfig* connections = config->mutable_connections();
  if (!connections->has_max_age_ms()) connections->set_max_age_ms(kDefaultMaxAgeMs);
  if (!connections->has_max_age_grace_ms()) {
    connections->set_max_age_grace_ms(kDefaultMaxAgeGraceMs);
  }
  if (config->listen_address().empty()) config->set_listen_address(kDefaultListenAddress);
  if (config->admin_listen_address().empty()) {
    config->set_admin_listen_address(kDefaultAdminListenAddress);
  }
  if (config->metrics_address().empty()) {
    config->set_metrics_address(kDefaultMetricsAddress);
  }
  if (config->hsm().max_sessions() == 0) {
    config->mutable_hsm()->set_max_sessions(kDefaultMaxSessions);
  }
  if (config->workers().queue_depth() == 0) {
    config->mutable_workers()->set_queue_depth(kDefaultQueueDepth);
  }
  if (config->stream().max_in_flight() == 0) {
    config->mutable_stream()->set_max_in_flight(kDefaultStreamInFlight);
  }
  if (config->reload().interval_seconds() == 0) {
    config->mutable_reload()->set_interval_seconds(kDefaultReloadSeconds);
  }
  offkey::v1::LimitsConfig* limits = config->mutable_limits();
  if (limits->max_concurrent_streams() == 0) {
    limits->set_max_concurrent_streams(kDefaultMaxConcurrentStreams);
  }
  if (limits->verify_client_threads() == 0) {
    limits->set_verify_client_threads(kDefaultVerifyClientThreads);
  }
  if (limits->verify_client_queue_depth() == 0) {
    limits->set_verify_client_queue_depth(kDefaultVerifyClientQueueDepth);
  }
}

absl::Status ValidateConfig(const ServerConfig& config, Completeness completeness) {
  ServerConfig defaulted = config;
  ApplyDefaults(&defaulted);
  FieldErrors errors;
  Validate(defaulted, completeness,
           MessageCursor(&errors, ServerConfig::descriptor(), nullptr));
  return errors.ToStatus();
}

absl::StatusOr<ServerConfig> ParseConfigText(absl::string_view text,
                                             absl::string_view source_name,
                                             Completeness completeness) {
  FirstErrorCollector collector(source_name, text);
  TextFormat::ParseInfoTree locations;
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  parser.WriteLocationsTo(&locations);
  // Strict on purpose: a misspelt field must not silently become its default.
  parser.AllowUnknownField(false);
  parser.AllowUnknownExtension(false);
  ServerConfig config;
  if (!parser.ParseFromString(std::string(text), &config)) {
    return absl::InvalidArgumentError(
        collector.first_error().empty()
            ? absl::StrCat(source_name, ": not a valid offkey.v1.ServerConfig")
            : collector.first_error());
  }
  ApplyDefaults(&config);
  FieldErrors errors{std::string(source_name)};
  Validate(config, completeness,
           MessageCursor(&errors, ServerConfig::descriptor(), &locations));
  if (!errors.empty()) return errors.ToStatus();
  return config;
}

absl::StatusOr<ServerConfig> LoadConfigFile(const std::string& path,
                                            Completeness completeness) {
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    const int error = errno;
    const std::string message = absl::StrCat("cannot read configuration file '", path,
                                             "': ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(message);
    if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
    return absl::FailedPreconditionError(message);
  }
  std::string text;
  char buffer[16384];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    text.append(buffer, n);
    if (text.size() > kMaxConfigBytes) {
      return absl::InvalidArgumentError(absl::StrCat("configuration file '", path,
                                                     "' is larger than ", kMaxConfigBytes,
                                                     " bytes; is it the right file?"));
    }
  }
  if (std::ferror(file.get())) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read configuration file '",
                                                      path, "': ", std::strerror(errno)));
  }
  return ParseConfigText(text, path, completeness);
}

}  // namespace offkey::service::config
