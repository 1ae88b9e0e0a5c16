// VerifyClient against a real offkeyd: chains made here (good, expired, not yet valid,
// wrong issuer, wrong EKU, revoked, malformed), every scheme's signature, and the
// Wycheproof signature vectors for the schemes it accepts, each failing for the stated
// reason.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "hsm/testing/wycheproof.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

using hsm::testing::Unhex;
using offkey::v1::VerifyClientRequest;
using offkey::v1::VerifyClientResponse;
using service::dev::CertSpec;
using service::dev::IssuedCert;

EVP_PKEY* ReadKey(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return key;
}

X509* ReadCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  return cert;
}

// A PEM CRL from `ca` revoking `revoked` (a PEM certificate), valid around now.
std::string MakeCrl(const IssuedCert& ca, const std::string& revoked) {
  X509* ca_cert = ReadCert(ca.cert_pem);
  X509* victim = ReadCert(revoked);
  EVP_PKEY* key = ReadKey(ca.key_pem.view());
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert));
  ASN1_TIME* last = ASN1_TIME_adj(nullptr, time(nullptr), 0, -3600);
  ASN1_TIME* next = ASN1_TIME_adj(nullptr, time(nullptr), 1, 0);
  X509_CRL_set1_lastUpdate(crl, last);
  X509_CRL_set1_nextUpdate(crl, next);
  X509_REVOKED* entry = X509_REVOKED_new();
  X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(victim));
  X509_REVOKED_set_revocationDate(entry, last);
  X509_CRL_add0_revoked(crl, entry);
  X509_CRL_sort(crl);
  X509_CRL_sign(crl, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_CRL(bio, crl);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  X509_CRL_free(crl);
  EVP_PKEY_free(key);
  X509_free(victim);
  X509_free(ca_cert);
  return pem;
}

void Write(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary) << data;
}

class VerifyClientTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    clients_ = TestCa("clients CA");
    other_ = TestCa("someone else's CA");
    revoked_ = Leaf(clients_);
    Write(dir_ + "/clients.pem", clients_.cert_pem);
    Write(dir_ + "/clients.crl", MakeCrl(clients_, revoked_.cert_pem));
    offkey::v1::TrustBundle* bundle = config->add_trust_bundles();
    bundle->set_name("clients");
    bundle->set_ca_file(dir_ + "/clients.pem");
    offkey::v1::TrustBundle* checked = config->add_trust_bundles();
    checked->set_name("clients-crl");
    checked->set_ca_file(dir_ + "/clients.pem");
    checked->add_crl_files(dir_ + "/clients.crl");
    offkey::v1::TrustBundle* ecdsa_only = config->add_trust_bundles();
    ecdsa_only->set_name("ecdsa-only");
    ecdsa_only->set_ca_file(dir_ + "/clients.pem");
    ecdsa_only->add_allowed_schemes(offkey::v1::ECDSA_SECP256R1_SHA256);
    offkey::v1::Grant* grant = config->mutable_policy()->add_grants();
    grant->add_identities(kTerminator);
    grant->add_operations(offkey::v1::VERIFY_CLIENT);
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    terminator_ = Stub(kTerminator);
  }

  static IssuedCert Leaf(const IssuedCert& ca, CertSpec spec = {}) {
    if (spec.common_name.empty()) spec.common_name = "browser";
    if (spec.uris.empty() && spec.dns_names.empty()) {
      spec.uris = {"spiffe://clients.test/browser"};
      spec.dns_names = {"browser.clients.test"};
    }
    if (!spec.server_auth) spec.client_auth = true;
    auto cert = service::dev::Issue(ca, spec);
    EXPECT_TRUE(cert.ok()) << cert.status();
    return *std::move(cert);
  }

  VerifyClientResponse Verify(const VerifyClientRequest& request,
                              grpc::StatusCode want = grpc::OK) {
    VerifyClientResponse response;
    grpc::Status status = terminator_->VerifyClient(Context().get(), request, &response);
    EXPECT_EQ(status.error_code(), want) << status.error_message();
    last_error_ = status.error_message();
    return response;
  }

  // A TLS 1.3 ECDSA P-256 CertificateVerify by `leaf` (chain: leaf only).
  VerifyClientRequest SignedBy(const IssuedCert& leaf,
                               const std::string& bundle = "clients") {
    VerifyClientRequest request;
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.add_certificate_chain(*service::dev::PemToDer(leaf.cert_pem));
    request.set_trust_bundle(bundle);
    request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
    request.set_signed_content(Tls13ClientInput());
    request.set_signature(SignWithPem(leaf.key_pem.view(), request.signed_content()));
    return request;
  }

  IssuedCert clients_, other_, revoked_;
  std::unique_ptr<offkey::v1::KeyService::Stub> terminator_;
  std::string last_error_;
};

