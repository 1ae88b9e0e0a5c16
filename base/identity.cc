#include "base/identity.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/status_macros.h"

namespace offkey {
namespace {

// Same limit as policy.h kMaxIdentityBytes (kept apart so identity needs no policy).
constexpr size_t kMaxIdentityBytes = 1024;

absl::string_view View(const ASN1_STRING* s) {
  return absl::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           static_cast<size_t>(ASN1_STRING_length(s)));
}

// Whether a URI SAN claims the spiffe scheme, in any letter case (RFC 3986 schemes are
// case-insensitive): such a SAN is the SPIFFE ID or makes the certificate unusable,
// never something to skip.
bool HasSpiffeScheme(absl::string_view uri) {
  return absl::StartsWithIgnoreCase(uri, "spiffe:");
}

bool IsTrustDomainChar(char c) {
  return absl::ascii_islower(static_cast<unsigned char>(c)) ||
         absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
         c == '_';
}

bool IsPathChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
         c == '_';
}

// Checks `value`, the identity's content from `what` ("DNS SAN", ...), and returns
// `prefix` + value. `prefix` is empty for a SPIFFE ID.
absl::StatusOr<std::string> Checked(absl::string_view prefix, absl::string_view value,
                                    absl::string_view what, bool ascii_only) {
  if (value.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client certificate identity (", what, ") is empty"));
  }
  if (prefix.size() + value.size() > kMaxIdentityBytes) {
    return absl::InvalidArgumentError(absl::StrCat("client certificate identity (", what,
                                                   ") is longer than ", kMaxIdentityBytes,
                                                   " bytes"));
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "client certificate identity (", what, ") contains control characters"));
    }
    if (ascii_only && c >= 0x80) {
      return absl::InvalidArgumentError(absl::StrCat(
          "client certificate identity (", what, ") is not ASCII (malformed IA5String)"));
    }
  }
  // A SPIFFE ID (empty prefix: the URI is the identity) is checked by CheckSpiffeId.
  if (!prefix.empty() && LooksLikeUri(value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client certificate identity (", what,
        ") looks like a URI; a SPIFFE ID must be a URI SAN, and other names must not "
        "carry a scheme"));
  }
  return absl::StrCat(prefix, value);
}

}  // namespace

bool LooksLikeUri(absl::string_view value) {
  if (absl::StrContains(value, "://")) return true;
  if (value.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(value[0]))) {
    return false;
  }
  for (char c : value.substr(1)) {
    if (c == ':') return true;
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' &&
        c != '.') {
      return false;
    }
  }
  return false;
}

