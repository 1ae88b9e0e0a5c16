// Key algorithms and signature algorithms, independent of TLS and of PKCS#11.
#ifndef OFFKEY_HSM_KEY_TYPES_H_
#define OFFKEY_HSM_KEY_TYPES_H_

#include <cstddef>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace offkey::hsm {

enum class KeyAlgorithm {
  kUnknown,
  kRsa2048,
  kRsa3072,
  kRsa4096,
  kEcP256,
  kEcP384,
  kEcP521,
  kEd25519,
};

enum class KeyFamily { kRsa, kEc, kEd25519 };

enum class HashAlgorithm { kNone, kSha1, kSha256, kSha384, kSha512 };

// How a signature is made. EdDSA has no separate hash (kNone).
enum class SignatureKind { kRsaPkcs1, kRsaPss, kEcdsa, kEdDsa };

struct SignAlgorithm {
  SignatureKind kind;
  HashAlgorithm hash;

  friend bool operator==(SignAlgorithm a, SignAlgorithm b) {
    return a.kind == b.kind && a.hash == b.hash;
  }
};

KeyFamily FamilyOf(KeyAlgorithm algorithm);
// Modulus bits for RSA, field bits for EC, 255 for Ed25519, 0 for kUnknown.
int KeyBits(KeyAlgorithm algorithm);
// The RSA algorithm with a modulus of `modulus_bits`; kUnknown for sizes offkey does
// not use.
KeyAlgorithm RsaKeyAlgorithm(int modulus_bits);
// Stable lowercase names: "rsa-2048", "ec-p256", "ed25519", ...
absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm);
std::optional<KeyAlgorithm> KeyAlgorithmFromName(absl::string_view name);

// Digest length in bytes (0 for kNone).
size_t HashLength(HashAlgorithm hash);
absl::string_view HashName(HashAlgorithm hash);

// Whether `algorithm` can be used with a key of `key`'s family (not TLS rules).
bool SignAlgorithmFitsKey(SignAlgorithm algorithm, KeyAlgorithm key);
absl::string_view SignatureKindName(SignatureKind kind);

// Key names, the same in every store: 1 to 64 characters of [A-Za-z0-9._-].
// INVALID_ARGUMENT otherwise.
absl::Status ValidateKeyName(absl::string_view name);

}  // namespace offkey::hsm

#endif  // OFFKEY_HSM_KEY_TYPES_H_
