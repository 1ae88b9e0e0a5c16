#include "base/identity.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"

namespace offkey {
namespace {

// Same limit as policy.h kMaxIdentityBytes (kept apart so identity needs no policy).
constexpr size_t kMaxIdentityBytes = 1024;
constexpr absl::string_view kSpiffeScheme = "spiffe://";

absl::string_view View(const ASN1_STRING* s) {
  return absl::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           static_cast<size_t>(ASN1_STRING_length(s)));
}

// Checks the identity chosen from `what` ("URI SAN", ...) and returns it.
absl::StatusOr<std::string> Checked(absl::string_view identity, absl::string_view what,
                                    bool ascii_only) {
  if (identity.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client certificate identity (", what, ") is empty"));
  }
  if (identity.size() > kMaxIdentityBytes) {
    return absl::InvalidArgumentError(absl::StrCat("client certificate identity (", what,
                                                   ") is longer than ", kMaxIdentityBytes,
                                                   " bytes"));
  }
  for (unsigned char c : identity) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "client certificate identity (", what, ") contains control characters"));
    }
    if (ascii_only && c >= 0x80) {
      return absl::InvalidArgumentError(absl::StrCat(
          "client certificate identity (", what, ") is not ASCII (malformed IA5String)"));
    }
  }
  return std::string(identity);
}

}  // namespace

absl::StatusOr<std::string> IdentityFromCertificate(const X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("no client certificate");
  GeneralNamesPtr sans(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, /*crit=*/nullptr, /*idx=*/nullptr)));
  if (sans != nullptr) {
    const GENERAL_NAME* first_dns = nullptr;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans.get(), i);
      if (name->type == GEN_URI &&
          absl::StartsWith(View(name->d.uniformResourceIdentifier), kSpiffeScheme)) {
        return Checked(View(name->d.uniformResourceIdentifier), "SPIFFE URI SAN", true);
      }
      if (name->type == GEN_DNS && first_dns == nullptr) first_dns = name;
    }
    if (first_dns != nullptr) return Checked(View(first_dns->d.dNSName), "DNS SAN", true);
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
  return Checked(common_name, "subject CN", false);
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
