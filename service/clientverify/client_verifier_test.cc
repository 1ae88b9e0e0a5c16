// Unit tests of TrustStore (VerifyClient's logic), without offkeyd: certificates are
// made here with service/dev/dev_pki and OpenSSL, CertificateVerify signatures with
// OpenSSL. The end-to-end version over gRPC is tests/verify_client_test.cc.
#include "service/clientverify/client_verifier.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/identity.h"
#include "base/openssl_util.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/dev/dev_pki.h"

namespace offkey::service::clientverify {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using offkey::v1::VerifyClientRequest;
using offkey::v1::VerifyClientResponse;
using service::dev::CertSpec;
using service::dev::IssuedCert;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBundle[] = "clients";

std::string TempPath(absl::string_view name) {
  static int counter = 0;
  return absl::StrCat(::testing::TempDir(), "/", name, "-", ++counter);
}

std::string WriteFile(absl::string_view name, const std::string& data) {
  std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

std::string Der(const std::string& pem) {
  absl::StatusOr<std::string> der = service::dev::PemToDer(pem);
  EXPECT_THAT(der, IsOk());
  return der.ok() ? *der : "";
}

EvpPkeyPtr ReadKey(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return EvpPkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

X509Ptr ReadCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// A TLS 1.3 client CertificateVerify input (RFC 8446 4.4.3) with a fixed transcript hash.
std::string Tls13ClientInput() {
  return std::string(64, ' ') + "TLS 1.3, client CertificateVerify" +
         std::string(1, '\0') + std::string(32, '\x5a');
}

// Signs `content` the way a TLS client does for `scheme`'s kind: `md` (nullptr for
// Ed25519), PSS with salt = hash length when `pss`.
std::string SignContent(EVP_PKEY* key, const char* md, bool pss,
                        const std::string& content) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestSignInit_ex(ctx.get(), &pctx, md, nullptr, nullptr, key, nullptr) != 1) {
    ADD_FAILURE() << "EVP_DigestSignInit_ex: " << DrainOpenSslErrors();
    return "";
  }
  if (pss) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  size_t len = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(content.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, data, content.size()) != 1) {
    ADD_FAILURE() << "EVP_DigestSign: " << DrainOpenSslErrors();
    return "";
  }
  std::string sig(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, data,
                 content.size());
  sig.resize(len);
  return sig;
}

// A PEM CRL from `ca` revoking the certificates `revoked` (PEM), valid around now.
std::string MakeCrl(const IssuedCert& ca, const std::vector<std::string>& revoked) {
  X509Ptr ca_cert = ReadCert(ca.cert_pem);
  EvpPkeyPtr key = ReadKey(ca.key_pem.view());
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert.get()));
  ASN1_TIME* last = ASN1_TIME_adj(nullptr, time(nullptr), 0, -3600);
  ASN1_TIME* next = ASN1_TIME_adj(nullptr, time(nullptr), 1, 0);
  X509_CRL_set1_lastUpdate(crl, last);
  X509_CRL_set1_nextUpdate(crl, next);
  for (const std::string& pem : revoked) {
    X509Ptr victim = ReadCert(pem);
    X509_REVOKED* entry = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(entry, X509_get_serialNumber(victim.get()));
    X509_REVOKED_set_revocationDate(entry, last);
    X509_CRL_add0_revoked(crl, entry);
  }
  X509_CRL_sort(crl);
  X509_CRL_sign(crl, key.get(), EVP_sha256());
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(bio.get(), crl);
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  X509_CRL_free(crl);
  return BioContents(bio.get());
}

class TrustStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OFFKEY_ASSERT_OK_AND_ASSIGN(ca_, service::dev::MakeCa("clients CA"));
    CertSpec spec;
    spec.common_name = "edge-1";
    spec.dns_names = {"edge-1.example.com"};
    spec.uris = {"spiffe://example.org/edge/1"};
    spec.client_auth = true;
    OFFKEY_ASSERT_OK_AND_ASSIGN(client_, service::dev::Issue(ca_, spec));
  }

  // A store with one bundle over `ca_` (and `extra` settings).
  std::shared_ptr<const TrustStore> Load(
      const std::vector<std::string>& crls = {},
      const std::vector<offkey::v1::SignatureScheme>& allowed = {}) {
    google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> bundles;
    offkey::v1::TrustBundle* bundle = bundles.Add();
    bundle->set_name(kBundle);
    bundle->set_ca_file(WriteFile("ca.pem", ca_.cert_pem));
    for (const std::string& crl : crls) bundle->add_crl_files(WriteFile("crl.pem", crl));
    for (auto scheme : allowed) bundle->add_allowed_schemes(scheme);
    absl::StatusOr<std::shared_ptr<const TrustStore>> store = TrustStore::Load(bundles);
    EXPECT_THAT(store, IsOk());
    return store.ok() ? *store : nullptr;
  }

  // A TLS 1.3 request from `cert` (PEM) signed by `key_pem` with ECDSA P-256/SHA-256.
  VerifyClientRequest Request(const IssuedCert& cert) {
    VerifyClientRequest request;
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.add_certificate_chain(Der(cert.cert_pem));
    request.set_trust_bundle(kBundle);
    request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
    request.set_signed_content(Tls13ClientInput());
    EvpPkeyPtr key = ReadKey(cert.key_pem.view());
    request.set_signature(
        SignContent(key.get(), "SHA256", false, request.signed_content()));
    return request;
  }

  VerifyClientResponse Verify(const TrustStore& store, const VerifyClientRequest& request,
                              absl::Time now = absl::Now()) {
    absl::StatusOr<VerifyClientResponse> response = store.Verify(request, now);
    EXPECT_THAT(response, IsOk());
    return response.ok() ? *response : VerifyClientResponse();
  }

  IssuedCert ca_;
  IssuedCert client_;
};

TEST_F(TrustStoreTest, GoodChainIsVerifiedWithItsIdentity) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  VerifyClientResponse response = Verify(*store, Request(client_));
  EXPECT_EQ(response.result(), offkey::v1::VERIFIED) << response.detail();
  EXPECT_EQ(response.detail(), "");
  const offkey::v1::ClientIdentity& id = response.identity();
  EXPECT_THAT(id.subject(), HasSubstr("CN=edge-1"));
  EXPECT_THAT(id.dns_names(), ElementsAre("edge-1.example.com"));
  EXPECT_THAT(id.uris(), ElementsAre("spiffe://example.org/edge/1"));
  EXPECT_EQ(id.spiffe_id(), "spiffe://example.org/edge/1");
  EXPECT_EQ(id.sha256().size(), 32u);
  EXPECT_GT(id.not_after(), absl::ToUnixSeconds(absl::Now()));
}

// VerifyClient reports the identity offkeyd would give the same certificate as a caller:
// one rule (base/identity.h), so a spoof refused on offkeyd's listeners is refused here.
TEST_F(TrustStoreTest, IdentityIsOffkeydsCallerRule) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  struct Case {
    CertSpec spec;
    std::string identity;  // Empty: refused.
    std::string spiffe_id;
    std::string error_fragment;  // When refused.
  };
  auto spec = [](std::string cn, std::vector<std::string> dns,
                 std::vector<std::string> uris) {
    CertSpec s;
    s.common_name = std::move(cn);
    s.dns_names = std::move(dns);
    s.uris = std::move(uris);
    s.client_auth = true;
    return s;
  };
  const std::vector<Case> cases = {
      {spec("edge-1", {"edge-1.example.com"}, {"spiffe://example.org/edge/1"}),
       "spiffe://example.org/edge/1", "spiffe://example.org/edge/1", ""},
      {spec("edge-1", {"edge-1.example.com"}, {}), "dns:edge-1.example.com", "", ""},
      {spec("edge-1", {}, {}), "cn:edge-1", "", ""},
      // The spoof: a CN spelling an admin's SPIFFE ID is no SPIFFE ID.
      {spec("spiffe://example.org/admin", {}, {}), "", "", "looks like a URI"},
      {spec("edge-1", {}, {"spiffe://example.org/a", "spiffe://example.org/b"}), "", "",
       "several SPIFFE URI SANs"},
      {spec("edge-1", {}, {"spiffe://example.org/a", "https://example.org/a"}), "", "",
       "other URI SANs"},
  };
  for (const Case& c : cases) {
    OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert cert, service::dev::Issue(ca_, c.spec));
    VerifyClientResponse response = Verify(*store, Request(cert));
    SCOPED_TRACE(response.identity().subject());
    EXPECT_EQ(response.result(), offkey::v1::VERIFIED) << response.detail();
    const offkey::v1::ClientIdentity& id = response.identity();
    EXPECT_EQ(id.identity(), c.identity);
    EXPECT_EQ(id.spiffe_id(), c.spiffe_id);
    absl::StatusOr<std::string> caller = IdentityFromCertificatePem(cert.cert_pem);
    if (c.identity.empty()) {
      EXPECT_FALSE(caller.ok());
      EXPECT_THAT(id.identity_error(), HasSubstr(c.error_fragment));
      EXPECT_EQ(id.identity_error(), caller.status().message());
    } else {
      ASSERT_THAT(caller, IsOk());
      EXPECT_EQ(id.identity(), *caller);
      EXPECT_EQ(id.identity_error(), "");
    }
  }
}

