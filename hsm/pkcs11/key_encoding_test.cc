// Checks the encodings against OpenSSL's own encoders and against known answers.
#include "hsm/pkcs11/key_encoding.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "base/openssl_util.h"
#include "base/testing/status_matchers.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"
#include "hsm/openssl_key.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

using ::offkey::testing::Contains;

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }
std::string Unhex(absl::string_view hex) { return absl::HexStringToBytes(hex); }

std::string Bytes(const unsigned char* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

std::string Bn(const BIGNUM* bn) {
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// What OpenSSL itself writes for `pkey`: the expected SubjectPublicKeyInfo.
std::string OpenSslSpki(EVP_PKEY* pkey) {
  std::string out = SpkiDer(pkey);
  EXPECT_FALSE(out.empty());
  return out;
}

std::string EncodedPublicKey(EVP_PKEY* pkey) {
  size_t len = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                            nullptr, 0, &len),
            1);
  std::string out(len, '\0');
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                            reinterpret_cast<unsigned char*>(out.data()),
                                            out.size(), &len),
            1);
  out.resize(len);
  return out;
}

// SHA-1 over the subjectPublicKey BIT STRING contents, computed from the EVP_PKEY
// rather than from any DER the code under test produced.
std::string IndependentSki(EVP_PKEY* pkey) {
  X509_PUBKEY* pub = nullptr;
  EXPECT_EQ(X509_PUBKEY_set(&pub, pkey), 1);
  std::unique_ptr<X509_PUBKEY, decltype(&X509_PUBKEY_free)> owner(pub, X509_PUBKEY_free);
  const unsigned char* bits = nullptr;
  int bits_len = 0;
  EXPECT_EQ(X509_PUBKEY_get0_param(nullptr, &bits, &bits_len, nullptr, pub), 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EXPECT_EQ(
      EVP_Digest(bits, static_cast<size_t>(bits_len), md, &md_len, EVP_sha1(), nullptr),
      1);
  return Bytes(md, md_len);
}

// The DER of an OBJECT IDENTIFIER as OpenSSL encodes it.
std::string OidDer(int nid) {
  const ASN1_OBJECT* obj = OBJ_nid2obj(nid);
  int len = i2d_ASN1_OBJECT(obj, nullptr);
  EXPECT_GT(len, 0);
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_ASN1_OBJECT(obj, &p);
  return out;
}

// The DER of an OCTET STRING as OpenSSL encodes it.
std::string OctetStringDer(absl::string_view contents) {
  std::unique_ptr<ASN1_OCTET_STRING, decltype(&ASN1_OCTET_STRING_free)> os(
      ASN1_OCTET_STRING_new(), ASN1_OCTET_STRING_free);
  EXPECT_EQ(ASN1_OCTET_STRING_set(os.get(),
                                  reinterpret_cast<const unsigned char*>(contents.data()),
                                  static_cast<int>(contents.size())),
            1);
  int len = i2d_ASN1_OCTET_STRING(os.get(), nullptr);
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_ASN1_OCTET_STRING(os.get(), &p);
  return out;
}

// A DigestInfo built by OpenSSL's ASN.1 encoder (X509_SIG is the same structure).
std::string OpenSslDigestInfo(int nid, absl::string_view digest) {
  std::unique_ptr<X509_SIG, decltype(&X509_SIG_free)> sig(X509_SIG_new(), X509_SIG_free);
  X509_ALGOR* alg = nullptr;
  ASN1_OCTET_STRING* os = nullptr;
  X509_SIG_getm(sig.get(), &alg, &os);
  EXPECT_EQ(X509_ALGOR_set0(alg, OBJ_nid2obj(nid), V_ASN1_NULL, nullptr), 1);
  EXPECT_EQ(
      ASN1_OCTET_STRING_set(os, reinterpret_cast<const unsigned char*>(digest.data()),
                            static_cast<int>(digest.size())),
      1);
  int len = i2d_X509_SIG(sig.get(), nullptr);
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_X509_SIG(sig.get(), &p);
  return out;
}

std::string Pattern(size_t n, unsigned char seed) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(seed + 7 * i);
  return out;
}

struct EcCase {
  KeyAlgorithm algorithm;
  const char* group;
  int nid;
  size_t point_length;
};

constexpr EcCase kEcCases[] = {
    {KeyAlgorithm::kEcP256, "P-256", NID_X9_62_prime256v1, 65},
    {KeyAlgorithm::kEcP384, "P-384", NID_secp384r1, 97},
    {KeyAlgorithm::kEcP521, "P-521", NID_secp521r1, 133},
};

// RFC 8032 section 7.1, test 1.
constexpr char kEd25519TestKey[] =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

