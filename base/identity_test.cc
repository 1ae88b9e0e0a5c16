#include "base/identity.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "base/openssl_util.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

using ::offkey::testing::IsOk;

struct Names {
  std::vector<std::string> uris;
  std::vector<std::string> dns;
  std::vector<std::string> common_names;  // Subject CN entries, in order.
  std::string organization;               // Subject O, if any.
};

// A self-signed P-256 certificate with the given subject and SANs, built with the X509
// APIs so every case is explicit.
X509Ptr MakeCertificate(const Names& names) {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  EXPECT_NE(key, nullptr);
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (!names.organization.empty()) {
    X509_NAME_add_entry_by_NID(
        subject, NID_organizationName, MBSTRING_UTF8,
        reinterpret_cast<const unsigned char*>(names.organization.c_str()), -1, -1, 0);
  }
  for (const std::string& cn : names.common_names) {
    X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(cn.c_str()),
                               static_cast<int>(cn.size()), -1, 0);
  }
  X509_set_issuer_name(cert.get(), subject);
  X509_set_pubkey(cert.get(), key.get());
  if (!names.uris.empty() || !names.dns.empty()) {
    GENERAL_NAMES* sans = GENERAL_NAMES_new();
    auto add = [&](int type, const std::string& value) {
      ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
      ASN1_STRING_set(ia5, value.data(), static_cast<int>(value.size()));
      GENERAL_NAME* name = GENERAL_NAME_new();
      GENERAL_NAME_set0_value(name, type, ia5);
      sk_GENERAL_NAME_push(sans, name);
    };
    // DNS names first, so the SPIFFE preference does not depend on order.
    for (const std::string& dns : names.dns) add(GEN_DNS, dns);
    for (const std::string& uri : names.uris) add(GEN_URI, uri);
    EXPECT_EQ(
        X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT),
        1);
    GENERAL_NAMES_free(sans);
  }
  EXPECT_GT(X509_sign(cert.get(), key.get(), EVP_sha256()), 0);
  return cert;
}

std::string Pem(const X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, const_cast<X509*>(cert));
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(size));
  BIO_free(bio);
  return pem;
}

// The identity through all three entry points, which must agree.
absl::StatusOr<std::string> IdentityOf(const Names& names) {
  X509Ptr cert = MakeCertificate(names);
  absl::StatusOr<std::string> direct = IdentityFromCertificate(cert.get());
  absl::StatusOr<std::string> pem = IdentityFromCertificatePem(Pem(cert.get()));
  absl::StatusOr<std::string> der =
      IdentityFromCertificateDer(CertificateDer(cert.get()));
  EXPECT_EQ(pem.status(), direct.status());
  EXPECT_EQ(der.status(), direct.status());
  if (direct.ok() && pem.ok() && der.ok()) {
    EXPECT_EQ(*pem, *direct);
    EXPECT_EQ(*der, *direct);
  }
  return direct;
}

void ExpectRefused(const absl::StatusOr<std::string>& identity,
                   absl::string_view fragment) {
  ASSERT_FALSE(identity.ok()) << "identity '" << *identity << "'";
  EXPECT_EQ(identity.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(identity.status().message(), fragment))
      << identity.status();
}

constexpr char kSpiffe[] = "spiffe://example.org/ns/edge/sa/nginx";

TEST(IdentityTest, SpiffeUriWinsOverDnsAndCn) {
  absl::StatusOr<std::string> id =
      IdentityOf({{kSpiffe}, {"edge-01.example.org"}, {"edge-01"}, "Example"});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, kSpiffe);
}

TEST(IdentityTest, DnsWinsOverCnAndCarriesItsSource) {
  absl::StatusOr<std::string> id =
      IdentityOf({{}, {"edge-01.example.org", "edge-02.example.org"}, {"edge-01"}, ""});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "dns:edge-01.example.org");
}

TEST(IdentityTest, CnOnlyCarriesItsSource) {
  absl::StatusOr<std::string> id = IdentityOf({{}, {}, {"terminator"}, "Example"});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "cn:terminator");
}