TEST_F(VerifyClientTest, GoodClientIsVerifiedWithItsIdentity) {
  IssuedCert leaf = Leaf(clients_);
  VerifyClientResponse response = Verify(SignedBy(leaf));
  EXPECT_EQ(response.result(), offkey::v1::VERIFIED) << response.detail();
  EXPECT_EQ(response.identity().subject(), "CN=browser,O=offkey development");
  EXPECT_EQ(response.identity().spiffe_id(), "spiffe://clients.test/browser");
  // The identity offkeyd would give this certificate as a caller.
  EXPECT_EQ(response.identity().identity(), "spiffe://clients.test/browser");
  EXPECT_EQ(response.identity().identity_error(), "");
  ASSERT_EQ(response.identity().dns_names_size(), 1);
  EXPECT_EQ(response.identity().dns_names(0), "browser.clients.test");
  EXPECT_EQ(response.identity().sha256().size(), 32u);
  EXPECT_GT(response.identity().not_after(), absl::ToUnixSeconds(absl::Now()));
  // The same with the CRL bundle: this leaf is not revoked.
  EXPECT_EQ(Verify(SignedBy(leaf, "clients-crl")).result(), offkey::v1::VERIFIED);
}

TEST_F(VerifyClientTest, EachChainProblemHasItsReason) {
  CertSpec expired;
  expired.not_before = absl::Now() - absl::Hours(48);
  expired.not_after = absl::Now() - absl::Hours(24);
  CertSpec future;
  future.not_before = absl::Now() + absl::Hours(24);
  future.not_after = absl::Now() + absl::Hours(48);
  CertSpec server_only;
  server_only.server_auth = true;  // EKU serverAuth, no clientAuth.
  const IssuedCert expired_leaf = Leaf(clients_, expired);
  const IssuedCert future_leaf = Leaf(clients_, future);
  const IssuedCert stranger_leaf = Leaf(other_);
  const IssuedCert server_leaf = Leaf(clients_, server_only);
  struct Case {
    const char* name;
    const IssuedCert* leaf;
    std::string bundle;
    offkey::v1::VerifyResult want;
  } cases[] = {
      {"expired", &expired_leaf, "clients", offkey::v1::EXPIRED},
      {"not yet valid", &future_leaf, "clients", offkey::v1::NOT_YET_VALID},
      {"wrong issuer", &stranger_leaf, "clients", offkey::v1::UNTRUSTED_ISSUER},
      {"wrong EKU", &server_leaf, "clients", offkey::v1::WRONG_PURPOSE},
      {"revoked", &revoked_, "clients-crl", offkey::v1::REVOKED},
  };
  for (const Case& c : cases) {
    VerifyClientResponse response = Verify(SignedBy(*c.leaf, c.bundle));
    EXPECT_EQ(response.result(), c.want) << c.name << ": " << response.detail();
    EXPECT_FALSE(response.detail().empty()) << c.name;
    EXPECT_FALSE(response.has_identity()) << c.name;
  }
  // Without the CRL the revoked leaf passes: revocation is checked only when configured.
  EXPECT_EQ(Verify(SignedBy(revoked_)).result(), offkey::v1::VERIFIED);
}