TEST(KeyEncodingTest, EcParamsAreTheCurveOids) {
  for (const EcCase& c : kEcCases) {
    EXPECT_EQ(Hex(EcParamsFor(c.algorithm)), Hex(OidDer(c.nid))) << c.group;
  }
  EXPECT_EQ(Hex(EcParamsFor(KeyAlgorithm::kEd25519)), Hex(OidDer(NID_ED25519)));
  EXPECT_EQ(Hex(EcParamsFor(KeyAlgorithm::kEcP256)), "06082a8648ce3d030107");
  EXPECT_EQ(Hex(EcParamsFor(KeyAlgorithm::kEd25519)), "06032b6570");
  EXPECT_TRUE(EcParamsFor(KeyAlgorithm::kRsa2048).empty());
  EXPECT_TRUE(EcParamsFor(KeyAlgorithm::kUnknown).empty());
}

TEST(KeyEncodingTest, EcParamsRoundTrip) {
  for (KeyAlgorithm algorithm : {KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384,
                                 KeyAlgorithm::kEcP521, KeyAlgorithm::kEd25519}) {
    EXPECT_EQ(AlgorithmFromEcParams(EcParamsFor(algorithm)), algorithm)
        << KeyAlgorithmName(algorithm);
  }
}

TEST(KeyEncodingTest, Ed25519PrintableStringParams) {
  std::string printable = std::string("\x13\x0c", 2) + "edwards25519";
  ASSERT_EQ(printable.size(), 14u);
  EXPECT_EQ(AlgorithmFromEcParams(printable), KeyAlgorithm::kEd25519);
  // Wrong length byte, other curve name, or the bare text are not accepted.
  EXPECT_EQ(AlgorithmFromEcParams(std::string("\x13\x0b", 2) + "edwards25519"),
            KeyAlgorithm::kUnknown);
  EXPECT_EQ(AlgorithmFromEcParams(std::string("\x13\x0a", 2) + "edwards448"),
            KeyAlgorithm::kUnknown);
  EXPECT_EQ(AlgorithmFromEcParams("edwards25519"), KeyAlgorithm::kUnknown);
}

TEST(KeyEncodingTest, UnknownEcParams) {
  EXPECT_EQ(AlgorithmFromEcParams(""), KeyAlgorithm::kUnknown);
  EXPECT_EQ(AlgorithmFromEcParams(OidDer(NID_secp256k1)), KeyAlgorithm::kUnknown);
  EXPECT_EQ(AlgorithmFromEcParams(OidDer(NID_ED448)), KeyAlgorithm::kUnknown);
  std::string p256 = std::string(EcParamsFor(KeyAlgorithm::kEcP256));
  EXPECT_EQ(AlgorithmFromEcParams(p256.substr(0, p256.size() - 1)),
            KeyAlgorithm::kUnknown);
  EXPECT_EQ(AlgorithmFromEcParams(p256 + std::string(1, '\0')), KeyAlgorithm::kUnknown);
}

TEST(KeyEncodingTest, PublicPointLengths) {
  EXPECT_EQ(PublicPointLength(KeyAlgorithm::kEcP256), 65u);
  EXPECT_EQ(PublicPointLength(KeyAlgorithm::kEcP384), 97u);
  EXPECT_EQ(PublicPointLength(KeyAlgorithm::kEcP521), 133u);
  EXPECT_EQ(PublicPointLength(KeyAlgorithm::kEd25519), 32u);
  EXPECT_EQ(PublicPointLength(KeyAlgorithm::kRsa2048), 0u);
  EXPECT_EQ(PublicPointLength(KeyAlgorithm::kUnknown), 0u);
}

TEST(KeyEncodingTest, UnwrapBarePoint) {
  for (const EcCase& c : kEcCases) {
    std::string point = std::string(1, '\x04') + Pattern(c.point_length - 1, 3);
    absl::StatusOr<std::string> out = UnwrapEcPoint(point, c.algorithm);
    ASSERT_THAT(out, IsOk());
    EXPECT_EQ(Hex(*out), Hex(point)) << c.group;
  }
  std::string ed = Pattern(32, 9);
  absl::StatusOr<std::string> out = UnwrapEcPoint(ed, KeyAlgorithm::kEd25519);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(Hex(*out), Hex(ed));
}

