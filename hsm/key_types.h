// Key algorithms and signature algorithms, independent of TLS and of PKCS#11.
#ifndef OFFKEY_HSM_KEY_TYPES_H_
#define OFFKEY_HSM_KEY_TYPES_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

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

// One row per key algorithm: everything offkey knows about it, in one place (as
// service/tls/schemes.cc is for signature schemes). Adding a curve means a KeyAlgorithm
// value, one row in key_types.cc, and the proto enum value with its pair in
// service/proto_convert.cc; every switch elsewhere is a lookup in this table.
struct KeyAlgorithmInfo {
  KeyAlgorithm algorithm;
  // Stable lowercase name: "rsa-2048", "ec-p256", "ed25519".
  absl::string_view name;
  KeyFamily family;
  // Modulus bits for RSA (what identifies an RSA row), field bits for EC, 255 for
  // Ed25519.
  int bits;
  // OpenSSL's key type name (EVP_PKEY_is_a, EVP_PKEY_CTX_new_from_name): "RSA", "EC",
  // "ED25519". NUL-terminated, like the other const char* columns.
  const char* openssl_type;
  // OpenSSL's group name (OSSL_PKEY_PARAM_GROUP_NAME) for EC: "prime256v1". "" otherwise.
  const char* openssl_group;
  // The NIST name for EC ("P-256"), also accepted by OpenSSL as a group name. ""
  // otherwise.
  const char* nist_name;
  // DER of the named-curve OID: CKA_EC_PARAMS for EC and Ed25519 keys. Empty for RSA.
  absl::string_view ec_params;
  // Another CKA_EC_PARAMS value some modules use for this curve (the PrintableString
  // "edwards25519" for Ed25519); empty when there is none. Read, never written.
  absl::string_view ec_params_alias;
  // Encoded public point length: uncompressed 0x04||X||Y for EC, raw key for Ed25519.
  // 0 for RSA.
  size_t public_point_length;
  // What a CSR is signed with when the caller names no scheme.
  SignAlgorithm csr_signature;
  // The PKCS#11 CK_KEY_TYPE (CKK_RSA, CKK_EC, CKK_EC_EDWARDS) as a plain number. hsm/
  // is the root every store depends on, so it does not include the PKCS#11 headers;
  // the values are fixed by the standard, and hsm/pkcs11/key_encoding.cc static_asserts
  // them against the header it compiles with. (A pkcs11-side column would have meant a
  // second table to keep in step.)
  unsigned long pkcs11_key_type;  // NOLINT(runtime/int): CK_ULONG.
};

// The PKCS#11 v2.40 key types the table refers to (see pkcs11_key_type).
inline constexpr unsigned long kPkcs11KeyTypeRsa = 0x0;         // NOLINT CKK_RSA
inline constexpr unsigned long kPkcs11KeyTypeEc = 0x3;          // NOLINT CKK_EC
inline constexpr unsigned long kPkcs11KeyTypeEcEdwards = 0x40;  // NOLINT CKK_EC_EDWARDS

// Every row, in enum order (kUnknown has none).
absl::Span<const KeyAlgorithmInfo> AllKeyAlgorithms();
// The row of `algorithm`; nullptr for kUnknown and values outside the enum.
const KeyAlgorithmInfo* FindKeyAlgorithm(KeyAlgorithm algorithm);

// Reverse lookups; kUnknown when no row matches.
// RSA by modulus size in bits.
KeyAlgorithm RsaAlgorithmForBits(int modulus_bits);
// EC by OpenSSL group name ("prime256v1") or NIST name ("P-256").
KeyAlgorithm EcAlgorithmForGroup(absl::string_view group);
// EC or Ed25519 by CKA_EC_PARAMS (the OID, or an alias some modules use).
KeyAlgorithm AlgorithmFromEcParams(absl::string_view params);

// For error messages, from the table: "2048, 3072 or 4096" (kRsa), "P-256, P-384 or
// P-521" (kEc), "Ed25519" (kEd25519).
std::string SupportedSizes(KeyFamily family);

KeyFamily FamilyOf(KeyAlgorithm algorithm);
// Modulus bits for RSA, field bits for EC, 255 for Ed25519, 0 for kUnknown.
int KeyBits(KeyAlgorithm algorithm);
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
