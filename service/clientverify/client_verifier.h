// TrustStore: client authentication offloaded (KeyService.VerifyClient). Validates a
// client's certificate chain against a named trust bundle and its CertificateVerify
// signature, and names the verified client or the precise reason for refusal.
#ifndef OFFKEY_SERVICE_CLIENTVERIFY_CLIENT_VERIFIER_H_
#define OFFKEY_SERVICE_CLIENTVERIFY_CLIENT_VERIFIER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "offkey/v1/config.pb.h"
#include "offkey/v1/key_service.pb.h"

namespace offkey::service::clientverify {

// An immutable snapshot of the configured bundles (CA certificates and CRLs, read from
// their files at Load). Thread-safe.
class TrustStore {
 public:
  // Reads every bundle's files. INVALID_ARGUMENT naming the bundle and the file when a
  // file cannot be read, holds no certificate (CA file) or a malformed PEM, or when two
  // bundles share a name.
  static absl::StatusOr<std::shared_ptr<const TrustStore>> Load(
      const google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle>& bundles);
  ~TrustStore();

  // SHA-256 over the bundle definitions and every file's bytes: it changes exactly when
  // a reload would see something new.
  const std::string& fingerprint() const { return fingerprint_; }

  // Checks, in this order: the input limits of VerifyClientRequest (INVALID_ARGUMENT
  // naming the field) and context.version (TLS 1.2 or 1.3); the bundle (NOT_FOUND);
  // then answers OK with a result: MALFORMED_CHAIN (DER, leaf-first order), the chain
  // against the bundle at time `now` for client authentication (EXPIRED,
  // NOT_YET_VALID, UNTRUSTED_ISSUER, WRONG_PURPOSE, REVOKED), the scheme against the
  // leaf's key, the TLS version and the bundle's allowed_schemes (SCHEME_NOT_ALLOWED),
  // and the signature over signed_content (BAD_SIGNATURE); else VERIFIED with the
  // identity. With CRLs configured, a certificate whose issuer has no CRL, or whose CRL
  // is outside its validity, is refused as REVOKED ("revocation unknown"): a missing
  // CRL never passes. `detail` names the certificate (depth and subject) and the check,
  // never signed bytes.
  absl::StatusOr<offkey::v1::VerifyClientResponse> Verify(
      const offkey::v1::VerifyClientRequest& request, absl::Time now) const;

  struct Bundle;

 private:
  TrustStore() = default;
  std::map<std::string, std::unique_ptr<Bundle>> bundles_;
  std::string fingerprint_;
};

}  // namespace offkey::service::clientverify

#endif  // OFFKEY_SERVICE_CLIENTVERIFY_CLIENT_VERIFIER_H_