TEST(KeyEncodingTest, UnwrapDerWrappedPoint) {
  for (const EcCase& c : kEcCases) {
    std::string point = std::string(1, '\x04') + Pattern(c.point_length - 1, 5);
    std::string wrapped = OctetStringDer(point);
    absl::StatusOr<std::string> out = UnwrapEcPoint(wrapped, c.algorithm);
    ASSERT_THAT(out, IsOk());
    EXPECT_EQ(Hex(*out), Hex(point)) << c.group;
  }
  // P-521's 133-byte point needs the long length form: 04 81 85.
  std::string p521 = std::string(1, '\x04') + Pattern(132, 1);
  std::string wrapped = std::string("\x04\x81\x85", 3) + p521;
  ASSERT_EQ(wrapped, OctetStringDer(p521));
  absl::StatusOr<std::string> out = UnwrapEcPoint(wrapped, KeyAlgorithm::kEcP521);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(Hex(*out), Hex(p521));

  std::string ed = Pattern(32, 11);
  out = UnwrapEcPoint(std::string("\x04\x20", 2) + ed, KeyAlgorithm::kEd25519);
  ASSERT_THAT(out, IsOk());
  EXPECT_EQ(Hex(*out), Hex(ed));
}

TEST(KeyEncodingTest, UnwrapRefusesWrongLengthsAndHeaders) {
  std::string p256 = std::string(1, '\x04') + Pattern(64, 2);
  auto expect_refused = [](absl::string_view value, KeyAlgorithm algorithm,
                           absl::string_view fragment) {
    absl::StatusOr<std::string> out = UnwrapEcPoint(value, algorithm);
    ASSERT_FALSE(out.ok()) << Hex(value);
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << Hex(value);
    EXPECT_TRUE(Contains(out.status().message(), fragment));
  };
  // A P-384 point offered as P-256, and the other way round.
  expect_refused(std::string(1, '\x04') + Pattern(96, 2), KeyAlgorithm::kEcP256,
                 "ec-p256");
  expect_refused(p256, KeyAlgorithm::kEcP384, "ec-p384");
  expect_refused(p256.substr(0, 64), KeyAlgorithm::kEcP256, "64 bytes");
  expect_refused("", KeyAlgorithm::kEd25519, "ed25519");
  // Right size for a wrapped point, wrong header.
  expect_refused(std::string("\x03\x41", 2) + p256, KeyAlgorithm::kEcP256, "67 bytes");
  expect_refused(std::string("\x04\x40", 2) + p256, KeyAlgorithm::kEcP256, "ec-p256");
  // P-521 with a short-form length (not DER) or a wrong long-form length.
  std::string p521 = std::string(1, '\x04') + Pattern(132, 1);
  expect_refused(std::string("\x04\x85", 2) + p521, KeyAlgorithm::kEcP521, "ec-p521");
  expect_refused(std::string("\x04\x81\x84", 3) + p521, KeyAlgorithm::kEcP521, "ec-p521");
  expect_refused(std::string("\x04\x82\x85", 3) + p521, KeyAlgorithm::kEcP521, "ec-p521");
  // Not a point-bearing key type at all.
  expect_refused(p256, KeyAlgorithm::kRsa2048, "not an EC");
}

TEST(KeyEncodingTest, WrapMatchesOpenSslAndRoundTrips) {
  for (const EcCase& c : kEcCases) {
    std::string point = std::string(1, '\x04') + Pattern(c.point_length - 1, 17);
    std::string wrapped = WrapEcPoint(point);
    EXPECT_EQ(Hex(wrapped), Hex(OctetStringDer(point))) << c.group;
    absl::StatusOr<std::string> back = UnwrapEcPoint(wrapped, c.algorithm);
    ASSERT_THAT(back, IsOk());
    EXPECT_EQ(Hex(*back), Hex(point)) << c.group;
  }
  std::string ed = Pattern(32, 23);
  EXPECT_EQ(Hex(WrapEcPoint(ed)), "0420" + Hex(ed));
  absl::StatusOr<std::string> back =
      UnwrapEcPoint(WrapEcPoint(ed), KeyAlgorithm::kEd25519);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(Hex(*back), Hex(ed));
  // The boundary between the short and long forms.
  EXPECT_EQ(Hex(WrapEcPoint(Pattern(127, 1))), Hex(OctetStringDer(Pattern(127, 1))));
  EXPECT_EQ(Hex(WrapEcPoint(Pattern(128, 1))), Hex(OctetStringDer(Pattern(128, 1))));
}

