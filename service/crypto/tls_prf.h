// The TLS 1.2 PRF (RFC 5246 §5) and the master-secret derivations built on it, through
// OpenSSL 3's "TLS1-PRF" EVP_KDF.
#ifndef OFFKEY_SERVICE_CRYPTO_TLS_PRF_H_
#define OFFKEY_SERVICE_CRYPTO_TLS_PRF_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"
#include "hsm/key_types.h"

namespace offkey::service::crypto {

// Size of a TLS 1.2 master secret and of each hello random (RFC 5246 §8.1, §7.4.1.2).
inline constexpr size_t kMasterSecretSize = 48;
inline constexpr size_t kHelloRandomSize = 32;

// PRF(secret, label, seed) = P_<hash>(secret, label || seed), truncated to `out_len`.
//
// `hash` must be kSha256 or kSha384 (the only PRF hashes TLS 1.2 cipher suites use);
// anything else is INVALID_ARGUMENT, as are an empty `secret`, an empty `label` and
// `out_len` == 0. `label` is the ASCII label without a terminating NUL. INTERNAL if
// OpenSSL fails (its error text in the message). On success returns exactly `out_len`
// bytes in a wiping buffer; the caller keeps ownership of `secret`. Thread-safe.
absl::StatusOr<SecretBytes> Tls12Prf(hsm::HashAlgorithm hash, const SecretBytes& secret,
                                     absl::string_view label, absl::string_view seed,
                                     size_t out_len);

// master_secret = PRF(premaster, "master secret", client_random || server_random)[0..47]
// (RFC 5246 §8.1). INVALID_ARGUMENT unless `premaster` is 48 bytes, each random is 32
// bytes and `hash` is SHA-256 or SHA-384. The caller wipes `premaster` (SecretBytes does
// so when it goes away).
absl::StatusOr<SecretBytes> MasterSecret(hsm::HashAlgorithm hash,
                                         const SecretBytes& premaster,
                                         absl::string_view client_random,
                                         absl::string_view server_random);

// Extended master secret (RFC 7627 §4):
// master_secret = PRF(premaster, "extended master secret", session_hash)[0..47].
// `session_hash` is the handshake hash up to and including ClientKeyExchange, computed
// with the PRF hash, so its length must be HashLength(hash) (32 or 48);
// INVALID_ARGUMENT otherwise, or unless `premaster` is 48 bytes and `hash` is SHA-256 or
// SHA-384.
absl::StatusOr<SecretBytes> ExtendedMasterSecret(hsm::HashAlgorithm hash,
                                                 const SecretBytes& premaster,
                                                 absl::string_view session_hash);

}  // namespace offkey::service::crypto

#endif  // OFFKEY_SERVICE_CRYPTO_TLS_PRF_H_
