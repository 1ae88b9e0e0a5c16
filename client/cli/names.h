// offkeyctl's words for the API's enums and key references, both ways.
//
// People type "ec-p256", "tls-server", "pending-destruction", "rsa_pss_rsae_sha256"; the
// parsers also take the proto enum names (any case) so scripts can pass JSON output back.
// Every parse error lists the accepted values.
#ifndef OFFKEY_CLIENT_CLI_NAMES_H_
#define OFFKEY_CLIENT_CLI_NAMES_H_

#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "offkey/v1/common.pb.h"

namespace offkey::client::cli {

absl::StatusOr<offkey::v1::KeyAlgorithm> ParseAlgorithm(absl::string_view text);
absl::StatusOr<offkey::v1::KeyUsage> ParseUsage(absl::string_view text);
absl::StatusOr<offkey::v1::KeyState> ParseState(absl::string_view text);
absl::StatusOr<offkey::v1::SignatureScheme> ParseScheme(absl::string_view text);
// "1.2" or "1.3" (also "tls1.2", "TLS_1_3").
absl::StatusOr<offkey::v1::TlsVersion> ParseTlsVersion(absl::string_view text);

std::string AlgorithmName(offkey::v1::KeyAlgorithm algorithm);  // "ec-p256"
std::string UsageName(offkey::v1::KeyUsage usage);              // "tls-server"
std::string StateName(offkey::v1::KeyState state);              // "pending-destruction"
std::string SchemeName(offkey::v1::SignatureScheme scheme);  // "ecdsa_secp256r1_sha256"

// The accepted spellings, for --help and completion.
std::string AlgorithmChoices();  // "rsa-2048, rsa-3072, ..."
std::string UsageChoices();
std::string StateChoices();

// A key on the command line: NAME, or id:HEX (CKA_ID), ski:HEX, sha256:HEX (SHA-256 of
// the leaf certificate). Hex may contain ':' separators, as openssl prints them.
absl::StatusOr<offkey::v1::KeyRef> ParseKeyRef(absl::string_view text);
// How a KeyRef reads back on the command line (for messages).
std::string KeyRefText(const offkey::v1::KeyRef& ref);

// "KEY=VALUE" (the value may be empty and may contain '=').
absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view text);

// A duration: "7d", "36h", "90m", "600s", whole units from the largest down ("1h30m",
// as DurationText writes it) or plain seconds; > 0.
absl::StatusOr<int64_t> ParseDurationSeconds(absl::string_view text);
// 604800 -> "7d", 5400 -> "1h30m".
std::string DurationText(int64_t seconds);

// Bytes from hex ("0a0b" or "0a:0b"); INVALID_ARGUMENT naming `what` otherwise.
absl::StatusOr<std::string> ParseHex(absl::string_view what, absl::string_view hex);

// Lowercase hex without separators.
std::string Hex(absl::string_view bytes);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_NAMES_H_