TEST_F(VerifyClientTest, SignatureAndSchemeProblems) {
  IssuedCert leaf = Leaf(clients_);
  VerifyClientRequest tampered = SignedBy(leaf);
  tampered.mutable_signed_content()->back() ^= 1;
  EXPECT_EQ(Verify(tampered).result(), offkey::v1::BAD_SIGNATURE);

  VerifyClientRequest wrong_family = SignedBy(leaf);
  wrong_family.set_scheme(offkey::v1::RSA_PSS_RSAE_SHA256);
  EXPECT_EQ(Verify(wrong_family).result(), offkey::v1::SCHEME_NOT_ALLOWED);

  VerifyClientRequest wrong_curve = SignedBy(leaf);
  wrong_curve.set_scheme(offkey::v1::ECDSA_SECP384R1_SHA384);
  VerifyClientResponse curve = Verify(wrong_curve);
  EXPECT_EQ(curve.result(), offkey::v1::SCHEME_NOT_ALLOWED);
  EXPECT_TRUE(absl::StrContains(curve.detail(), "P-384")) << curve.detail();

  // A bundle that allows only ECDSA P-256 admits it, and refuses anything else even
  // when it would fit the key (ecdsa_secp384r1_sha384 in TLS 1.2 fits any EC key).
  EXPECT_EQ(Verify(SignedBy(leaf, "ecdsa-only")).result(), offkey::v1::VERIFIED);
  VerifyClientRequest other_scheme = SignedBy(leaf, "ecdsa-only");
  other_scheme.mutable_context()->set_version(offkey::v1::TLS_1_2);
  other_scheme.set_scheme(offkey::v1::ECDSA_SECP384R1_SHA384);
  VerifyClientResponse refused = Verify(other_scheme);
  EXPECT_EQ(refused.result(), offkey::v1::SCHEME_NOT_ALLOWED);
  EXPECT_TRUE(absl::StrContains(refused.detail(), "does not allow")) << refused.detail();

  VerifyClientRequest malformed = SignedBy(leaf);
  malformed.set_certificate_chain(0, "not DER");
  EXPECT_EQ(Verify(malformed).result(), offkey::v1::MALFORMED_CHAIN);
  VerifyClientRequest misordered = SignedBy(leaf);
  misordered.add_certificate_chain(*service::dev::PemToDer(other_.cert_pem));
  EXPECT_EQ(Verify(misordered).result(), offkey::v1::MALFORMED_CHAIN);
}

TEST_F(VerifyClientTest, BadInputIsAnRpcError) {
  IssuedCert leaf = Leaf(clients_);
  VerifyClientRequest unknown = SignedBy(leaf, "nope");
  Verify(unknown, grpc::NOT_FOUND);
  EXPECT_TRUE(absl::StrContains(last_error_, "nope")) << last_error_;
  VerifyClientRequest no_chain = SignedBy(leaf);
  no_chain.clear_certificate_chain();
  Verify(no_chain, grpc::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(last_error_, "certificate_chain")) << last_error_;
  VerifyClientRequest no_scheme = SignedBy(leaf);
  no_scheme.set_scheme(offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED);
  Verify(no_scheme, grpc::INVALID_ARGUMENT);
  VerifyClientRequest big_signature = SignedBy(leaf);
  big_signature.set_signature(std::string(2000, 'x'));
  Verify(big_signature, grpc::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(last_error_, "signature")) << last_error_;
  VerifyClientRequest no_version = SignedBy(leaf);
  no_version.mutable_context()->clear_version();
  Verify(no_version, grpc::INVALID_ARGUMENT);
  // Without a VERIFY_CLIENT grant: refused before the bundle is even looked up.
  VerifyClientResponse response;
  grpc::Status status =
      Stub(kReader)->VerifyClient(Context().get(), SignedBy(leaf, "nope"), &response);
  EXPECT_EQ(status.error_code(), grpc::PERMISSION_DENIED) << status.error_message();
}