TEST(KeyEncodingTest, RsaSpkiMatchesOpenSsl) {
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)));
  ASSERT_NE(pkey, nullptr) << DrainOpenSslErrors();
  BIGNUM* n = nullptr;
  BIGNUM* e = nullptr;
  ASSERT_EQ(EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N, &n), 1);
  BignumPtr n_owner(n);
  ASSERT_EQ(EVP_PKEY_get_bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_E, &e), 1);
  BignumPtr e_owner(e);
  std::string modulus = Bn(n);
  std::string exponent = Bn(e);
  ASSERT_EQ(modulus.size(), 256u);
  std::string want = OpenSslSpki(pkey.get());

  absl::StatusOr<std::string> spki = RsaSpki(modulus, exponent);
  ASSERT_THAT(spki, IsOk());
  EXPECT_EQ(Hex(*spki), Hex(want));

  // Modules may hand back big-endian integers with leading zero bytes.
  absl::StatusOr<std::string> padded =
      RsaSpki(std::string(1, '\0') + modulus, std::string(2, '\0') + exponent);
  ASSERT_THAT(padded, IsOk());
  EXPECT_EQ(Hex(*padded), Hex(want));

  absl::StatusOr<std::string> ski = SkiOfSpki(*spki);
  ASSERT_THAT(ski, IsOk());
  EXPECT_EQ(ski->size(), 20u);
  EXPECT_EQ(Hex(*ski), Hex(IndependentSki(pkey.get())));
}

TEST(KeyEncodingTest, EcSpkiMatchesOpenSsl) {
  for (const EcCase& c : kEcCases) {
    EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", c.group));
    ASSERT_NE(pkey, nullptr) << c.group << ": " << DrainOpenSslErrors();
    std::string point = EncodedPublicKey(pkey.get());
    ASSERT_EQ(point.size(), c.point_length) << c.group;
    ASSERT_EQ(point[0], '\x04') << c.group;  // Uncompressed.

    absl::StatusOr<std::string> spki = EcSpki(c.algorithm, point);
    ASSERT_THAT(spki, IsOk());
    EXPECT_EQ(Hex(*spki), Hex(OpenSslSpki(pkey.get()))) << c.group;

    absl::StatusOr<std::string> ski = SkiOfSpki(*spki);
    ASSERT_THAT(ski, IsOk());
    EXPECT_EQ(ski->size(), 20u);
    EXPECT_EQ(Hex(*ski), Hex(IndependentSki(pkey.get()))) << c.group;
  }
}

