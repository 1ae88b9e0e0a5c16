// The key algorithm of an OpenSSL key, and OpenSSL keys of a key algorithm: lookups in
// hsm/key_types.h's table for code that holds EVP_PKEYs (imports, client certificates,
// tests). Kept apart from key_types so that the table itself needs no OpenSSL.
#ifndef OFFKEY_HSM_OPENSSL_KEY_H_
#define OFFKEY_HSM_OPENSSL_KEY_H_

#include <openssl/evp.h>

#include <string>

#include "absl/status/status.h"
#include "base/openssl_util.h"
#include "hsm/key_types.h"

namespace offkey::hsm {

// The row `key` belongs to (type, then RSA modulus size or EC group); kUnknown for keys
// offkey does not hold (RSA-1024, secp256k1, RSASSA-PSS keys, Ed448, ...).
KeyAlgorithm KeyAlgorithmOf(EVP_PKEY* key);

// What stores answer for a key KeyAlgorithmOf maps to kUnknown: INVALID_ARGUMENT naming
// what `key` is (RSA-1024, the EC curve, the type) and what offkey stores, from the
// table.
absl::Status UnsupportedKeyError(EVP_PKEY* key);

// The OpenSSL group name of an EC key ("prime256v1"); "" if it has none.
std::string EcGroupOf(EVP_PKEY* key);

// A fresh key of `algorithm`; nullptr for kUnknown or if OpenSSL fails.
EvpPkeyPtr GenerateOpenSslKey(KeyAlgorithm algorithm);

}  // namespace offkey::hsm

#endif  // OFFKEY_HSM_OPENSSL_KEY_H_