// Every vector of a Wycheproof signature file, through VerifyClient with a leaf
// certificate made for each test group's public key.
void RunWycheproof(
    const IssuedCert& ca, const char* file, offkey::v1::SignatureScheme scheme,
    offkey::v1::TlsVersion version,
    const std::function<VerifyClientResponse(const VerifyClientRequest&)>& verify) {
  auto json = hsm::testing::LoadJson(absl::StrCat("wycheproof/", file));
  ASSERT_TRUE(json.ok()) << json.status();
  int valid = 0, invalid = 0, acceptable = 0;
  for (const auto& group : json->fields().at("testGroups").list_value().values()) {
    const auto& g = group.struct_value().fields();
    CertSpec spec;
    spec.common_name = "wycheproof";
    spec.uris = {"spiffe://clients.test/wycheproof"};
    spec.client_auth = true;
    spec.public_key_spki = Unhex(g.at("publicKeyDer").string_value());
    auto leaf = service::dev::Issue(ca, spec);
    ASSERT_TRUE(leaf.ok()) << file << ": " << leaf.status();
    const std::string der = *service::dev::PemToDer(leaf->cert_pem);
    for (const auto& test_case : g.at("tests").list_value().values()) {
      const auto& t = test_case.struct_value().fields();
      VerifyClientRequest request;
      request.mutable_context()->set_version(version);
      request.add_certificate_chain(der);
      request.set_trust_bundle("clients");
      request.set_scheme(scheme);
      request.set_signed_content(Unhex(t.at("msg").string_value()));
      request.set_signature(Unhex(t.at("sig").string_value()));
      const std::string result = t.at("result").string_value();
      const int id = static_cast<int>(t.at("tcId").number_value());
      if (request.signed_content().empty() || request.signature().empty() ||
          request.signature().size() > 1024) {
        continue;  // Outside VerifyClient's input limits: INVALID_ARGUMENT, tested above.
      }
      VerifyClientResponse response = verify(request);
      if (result == "valid") {
        ++valid;
        EXPECT_EQ(response.result(), offkey::v1::VERIFIED)
            << file << " tcId " << id << ": " << response.detail();
      } else if (result == "invalid") {
        ++invalid;
        EXPECT_EQ(response.result(), offkey::v1::BAD_SIGNATURE)
            << file << " tcId " << id << ": " << response.detail();
      } else {
        ++acceptable;  // Either answer is correct; counted, not judged.
      }
    }
  }
  printf("%s: %d valid, %d invalid, %d acceptable\n", file, valid, invalid, acceptable);
  EXPECT_GT(valid, 0) << file;
  EXPECT_GT(invalid, 0) << file;
}

TEST_F(VerifyClientTest, WycheproofSignatureVectors) {
  auto verify = [this](const VerifyClientRequest& request) { return Verify(request); };
  RunWycheproof(clients_, "ecdsa_secp256r1_sha256_test.json",
                offkey::v1::ECDSA_SECP256R1_SHA256, offkey::v1::TLS_1_3, verify);
  RunWycheproof(clients_, "ecdsa_secp384r1_sha384_test.json",
                offkey::v1::ECDSA_SECP384R1_SHA384, offkey::v1::TLS_1_3, verify);
  RunWycheproof(clients_, "ed25519_test.json", offkey::v1::ED25519, offkey::v1::TLS_1_3,
                verify);
  RunWycheproof(clients_, "rsa_signature_2048_sha256_test.json",
                offkey::v1::RSA_PKCS1_SHA256, offkey::v1::TLS_1_2, verify);
  RunWycheproof(clients_, "rsa_pss_2048_sha256_mgf1_32_test.json",
                offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3, verify);
}

}  // namespace
}  // namespace offkey::tests
