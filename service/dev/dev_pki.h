// A throwaway PKI for development mode and tests: a CA and the certificates it issues.
// Never for production: the CA key sits in a file.
#ifndef OFFKEY_SERVICE_DEV_DEV_PKI_H_
#define OFFKEY_SERVICE_DEV_DEV_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/secret_bytes.h"

namespace offkey::service::dev {

// A certificate and (when we hold it) its private key, both PEM.
struct IssuedCert {
  std::string cert_pem;
  SecretBytes key_pem;  // Empty for certificates over an HSM-held public key.
};

struct CertSpec {
  std::string common_name;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::vector<std::string> uris;  // e.g. a SPIFFE ID
  bool server_auth = false;
  bool client_auth = false;
  absl::Time not_before = absl::Now() - absl::Hours(1);
  absl::Time not_after = absl::Now() + absl::Hours(24 * 365);
  // DER SubjectPublicKeyInfo to certify; empty = make a fresh P-256 key.
  std::string public_key_spki;
};

// The DER of the first certificate in `pem` (KeyStore chains are DER).
absl::StatusOr<std::string> PemToDer(absl::string_view pem);

// A self-signed CA (P-256, basicConstraints CA:TRUE, keyCertSign).
absl::StatusOr<IssuedCert> MakeCa(absl::string_view common_name);

// A leaf signed by `ca` (its cert and key PEM) per `spec`.
absl::StatusOr<IssuedCert> Issue(const IssuedCert& ca, const CertSpec& spec);

}  // namespace offkey::service::dev

#endif  // OFFKEY_SERVICE_DEV_DEV_PKI_H_
