#include "client/cli/connection.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/client_tls.h"
#include "base/identity.h"
#include "base/secret_bytes.h"
#include "base/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "offkey/v1/offkeyctl_config.pb.h"

namespace offkey::client::cli {
namespace {

constexpr char kDefaultAdminPort[] = "8444";
constexpr char kDefaultDataPort[] = "8443";

bool IsReadableFile(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), R_OK) == 0;
}

// Text-format errors as "file:line:column: message".
class ConfigErrors : public google::protobuf::io::ErrorCollector {
 public:
  explicit ConfigErrors(std::string path) : path_(std::move(path)) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (first_.empty()) {
      first_ = absl::StrCat(path_, ":", line + 1, ":", column + 1, ": ", message);
    }
  }
  const std::string& first() const { return first_; }

 private:
  std::string path_;
  std::string first_;
};

absl::StatusOr<offkey::v1::OffkeyctlConfig> LoadConfigFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadSmallFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read the configuration file '", path,
                                            "': ", text.status().message()));
  }
  offkey::v1::OffkeyctlConfig config;
  google::protobuf::TextFormat::Parser parser;
  ConfigErrors errors(path);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(*text, &config)) {
    return absl::InvalidArgumentError(
        absl::StrCat(errors.first(),
                     " (schema offkey.v1.OffkeyctlConfig, "
                     "proto/offkey/v1/offkeyctl_config.proto)"));
  }
  if (config.timeout_seconds() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": timeout_seconds must not be negative"));
  }
  return config;
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return absl::StrCat(dir, "/", path);
}

// Sets `setting` unless a stronger source already did.
void Offer(Setting* setting, const std::string& value, const std::string& origin) {
  if (setting->value.empty() && !value.empty()) *setting = Setting{value, origin};
}

// 127.0.0.1:<port from the state directory's port file, else the default>.
std::string DevTarget(const std::string& dir, const char* port_file,
                      const char* fallback) {
  std::string port = fallback;
  absl::StatusOr<std::string> text = ReadSmallFile(absl::StrCat(dir, "/", port_file));
  int number = 0;
  if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &number) &&
      number > 0 && number < 65536) {
    port = absl::StrCat(number);
  }
  return absl::StrCat("127.0.0.1:", port);
}

absl::Status MissingSetting(const Endpoint& endpoint, absl::string_view what,
                            absl::string_view flag, absl::string_view env,
                            absl::string_view field) {
  return absl::FailedPreconditionError(
      absl::StrCat("no ", what, " for offkeyd's ", endpoint.plane, " listener: give ",
                   flag, ", set $", env, ", put ", field,
                   " in the configuration file (offkeyctl --help), or use --dev "
                   "against a development offkeyd"));
}

std::string Describe(const Setting& setting) {
  return absl::StrCat("'", setting.value, "' (from ", setting.origin, ")");
}

}  // namespace

GetEnv ProcessEnv() {
  return [](const char* name) {
    const char* value = getenv(name);
    return value == nullptr ? std::string() : std::string(value);
  };
}

absl::StatusOr<std::string> FindDevStateDir(const std::string& dir, const GetEnv& env) {
  std::string chosen = dir.empty() ? env("OFFKEY_DEV_DIR") : dir;
  if (!chosen.empty()) {
    if (!IsReadableFile(chosen + "/ca.pem")) {
      return absl::NotFoundError(
          absl::StrCat("'", chosen,
                       "' is not an offkeyd development state directory (no ca.pem); "
                       "start `offkeyd --dev --dev_state_dir=",
                       chosen, "` once to make it"));
    }
    return chosen;
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) {
    return absl::InternalError(absl::StrCat("getcwd: ", strerror(errno)));
  }
  for (std::string at = cwd;;) {
    const std::string candidate = (at == "/" ? "" : at) + "/.offkey/dev";
    if (IsReadableFile(candidate + "/ca.pem")) return candidate;
    if (at == "/") break;
    at = Dirname(at);
  }
  return absl::NotFoundError(
      "--dev: no .offkey/dev here or in any parent directory; start `offkeyd --dev` "
      "(or ./tools/quickstart.sh) first, or name the directory with --dev-dir or "
      "$OFFKEY_DEV_DIR");
}

