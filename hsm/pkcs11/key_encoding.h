// Encodings between PKCS#11 attribute values and the forms TLS and X.509 use.
// Pure functions over OpenSSL; no PKCS#11 calls (the header only, for its types).
#ifndef OFFKEY_HSM_PKCS11_KEY_ENCODING_H_
#define OFFKEY_HSM_PKCS11_KEY_ENCODING_H_

#include <openssl/evp.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/openssl_util.h"
#include "base/secret_bytes.h"
#include "hsm/key_types.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11 {

// Lookups in hsm/key_types.h's table of key algorithms, in PKCS#11 terms. The reverse of
// EcParamsFor is hsm::AlgorithmFromEcParams.
// DER of the named-curve OID used as CKA_EC_PARAMS (EC and Ed25519 keys); empty for
// others.
absl::string_view EcParamsFor(KeyAlgorithm algorithm);
// Encoded point length (uncompressed for EC, raw for Ed25519); 0 for others.
size_t PublicPointLength(KeyAlgorithm algorithm);
// CKK_RSA, CKK_EC or CKK_EC_EDWARDS; CKK_VENDOR_DEFINED for kUnknown.
CK_KEY_TYPE Pkcs11KeyType(KeyAlgorithm algorithm);
// The family of keys of PKCS#11 type `type`; nullopt for types offkey does not use.
std::optional<KeyFamily> FamilyOfKeyType(CK_KEY_TYPE type);
// Takes off the DER OCTET STRING around a CKA_EC_POINT value if it is there
// (PKCS#11 v2.40 says it is; some modules send the bare point).
absl::StatusOr<std::string> UnwrapEcPoint(absl::string_view value,
                                          KeyAlgorithm algorithm);
// Puts a point in a DER OCTET STRING, as CKA_EC_POINT expects.
std::string WrapEcPoint(absl::string_view point);

// DER SubjectPublicKeyInfo from key components (big-endian unsigned integers, encoded
// points).
absl::StatusOr<std::string> RsaSpki(absl::string_view modulus,
                                    absl::string_view exponent);
absl::StatusOr<std::string> EcSpki(KeyAlgorithm algorithm, absl::string_view point);
absl::StatusOr<std::string> Ed25519Spki(absl::string_view public_key);

// DER SubjectPublicKeyInfo of `pkey`'s public half.
absl::StatusOr<std::string> SpkiOf(EVP_PKEY* pkey);

// One attribute of an imported key. Values are SecretBytes (wiped when destroyed) for
// the private parts and, for uniformity, the public ones.
struct KeyAttribute {
  CK_ATTRIBUTE_TYPE type;
  SecretBytes value;
};

// What an imported private key becomes on a PKCS#11 token: the attributes of its private
// and public key objects (beyond class, labels, ids and usage flags, which the store
// chooses), and its public key for the caller.
struct ImportedKey {
  KeyAlgorithm algorithm = KeyAlgorithm::kUnknown;
  CK_KEY_TYPE key_type = CKK_VENDOR_DEFINED;  // CKA_KEY_TYPE of both objects.
  // RSA: CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
  // CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT. EC and Ed25519:
  // CKA_EC_PARAMS and CKA_VALUE (the private scalar, padded to the field size, or the
  // 32-byte Ed25519 seed).
  std::vector<KeyAttribute> private_attributes;
  // RSA: CKA_MODULUS, CKA_PUBLIC_EXPONENT. EC and Ed25519: CKA_EC_PARAMS and
  // CKA_EC_POINT (the point in a DER OCTET STRING).
  std::vector<KeyAttribute> public_attributes;
  // DER SubjectPublicKeyInfo of the key.
  std::string spki;
};

// Reads an unencrypted DER PKCS#8 PrivateKeyInfo of an algorithm offkey stores (the
// table in hsm/key_types.h). INVALID_ARGUMENT for anything else: bytes that are not
// PKCS#8 (including EncryptedPrivateKeyInfo: decrypt first), RSA of another size, other
// curves, other key types (DSA, X25519, Ed448, RSASSA-PSS keys, ...), or an RSA key
// without its CRT parameters. OpenSSL's copies of the secrets are cleared.
absl::StatusOr<ImportedKey> ImportedKeyFromPkcs8(const SecretBytes& pkcs8_der);

// SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 4.2.1.2, method 1).
absl::StatusOr<std::string> SkiOfSpki(absl::string_view spki_der);

// The digest, fetched once per process (OpenSSL 3's implicit fetches take global locks);
// nullptr for kNone.
const EVP_MD* MessageDigest(HashAlgorithm hash);
// Digest of `message`.
absl::StatusOr<std::string> Digest(HashAlgorithm hash, absl::string_view message);
// DER DigestInfo (RFC 8017 9.2) around `digest`, the input of CKM_RSA_PKCS signing.
absl::StatusOr<std::string> DigestInfo(HashAlgorithm hash, absl::string_view digest);
// Raw r||s (CKM_ECDSA output, each half `scalar_length` bytes) to DER Ecdsa-Sig-Value.
absl::StatusOr<std::string> EcdsaRawToDer(absl::string_view raw);

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_KEY_ENCODING_H_
