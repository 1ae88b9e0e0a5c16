// TLS signature schemes: one table, and every scheme rule offkey enforces derived from it
// (BoringSSL's kSignatureAlgorithms is the model).
//
// A terminator names a TLS SignatureScheme code point (RFC 8446 §4.2.3, IANA registry)
// and offkey decides whether the key it addressed can make that signature for the TLS
// version the handshake negotiated. The rules, all read from the table:
//   - the key's family must be the scheme's (RSA, EC, Ed25519);
//   - rsa_pss_pss_* needs an RSASSA-PSS key (id-RSASSA-PSS SubjectPublicKeyInfo). offkey
//     creates and imports only rsaEncryption RSA keys, so these schemes are always
//     refused and rsa_pss_rsae_* is the way to make a PSS signature with an offkey RSA
//     key;
//   - TLS 1.3 allows no PKCS#1 v1.5 (and no SHA-1; offkey has no SHA-1 schemes at all);
//   - in TLS 1.3 an ECDSA scheme names the curve (ecdsa_secp384r1_sha384 only with
//   P-384);
//     in TLS 1.2 the same code points name only the hash (RFC 5246 §7.4.1.4.1, RFC 8422
//     §5.1.1), so any EC key may use any ECDSA hash there;
//   - Ed25519 is allowed in both versions (RFC 8422 §5.1.3 added it to TLS 1.2); a
//     tls-server key still signs only TLS 1.3 inputs with it (handshake_shape.h).
//
// Everything here is immutable static data and pure functions: thread-safe.
#ifndef OFFKEY_SERVICE_TLS_SCHEMES_H_
#define OFFKEY_SERVICE_TLS_SCHEMES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "hsm/key_types.h"
#include "offkey/v1/common.pb.h"

namespace offkey::service::tls {

// One row per offkey::v1::SignatureScheme value (SIGNATURE_SCHEME_UNSPECIFIED has none).
struct SchemeInfo {
  offkey::v1::SignatureScheme scheme;
  // IANA name, e.g. "rsa_pss_rsae_sha256". Used in errors, audit lines and metrics.
  absl::string_view name;
  // What the HSM layer is asked to do. PSS always uses salt length = hash length.
  hsm::SignAlgorithm algorithm;
  // The key family that can make this signature.
  hsm::KeyFamily family;
  // ECDSA rows: the EC key algorithm whose curve the code point names (kEcP256, kEcP384,
  // kEcP521; its name, "P-256", is hsm::FindKeyAlgorithm(curve)->nist_name). Enforced
  // only in TLS 1.3. Other rows: kUnknown.
  hsm::KeyAlgorithm curve;
  // rsa_pss_pss_*: the key must be an RSASSA-PSS key, which offkey never holds.
  bool needs_pss_key;
  bool tls12;
  bool tls13;
};

// The whole table, in offkey's order of preference (the order SchemesForKey keeps).
absl::Span<const SchemeInfo> AllSchemes();

// The row for `scheme`, or nullptr for SIGNATURE_SCHEME_UNSPECIFIED and for values the
// proto does not define (proto3 enum fields carry any int32 off the wire). The pointer is
// to static storage and never dangles.
const SchemeInfo* FindScheme(offkey::v1::SignatureScheme scheme);

// Whether a key of algorithm `key` may make a `scheme` signature for `version`.
// TLS_VERSION_UNSPECIFIED means "not a TLS handshake" (e.g. a general-signing key
// signing a CSR): only the key-fit rules apply, exactly as in TLS 1.2.
// On success: OK. On failure: INVALID_ARGUMENT with a message naming the scheme, the rule
// it broke and, where one exists, the scheme to use instead, e.g.
//   "rsa_pkcs1_sha256 is not allowed in TLS 1.3; use rsa_pss_rsae_sha256".
// Unknown scheme values, versions other than 1.2/1.3/unspecified, and
// KeyAlgorithm::kUnknown are refused the same way.
absl::Status CheckScheme(offkey::v1::SignatureScheme scheme, hsm::KeyAlgorithm key,
                         offkey::v1::TlsVersion version);

// Every scheme a `key` key can make in TLS 1.2 or TLS 1.3 (equivalently: with
// TLS_VERSION_UNSPECIFIED). Schemes that also work in TLS 1.3 come first, each group in
// table order; so the result is stable and the first element is the best default.
// Empty for kUnknown. This is what KeyInfo.schemes reports.
std::vector<offkey::v1::SignatureScheme> SchemesForKey(hsm::KeyAlgorithm key);

// The scheme a CSR for a `key` key is signed with when none is named: the row of the
// key's hsm::KeyAlgorithmInfo::csr_signature (for ECDSA, the one naming the key's curve).
// SIGNATURE_SCHEME_UNSPECIFIED for kUnknown.
offkey::v1::SignatureScheme DefaultCsrScheme(hsm::KeyAlgorithm key);

// The IANA name ("ecdsa_secp256r1_sha256"); "unspecified" for 0; "0x1234" (four hex
// digits, the wire value) for values offkey does not know.
std::string SchemeName(offkey::v1::SignatureScheme scheme);

}  // namespace offkey::service::tls

#endif  // OFFKEY_SERVICE_TLS_SCHEMES_H_
