// The PEM key reference (proto/offkey/v1/key_reference.proto): written by `offkeyctl
// ref`, read by the offkey OpenSSL provider.
#ifndef OFFKEY_CLIENT_KEY_REFERENCE_H_
#define OFFKEY_CLIENT_KEY_REFERENCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "offkey/v1/key_reference.pb.h"

namespace offkey::client {

// The PEM label: "-----BEGIN OFFKEY KEY REFERENCE-----".
inline constexpr char kKeyReferencePemLabel[] = "OFFKEY KEY REFERENCE";
inline constexpr uint32_t kKeyReferenceVersion = 1;

// What the client needs to know of a key algorithm, from the public key alone. client/
// depends on proto/ only, so this is its own small table of offkey.v1.KeyAlgorithm (the
// service's is hsm/key_types.h, which the client does not link).
struct KeyAlgorithmTraits {
  offkey::v1::KeyAlgorithm algorithm;
  // OpenSSL's key type name (EVP_PKEY_is_a): "RSA", "EC", "ED25519".
  const char* openssl_type;
  // EVP_PKEY_get_bits of such a key (modulus bits, field bits); 0 where the type alone
  // decides (Ed25519).
  int bits;
};

// The row of `algorithm`; nullptr for KEY_ALGORITHM_UNSPECIFIED and unknown values.
const KeyAlgorithmTraits* FindKeyAlgorithmTraits(offkey::v1::KeyAlgorithm algorithm);

// Checks `ref` (version, key id length, a parseable public key whose type matches the
// algorithm) and encodes it as PEM. INVALID_ARGUMENT naming the bad field otherwise.
absl::StatusOr<std::string> EncodeKeyReference(const offkey::v1::KeyReference& ref);

// Decodes the first OFFKEY KEY REFERENCE block in `pem` (other blocks, such as a
// certificate in the same file, are skipped) and checks it as EncodeKeyReference does.
// INVALID_ARGUMENT if there is none or it is malformed; the message says which.
absl::StatusOr<offkey::v1::KeyReference> DecodeKeyReference(absl::string_view pem);

// The same for the bytes inside the PEM block (the serialized KeyReference).
absl::StatusOr<offkey::v1::KeyReference> ParseKeyReference(absl::string_view body);

}  // namespace offkey::client

#endif  // OFFKEY_CLIENT_KEY_REFERENCE_H_
