#include "base/pem.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/secret_bytes.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::SizeIs;

EvpPkeyPtr NewKey(const char* type) {
  if (std::string(type) == "RSA") {
    return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  }
  return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
}

// A self-signed certificate for `key` named CN=`name`.
X509Ptr SelfSigned(EVP_PKEY* key, const char* name) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME* subject = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(name), -1, -1, 0);
  X509_set_issuer_name(cert.get(), subject);
  X509_set_pubkey(cert.get(), key);
  X509_sign(cert.get(), key, EVP_sha256());
  return cert;
}

template <typename Write>
std::string Pem(Write write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_GT(write(bio.get()), 0);
  return BioContents(bio.get());
}

std::string CertPem(X509* cert) {
  return Pem([&](BIO* b) { return PEM_write_bio_X509(b, cert); });
}

std::string CrlPem(X509* issuer, EVP_PKEY* key) {
  X509_CRL* crl = X509_CRL_new();
  X509_CRL_set_version(crl, 1);
  X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer));
  ASN1_TIME* now = ASN1_TIME_adj(nullptr, time(nullptr), 0, 0);
  X509_CRL_set1_lastUpdate(crl, now);
  ASN1_TIME_free(now);
  X509_CRL_sign(crl, key, EVP_sha256());
  std::string pem = Pem([&](BIO* b) { return PEM_write_bio_X509_CRL(b, crl); });
  X509_CRL_free(crl);
  return pem;
}

std::string Pkcs8Pem(EVP_PKEY* key) {
  return Pem([&](BIO* b) {
    return PEM_write_bio_PKCS8PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
}

std::string Pkcs8Der(EVP_PKEY* key) {
  PKCS8_PRIV_KEY_INFO* info = EVP_PKEY2PKCS8(key);
  unsigned char* der = nullptr;
  const int len = i2d_PKCS8_PRIV_KEY_INFO(info, &der);
  std::string out(reinterpret_cast<char*>(der), len > 0 ? len : 0);
  OPENSSL_free(der);
  PKCS8_PRIV_KEY_INFO_free(info);
  return out;
}

std::string TraditionalPem(EVP_PKEY* key, const EVP_CIPHER* cipher = nullptr) {
  static char kPass[] = "correct horse";
  return Pem([&](BIO* b) {
    return PEM_write_bio_PrivateKey_traditional(
        b, key, cipher, cipher ? reinterpret_cast<unsigned char*>(kPass) : nullptr,
        cipher ? 13 : 0, nullptr, nullptr);
  });
}

class PemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ec_ = NewKey("EC");
    leaf_ = SelfSigned(ec_.get(), "leaf");
    ca_ = SelfSigned(ec_.get(), "ca");
  }
  // Every test ends with OpenSSL's error queue empty: failures included.
  void TearDown() override { EXPECT_EQ(ERR_peek_error(), 0u) << DrainOpenSslErrors(); }

  EvpPkeyPtr ec_;
  X509Ptr leaf_;
  X509Ptr ca_;
};

TEST_F(PemTest, ReadsACertificateChainInOrder) {
  const std::string text =
      absl::StrCat("leaf:\n", CertPem(leaf_.get()), "ca:\n", CertPem(ca_.get()));
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<PemBlock> blocks, ReadPem(text));
  ASSERT_THAT(blocks, SizeIs(2));
  EXPECT_EQ(blocks[0].type, PemType::kCertificate);
  EXPECT_EQ(blocks[0].label, "CERTIFICATE");
  EXPECT_EQ(blocks[0].der_view(), CertificateDer(leaf_.get()));

  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<std::string> ders,
                              ReadPemCertificatesDer(text));
  EXPECT_EQ(ders, (std::vector<std::string>{CertificateDer(leaf_.get()),
                                            CertificateDer(ca_.get())}));
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<X509Ptr> certs, ReadPemCertificates(text));
  ASSERT_THAT(certs, SizeIs(2));
  EXPECT_EQ(X509_cmp(certs[0].get(), leaf_.get()), 0);
  EXPECT_EQ(X509_cmp(certs[1].get(), ca_.get()), 0);
}