// The spoof the issuance rules exist for: a CA that signs any subject must not thereby
// mint SPIFFE identities. A CN or DNS name that looks like a URI is refused, not used.
TEST(IdentityTest, UriLookingCnOrDnsIsRefusedNotTheSpiffeIdentity) {
  ExpectRefused(IdentityOf({{}, {}, {kSpiffe}, ""}), "looks like a URI");
  ExpectRefused(IdentityOf({{}, {kSpiffe}, {}, ""}), "looks like a URI");
  ExpectRefused(IdentityOf({{}, {"spiffe:example.org"}, {"edge"}, ""}),
                "looks like a URI");
  // Another source's spelling is refused too, so "cn:dns:x" cannot exist.
  ExpectRefused(IdentityOf({{}, {}, {"dns:edge-01.example.org"}, ""}),
                "looks like a URI");
  ExpectRefused(IdentityOf({{}, {}, {"x://y"}, ""}), "looks like a URI");
  ExpectRefused(IdentityOf({{}, {}, {"a b://c"}, ""}), "looks like a URI");
  // A colon after something that cannot be a scheme is fine in a CN.
  absl::StatusOr<std::string> id = IdentityOf({{}, {}, {"Edge team: nginx"}, ""});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "cn:Edge team: nginx");
}

TEST(IdentityTest, NoTwoSourcesGiveTheSameIdentity) {
  absl::StatusOr<std::string> dns = IdentityOf({{}, {"edge.example"}, {}, ""});
  absl::StatusOr<std::string> cn = IdentityOf({{}, {}, {"edge.example"}, ""});
  absl::StatusOr<std::string> spiffe =
      IdentityOf({{"spiffe://edge.example"}, {}, {}, ""});
  ASSERT_THAT(dns, IsOk());
  ASSERT_THAT(cn, IsOk());
  ASSERT_THAT(spiffe, IsOk());
  EXPECT_NE(*dns, *cn);
  EXPECT_NE(*dns, *spiffe);
  EXPECT_NE(*cn, *spiffe);
}

TEST(IdentityTest, SeveralSpiffeUrisAreRefused) {
  ExpectRefused(IdentityOf({{kSpiffe, "spiffe://example.org/other"}, {}, {}, ""}),
                "several SPIFFE URI SANs");
  // Also when they are equal, and whatever the scheme's case.
  ExpectRefused(IdentityOf({{kSpiffe, kSpiffe}, {}, {}, ""}), "several SPIFFE URI SANs");
  ExpectRefused(IdentityOf({{kSpiffe, "SPIFFE://example.org/other"}, {}, {}, ""}),
                "several SPIFFE URI SANs");
}

TEST(IdentityTest, SpiffeIdMustBeWellFormed) {
  // An X.509-SVID has exactly one URI SAN.
  ExpectRefused(IdentityOf({{"https://example.org/edge", kSpiffe}, {}, {}, ""}),
                "other URI SANs");
  for (const char* bad :
       {"SPIFFE://example.org/a", "spiffe:/example.org/a", "spiffe://", "spiffe:///a",
        "spiffe://Example.org/a", "spiffe://example.org/a/", "spiffe://example.org//a",
        "spiffe://example.org/ns/edge/../admin", "spiffe://example.org/./a",
        "spiffe://example.org/a%2fb", "spiffe://example.org/a?b",
        "spiffe://example.org/a#b", "spiffe://user@example.org/a",
        "spiffe://example.org:443/a"}) {
    ExpectRefused(IdentityOf({{bad}, {"fallback.example"}, {"fallback"}, ""}),
                  "not a valid SPIFFE ID");
  }
  // A trust domain alone is an ID; so is a path of the allowed characters.
  for (const char* good : {"spiffe://example.org", "spiffe://ex_am-ple.0rg/A.b-c_d/e"}) {
    absl::StatusOr<std::string> id = IdentityOf({{good}, {}, {}, ""});
    ASSERT_THAT(id, IsOk()) << good;
    EXPECT_EQ(*id, good);
  }
}