TEST(KeyEncodingTest, EcSpkiRefusesBadInput) {
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  ASSERT_NE(pkey, nullptr);
  std::string point = EncodedPublicKey(pkey.get());

  absl::StatusOr<std::string> spki = EcSpki(KeyAlgorithm::kEd25519, point);
  ASSERT_FALSE(spki.ok());
  EXPECT_EQ(spki.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(spki.status().message(), "not an EC"));

  spki = EcSpki(KeyAlgorithm::kRsa2048, point);
  ASSERT_FALSE(spki.ok());
  EXPECT_EQ(spki.status().code(), absl::StatusCode::kInvalidArgument);

  // A P-256 point claimed to be on P-384.
  spki = EcSpki(KeyAlgorithm::kEcP384, point);
  ASSERT_FALSE(spki.ok());
  EXPECT_EQ(spki.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(spki.status().message(), "EC public key"));

  // A point off the curve (y changed) and a truncated point.
  std::string off = point;
  off.back() = static_cast<char>(off.back() ^ 1);
  spki = EcSpki(KeyAlgorithm::kEcP256, off);
  ASSERT_FALSE(spki.ok());
  EXPECT_EQ(spki.status().code(), absl::StatusCode::kInvalidArgument);
  spki = EcSpki(KeyAlgorithm::kEcP256, point.substr(0, 64));
  ASSERT_FALSE(spki.ok());
  EXPECT_EQ(spki.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KeyEncodingTest, Ed25519SpkiMatchesOpenSsl) {
  EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ASSERT_NE(pkey, nullptr) << DrainOpenSslErrors();
  unsigned char raw[32];
  size_t raw_len = sizeof(raw);
  ASSERT_EQ(EVP_PKEY_get_raw_public_key(pkey.get(), raw, &raw_len), 1);
  ASSERT_EQ(raw_len, 32u);

  absl::StatusOr<std::string> spki = Ed25519Spki(Bytes(raw, raw_len));
  ASSERT_THAT(spki, IsOk());
  EXPECT_EQ(Hex(*spki), Hex(OpenSslSpki(pkey.get())));

  absl::StatusOr<std::string> ski = SkiOfSpki(*spki);
  ASSERT_THAT(ski, IsOk());
  EXPECT_EQ(ski->size(), 20u);
  EXPECT_EQ(Hex(*ski), Hex(IndependentSki(pkey.get())));
  // For Ed25519 the BIT STRING holds exactly the raw key.
  absl::StatusOr<std::string> digest = Digest(HashAlgorithm::kSha1, Bytes(raw, raw_len));
  ASSERT_THAT(digest, IsOk());
  EXPECT_EQ(Hex(*ski), Hex(*digest));
}

TEST(KeyEncodingTest, Ed25519KnownAnswers) {
  // RFC 8410 section 4: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }.
  std::string key = Unhex(kEd25519TestKey);
  absl::StatusOr<std::string> spki = Ed25519Spki(key);
  ASSERT_THAT(spki, IsOk());
  EXPECT_EQ(Hex(*spki), std::string("302a300506032b6570032100") + kEd25519TestKey);
  // SHA-1 of the key bytes, computed outside this code base (Python hashlib).
  absl::StatusOr<std::string> ski = SkiOfSpki(*spki);
  ASSERT_THAT(ski, IsOk());
  EXPECT_EQ(Hex(*ski), "5b27aa5589179770e47575b162a1ded97b8bfc6d");
}

TEST(KeyEncodingTest, Ed25519SpkiRefusesWrongLength) {
  for (size_t n : {0, 31, 33, 64}) {
    absl::StatusOr<std::string> spki = Ed25519Spki(Pattern(n, 1));
    ASSERT_FALSE(spki.ok()) << n;
    EXPECT_EQ(spki.status().code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_TRUE(Contains(spki.status().message(), "Ed25519"));
  }
}

TEST(KeyEncodingTest, SkiOfSpkiRefusesGarbage) {
  for (absl::string_view bad :
       {absl::string_view(""), absl::string_view("not der"),
        absl::string_view("\x30\x00", 2), absl::string_view(kEd25519TestKey)}) {
    absl::StatusOr<std::string> ski = SkiOfSpki(bad);
    ASSERT_FALSE(ski.ok()) << Hex(bad);
    EXPECT_EQ(ski.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(ski.status().message(), "SubjectPublicKeyInfo"));
  }
  // Truncated SPKI.
  absl::StatusOr<std::string> spki = Ed25519Spki(Unhex(kEd25519TestKey));
  ASSERT_THAT(spki, IsOk());
  absl::StatusOr<std::string> ski = SkiOfSpki(spki->substr(0, spki->size() - 1));
  ASSERT_FALSE(ski.ok());
  EXPECT_EQ(ski.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KeyEncodingTest, DigestMatchesEvpDigest) {
  struct Case {
    HashAlgorithm hash;
    const EVP_MD* md;
  };
  const Case cases[] = {{HashAlgorithm::kSha1, EVP_sha1()},
                        {HashAlgorithm::kSha256, EVP_sha256()},
                        {HashAlgorithm::kSha384, EVP_sha384()},
                        {HashAlgorithm::kSha512, EVP_sha512()}};
  std::string message = std::string("message with a NUL\0inside", 25);
  for (const Case& c : cases) {
    absl::StatusOr<std::string> digest = Digest(c.hash, message);
    ASSERT_THAT(digest, IsOk());
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    ASSERT_EQ(EVP_Digest(message.data(), message.size(), md, &md_len, c.md, nullptr), 1);
    EXPECT_EQ(digest->size(), md_len) << HashName(c.hash);
    EXPECT_EQ(digest->size(), HashLength(c.hash)) << HashName(c.hash);
    EXPECT_EQ(Hex(*digest), Hex(Bytes(md, md_len))) << HashName(c.hash);
  }
}

TEST(KeyEncodingTest, DigestKnownAnswers) {
  absl::StatusOr<std::string> sha256 = Digest(HashAlgorithm::kSha256, "abc");
  ASSERT_THAT(sha256, IsOk());
  EXPECT_EQ(Hex(*sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  absl::StatusOr<std::string> sha1 = Digest(HashAlgorithm::kSha1, "abc");
  ASSERT_THAT(sha1, IsOk());
  EXPECT_EQ(Hex(*sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
  absl::StatusOr<std::string> empty = Digest(HashAlgorithm::kSha256, "");
  ASSERT_THAT(empty, IsOk());
  EXPECT_EQ(Hex(*empty),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(KeyEncodingTest, DigestRefusesNoHash) {
  absl::StatusOr<std::string> digest = Digest(HashAlgorithm::kNone, "abc");
  ASSERT_FALSE(digest.ok());
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(digest.status().message(), "hash"));
}

TEST(KeyEncodingTest, DigestInfoSha256IsRfc8017Prefix) {
  absl::StatusOr<std::string> digest = Digest(HashAlgorithm::kSha256, "abc");
  ASSERT_THAT(digest, IsOk());
  absl::StatusOr<std::string> info = DigestInfo(HashAlgorithm::kSha256, *digest);
  ASSERT_THAT(info, IsOk());
  // RFC 8017 section 9.2, note 1.
  EXPECT_EQ(Hex(*info), "3031300d060960864801650304020105000420" + Hex(*digest));
}

TEST(KeyEncodingTest, DigestInfoMatchesOpenSslEncoder) {
  struct Case {
    HashAlgorithm hash;
    int nid;
  };
  const Case cases[] = {{HashAlgorithm::kSha1, NID_sha1},
                        {HashAlgorithm::kSha256, NID_sha256},
                        {HashAlgorithm::kSha384, NID_sha384},
                        {HashAlgorithm::kSha512, NID_sha512}};
  for (const Case& c : cases) {
    absl::StatusOr<std::string> digest = Digest(c.hash, "to be signed");
    ASSERT_THAT(digest, IsOk());
    absl::StatusOr<std::string> info = DigestInfo(c.hash, *digest);
    ASSERT_THAT(info, IsOk());
    EXPECT_EQ(Hex(*info), Hex(OpenSslDigestInfo(c.nid, *digest))) << HashName(c.hash);
  }
}

TEST(KeyEncodingTest, DigestInfoRefusesWrongLengthAndNoHash) {
  absl::StatusOr<std::string> info = DigestInfo(HashAlgorithm::kSha256, Pattern(31, 1));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(info.status().message(), "sha256"));
  EXPECT_TRUE(Contains(info.status().message(), "32"));
  EXPECT_TRUE(Contains(info.status().message(), "31"));

  // A SHA-384 digest passed off as SHA-256.
  info = DigestInfo(HashAlgorithm::kSha256, Pattern(48, 1));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);

  info = DigestInfo(HashAlgorithm::kSha1, "");
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);

  info = DigestInfo(HashAlgorithm::kNone, Pattern(32, 1));
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kInvalidArgument);
}

// Parses `der` as an Ecdsa-Sig-Value and expects it to hold r and s of `raw`.
void ExpectSigHolds(absl::string_view der, absl::string_view raw) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())), ECDSA_SIG_free);
  ASSERT_NE(sig, nullptr) << Hex(der);
  EXPECT_EQ(p, reinterpret_cast<const unsigned char*>(der.data()) + der.size())
      << "trailing bytes in " << Hex(der);
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  size_t half = raw.size() / 2;
  BignumPtr want_r(BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()),
                             static_cast<int>(half), nullptr));
  BignumPtr want_s(BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + half,
                             static_cast<int>(half), nullptr));
  EXPECT_EQ(BN_cmp(r, want_r.get()), 0) << Hex(der);
  EXPECT_EQ(BN_cmp(s, want_s.get()), 0) << Hex(der);
  // DER is canonical: re-encoding what was parsed gives the same bytes.
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  std::string again(static_cast<size_t>(len), '\0');
  auto* q = reinterpret_cast<unsigned char*>(again.data());
  i2d_ECDSA_SIG(sig.get(), &q);
  EXPECT_EQ(Hex(again), Hex(der));
}