TEST_F(PemTest, TypesEveryKnownLabel) {
  const std::string text = absl::StrCat(
      CertPem(leaf_.get()), CrlPem(ca_.get(), ec_.get()), Pkcs8Pem(ec_.get()),
      TraditionalPem(ec_.get()),
      Pem([&](BIO* b) { return PEM_write_bio_PUBKEY(b, ec_.get()); }),
      "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
      "-----BEGIN OFFKEY KEY REFERENCE-----\nAAAA\n-----END OFFKEY KEY REFERENCE-----\n");
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<PemBlock> blocks, ReadPem(text));
  ASSERT_THAT(blocks, SizeIs(7));
  EXPECT_EQ(blocks[0].type, PemType::kCertificate);
  EXPECT_EQ(blocks[1].type, PemType::kX509Crl);
  EXPECT_EQ(blocks[2].type, PemType::kPrivateKey);
  EXPECT_EQ(blocks[3].type, PemType::kEcPrivateKey);
  EXPECT_EQ(blocks[4].type, PemType::kPublicKey);
  EXPECT_EQ(blocks[5].type, PemType::kCertificateRequest);
  EXPECT_EQ(blocks[6].type, PemType::kOther);
  EXPECT_EQ(blocks[6].label, "OFFKEY KEY REFERENCE");
  EXPECT_EQ(blocks[6].der_view(), std::string("\0\0\0", 3));
  // Keys live only in the wiping buffer.
  EXPECT_TRUE(blocks[2].der.empty());
  EXPECT_EQ(blocks[2].secret_der.view(), Pkcs8Der(ec_.get()));
  EXPECT_TRUE(blocks[0].secret_der.empty());
  EXPECT_EQ(PemTypeLabel(PemType::kX509Crl), "X509 CRL");
  EXPECT_EQ(PemTypeLabel(PemType::kOther), "");
}

TEST_F(PemTest, ReadsCrls) {
  const std::string text =
      absl::StrCat(CrlPem(ca_.get(), ec_.get()), CrlPem(leaf_.get(), ec_.get()));
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<X509CrlPtr> crls, ReadPemCrls(text));
  ASSERT_THAT(crls, SizeIs(2));
  EXPECT_EQ(
      X509_NAME_cmp(X509_CRL_get_issuer(crls[0].get()), X509_get_subject_name(ca_.get())),
      0);
  EXPECT_THAT(ReadPemCrls(CertPem(ca_.get())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("only X509 CRL blocks belong here")));
}

TEST_F(PemTest, PrivateKeysComeOutAsPkcs8) {
  EvpPkeyPtr rsa = NewKey("RSA");
  for (EVP_PKEY* key : {ec_.get(), rsa.get()}) {
    SCOPED_TRACE(EVP_PKEY_get0_type_name(key));
    const std::string expected = Pkcs8Der(key);
    for (const std::string& pem : {Pkcs8Pem(key), TraditionalPem(key)}) {
      OFFKEY_ASSERT_OK_AND_ASSIGN(SecretBytes der, ReadPemPrivateKey(pem));
      EXPECT_EQ(der.view(), expected);
      OFFKEY_ASSERT_OK_AND_ASSIGN(EvpPkeyPtr parsed, ParsePkcs8PrivateKey(der));
      EXPECT_EQ(EVP_PKEY_eq(parsed.get(), key), 1);
    }
  }
  EXPECT_THAT(ParsePkcs8PrivateKey(SecretBytes(absl::string_view("junk"))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("PKCS#8")));
}

