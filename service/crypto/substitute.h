// The deterministic substitute premaster of the DecryptPremaster contract.
#ifndef OFFKEY_SERVICE_CRYPTO_SUBSTITUTE_H_
#define OFFKEY_SERVICE_CRYPTO_SUBSTITUTE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"
#include "hsm/key_store.h"

namespace offkey::service::crypto {

// HKDF "info" that turns the store's 32-byte HMAC into a 48-byte premaster.
inline constexpr absl::string_view kSubstituteExpandInfo =
    "offkey premaster substitute v1 expand";

// Computes the 48-byte substitute premaster for `ciphertext` under the key `key_id`:
//
//   mac        = HMAC-SHA256_{store secret}(SubstituteInput(key_id, ciphertext))
//   substitute = HKDF-Expand-SHA256(PRK = mac, info = kSubstituteExpandInfo, L = 48)
//
// The store secret lives on the token (KeyStore::HmacWithStoreSecret), so every replica
// in front of the same HSM gives the same substitute for the same input, and an attacker
// who does not hold the token cannot predict it. The store's MAC is 32 bytes; HKDF-Expand
// (RFC 5869 §2.3) stretches it locally to the 48 bytes SelectPremaster needs, so each
// call costs one HSM operation, not two.
//
// Call it on EVERY DecryptPremaster / DeriveMasterSecret call, before SelectPremaster and
// whatever the ciphertext holds: its cost must not depend on the decryption outcome.
// Errors are the store's (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL) and never depend on
// the ciphertext's contents. The result is secret (it may become the premaster). Thread-
// safe as far as `store` is (KeyStore implementations are).
absl::StatusOr<SecretBytes> ComputeSubstitute(hsm::KeyStore& store,
                                              absl::string_view key_id,
                                              absl::string_view ciphertext,
                                              const hsm::CallOptions& options);

// The local half of ComputeSubstitute: HKDF-Expand-SHA256 of the store's `mac` (32 bytes)
// to 48 bytes. Exposed for tests. INVALID_ARGUMENT unless `mac` is 32 bytes; INTERNAL if
// OpenSSL fails.
absl::StatusOr<SecretBytes> ExpandSubstitute(const SecretBytes& mac);

}  // namespace offkey::service::crypto

#endif  // OFFKEY_SERVICE_CRYPTO_SUBSTITUTE_H_
