// Test inputs shaped like TLS handshake data, and client-side signing with a PEM key.
#ifndef OFFKEY_TESTS_HANDSHAKE_INPUTS_H_
#define OFFKEY_TESTS_HANDSHAKE_INPUTS_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace offkey::tests {

// `n` random bytes.
std::string Random(size_t n);

// A TLS 1.3 server CertificateVerify input (RFC 8446 4.4.3) with a random transcript
// hash of `hash_len` bytes.
std::string Tls13Input(size_t hash_len = 32);

// The same for a client CertificateVerify.
std::string Tls13ClientInput(size_t hash_len = 32);

// A TLS 1.2 ServerKeyExchange signature input (RFC 8422 §5.4): random client and server
// randoms, then secp256r1 ECDHE params with a fresh key share (a point on the curve).
std::string Tls12EcdheInput();

// The same with ffdhe2048 DHE params (RFC 7919; the prime from OpenSSL, generator 2, a
// random public value of 256 bytes below p).
std::string Tls12DheInput();

// A signature over `content` by the PEM private key `key_pem`: ECDSA (DER) or RSA
// PKCS#1 v1.5 with SHA-256, or Ed25519. Empty if the key does not load or sign.
std::string SignWithPem(absl::string_view key_pem, const std::string& content);

}  // namespace offkey::tests

#endif  // OFFKEY_TESTS_HANDSHAKE_INPUTS_H_