TEST(IdentityTest, NonSpiffeUriIgnored) {
  absl::StatusOr<std::string> id =
      IdentityOf({{"https://example.org/edge", "urn:example:edge"},
                  {"edge-01.example.org"},
                  {"edge-01"},
                  ""});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "dns:edge-01.example.org");

  id = IdentityOf({{"https://example.org/edge"}, {}, {"edge-01"}, ""});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "cn:edge-01");
}

TEST(IdentityTest, NoIdentity) {
  ExpectRefused(IdentityOf({{}, {}, {}, "Example"}),
                "client certificate has no SPIFFE URI SAN, DNS SAN or CN");
  ExpectRefused(IdentityOf({{"https://example.org/edge"}, {}, {}, ""}),
                "client certificate has no SPIFFE URI SAN, DNS SAN or CN");
}

TEST(IdentityTest, SeveralCnsAreAmbiguous) {
  ExpectRefused(IdentityOf({{}, {}, {"a", "b"}, ""}), "several subject CNs");
  // With a SAN the CNs do not matter.
  absl::StatusOr<std::string> id = IdentityOf({{}, {"a.example"}, {"a", "b"}, ""});
  ASSERT_THAT(id, IsOk());
  EXPECT_EQ(*id, "dns:a.example");
}

TEST(IdentityTest, BadIdentitiesAreRefusedNotSkipped) {
  ExpectRefused(IdentityOf({{"spiffe://example.org/a\nb"}, {"ok.example"}, {}, ""}),
                "control characters");
  ExpectRefused(IdentityOf({{}, {"bad\x01.example"}, {}, ""}), "control characters");
  ExpectRefused(IdentityOf({{}, {}, {std::string("a\0b", 3)}, ""}), "control characters");
  ExpectRefused(
      IdentityOf({{"spiffe://example.org/" + std::string(1100, 'a')}, {}, {}, ""}),
      "longer than 1024 bytes");
  ExpectRefused(IdentityOf({{}, {"caf\xc3\xa9.example"}, {}, ""}), "not ASCII");
  // The limit counts the source prefix.
  ExpectRefused(IdentityOf({{}, {std::string(1021, 'a')}, {}, ""}),
                "longer than 1024 bytes");

  absl::StatusOr<std::string> longest =
      IdentityOf({{"spiffe://example.org/" + std::string(1024 - 21, 'a')}, {}, {}, ""});
  ASSERT_THAT(longest, IsOk());
  EXPECT_EQ(longest->size(), 1024u);
  absl::StatusOr<std::string> longest_dns =
      IdentityOf({{}, {std::string(1020, 'a')}, {}, ""});
  ASSERT_THAT(longest_dns, IsOk());
  EXPECT_EQ(longest_dns->size(), 1024u);
  // A CN may be UTF-8.
  absl::StatusOr<std::string> utf8 = IdentityOf({{}, {}, {"caf\xc3\xa9"}, ""});
  ASSERT_THAT(utf8, IsOk());
  EXPECT_EQ(*utf8, "cn:caf\xc3\xa9");
}

TEST(IdentityTest, GarbageIsInvalidArgument) {
  ExpectRefused(IdentityFromCertificatePem(""), "not a PEM certificate");
  ExpectRefused(IdentityFromCertificatePem("hello"), "not a PEM certificate");
  ExpectRefused(IdentityFromCertificatePem("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                           "-----END CERTIFICATE-----\n"),
                "not a PEM certificate");
  ExpectRefused(IdentityFromCertificateDer(""), "not a DER certificate");
  ExpectRefused(IdentityFromCertificateDer("\x30\x03\x02\x01\x01"),
                "not a DER certificate");

  X509Ptr cert = MakeCertificate({{kSpiffe}, {}, {}, ""});
  std::string der = CertificateDer(cert.get());
  ExpectRefused(IdentityFromCertificateDer(der.substr(0, der.size() - 1)),
                "not a DER certificate");
  ExpectRefused(IdentityFromCertificateDer(der + "x"), "trailing bytes");
  EXPECT_EQ(*IdentityFromCertificatePem("junk before\n" + Pem(cert.get())), kSpiffe);
  ExpectRefused(IdentityFromCertificate(nullptr), "no client certificate");
}

}  // namespace
}  // namespace offkey
