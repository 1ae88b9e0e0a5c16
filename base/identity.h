// The identity of a certificate's holder: offkeyd's caller rule, which clients use too.
#ifndef OFFKEY_BASE_IDENTITY_H_
#define OFFKEY_BASE_IDENTITY_H_

#include <openssl/x509.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace offkey {

// The identity of the certificate's holder, in this order of preference:
//   1. the first URI subjectAltName starting with "spiffe://" (other URIs are skipped),
//   2. else the first DNS subjectAltName,
//   3. else the subject commonName (refused when the subject has several: ambiguous).
// The certificate is NOT verified here: call this only on a certificate the TLS stack
// has already validated against the client CA.
//
// INVALID_ARGUMENT when the input does not parse as a certificate, when there is no
// identity ("client certificate has no SPIFFE URI SAN, DNS SAN or CN"), or when the
// chosen identity is empty, longer than 1024 bytes (policy.h kMaxIdentityBytes), holds
// control characters, or (for SANs, which are IA5String) is not ASCII. A bad chosen
// identity is refused rather than skipped: falling through to a weaker name could hand
// the caller someone else's grants. Thread-safe.
absl::StatusOr<std::string> IdentityFromCertificate(const X509* cert);

// The same from the first certificate of a PEM text (text before it is ignored).
absl::StatusOr<std::string> IdentityFromCertificatePem(absl::string_view pem);

// The same from one DER certificate (no trailing bytes).
absl::StatusOr<std::string> IdentityFromCertificateDer(absl::string_view der);

}  // namespace offkey

#endif  // OFFKEY_BASE_IDENTITY_H_
