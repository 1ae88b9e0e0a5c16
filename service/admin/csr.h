// PKCS#10 certificate signing requests whose signature is made elsewhere (in the HSM):
// the request info is built here, handed to a signer, and the result assembled.
#ifndef OFFKEY_SERVICE_ADMIN_CSR_H_
#define OFFKEY_SERVICE_ADMIN_CSR_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "offkey/v1/common.pb.h"

namespace offkey::service::admin {

struct CsrSpec {
  // RFC 4514 distinguished name, most specific RDN first ("CN=www.example.com,O=Ex").
  std::string subject;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::vector<std::string> uris;
  std::string public_key_spki;  // DER SubjectPublicKeyInfo of the key.
  // PKCS#1 v1.5, ECDSA or Ed25519; RSA-PSS is refused (INVALID_ARGUMENT).
  offkey::v1::SignatureScheme scheme = offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED;
};

struct Csr {
  std::string der;
  std::string pem;
};

// Signs the DER CertificationRequestInfo (unhashed) with `scheme`; returns the signature
// as X.509 carries it (PKCS#1 bytes, DER ECDSA, raw Ed25519).
using CsrSigner = std::function<absl::StatusOr<std::string>(
    offkey::v1::SignatureScheme scheme, absl::string_view request_info)>;

// INVALID_ARGUMENT for a malformed subject (the message names the part), a bad SAN, an
// empty subject without SANs, or more than 100 SANs; the signer's error as it is.
absl::StatusOr<Csr> MakeCsr(const CsrSpec& spec, const CsrSigner& sign);

// Parses an RFC 4514 string into (attribute type, value) pairs, most specific first.
// Types: CN, O, OU, C, ST, L, DC, SERIALNUMBER (any case). Exposed for tests.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseRfc4514(
    absl::string_view text);

}  // namespace offkey::service::admin

#endif  // OFFKEY_SERVICE_ADMIN_CSR_H_
