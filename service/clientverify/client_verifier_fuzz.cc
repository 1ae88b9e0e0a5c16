// Fuzzes VerifyClient's inputs (TrustStore::Verify): the certificate chain and the
// CertificateVerify (scheme, signature, signed content) against a fixed trust store
// loaded at start-up. Input: byte 0 the TLS version (0: 1.2, 1: 1.3, else that raw
// value), byte 1 the bundle (0 "clients", 1 "clients-crl" with CRLs, 2 "ecdsa-only",
// else an unknown name), bytes 2..3 the scheme (big-endian code point); then
// signed_content, signature and each certificate (DER), each after a 16-bit big-endian
// length (a short final field takes what is left). The seeds
// (testdata/fuzz/client_verifier, made by testdata/fuzz/make_seeds.sh with the PKI
// below) are valid chains and signatures, so the fuzzer starts on the accepting path.
//
// Checked beyond no crash: errors are only INVALID_ARGUMENT or, for the unknown bundle,
// NOT_FOUND; a refusal has a detail and no identity; VERIFIED only for a scheme the
// version and bundle allow, with a signature that verifies independently
// (hsm/testing/verify) under the leaf's key, and the identity's sha256 that of the leaf.
#include <openssl/sha.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/openssl_util.h"
#include "hsm/testing/verify.h"
#include "offkey/v1/config.pb.h"
#include "offkey/v1/key_service.pb.h"
#include "service/clientverify/client_verifier.h"
#include "service/tls/schemes.h"

namespace offkey::service::clientverify {
namespace {

// Inside every certificate's and CRL's validity (make_seeds.sh): 2027-01-01T00:00:00Z.
const absl::Time kNow = absl::FromUnixSeconds(1798761600);

// "offkey fuzz clients CA", EC P-256. It issued "offkey fuzz intermediate" (which
// issued the EC leaf), the RSA leaf and the Ed25519 leaf.
constexpr char kCaPem[] = R"(-----BEGIN CERTIFICATE-----
MIIBpzCCAU2gAwIBAgIUUiJmZO68NtZw4KwSTSpuLkWGLLMwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWb2Zma2V5IGZ1enogY2xpZW50cyBDQTAeFw0yNjEyMDcwMDE3
MzdaFw00NjEyMDIwMDE3MzdaMCExHzAdBgNVBAMMFm9mZmtleSBmdXp6IGNsaWVu
dHMgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARbGZL1VuFgvJl94JAbmXL9
k06FGVxkKTbDSS5pufDyi9lXLq6P8EFw4QZpcLNwN61wdDzAoeKqSI4c1Ob+jejp
o2MwYTAdBgNVHQ4EFgQUIuH5//J/pCmvo3d00+JO1vpeb6UwHwYDVR0jBBgwFoAU
IuH5//J/pCmvo3d00+JO1vpeb6UwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8BAf8E
BAMCAQYwCgYIKoZIzj0EAwIDSAAwRQIhALDXGkO8HLxrHOdADMLi5WHMKHtTjZy7
ddIg1YkWhd2vAiBaWkrgqxFPhMYBJ2FKlgjjtknOfCMqw4tN4Ma38USStw==
-----END CERTIFICATE-----
)";
// The CA's CRL, revoking the RSA leaf (serial 11), and the intermediate's, empty.
constexpr char kCrlsPem[] = R"(-----BEGIN X509 CRL-----
MIHNMHYCAQEwCgYIKoZIzj0EAwIwITEfMB0GA1UEAwwWb2Zma2V5IGZ1enogY2xp
ZW50cyBDQRcNMjYxMjA3MDAxNzQxWhcNMzYxMjA0MDAxNzQxWjAUMBICAQsXDTI2
MTIwNzAwMTc0MVqgDjAMMAoGA1UdFAQDAgEBMAoGCCqGSM49BAMCA0cAMEQCICVG
jBnHwjSGhr+/nO0W+hv5ejhtRVI532RaCq0gGV3IAiBh8GmlqeVL1K+Bum6fnBeQ
QL9/sdLiZTkmpiiiWxIoBw==
-----END X509 CRL-----
-----BEGIN X509 CRL-----
MIG6MGICAQEwCgYIKoZIzj0EAwIwIzEhMB8GA1UEAwwYb2Zma2V5IGZ1enogaW50
ZXJtZWRpYXRlFw0yNjEyMDcwMDE3NDFaFw0zNjEyMDQwMDE3NDJaoA4wDDAKBgNV
HRQEAwIBATAKBggqhkjOPQQDAgNIADBFAiAKwBK9ojIbQinzZdQ3fxgnKP8+1hQg
JP4tGwwGB5EqJwIhAMOem0EXleiCwTDLJgqQFWDUp2Rp+xP0g7lzJQ8SouKZ
-----END X509 CRL-----
)";

constexpr const char* kBundles[] = {"clients", "clients-crl", "ecdsa-only"};