TEST_F(TrustStoreTest, ChainWithTheAnchorIncludedIsVerified) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  VerifyClientRequest request = Request(client_);
  request.add_certificate_chain(Der(ca_.cert_pem));
  VerifyClientResponse response = Verify(*store, request);
  EXPECT_EQ(response.result(), offkey::v1::VERIFIED) << response.detail();
}

// Every scheme family with a key of its own: the signature made by OpenSSL as a TLS
// client would make it.
TEST_F(TrustStoreTest, RsaPssAndEd25519ClientsAreVerified) {
  struct Case {
    const char* type;
    const char* param;  // RSA bits or nullptr.
    offkey::v1::SignatureScheme scheme;
    offkey::v1::TlsVersion version;
    const char* md;
    bool pss;
  };
  const Case cases[] = {
      {"RSA", "2048", offkey::v1::RSA_PSS_RSAE_SHA256, offkey::v1::TLS_1_3, "SHA256",
       true},
      {"RSA", "2048", offkey::v1::RSA_PKCS1_SHA384, offkey::v1::TLS_1_2, "SHA384", false},
      {"ED25519", nullptr, offkey::v1::ED25519, offkey::v1::TLS_1_3, nullptr, false},
  };
  auto store = Load();
  ASSERT_NE(store, nullptr);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scheme);
    EvpPkeyPtr key(c.param != nullptr
                       ? EVP_PKEY_Q_keygen(nullptr, nullptr, c.type, size_t{2048})
                       : EVP_PKEY_Q_keygen(nullptr, nullptr, c.type));
    ASSERT_NE(key, nullptr) << DrainOpenSslErrors();
    CertSpec spec;
    spec.common_name = "other-client";
    spec.client_auth = true;
    spec.public_key_spki = SpkiDer(key.get());
    OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert cert, service::dev::Issue(ca_, spec));
    VerifyClientRequest request;
    request.mutable_context()->set_version(c.version);
    request.add_certificate_chain(Der(cert.cert_pem));
    request.set_trust_bundle(kBundle);
    request.set_scheme(c.scheme);
    request.set_signed_content(Tls13ClientInput());
    request.set_signature(SignContent(key.get(), c.md, c.pss, request.signed_content()));
    VerifyClientResponse response = Verify(*store, request);
    EXPECT_EQ(response.result(), offkey::v1::VERIFIED) << response.detail();

    // The same signature does not verify other content.
    request.set_signed_content(request.signed_content() + "x");
    EXPECT_EQ(Verify(*store, request).result(), offkey::v1::BAD_SIGNATURE);
  }
}

TEST_F(TrustStoreTest, UnknownCaIsUntrustedIssuer) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert other_ca, service::dev::MakeCa("clients CA"));
  CertSpec spec;
  spec.common_name = "edge-1";
  spec.client_auth = true;
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert stranger, service::dev::Issue(other_ca, spec));
  auto store = Load();
  ASSERT_NE(store, nullptr);
  VerifyClientResponse response = Verify(*store, Request(stranger));
  EXPECT_EQ(response.result(), offkey::v1::UNTRUSTED_ISSUER) << response.detail();
  EXPECT_THAT(response.detail(), HasSubstr("certificate 0"));
  EXPECT_FALSE(response.has_identity());

  // Including its own (self-signed) CA in the chain does not help.
  VerifyClientRequest request = Request(stranger);
  request.add_certificate_chain(Der(other_ca.cert_pem));
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::UNTRUSTED_ISSUER);
}

TEST_F(TrustStoreTest, ExpiredAndNotYetValid) {
  CertSpec spec;
  spec.common_name = "old";
  spec.client_auth = true;
  spec.not_before = absl::Now() - absl::Hours(48);
  spec.not_after = absl::Now() - absl::Hours(24);
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert expired, service::dev::Issue(ca_, spec));
  auto store = Load();
  ASSERT_NE(store, nullptr);
  VerifyClientResponse response = Verify(*store, Request(expired));
  EXPECT_EQ(response.result(), offkey::v1::EXPIRED) << response.detail();
  EXPECT_THAT(response.detail(), HasSubstr("CN=old"));

  // Verification happens at the time given: the good client, seen two years later, is
  // expired, and seen before it was issued, not yet valid.
  EXPECT_EQ(
      Verify(*store, Request(client_), absl::Now() + absl::Hours(24 * 730)).result(),
      offkey::v1::EXPIRED);
  EXPECT_EQ(Verify(*store, Request(client_), absl::Now() - absl::Hours(24)).result(),
            offkey::v1::NOT_YET_VALID);
}

