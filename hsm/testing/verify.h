// Test helpers: check signatures with OpenSSL, independently of the code under test.
#ifndef OFFKEY_HSM_TESTING_VERIFY_H_
#define OFFKEY_HSM_TESTING_VERIFY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hsm/key_types.h"

namespace offkey::hsm::testing {

// OK if `signature` (TLS wire form: DER for ECDSA) is a valid `algorithm` signature of
// `message` under the DER SubjectPublicKeyInfo `spki`. PSS expects salt = hash length.
absl::Status VerifyWithOpenSsl(absl::string_view spki, SignAlgorithm algorithm,
                               absl::string_view message, absl::string_view signature);

// RSA public operation with no padding (m^e mod n), |m| = modulus size.
std::string RsaEncryptRaw(absl::string_view spki, absl::string_view message);
// RSA PKCS#1 v1.5 type-2 encryption, as a TLS client does with the premaster.
std::string RsaEncryptPkcs1(absl::string_view spki, absl::string_view message);

// A fresh key of `algorithm` made by OpenSSL, as unencrypted DER PKCS#8.
std::string GeneratePkcs8(KeyAlgorithm algorithm);

}  // namespace offkey::hsm::testing

#endif  // OFFKEY_HSM_TESTING_VERIFY_H_