void Check(bool ok) {
  if (!ok) std::abort();
}

std::string WriteTemp(const std::string& dir, const char* name, absl::string_view data) {
  std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

const TrustStore& Store() {
  // Held by a static pointer, so never freed and never reported as a leak.
  static const std::shared_ptr<const TrustStore>* store = [] {
    char dir_template[] = "/tmp/offkey-client-verifier-fuzz.XXXXXX";
    const char* dir = mkdtemp(dir_template);
    Check(dir != nullptr);
    const std::string ca = WriteTemp(dir, "ca.pem", kCaPem);
    const std::string crls = WriteTemp(dir, "crls.pem", kCrlsPem);
    google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> bundles;
    offkey::v1::TrustBundle* plain = bundles.Add();
    plain->set_name(kBundles[0]);
    plain->set_ca_file(ca);
    offkey::v1::TrustBundle* with_crls = bundles.Add();
    with_crls->set_name(kBundles[1]);
    with_crls->set_ca_file(ca);
    with_crls->add_crl_files(crls);
    offkey::v1::TrustBundle* ecdsa = bundles.Add();
    ecdsa->set_name(kBundles[2]);
    ecdsa->set_ca_file(ca);
    ecdsa->add_allowed_schemes(offkey::v1::ECDSA_SECP256R1_SHA256);
    absl::StatusOr<std::shared_ptr<const TrustStore>> loaded = TrustStore::Load(bundles);
    unlink(ca.c_str());
    unlink(crls.c_str());
    rmdir(dir);
    Check(loaded.ok());
    return new std::shared_ptr<const TrustStore>(*std::move(loaded));
  }();
  return **store;
}

// The next 16-bit length-prefixed field of `in`; a short one takes what is left.
std::string Field(absl::string_view& in) {
  if (in.size() < 2) {
    in = absl::string_view();
    return "";
  }
  const size_t size = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
  in.remove_prefix(2);
  const absl::string_view field = in.substr(0, size);
  in.remove_prefix(field.size());
  return std::string(field);
}

void CheckVerified(const offkey::v1::VerifyClientRequest& request, int bundle,
                   const offkey::v1::VerifyClientResponse& response) {
  const tls::SchemeInfo* info = tls::FindScheme(request.scheme());
  Check(info != nullptr);
  Check(request.context().version() == offkey::v1::TLS_1_3 ? info->tls13 : info->tls12);
  if (bundle == 2) Check(request.scheme() == offkey::v1::ECDSA_SECP256R1_SHA256);
  const std::string& leaf_der = request.certificate_chain(0);
  const auto* p = reinterpret_cast<const unsigned char*>(leaf_der.data());
  X509Ptr leaf(d2i_X509(nullptr, &p, static_cast<long>(leaf_der.size())));
  Check(leaf != nullptr);
  const std::string spki = SpkiDer(X509_get0_pubkey(leaf.get()));
  Check(hsm::testing::VerifyWithOpenSsl(spki, info->algorithm, request.signed_content(),
                                        request.signature())
            .ok());
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(leaf_der.data()), leaf_der.size(),
         digest);
  Check(response.identity().sha256() ==
        std::string(reinterpret_cast<const char*>(digest), sizeof(digest)));
  Check(!response.identity().subject().empty());
}

}  // namespace
}  // namespace offkey::service::clientverify

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace cv = offkey::service::clientverify;
  if (size < 4) return 0;
  const cv::TrustStore& store = cv::Store();
  absl::string_view in(reinterpret_cast<const char*>(data), size);
  offkey::v1::VerifyClientRequest request;
  const uint8_t version = data[0];
  request.mutable_context()->set_version(
      version == 0   ? offkey::v1::TLS_1_2
      : version == 1 ? offkey::v1::TLS_1_3
                     : static_cast<offkey::v1::TlsVersion>(version));
  const int bundle = data[1];
  request.set_trust_bundle(bundle < 3 ? cv::kBundles[bundle] : "no-such-bundle");
  request.set_scheme(static_cast<offkey::v1::SignatureScheme>((data[2] << 8) | data[3]));
  in.remove_prefix(4);
  request.set_signed_content(cv::Field(in));
  request.set_signature(cv::Field(in));
  while (!in.empty()) request.add_certificate_chain(cv::Field(in));

  absl::StatusOr<offkey::v1::VerifyClientResponse> response =
      store.Verify(request, cv::kNow);
  if (!response.ok()) {
    const absl::StatusCode code = response.status().code();
    cv::Check(code == absl::StatusCode::kInvalidArgument ||
              (code == absl::StatusCode::kNotFound && bundle >= 3));
    return 0;
  }
  cv::Check(bundle < 3);
  if (response->result() == offkey::v1::VERIFIED) {
    cv::CheckVerified(request, bundle, *response);
  } else {
    cv::Check(!response->has_identity());
    cv::Check(!response->detail().empty());
  }
  return 0;
}
