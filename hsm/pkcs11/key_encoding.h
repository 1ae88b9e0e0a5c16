// Encodings between PKCS#11 attribute values and the forms TLS and X.509 use.
// Pure functions over OpenSSL; no PKCS#11 calls (the header only, for its types).
#ifndef OFFKEY_HSM_PKCS11_KEY_ENCODING_H_
#define OFFKEY_HSM_PKCS11_KEY_ENCODING_H_

#include <openssl/evp.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/openssl_util.h"
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

// Decodes an unencrypted DER PKCS#8 private key (nothing may follow it).
// INVALID_ARGUMENT when `der` is not one or names a key type OpenSSL cannot decode.
absl::StatusOr<EvpPkeyPtr> ParsePkcs8(absl::string_view der);

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
