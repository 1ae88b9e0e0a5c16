// HKDF-Expand with SHA-256 (RFC 5869 section 2.3) through OpenSSL's HKDF in
// EXPAND_ONLY mode: the expansion shared by the premaster substitute and the
// session-ticket keys, each of which gets its pseudorandom key from the HSM.
#ifndef OFFKEY_SERVICE_CRYPTO_HKDF_H_
#define OFFKEY_SERVICE_CRYPTO_HKDF_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"

namespace offkey::service::crypto {

// Writes `length` bytes (at most 255 * 32) expanded from `prk` and `info` to `out`.
// INTERNAL, naming `what`, if OpenSSL fails.
absl::Status HkdfSha256Expand(const SecretBytes& prk, absl::string_view info,
                              uint8_t* out, size_t length, absl::string_view what);

// The same into a new buffer.
absl::StatusOr<SecretBytes> HkdfSha256Expand(const SecretBytes& prk,
                                             absl::string_view info, size_t length,
                                             absl::string_view what);

}  // namespace offkey::service::crypto

#endif  // OFFKEY_SERVICE_CRYPTO_HKDF_H_
