// The deterministic substitute premaster of the DecryptPremaster contract.
#ifndef OFFKEY_SERVICE_CRYPTO_SUBSTITUTE_H_
#define OFFKEY_SERVICE_CRYPTO_SUBSTITUTE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"
#include "hsm/key_store.h"

namespace offkey::service::crypto {

// HKDF "info" that turns the store's 32-byte HMAC into the substitute's 46 random-looking
// bytes.
inline constexpr absl::string_view kSubstituteExpandInfo =
    "offkey premaster substitute v2 expand";

// Computes the 48-byte substitute premaster for `ciphertext` (modulus-sized) under the
// key `key_id`, sent with `client_version`:
//
//   mac        = HMAC-SHA256_{store secret}(
//                    SubstituteInput(key_id, client_version, ciphertext))
//   substitute = uint16_be(client_version)
//                || HKDF-Expand-SHA256(PRK = mac, info = kSubstituteExpandInfo, L = 46)
//
// A real premaster starts with ClientHello.client_version (RFC 5246 §7.4.7.1), so the
// substitute does too: whoever sees the 48 bytes (the caller of DecryptPremaster) cannot
// tell a substitute from a decryption by its first two bytes. The rest is a MAC the
// caller cannot predict without the token.
//
// The store secret lives on the token (KeyStore::HmacWithStoreSecret), so every replica
// in front of the same HSM gives the same substitute for the same input. The store's MAC
// is 32 bytes; HKDF-Expand (RFC 5869 §2.3) stretches it locally, so each call costs one
// HSM operation, not two.
//
// Call it on EVERY DecryptPremaster / DeriveMasterSecret call, before SelectPremaster and
// whatever the ciphertext holds: its cost must not depend on the decryption outcome.
// Errors are the store's (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL) and never depend on
// the ciphertext's contents. The result is secret (it may become the premaster). Thread-
// safe as far as `store` is (KeyStore implementations are).
absl::StatusOr<SecretBytes> ComputeSubstitute(hsm::KeyStore& store,
                                              absl::string_view key_id,
                                              uint16_t client_version,
                                              absl::string_view ciphertext,
                                              const hsm::CallOptions& options);

// The local half of ComputeSubstitute: `client_version` then HKDF-Expand-SHA256 of the
// store's `mac` (32 bytes) to 46 bytes. Exposed for tests. INVALID_ARGUMENT unless `mac`
// is 32 bytes; INTERNAL if OpenSSL fails.
absl::StatusOr<SecretBytes> ExpandSubstitute(const SecretBytes& mac,
                                             uint16_t client_version);

}  // namespace offkey::service::crypto

#endif  // OFFKEY_SERVICE_CRYPTO_SUBSTITUTE_H_
