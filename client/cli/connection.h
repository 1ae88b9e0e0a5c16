// Where offkeyctl connects and with which mTLS identity.
//
// Each setting comes from, in order of precedence: its flag, its environment variable,
// the development state directory (--dev), the configuration file (--config, else
// $OFFKEY_CONFIG, else $XDG_CONFIG_HOME/offkey/offkeyctl.textproto when it exists).
// Every resolved setting remembers where it came from, so errors can say which flag or
// file to fix.
#ifndef OFFKEY_CLIENT_CLI_CONNECTION_H_
#define OFFKEY_CLIENT_CLI_CONNECTION_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace offkey::client::cli {

// Flag values as parsed; empty means "not given".
struct ConnectionFlags {
  std::string config;
  std::string admin_endpoint;
  std::string endpoint;
  std::string ca;
  std::string cert;
  std::string key;
  std::string data_cert;
  std::string data_key;
  std::string server_name;
  std::string dev_dir;  // --dev-dir; implies dev.
  bool dev = false;
  int timeout_seconds = 0;
};

// One resolved setting and its origin ("--ca", "$OFFKEY_CA", "/path/offkeyctl.textproto",
// "--dev (/path/.offkey/dev)").
struct Setting {
  std::string value;
  std::string origin;
};

// One listener and the identity offkeyctl presents to it.
struct Endpoint {
  std::string plane;  // "admin" or "data", for messages.
  Setting target;     // gRPC target, usually host:port.
  Setting ca_file;
  Setting cert_file;
  Setting key_file;
  std::string server_name;  // TLS name override; empty: the target's host.
};

struct Connection {
  Endpoint admin;
  Endpoint data;
  absl::Duration timeout = absl::Seconds(30);
};

// Reads environment variables; tests pass their own.
using GetEnv = std::function<std::string(const char* name)>;
GetEnv ProcessEnv();

// Resolves every setting. Fails (INVALID_ARGUMENT / NOT_FOUND) for a configuration file
// that does not parse (the message has file:line and field) or does not exist when named
// explicitly, and for --dev without a development state directory. Missing endpoints or
// files are not errors here: OpenChannel says which one a command needs.
absl::StatusOr<Connection> ResolveConnection(const ConnectionFlags& flags,
                                             const GetEnv& env);

// The development state directory: `dir` if given, else $OFFKEY_DEV_DIR, else the first
// ".offkey/dev" found from the working directory upwards. NOT_FOUND with what to do.
absl::StatusOr<std::string> FindDevStateDir(const std::string& dir, const GetEnv& env);

// Checks that the endpoint is complete and its files are readable, that the certificate
// and key belong together and the certificate is within its validity period, then makes
// an mTLS channel. Errors name the setting and its origin. Does not connect.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const Endpoint& endpoint);

// The identity offkeyd will see for the endpoint's certificate (SPIFFE URI, DNS SAN or
// CN), or a description of why there is none.
std::string PresentedIdentity(const Endpoint& endpoint);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_CONNECTION_H_