absl::StatusOr<Connection> ResolveConnection(const ConnectionFlags& flags,
                                             const GetEnv& env) {
  Connection c;
  c.admin.plane = "admin";
  c.data.plane = "data";

  // 1. Flags.
  Offer(&c.admin.target, flags.admin_endpoint, "--admin-endpoint");
  Offer(&c.data.target, flags.endpoint, "--endpoint");
  for (Endpoint* e : {&c.admin, &c.data}) {
    Offer(&e->ca_file, flags.ca, "--tls-ca");
  }
  Offer(&c.admin.cert_file, flags.cert, "--tls-cert");
  Offer(&c.admin.key_file, flags.key, "--tls-key");
  Offer(&c.data.cert_file, flags.data_cert, "--data-tls-cert");
  Offer(&c.data.key_file, flags.data_key, "--data-tls-key");
  Offer(&c.data.cert_file, flags.cert, "--tls-cert");
  Offer(&c.data.key_file, flags.key, "--tls-key");
  std::string server_name = flags.server_name;
  int timeout = flags.timeout_seconds;

  // 2. Environment.
  Offer(&c.admin.target, env("OFFKEY_ADMIN_ENDPOINT"), "$OFFKEY_ADMIN_ENDPOINT");
  Offer(&c.data.target, env("OFFKEY_ENDPOINT"), "$OFFKEY_ENDPOINT");
  for (Endpoint* e : {&c.admin, &c.data}) {
    Offer(&e->ca_file, env("OFFKEY_TLS_CA"), "$OFFKEY_TLS_CA");
  }
  Offer(&c.admin.cert_file, env("OFFKEY_TLS_CERT"), "$OFFKEY_TLS_CERT");
  Offer(&c.admin.key_file, env("OFFKEY_TLS_KEY"), "$OFFKEY_TLS_KEY");
  Offer(&c.data.cert_file, env("OFFKEY_DATA_TLS_CERT"), "$OFFKEY_DATA_TLS_CERT");
  Offer(&c.data.key_file, env("OFFKEY_DATA_TLS_KEY"), "$OFFKEY_DATA_TLS_KEY");
  Offer(&c.data.cert_file, env("OFFKEY_TLS_CERT"), "$OFFKEY_TLS_CERT");
  Offer(&c.data.key_file, env("OFFKEY_TLS_KEY"), "$OFFKEY_TLS_KEY");
  if (server_name.empty()) server_name = env("OFFKEY_SERVER_NAME");

  // 3. The development state directory: the admin identity for KeyAdmin, the terminator
  // identity (which the development policy grants data-plane operations) for KeyService.
  if (flags.dev || !flags.dev_dir.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(std::string dir, FindDevStateDir(flags.dev_dir, env));
    const std::string origin = absl::StrCat("--dev (", dir, ")");
    Offer(&c.admin.target, DevTarget(dir, "admin.port", kDefaultAdminPort), origin);
    Offer(&c.data.target, DevTarget(dir, "offkeyd.port", kDefaultDataPort), origin);
    for (Endpoint* e : {&c.admin, &c.data}) Offer(&e->ca_file, dir + "/ca.pem", origin);
    Offer(&c.admin.cert_file, dir + "/admin.pem", origin);
    Offer(&c.admin.key_file, dir + "/admin.key", origin);
    Offer(&c.data.cert_file, dir + "/terminator.pem", origin);
    Offer(&c.data.key_file, dir + "/terminator.key", origin);
  }

  // 4. The configuration file.
  std::string config_path = flags.config;
  bool explicit_config = true;
  if (config_path.empty()) config_path = env("OFFKEY_CONFIG");
  if (config_path.empty()) {
    explicit_config = false;
    const std::string xdg = env("XDG_CONFIG_HOME");
    const std::string home = env("HOME");
    if (!xdg.empty()) {
      config_path = xdg + "/offkey/offkeyctl.textproto";
    } else if (!home.empty()) {
      config_path = home + "/.config/offkey/offkeyctl.textproto";
    }
  }
  if (!config_path.empty() && (explicit_config || IsReadableFile(config_path))) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::OffkeyctlConfig file,
                            LoadConfigFile(config_path));
    const std::string dir = Dirname(config_path);
    Offer(&c.admin.target, file.admin_endpoint(), config_path);
    Offer(&c.data.target, file.endpoint(), config_path);
    for (Endpoint* e : {&c.admin, &c.data}) {
      Offer(&e->ca_file, Resolve(dir, file.ca_file()), config_path);
    }
    Offer(&c.admin.cert_file, Resolve(dir, file.cert_file()), config_path);
    Offer(&c.admin.key_file, Resolve(dir, file.key_file()), config_path);
    Offer(&c.data.cert_file, Resolve(dir, file.data_cert_file()), config_path);
    Offer(&c.data.key_file, Resolve(dir, file.data_key_file()), config_path);
    Offer(&c.data.cert_file, Resolve(dir, file.cert_file()), config_path);
    Offer(&c.data.key_file, Resolve(dir, file.key_file()), config_path);
    if (server_name.empty()) server_name = file.server_name();
    if (timeout == 0) timeout = file.timeout_seconds();
  }

  c.admin.server_name = c.data.server_name = server_name;
  if (timeout < 0) {
    return absl::InvalidArgumentError("--timeout must be a positive number of seconds");
  }
  c.timeout = absl::Seconds(timeout == 0 ? 30 : timeout);
  return c;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const Endpoint& endpoint) {
  const bool admin = endpoint.plane == "admin";
  if (endpoint.target.value.empty()) {
    return admin ? MissingSetting(endpoint, "address", "--admin-endpoint HOST:PORT",
                                  "OFFKEY_ADMIN_ENDPOINT", "admin_endpoint")
                 : MissingSetting(endpoint, "address", "--endpoint HOST:PORT",
                                  "OFFKEY_ENDPOINT", "endpoint");
  }
  if (endpoint.ca_file.value.empty()) {
    return MissingSetting(endpoint, "CA certificate", "--tls-ca FILE", "OFFKEY_TLS_CA",
                          "ca_file");
  }
  if (endpoint.cert_file.value.empty() || endpoint.key_file.value.empty()) {
    return admin
               ? MissingSetting(endpoint, "client certificate and key",
                                "--tls-cert FILE --tls-key FILE",
                                "OFFKEY_TLS_CERT/$OFFKEY_TLS_KEY", "cert_file/key_file")
               : MissingSetting(
                     endpoint, "client certificate and key",
                     "--data-tls-cert FILE --data-tls-key FILE (or --tls-cert/--tls-key)",
                     "OFFKEY_DATA_TLS_CERT/$OFFKEY_DATA_TLS_KEY",
                     "data_cert_file/data_key_file");
  }

  OFFKEY_ASSIGN_OR_RETURN(
      ClientTlsMaterial material,
      LoadClientTlsFiles({endpoint.ca_file.value, Describe(endpoint.ca_file)},
                         {endpoint.cert_file.value, Describe(endpoint.cert_file)},
                         {endpoint.key_file.value, Describe(endpoint.key_file)}));

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = material.ca_pem;
  tls.pem_cert_chain = material.cert_pem;
  tls.pem_private_key = std::string(material.key_pem.view());
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(tls);
  WipeString(&tls.pem_private_key);
  grpc::ChannelArguments args;
  if (!endpoint.server_name.empty()) {
    args.SetSslTargetNameOverride(endpoint.server_name);
  }
  return grpc::CreateCustomChannel(endpoint.target.value, credentials, args);
}

std::string PresentedIdentity(const Endpoint& endpoint) {
  absl::StatusOr<std::string> pem = ReadSmallFile(endpoint.cert_file.value);
  if (!pem.ok()) return "(unreadable certificate)";
  absl::StatusOr<std::string> identity = IdentityFromCertificatePem(*pem);
  return identity.ok() ? *identity : absl::StrCat("(", identity.status().message(), ")");
}

}  // namespace offkey::client::cli
