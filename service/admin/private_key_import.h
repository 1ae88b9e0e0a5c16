// Private keys handed to ImportKey: PKCS#8 in PEM or DER, plain or encrypted, checked
// against the algorithms offkey holds and normalised to unencrypted PKCS#8 DER for the
// KeyStore.
#ifndef OFFKEY_SERVICE_ADMIN_PRIVATE_KEY_IMPORT_H_
#define OFFKEY_SERVICE_ADMIN_PRIVATE_KEY_IMPORT_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"

namespace offkey::service::admin {

inline constexpr size_t kMaxPrivateKeyInput = 16 * 1024;

// `input`: PEM "PRIVATE KEY" / "ENCRYPTED PRIVATE KEY", or DER PrivateKeyInfo /
// EncryptedPrivateKeyInfo, at most 16 KiB. `passphrase` decrypts an encrypted key.
// Returns unencrypted PKCS#8 DER of an RSA 2048/3072/4096, P-256/384/521 or Ed25519 key.
// INVALID_ARGUMENT otherwise, with a message that never contains key bytes or the
// passphrase: legacy PEM types (convert with `openssl pkcs8 -topk8`), a wrong or missing
// passphrase, other algorithms or sizes.
absl::StatusOr<SecretBytes> NormalizePrivateKey(const SecretBytes& input,
                                                const SecretBytes& passphrase);

}  // namespace offkey::service::admin

#endif  // OFFKEY_SERVICE_ADMIN_PRIVATE_KEY_IMPORT_H_