TEST(KeyEncodingTest, EcdsaRawToDerRoundTrips) {
  for (size_t half : {32, 48, 66}) {
    std::string raw = Pattern(2 * half, 0x41);
    absl::StatusOr<std::string> der = EcdsaRawToDer(raw);
    ASSERT_THAT(der, IsOk());
    ExpectSigHolds(*der, raw);
  }
}

TEST(KeyEncodingTest, EcdsaRawToDerHighBitGetsZeroPad) {
  std::string r = std::string(1, '\x80') + Pattern(31, 2);
  std::string s = std::string(1, '\x01') + Pattern(31, 3);
  absl::StatusOr<std::string> der = EcdsaRawToDer(r + s);
  ASSERT_THAT(der, IsOk());
  ExpectSigHolds(*der, r + s);
  // r is a positive INTEGER: 02 21 00 80..., s needs no pad: 02 20 01...
  EXPECT_EQ(Hex(der->substr(0, 5)), "3045022100");
  EXPECT_EQ(Hex(der->substr(5, 32)), Hex(r));
  EXPECT_EQ(Hex(der->substr(37, 3)), "022001");
}

TEST(KeyEncodingTest, EcdsaRawToDerStripsLeadingZeros) {
  std::string r = std::string(3, '\0') + Pattern(29, 0x10);
  std::string s = std::string(2, '\0') + std::string(1, '\x90') + Pattern(29, 0x20);
  absl::StatusOr<std::string> der = EcdsaRawToDer(r + s);
  ASSERT_THAT(der, IsOk());
  ExpectSigHolds(*der, r + s);

  // r = 1, s = 0x80000000: 30 0a 02 01 01 02 05 00 80 00 00 00.
  std::string small =
      std::string("\x00\x00\x00\x01", 4) + std::string("\x80\x00\x00\x00", 4);
  der = EcdsaRawToDer(small);
  ASSERT_THAT(der, IsOk());
  EXPECT_EQ(Hex(*der),
            "300a020101020500"
            "80000000");
  ExpectSigHolds(*der, small);
}