absl::Status CheckSpiffeId(absl::string_view id) {
  if (!absl::StartsWith(id, kSpiffeIdentityPrefix)) {
    return absl::InvalidArgumentError("does not start with \"spiffe://\" (lower case)");
  }
  absl::string_view rest = id.substr(kSpiffeIdentityPrefix.size());
  const size_t slash = rest.find('/');
  absl::string_view trust_domain = rest.substr(0, slash);
  if (trust_domain.empty()) {
    return absl::InvalidArgumentError("has an empty trust domain");
  }
  for (char c : trust_domain) {
    if (!IsTrustDomainChar(c)) {
      return absl::InvalidArgumentError(
          "has a trust domain with characters other than a-z, 0-9, '.', '-' and '_' "
          "(no upper case, port or user)");
    }
  }
  if (slash == absl::string_view::npos) return absl::OkStatus();
  absl::string_view path = rest.substr(slash + 1);
  for (absl::string_view segment : absl::StrSplit(path, '/')) {
    if (segment.empty()) {
      return absl::InvalidArgumentError("has an empty path segment or a trailing '/'");
    }
    if (segment == "." || segment == "..") {
      return absl::InvalidArgumentError("has a '.' or '..' path segment");
    }
    for (char c : segment) {
      if (!IsPathChar(c)) {
        return absl::InvalidArgumentError(
            "has a path with characters other than A-Z, a-z, 0-9, '.', '-' and '_' (no "
            "query, fragment or percent-escape)");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> IdentityFromCertificate(const X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("no client certificate");
  GeneralNamesPtr sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, /*crit=*/nullptr, /*idx=*/nullptr)));
  if (sans != nullptr) {
    const GENERAL_NAME* first_dns = nullptr;
    const GENERAL_NAME* spiffe = nullptr;
    int uris = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), i);
      if (name->type == GEN_URI) {
        ++uris;
        if (HasSpiffeScheme(View(name->d.uniformResourceIdentifier))) {
          if (spiffe != nullptr) {
            return absl::InvalidArgumentError(
                "client certificate has several SPIFFE URI SANs; cannot tell which is "
                "the identity");
          }
          spiffe = name;
        }
      }
      if (name->type == GEN_DNS && first_dns == nullptr) first_dns = name;
    }
    if (spiffe != nullptr) {
      if (uris > 1) {
        return absl::InvalidArgumentError(
            "client certificate has a SPIFFE URI SAN and other URI SANs; an X.509-SVID "
            "has exactly one URI SAN");
      }
      absl::string_view id = View(spiffe->d.uniformResourceIdentifier);
      // Length first, so that a long ID gets the clearer message.
      OFFKEY_ASSIGN_OR_RETURN(std::string identity,
                              Checked("", id, "SPIFFE URI SAN", /*ascii_only=*/true));
      if (absl::Status valid = CheckSpiffeId(id); !valid.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "client certificate URI SAN is not a valid SPIFFE ID: it ", valid.message()));
      }
      return identity;
    }
    if (first_dns != nullptr) {
      return Checked(kDnsIdentityPrefix, View(first_dns->d.dNSName), "DNS SAN",
                     /*ascii_only=*/true);
    }
  } else {
    // X509_get_ext_d2i also returns null for a malformed extension; say so rather than
    // silently falling back to the CN.
    int index = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1);
    if (index >= 0) {
      return OpenSslError(
          absl::StatusCode::kInvalidArgument,
          "client certificate has a malformed or repeated subjectAltName extension");
    }
  }

  const X509_NAME* subject = X509_get_subject_name(cert);
  int cn =
      subject == nullptr ? -1 : X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn < 0) {
    return absl::InvalidArgumentError(
        "client certificate has no SPIFFE URI SAN, DNS SAN or CN");
  }
  if (X509_NAME_get_index_by_NID(subject, NID_commonName, cn) >= 0) {
    return absl::InvalidArgumentError(
        "client certificate has no SPIFFE URI SAN or DNS SAN and several subject CNs; "
        "cannot tell which is the identity");
  }
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn));
  unsigned char* utf8 = nullptr;
  int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "client certificate subject CN is not a valid string");
  }
  std::string common_name(reinterpret_cast<const char*>(utf8),
                          static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return Checked(kCnIdentityPrefix, common_name, "subject CN", /*ascii_only=*/false);
}

absl::StatusOr<std::string> IdentityFromCertificatePem(absl::string_view pem) {
  // The leaf comes first (gRPC hands over the peer's leaf alone).
  PemOptions options;
  options.skip_other_types = true;
  absl::StatusOr<std::vector<X509Ptr>> certs = ReadPemCertificates(pem, options);
  if (!certs.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client certificate is not a PEM certificate: ", certs.status().message()));
  }
  return IdentityFromCertificate(certs->front().get());
}

absl::StatusOr<std::string> IdentityFromCertificateDer(absl::string_view der) {
  if (der.size() > static_cast<size_t>(std::numeric_limits<long>::max())) {
    return absl::InvalidArgumentError("client certificate DER is too large");
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "client certificate is not a DER certificate");
  }
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return absl::InvalidArgumentError("client certificate DER has trailing bytes");
  }
  return IdentityFromCertificate(cert.get());
}

}  // namespace offkey
