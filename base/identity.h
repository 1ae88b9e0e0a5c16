// The identity of a certificate's holder: offkeyd's caller rule, which clients use too.
#ifndef OFFKEY_BASE_IDENTITY_H_
#define OFFKEY_BASE_IDENTITY_H_

#include <openssl/x509.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace offkey {

// The identity of the certificate's holder: the one rule for offkeyd's callers (policy,
// audit), VerifyClient's report and offkeyctl's diagnostics. The source is part of the
// identity, so no two sources can name the same caller:
//   1. the SPIFFE ID, the certificate's one URI subjectAltName with the spiffe scheme,
//      as is ("spiffe://trust-domain/path");
//   2. else "dns:" + the first DNS subjectAltName;
//   3. else "cn:" + the subject commonName (refused when the subject has several).
// URI SANs of other schemes are skipped when there is no SPIFFE ID.
// The certificate is NOT verified here: call this only on a certificate the TLS stack
// (or VerifyClient) has already validated.
//
// INVALID_ARGUMENT, refusing rather than falling through to a weaker name (which could
// hand the caller someone else's grants), when:
//   - the input does not parse as a certificate, or its subjectAltName is malformed;
//   - there is no identity ("client certificate has no SPIFFE URI SAN, DNS SAN or CN");
//   - it has several URI SANs with the spiffe scheme (in any letter case), or one and
//     other URI SANs (an X.509-SVID has exactly one URI SAN);
//   - the SPIFFE URI is not a valid SPIFFE ID: "spiffe://", a trust domain of
//     [a-z0-9._-], then optionally "/"-separated segments of [A-Za-z0-9._-] that are
//     neither empty, "." nor ".." (so no port, user, query, fragment, percent-escape or
//     trailing "/");
//   - the chosen DNS SAN or CN looks like a URI (it starts with a scheme such as "x:" or
//     contains "://"), so that "CN=spiffe://..." can never pass for a workload;
//   - the identity (with its prefix) is longer than 1024 bytes (policy.h
//     kMaxIdentityBytes), holds control characters, or (for SANs, IA5String) is not
//     ASCII.
// Thread-safe.
absl::StatusOr<std::string> IdentityFromCertificate(const X509* cert);

// The prefixes that name an identity's source (see IdentityFromCertificate).
inline constexpr absl::string_view kSpiffeIdentityPrefix = "spiffe://";
inline constexpr absl::string_view kDnsIdentityPrefix = "dns:";
inline constexpr absl::string_view kCnIdentityPrefix = "cn:";
// The caller on a plaintext listener (insecure_plaintext_for_development only): no
// certificate, so no source; a name no certificate can produce.
inline constexpr absl::string_view kPlaintextIdentity = "insecure:anonymous";

// Whether a DNS SAN or CN value is refused as an identity because it looks like a URI:
// it starts with a URI scheme and ':' (RFC 3986: a letter, then letters, digits, '+',
// '-' or '.') or contains "://".
bool LooksLikeUri(absl::string_view value);

// OK when `id` is a valid SPIFFE ID by the syntax above; otherwise INVALID_ARGUMENT
// saying what is wrong (without the "client certificate" context).
absl::Status CheckSpiffeId(absl::string_view id);

// The same from the first certificate of a PEM text (text before it is ignored).
absl::StatusOr<std::string> IdentityFromCertificatePem(absl::string_view pem);

// The same from one DER certificate (no trailing bytes).
absl::StatusOr<std::string> IdentityFromCertificateDer(absl::string_view der);

}  // namespace offkey

#endif  // OFFKEY_BASE_IDENTITY_H_