TEST(KeyEncodingTest, EcdsaRawToDerRefusesOddOrEmpty) {
  absl::StatusOr<std::string> der = EcdsaRawToDer(Pattern(63, 1));
  ASSERT_FALSE(der.ok());
  // A module sending an odd-length r||s is a device fault, not a caller error.
  EXPECT_EQ(der.status().code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(Contains(der.status().message(), "63 bytes"));

  der = EcdsaRawToDer("");
  ASSERT_FALSE(der.ok());
  EXPECT_EQ(der.status().code(), absl::StatusCode::kInternal);
}

// --- ImportedKeyFromPkcs8 ---

SecretBytes Pkcs8Of(EVP_PKEY* key) {
  std::unique_ptr<PKCS8_PRIV_KEY_INFO, decltype(&PKCS8_PRIV_KEY_INFO_free)> p8(
      EVP_PKEY2PKCS8(key), PKCS8_PRIV_KEY_INFO_free);
  unsigned char* der = nullptr;
  int len = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &der);
  if (len <= 0) return SecretBytes();
  SecretBytes out(der, static_cast<size_t>(len));
  OPENSSL_clear_free(der, static_cast<size_t>(len));
  return out;
}

std::string BnParamOf(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) return "";
  std::string out = Bn(bn);
  BN_clear_free(bn);
  return out;
}

// The attribute `type` of `attrs`, or "<missing>".
std::string Attr(const std::vector<KeyAttribute>& attrs, CK_ATTRIBUTE_TYPE type) {
  for (const KeyAttribute& a : attrs) {
    if (a.type == type) return std::string(a.value.view());
  }
  return "<missing>";
}

class ImportedKeyTest : public ::testing::TestWithParam<KeyAlgorithm> {};

INSTANTIATE_TEST_SUITE_P(EveryAlgorithm, ImportedKeyTest,
                         ::testing::Values(KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa3072,
                                           KeyAlgorithm::kEcP256, KeyAlgorithm::kEcP384,
                                           KeyAlgorithm::kEcP521, KeyAlgorithm::kEd25519),
                         [](const auto& info) {
                           std::string name(KeyAlgorithmName(info.param));
                           name.erase(std::remove(name.begin(), name.end(), '-'),
                                      name.end());
                           return name;
                         });

// The attributes are the key's own components, and the public key they describe is the
// SPKI reported (rebuilt from the public attributes alone).
TEST_P(ImportedKeyTest, AttributesAreTheKeysComponents) {
  const KeyAlgorithm algorithm = GetParam();
  EvpPkeyPtr key = GenerateOpenSslKey(algorithm);
  ASSERT_NE(key, nullptr);
  absl::StatusOr<ImportedKey> imported = ImportedKeyFromPkcs8(Pkcs8Of(key.get()));
  ASSERT_THAT(imported, IsOk());
  EXPECT_EQ(imported->algorithm, algorithm);
  EXPECT_EQ(imported->key_type, Pkcs11KeyType(algorithm));
  EXPECT_EQ(Hex(imported->spki), Hex(SpkiDer(key.get())));
  const auto& priv = imported->private_attributes;
  const auto& pub = imported->public_attributes;
  absl::StatusOr<std::string> rebuilt;
  switch (FamilyOf(algorithm)) {
    case KeyFamily::kRsa: {
      EXPECT_EQ(priv.size(), 8u);
      EXPECT_EQ(pub.size(), 2u);
      const std::pair<const char*, CK_ATTRIBUTE_TYPE> parts[] = {
          {OSSL_PKEY_PARAM_RSA_N, CKA_MODULUS},
          {OSSL_PKEY_PARAM_RSA_E, CKA_PUBLIC_EXPONENT},
          {OSSL_PKEY_PARAM_RSA_D, CKA_PRIVATE_EXPONENT},
          {OSSL_PKEY_PARAM_RSA_FACTOR1, CKA_PRIME_1},
          {OSSL_PKEY_PARAM_RSA_FACTOR2, CKA_PRIME_2},
          {OSSL_PKEY_PARAM_RSA_EXPONENT1, CKA_EXPONENT_1},
          {OSSL_PKEY_PARAM_RSA_EXPONENT2, CKA_EXPONENT_2},
          {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, CKA_COEFFICIENT},
      };
      for (const auto& [param, type] : parts) {
        EXPECT_EQ(Hex(Attr(priv, type)), Hex(BnParamOf(key.get(), param))) << param;
      }
      EXPECT_EQ(Attr(priv, CKA_MODULUS).size() * 8,
                static_cast<size_t>(KeyBits(algorithm)));
      rebuilt = RsaSpki(Attr(pub, CKA_MODULUS), Attr(pub, CKA_PUBLIC_EXPONENT));
      break;
    }
    case KeyFamily::kEc: {
      EXPECT_EQ(Hex(Attr(priv, CKA_EC_PARAMS)), Hex(EcParamsFor(algorithm)));
      EXPECT_EQ(Hex(Attr(pub, CKA_EC_PARAMS)), Hex(EcParamsFor(algorithm)));
      const std::string value = Attr(priv, CKA_VALUE);
      EXPECT_EQ(value.size(), static_cast<size_t>((KeyBits(algorithm) + 7) / 8));
      // Padded to the field size: compare as numbers.
      BignumPtr d(BN_bin2bn(reinterpret_cast<const unsigned char*>(value.data()),
                            static_cast<int>(value.size()), nullptr));
      EXPECT_EQ(Hex(Bn(d.get())), Hex(BnParamOf(key.get(), OSSL_PKEY_PARAM_PRIV_KEY)));
      absl::StatusOr<std::string> point =
          UnwrapEcPoint(Attr(pub, CKA_EC_POINT), algorithm);
      ASSERT_THAT(point, IsOk());
      EXPECT_EQ(point->size(), PublicPointLength(algorithm));
      EXPECT_EQ(Attr(pub, CKA_VALUE), "<missing>");  // No secret on the public object.
      rebuilt = EcSpki(algorithm, *point);
      break;
    }
    case KeyFamily::kEd25519: {
      EXPECT_EQ(Hex(Attr(priv, CKA_EC_PARAMS)), Hex(EcParamsFor(algorithm)));
      unsigned char seed[32];
      size_t seed_len = sizeof(seed);
      ASSERT_EQ(EVP_PKEY_get_raw_private_key(key.get(), seed, &seed_len), 1);
      EXPECT_EQ(Hex(Attr(priv, CKA_VALUE)), Hex(Bytes(seed, seed_len)));
      absl::StatusOr<std::string> point =
          UnwrapEcPoint(Attr(pub, CKA_EC_POINT), algorithm);
      ASSERT_THAT(point, IsOk());
      rebuilt = Ed25519Spki(*point);
      break;
    }
  }
  ASSERT_THAT(rebuilt, IsOk());
  EXPECT_EQ(Hex(*rebuilt), Hex(imported->spki));
}