TEST_F(TrustStoreTest, WrongCertificateVerifySignatureIsBadSignature) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  // Signed by another key than the leaf's.
  VerifyClientRequest request = Request(client_);
  EvpPkeyPtr other(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  request.set_signature(
      SignContent(other.get(), "SHA256", false, request.signed_content()));
  VerifyClientResponse response = Verify(*store, request);
  EXPECT_EQ(response.result(), offkey::v1::BAD_SIGNATURE);
  EXPECT_THAT(response.detail(), HasSubstr("ecdsa_secp256r1_sha256"));
  EXPECT_FALSE(response.has_identity());

  // The right key over other content.
  request = Request(client_);
  request.set_signed_content(std::string(64, ' ') + "TLS 1.3, client CertificateVerify" +
                             std::string(1, '\0') + std::string(32, '\x01'));
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::BAD_SIGNATURE);

  // A corrupted signature.
  request = Request(client_);
  std::string sig = request.signature();
  sig[sig.size() / 2] ^= 0x01;
  request.set_signature(sig);
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::BAD_SIGNATURE);
}

TEST_F(TrustStoreTest, ServerOnlyCertificateIsWrongPurpose) {
  CertSpec spec;
  spec.common_name = "server-only";
  spec.server_auth = true;
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert server, service::dev::Issue(ca_, spec));
  auto store = Load();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Verify(*store, Request(server)).result(), offkey::v1::WRONG_PURPOSE);
}

TEST_F(TrustStoreTest, SchemeProblemsAreSchemeNotAllowed) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  // TLS 1.3 ties the ECDSA scheme to the curve: P-384 scheme, P-256 key.
  VerifyClientRequest request = Request(client_);
  request.set_scheme(offkey::v1::ECDSA_SECP384R1_SHA384);
  VerifyClientResponse response = Verify(*store, request);
  EXPECT_EQ(response.result(), offkey::v1::SCHEME_NOT_ALLOWED);
  EXPECT_THAT(response.detail(), HasSubstr("P-256"));
  // An RSA scheme with an EC key.
  request.set_scheme(offkey::v1::RSA_PSS_RSAE_SHA256);
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::SCHEME_NOT_ALLOWED);
  // PKCS#1 v1.5 in TLS 1.3.
  request.set_scheme(offkey::v1::RSA_PKCS1_SHA256);
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::SCHEME_NOT_ALLOWED);

  // A bundle that allows only Ed25519 refuses a good ECDSA client.
  auto strict = Load({}, {offkey::v1::ED25519});
  ASSERT_NE(strict, nullptr);
  response = Verify(*strict, Request(client_));
  EXPECT_EQ(response.result(), offkey::v1::SCHEME_NOT_ALLOWED);
  EXPECT_THAT(response.detail(), HasSubstr("does not allow"));
}

TEST_F(TrustStoreTest, MalformedChains) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  VerifyClientRequest request = Request(client_);
  request.set_certificate_chain(0, "not a certificate");
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::MALFORMED_CHAIN);

  // Trailing bytes after the DER.
  request = Request(client_);
  request.set_certificate_chain(0, request.certificate_chain(0) + "x");
  EXPECT_EQ(Verify(*store, request).result(), offkey::v1::MALFORMED_CHAIN);

  // Anchor first, leaf second: not in issuing order.
  request = Request(client_);
  request.clear_certificate_chain();
  request.add_certificate_chain(Der(ca_.cert_pem));
  request.add_certificate_chain(Der(client_.cert_pem));
  VerifyClientResponse response = Verify(*store, request);
  EXPECT_EQ(response.result(), offkey::v1::MALFORMED_CHAIN);
  EXPECT_THAT(response.detail(), HasSubstr("leaf first"));
}