TEST_F(PemTest, PrivateKeyRefusals) {
  const std::string encrypted = Pem([&](BIO* b) {
    return PEM_write_bio_PKCS8PrivateKey(b, ec_.get(), EVP_aes_128_cbc(), nullptr, 0,
                                         nullptr, const_cast<char*>("correct horse"));
  });
  EXPECT_THAT(ReadPemPrivateKey(encrypted),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'ENCRYPTED PRIVATE KEY' block is encrypted")));
  EXPECT_THAT(ReadPemPrivateKey(TraditionalPem(ec_.get(), EVP_aes_128_cbc())),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is encrypted")));
  EXPECT_THAT(ReadPemPrivateKey(Pkcs8Pem(ec_.get()) + Pkcs8Pem(ec_.get())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 private keys; expected one")));
  EXPECT_THAT(ReadPemPrivateKey(CertPem(leaf_.get())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PEM block 1 is 'CERTIFICATE'")));
  PemOptions skip;
  skip.skip_other_types = true;
  EXPECT_THAT(ReadPemPrivateKey(CertPem(leaf_.get()), skip),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no PRIVATE KEY PEM block found")));
  EXPECT_THAT(ReadPemPrivateKey(CertPem(leaf_.get()) + Pkcs8Pem(ec_.get()), skip),
              IsOk());
  EXPECT_THAT(
      ReadPemPrivateKey("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("does not parse as PKCS#8")));
  EXPECT_THAT(
      ReadPemPrivateKey(
          "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("does not parse as a private key")));
}

TEST_F(PemTest, MixedTypesAreRefusedOrSkipped) {
  const std::string text = absl::StrCat(
      CertPem(leaf_.get()),
      "-----BEGIN PUBLIC KEY-----\nAA==\n-----END PUBLIC KEY-----\n", CertPem(ca_.get()));
  EXPECT_THAT(ReadPemCertificates(text),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PEM block 2 is 'PUBLIC KEY'; only CERTIFICATE blocks "
                                 "belong here")));
  PemOptions skip;
  skip.skip_other_types = true;
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<X509Ptr> certs,
                              ReadPemCertificates(text, skip));
  EXPECT_THAT(certs, SizeIs(2));
}

TEST_F(PemTest, RefusesEmptyGarbageAndTruncatedInput) {
  for (const std::string& text :
       {std::string(), std::string("hello"), std::string("-----BEGIN CERT"),
        std::string("\0\0\0", 3)}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ReadPem(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("no PEM block found")));
    EXPECT_THAT(ReadPemCertificates(text), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(ReadPemPrivateKey(text), StatusIs(absl::StatusCode::kInvalidArgument));
  }
  const std::string cert = CertPem(leaf_.get());
  const std::string truncated = cert.substr(0, cert.size() / 2);
  EXPECT_THAT(ReadPem(cert + truncated),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PEM block 2 is truncated or corrupt")));
  EXPECT_THAT(ReadPem("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PEM block 1 is truncated or corrupt")));
  EXPECT_THAT(ReadPem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END PUBLIC KEY-----\n"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A well-formed block whose body is not a certificate.
  EXPECT_THAT(ReadPemCertificates(
                  "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("certificate 1 does not parse")));
  // Trailing bytes after the certificate's DER.
  const std::string padded = CertificateDer(leaf_.get()) + "x";
  const std::string padded_pem = Pem([&](BIO* b) {
    return PEM_write_bio(b, "CERTIFICATE", "",
                         reinterpret_cast<const unsigned char*>(padded.data()),
                         static_cast<long>(padded.size()));  // NOLINT(runtime/int)
  });
  EXPECT_THAT(ReadPemCertificates(padded_pem),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not parse")));
  // Text around and between blocks is skipped, as OpenSSL always has.
  EXPECT_THAT(ReadPemCertificates(absl::StrCat("subject=CN = leaf\n", cert,
                                               "\n# comment\n", cert, "trailing\n")),
              IsOk());
}

TEST_F(PemTest, CapsInputSizeAndBlockCount) {
  const std::string cert = CertPem(leaf_.get());
  PemOptions small;
  small.max_input_bytes = cert.size() - 1;
  EXPECT_THAT(ReadPem(cert, small),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("at most ", cert.size() - 1))));
  EXPECT_THAT(ReadPem(std::string((size_t{1} << 20) + 1, 'x')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("at most 1048576")));
  PemOptions few;
  few.max_blocks = 2;
  EXPECT_THAT(ReadPem(cert + cert, few), IsOk());
  EXPECT_THAT(
      ReadPem(cert + cert + cert, few),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 2 blocks")));
}

TEST_F(PemTest, ReadsTheSameWithoutSecureBuffers) {
  PemOptions plain;
  plain.secure = false;
  const std::string text = CertPem(leaf_.get()) + Pkcs8Pem(ec_.get());
  OFFKEY_ASSERT_OK_AND_ASSIGN(std::vector<PemBlock> blocks, ReadPem(text, plain));
  ASSERT_THAT(blocks, SizeIs(2));
  EXPECT_EQ(blocks[0].der_view(), CertificateDer(leaf_.get()));
  EXPECT_EQ(blocks[1].secret_der.view(), Pkcs8Der(ec_.get()));
  EXPECT_THAT(ReadPem("-----BEGIN X-----\n!!\n-----END X-----\n", plain),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("corrupt")));
}

TEST(PemLooksLikeTest, SaysWhetherTextIsPem) {
  EXPECT_TRUE(LooksLikePem("x\n-----BEGIN CERTIFICATE-----\n"));
  EXPECT_FALSE(LooksLikePem("\x30\x82"));
}

}  // namespace
}  // namespace offkey
