// Loading and checking the offkeyd configuration file (offkey.v1.ServerConfig).
//
// The file is protobuf TEXT FORMAT. Why: the schema is a proto message anyway (the same
// definitions document every field in proto/offkey/v1/config.proto), text format has
// comments ('#'), is strict (unknown fields, duplicate singular fields and bad enum names
// are errors with line and column, where JSON or YAML mapping would be looser or lose
// positions), and needs no extra dependency. `offkeyd --dev` writes one to start from.
#ifndef OFFKEY_SERVICE_CONFIG_CONFIG_LOADER_H_
#define OFFKEY_SERVICE_CONFIG_CONFIG_LOADER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "offkey/v1/config.pb.h"

namespace offkey::service::config {

// How much ValidateConfig insists on.
enum class Completeness {
  // Everything offkeyd needs to start is present. The default.
  kComplete,
  // Fields that command-line flags commonly supply may be missing: tls.* (the flag
  // --insecure_plaintext_for_development may be coming), hsm.module_path,
  // hsm.token_uri and the PIN source. Values that ARE present are still checked.
  // Validate again with kComplete once the flags are applied.
  kAllowIncomplete,
};

// Reads `path`, then as ParseConfigText with `path` as the source name.
// NOT_FOUND / PERMISSION_DENIED / FAILED_PRECONDITION (naming the path and the OS error)
// when the file cannot be read, INVALID_ARGUMENT when it is over 1 MiB; otherwise as
// ParseConfigText.
absl::StatusOr<offkey::v1::ServerConfig> LoadConfigFile(
    const std::string& path, Completeness completeness = Completeness::kComplete);

// Parses `text` (text format), applies ApplyDefaults and checks the result as
// ValidateConfig does. On success the configuration with defaults applied.
// On failure INVALID_ARGUMENT:
//   - syntax: the parser's first error as "SOURCE:LINE:COL: <protobuf message>", e.g.
//     config.textproto:12:5: Message type "offkey.v1.ServerConfig" has no field named
//     "listen_adress".
//   - semantics: every problem, one per line, as "SOURCE:LINE:COL: PATH: problem" where
//     LINE:COL is where the offending field (or, for a missing field, the nearest
//     enclosing message that is in the file) was written, e.g.
//     config.textproto:7:17: policy.grants[0].identities[0]: '*' is not allowed; ...
//     Problems with no place in the file (a required field absent from it entirely)
//     read "SOURCE: PATH: problem".
// `source_name` only labels messages.
absl::StatusOr<offkey::v1::ServerConfig> ParseConfigText(
    absl::string_view text, absl::string_view source_name,
    Completeness completeness = Completeness::kComplete);

// Sets every field whose documented default is not its zero value and that is unset
// (zero): listen_address, admin_listen_address, metrics_address, hsm.max_sessions,
// workers.queue_depth, stream.max_in_flight, reload.interval_seconds,
// limits.max_concurrent_streams, limits.verify_client_threads and
// limits.verify_client_queue_depth. workers.threads stays 0 (meaning hsm.max_sessions,
// resolved by the server) so that overriding max_sessions later also moves the thread
// count; limits.max_calls_in_flight_per_identity likewise stays 0 (half of
// workers.queue_depth). Idempotent.
void ApplyDefaults(offkey::v1::ServerConfig* config);

// The semantic checks, for a configuration built or changed in code (for example after
// applying flags). Fields left at zero are judged by their defaults (ApplyDefaults).
// OK, or INVALID_ARGUMENT listing every problem, one per line, as "PATH: problem", e.g.
//   policy.grants[1].keys: selects nothing (set names, labels or all_keys)
//   tls.cert_file: required unless insecure_plaintext_for_development is set
//   hsm.max_sessions: must be 1..1024 (is 5000)
//   listen_address: 'foo' is not host:port
absl::Status ValidateConfig(const offkey::v1::ServerConfig& config,
                            Completeness completeness = Completeness::kComplete);

}  // namespace offkey::service::config

#endif  // OFFKEY_SERVICE_CONFIG_CONFIG_LOADER_H_