TEST_F(TrustStoreTest, RevocationWithCrls) {
  CertSpec spec;
  spec.common_name = "revoked";
  spec.client_auth = true;
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert revoked, service::dev::Issue(ca_, spec));
  auto store = Load({MakeCrl(ca_, {revoked.cert_pem})});
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(Verify(*store, Request(client_)).result(), offkey::v1::VERIFIED);
  VerifyClientResponse response = Verify(*store, Request(revoked));
  EXPECT_EQ(response.result(), offkey::v1::REVOKED);
  EXPECT_THAT(response.detail(), Not(HasSubstr("revocation unknown")));

  // A CRL from another CA only: the client's revocation is unknown, which never passes.
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert other_ca, service::dev::MakeCa("other CA"));
  auto unknown = Load({MakeCrl(other_ca, {})});
  ASSERT_NE(unknown, nullptr);
  response = Verify(*unknown, Request(client_));
  EXPECT_EQ(response.result(), offkey::v1::REVOKED);
  EXPECT_THAT(response.detail(), HasSubstr("revocation unknown"));
}

TEST_F(TrustStoreTest, BadInputIsAnError) {
  auto store = Load();
  ASSERT_NE(store, nullptr);
  const absl::Time now = absl::Now();

  VerifyClientRequest request = Request(client_);
  request.set_trust_bundle("nobody");
  EXPECT_THAT(store->Verify(request, now),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nobody")));

  request = Request(client_);
  request.clear_certificate_chain();
  EXPECT_THAT(store->Verify(request, now), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    HasSubstr("certificate_chain")));

  request = Request(client_);
  for (int i = 0; i < 10; ++i) request.add_certificate_chain(Der(ca_.cert_pem));
  EXPECT_THAT(store->Verify(request, now), StatusIs(absl::StatusCode::kInvalidArgument,
                                                    HasSubstr("certificate_chain")));

  request = Request(client_);
  request.mutable_context()->set_version(offkey::v1::TLS_VERSION_UNSPECIFIED);
  EXPECT_THAT(store->Verify(request, now),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("context.version")));

  request = Request(client_);
  request.set_scheme(offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED);
  EXPECT_THAT(store->Verify(request, now),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("scheme")));

  request = Request(client_);
  request.clear_signed_content();
  EXPECT_THAT(store->Verify(request, now),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signed_content")));

  request = Request(client_);
  request.set_signature(std::string(1025, 'x'));
  EXPECT_THAT(store->Verify(request, now),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signature")));
}

TEST(TrustStoreLoadTest, RefusesBadBundles) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert ca, service::dev::MakeCa("CA"));
  const std::string ca_file = WriteFile("ca.pem", ca.cert_pem);

  google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> missing;
  missing.Add()->set_name("a");
  missing[0].set_ca_file(TempPath("does-not-exist"));
  EXPECT_THAT(TrustStore::Load(missing), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  HasSubstr("trust bundle 'a'")));

  google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> empty;
  empty.Add()->set_name("b");
  empty[0].set_ca_file(WriteFile("empty.pem", "no PEM here\n"));
  EXPECT_THAT(TrustStore::Load(empty), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("no PEM block found")));

  google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> twice;
  for (int i = 0; i < 2; ++i) {
    twice.Add()->set_name("c");
    twice[i].set_ca_file(ca_file);
  }
  EXPECT_THAT(TrustStore::Load(twice),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("defined twice")));

  google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> bad_crl;
  bad_crl.Add()->set_name("d");
  bad_crl[0].set_ca_file(ca_file);
  bad_crl[0].add_crl_files(WriteFile("crl.pem", ca.cert_pem));  // A certificate.
  EXPECT_THAT(TrustStore::Load(bad_crl),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no X509 CRL PEM block found")));
}

TEST(TrustStoreLoadTest, FingerprintFollowsTheFiles) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert ca, service::dev::MakeCa("CA"));
  OFFKEY_ASSERT_OK_AND_ASSIGN(IssuedCert other, service::dev::MakeCa("CA 2"));
  const std::string path = TempPath("ca.pem");
  google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle> bundles;
  bundles.Add()->set_name("a");
  bundles[0].set_ca_file(path);

  std::ofstream(path, std::ios::binary) << ca.cert_pem;
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto first, TrustStore::Load(bundles));
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto same, TrustStore::Load(bundles));
  EXPECT_EQ(first->fingerprint(), same->fingerprint());
  EXPECT_EQ(first->fingerprint().size(), 32u);

  std::ofstream(path, std::ios::binary) << other.cert_pem;
  OFFKEY_ASSERT_OK_AND_ASSIGN(auto changed, TrustStore::Load(bundles));
  EXPECT_NE(first->fingerprint(), changed->fingerprint());
}

}  // namespace
}  // namespace offkey::service::clientverify