TEST(ImportedKeyFromPkcs8Test, GarbageIsInvalidArgument) {
  for (const std::string& der : {std::string(), std::string("not DER at all"),
                                 std::string("\x30\x03\x02\x01\x00", 5)}) {
    absl::StatusOr<ImportedKey> imported = ImportedKeyFromPkcs8(SecretBytes(der));
    EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(imported.status().message(), "not an unencrypted DER PKCS#8"));
  }
}

TEST(ImportedKeyFromPkcs8Test, TrailingBytesAreRefused) {
  EvpPkeyPtr key = GenerateOpenSslKey(KeyAlgorithm::kEcP256);
  SecretBytes der = Pkcs8Of(key.get());
  std::string longer(der.view());
  longer.push_back('\0');
  EXPECT_EQ(ImportedKeyFromPkcs8(SecretBytes(longer)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ImportedKeyFromPkcs8Test, EncryptedPkcs8IsRefused) {
  EvpPkeyPtr key = GenerateOpenSslKey(KeyAlgorithm::kEcP256);
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASSERT_EQ(i2d_PKCS8PrivateKey_bio(bio.get(), key.get(), EVP_aes_128_cbc(), nullptr, 0,
                                    nullptr, const_cast<char*>("passphrase")),
            1);
  const std::string der = BioContents(bio.get());
  ASSERT_FALSE(der.empty());
  absl::StatusOr<ImportedKey> imported = ImportedKeyFromPkcs8(SecretBytes(der));
  EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(imported.status().message(), "unencrypted"));
}

TEST(ImportedKeyFromPkcs8Test, KeysOffkeyDoesNotStoreAreRefusedByName) {
  struct Case {
    EvpPkeyPtr key;
    const char* says;
  };
  Case cases[] = {
      {EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024})),
       "RSA-1024 is not supported; offkey stores RSA 2048, 3072 or 4096"},
      {EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1")),
       "EC curve 'secp256k1' is not supported; offkey stores P-256, P-384 or P-521"},
      {EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448")),
       "ED448 keys are not supported"},
      {EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519")),
       "X25519 keys are not supported"},
  };
  for (const Case& c : cases) {
    ASSERT_NE(c.key, nullptr) << c.says;
    absl::StatusOr<ImportedKey> imported = ImportedKeyFromPkcs8(Pkcs8Of(c.key.get()));
    EXPECT_EQ(imported.status().code(), absl::StatusCode::kInvalidArgument) << c.says;
    EXPECT_TRUE(Contains(imported.status().message(), c.says));
  }
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
