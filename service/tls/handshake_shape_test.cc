#include "service/tls/handshake_shape.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hsm/key_types.h"
#include "offkey/v1/common.pb.h"
#include "service/tls/schemes.h"

namespace offkey::service::tls {
namespace {

using ::offkey::testing::IsOk;

using hsm::KeyAlgorithm;
using offkey::v1::TlsVersion;
using ::testing::HasSubstr;
using ::testing::Not;

// Filler for the parts of a message that are secret-ish or attacker-chosen (transcript
// hashes, randoms, key shares). Refusal messages must never contain it.
constexpr char kMarker[] = "SECRET";

std::string Filler(size_t n) {
  std::string out;
  while (out.size() < n) out += kMarker;
  out.resize(n);
  return out;
}

// Written from RFC 8446 §4.4.3 independently of the code under test.
std::string Tls13(size_t hash_size,
                  const std::string& context = "TLS 1.3, server CertificateVerify",
                  size_t spaces = 64) {
  std::string out(spaces, ' ');
  out += context;
  out.push_back('\0');
  out += Filler(hash_size);
  return out;
}

std::string Randoms() { return Filler(64); }

std::string Be16(size_t v) {
  return std::string{static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}

const SchemeInfo& Info(offkey::v1::SignatureScheme scheme) {
  const SchemeInfo* info = FindScheme(scheme);
  EXPECT_NE(info, nullptr);
  return *info;
}

const SchemeInfo& AnyScheme() { return Info(offkey::v1::ECDSA_SECP256R1_SHA256); }
const SchemeInfo& RsaScheme() { return Info(offkey::v1::RSA_PSS_RSAE_SHA256); }

// A key that can make `scheme` signatures.
KeyAlgorithm KeyFor(const SchemeInfo& scheme) {
  switch (scheme.family) {
    case hsm::KeyFamily::kRsa:
      return KeyAlgorithm::kRsa2048;
    case hsm::KeyFamily::kEc:
      return scheme.curve == KeyAlgorithm::kUnknown ? KeyAlgorithm::kEcP256
                                                    : scheme.curve;
    case hsm::KeyFamily::kEd25519:
      return KeyAlgorithm::kEd25519;
  }
  return KeyAlgorithm::kUnknown;
}

HandshakeShapeOptions DheOn() {
  HandshakeShapeOptions options;
  options.allow_rfc7919_dhe = true;
  return options;
}

// Who signs: the scheme, the key and the server's switches.
struct Signer {
  const SchemeInfo& scheme = AnyScheme();
  KeyAlgorithm key = KeyFor(scheme);
  HandshakeShapeOptions options;
};

Signer Rsa(KeyAlgorithm key = KeyAlgorithm::kRsa2048, bool dhe = true) {
  return Signer{RsaScheme(), key, dhe ? DheOn() : HandshakeShapeOptions()};
}

absl::Status Check(const std::string& message, TlsVersion version, const Signer& signer) {
  return CheckHandshakeShaped(message, signer.scheme, signer.key, version,
                              signer.options);
}

void ExpectDenied(const std::string& message, TlsVersion version, const std::string& why,
                  const Signer& signer) {
  absl::Status status = Check(message, version, signer);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(why));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("SECR"))) << "echoes input";
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("ECRE"))) << "echoes input";
}

void ExpectDenied(const std::string& message, TlsVersion version, const std::string& why,
                  const SchemeInfo& scheme = AnyScheme()) {
  ExpectDenied(message, version, why, Signer{scheme});
}

void ExpectOk(const std::string& message, TlsVersion version, const Signer& signer) {
  EXPECT_THAT(Check(message, version, signer), IsOk());
}

void ExpectOk(const std::string& message, TlsVersion version,
              const SchemeInfo& scheme = AnyScheme()) {
  ExpectOk(message, version, Signer{scheme});
}

// --- TLS 1.3
// ----------------------------------------------------------------------------

// The transcript hash is the cipher suite's (SHA-256 or SHA-384), whatever the signature
// scheme: e.g. TLS_AES_256_GCM_SHA384 with ecdsa_secp256r1_sha256 is OpenSSL's default.
TEST(HandshakeShapeTest, Tls13AcceptsBothCipherSuiteHashLengthsForEveryScheme) {
  for (const SchemeInfo& scheme : AllSchemes()) {
    SCOPED_TRACE(scheme.name);
    ExpectOk(Tls13(32), offkey::v1::TLS_1_3, scheme);
    ExpectOk(Tls13(48), offkey::v1::TLS_1_3, scheme);
  }
}

TEST(HandshakeShapeTest, Tls13WrongTranscriptHashLength) {
  for (const SchemeInfo& scheme : AllSchemes()) {
    SCOPED_TRACE(scheme.name);
    for (size_t n : {0, 1, 20, 28, 31, 33, 47, 49, 64, 65}) {
      ExpectDenied(Tls13(n), offkey::v1::TLS_1_3,
                   absl::StrCat("TLS 1.3 CertificateVerify input: transcript hash has ",
                                n, " bytes; ", scheme.name),
                   scheme);
    }
  }
  ExpectDenied(
      Tls13(20), offkey::v1::TLS_1_3,
      "transcript hash has 20 bytes; ecdsa_secp256r1_sha256 in TLS 1.3 needs 32 or 48",
      Info(offkey::v1::ECDSA_SECP256R1_SHA256));
}

TEST(HandshakeShapeTest, Tls13WrongPaddingByte) {
  for (size_t i : {0, 1, 31, 63}) {
    std::string message = Tls13(32);
    message[i] = 0x21;
    ExpectDenied(message, offkey::v1::TLS_1_3, absl::StrCat("byte ", i, " is not 0x20"));
  }
  std::string message = Tls13(32);
  message[10] = '\0';
  ExpectDenied(message, offkey::v1::TLS_1_3, "byte 10 is not 0x20");
}

TEST(HandshakeShapeTest, Tls13SixtyThreeSpaces) {
  ExpectDenied(Tls13(32, "TLS 1.3, server CertificateVerify", 63), offkey::v1::TLS_1_3,
               "byte 63 is not 0x20");
}

TEST(HandshakeShapeTest, Tls13SixtyFiveSpaces) {
  ExpectDenied(Tls13(32, "TLS 1.3, server CertificateVerify", 65), offkey::v1::TLS_1_3,
               "more than 64 bytes of 0x20");
}

TEST(HandshakeShapeTest, Tls13ClientContextRefused) {
  for (size_t n : {32, 48}) {
    ExpectDenied(Tls13(n, "TLS 1.3, client CertificateVerify"), offkey::v1::TLS_1_3,
                 "client CertificateVerify context");
  }
}

TEST(HandshakeShapeTest, Tls13OtherContextsRefused) {
  for (const std::string context :
       {"TLS 1.3, server CertificateVerifx", "tls 1.3, server CertificateVerify",
        "TLS 1.2, server CertificateVerify", "TLS 1.3, server", ""}) {
    SCOPED_TRACE(context);
    ExpectDenied(Tls13(32, context), offkey::v1::TLS_1_3, "context string");
  }
}

TEST(HandshakeShapeTest, Tls13MissingZeroByte) {
  std::string message =
      std::string(64, ' ') + "TLS 1.3, server CertificateVerify" + Filler(32);
  ExpectDenied(message, offkey::v1::TLS_1_3, "no 0x00 byte after the context string");
  // The separator present but not zero.
  std::string wrong = Tls13(32);
  wrong[64 + 33] = 0x01;
  ExpectDenied(wrong, offkey::v1::TLS_1_3, "no 0x00 byte after the context string");
}

TEST(HandshakeShapeTest, Tls13Truncations) {
  const std::string full = Tls13(32);
  ExpectDenied("", offkey::v1::TLS_1_3, "message ends after 0 bytes");
  ExpectDenied(full.substr(0, 40), offkey::v1::TLS_1_3, "message ends after 40 bytes");
  ExpectDenied(full.substr(0, 64), offkey::v1::TLS_1_3, "context string");
  ExpectDenied(full.substr(0, 80), offkey::v1::TLS_1_3, "context string");
  ExpectDenied(full.substr(0, 97), offkey::v1::TLS_1_3, "ends after the context string");
  ExpectDenied(full.substr(0, 98), offkey::v1::TLS_1_3, "transcript hash has 0 bytes");
}

TEST(HandshakeShapeTest, Tls13InputUnderTls12IsRefused) {
  ExpectDenied(Tls13(32), offkey::v1::TLS_1_2, "TLS 1.2 ServerKeyExchange input");
}

std::string BignumBytes(const BIGNUM* n, size_t size) {
  std::string out(size, '\0');
  EXPECT_EQ(BN_bn2binpad(n, reinterpret_cast<unsigned char*>(out.data()), size),
            static_cast<int>(size));
  return out;
}

// --- TLS 1.2 ECDHE
// ----------------------------------------------------------------------

struct Curve {
  uint16_t id;
  const char* openssl_name;  // EVP_PKEY_Q_keygen: an EC group or X25519/X448.
  size_t point;
  bool nist;
};
constexpr Curve kCurves[] = {
    {23, "P-256", 65, true},   {24, "P-384", 97, true}, {25, "P-521", 133, true},
    {29, "X25519", 32, false}, {30, "X448", 56, false},
};

// A fresh public key share on `curve`, as it goes into ServerECDHParams: the uncompressed
// point for NIST curves, the u-coordinate for X25519/X448.
std::string KeyShare(const Curve& curve) {
  EvpPkeyPtr key(curve.nist
                     ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve.openssl_name)
                     : EVP_PKEY_Q_keygen(nullptr, nullptr, curve.openssl_name));
  EXPECT_NE(key, nullptr) << curve.openssl_name;
  if (key == nullptr) return "";
  std::string out(256, '\0');
  size_t length = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(key.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                            reinterpret_cast<unsigned char*>(out.data()),
                                            out.size(), &length),
            1);
  out.resize(length);
  EXPECT_EQ(out.size(), curve.point) << curve.openssl_name;
  return out;
}

// ServerECDHParams (RFC 8422 §5.4) after the randoms, with `point` under a length byte
// of `declared`.
std::string EcdheWith(uint16_t curve, size_t declared, const std::string& point,
                      uint8_t curve_type = 3) {
  std::string out = Randoms();
  out.push_back(static_cast<char>(curve_type));
  out += Be16(curve);
  out.push_back(static_cast<char>(declared));
  return out + point;
}

std::string Ecdhe(const Curve& curve) {
  const std::string point = KeyShare(curve);
  return EcdheWith(curve.id, point.size(), point);
}

// A point of `actual` bytes starting with `first`, then filler: never on a curve.
std::string Ecdhe(uint16_t curve, size_t declared, size_t actual, char first = 0x04,
                  uint8_t curve_type = 3) {
  std::string point;
  if (actual > 0) point = std::string(1, first) + Filler(actual - 1);
  return EcdheWith(curve, declared, point, curve_type);
}

TEST(HandshakeShapeTest, Tls12EcdheAcceptsAFreshKeyShareOnEveryCurve) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.openssl_name);
    for (int i = 0; i < 4; ++i) ExpectOk(Ecdhe(c), offkey::v1::TLS_1_2);
  }
}

// X25519/X448 public keys are any 32/56 bytes (RFC 7748 §5: every string decodes), so
// the length is all there is to check.
TEST(HandshakeShapeTest, Tls12EcdheMontgomeryKeysAreAnyBytes) {
  for (const Curve& c : kCurves) {
    if (c.nist) continue;
    SCOPED_TRACE(c.openssl_name);
    ExpectOk(Ecdhe(c.id, c.point, c.point, '\0'), offkey::v1::TLS_1_2);
    ExpectOk(Ecdhe(c.id, c.point, c.point, '\x04'), offkey::v1::TLS_1_2);
  }
}

TEST(HandshakeShapeTest, Tls12EcdheNistPointOffTheCurve) {
  for (const Curve& c : kCurves) {
    if (!c.nist) continue;
    SCOPED_TRACE(c.openssl_name);
    std::string point = KeyShare(c);
    point.back() ^= 0x01;  // Y changed: (X, Y') is not on the curve.
    ExpectDenied(EcdheWith(c.id, c.point, point), offkey::v1::TLS_1_2,
                 "is not a point on the curve");
    // The layout of a point with bytes of the caller's choosing.
    ExpectDenied(Ecdhe(c.id, c.point, c.point), offkey::v1::TLS_1_2,
                 "is not a point on the curve");
    ExpectDenied(EcdheWith(c.id, c.point, "\x04" + std::string(c.point - 1, '\0')),
                 offkey::v1::TLS_1_2, "is not a point on the curve");
  }
}

// Coordinates are field elements, below the field prime p: 0x04 || X+p || Y names the
// same point as 0x04 || X || Y and is refused (one encoding per key share). X is a small
// x-coordinate of a point, so that X+p still fits in the field's bytes.
TEST(HandshakeShapeTest, Tls12EcdheNistCoordinatesNotReduced) {
  for (const Curve& c : kCurves) {
    if (!c.nist) continue;
    SCOPED_TRACE(c.openssl_name);
    const size_t field = (c.point - 1) / 2;
    std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)> group(
        EC_GROUP_new_by_curve_name(OBJ_sn2nid(c.openssl_name) != NID_undef
                                       ? OBJ_sn2nid(c.openssl_name)
                                       : EC_curve_nist2nid(c.openssl_name)),
        &EC_GROUP_free);
    ASSERT_NE(group, nullptr);
    std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)> point(EC_POINT_new(group.get()),
                                                              &EC_POINT_free);
    BignumPtr p(BN_new()), x(BN_new()), y(BN_new()), x_plus_p(BN_new());
    ASSERT_EQ(EC_GROUP_get_curve(group.get(), p.get(), nullptr, nullptr, nullptr), 1);
    bool found = false;
    for (BN_ULONG i = 1; i < 100 && !found; ++i) {
      ASSERT_EQ(BN_set_word(x.get(), i), 1);
      found = EC_POINT_set_compressed_coordinates(group.get(), point.get(), x.get(), 0,
                                                  nullptr) == 1;
    }
    ERR_clear_error();
    ASSERT_TRUE(found);
    ASSERT_EQ(EC_POINT_get_affine_coordinates(group.get(), point.get(), nullptr, y.get(),
                                              nullptr),
              1);
    ASSERT_EQ(BN_add(x_plus_p.get(), x.get(), p.get()), 1);
    ASSERT_LE(BN_num_bytes(x_plus_p.get()), static_cast<int>(field));
    const std::string reduced =
        "\x04" + BignumBytes(x.get(), field) + BignumBytes(y.get(), field);
    const std::string unreduced =
        "\x04" + BignumBytes(x_plus_p.get(), field) + BignumBytes(y.get(), field);
    ExpectOk(EcdheWith(c.id, c.point, reduced), offkey::v1::TLS_1_2);
    ExpectDenied(EcdheWith(c.id, c.point, unreduced), offkey::v1::TLS_1_2,
                 "is not a point on the curve");
  }
}

TEST(HandshakeShapeTest, Tls12EcdheNistPointCompressed) {
  for (const Curve& c : kCurves) {
    if (!c.nist) continue;
    SCOPED_TRACE(c.openssl_name);
    const size_t field = (c.point - 1) / 2;
    const std::string point = KeyShare(c);
    const std::string x = point.substr(1, field);
    for (char prefix : {'\x02', '\x03'}) {
      // Compressed, with its own length.
      ExpectDenied(EcdheWith(c.id, 1 + field, std::string(1, prefix) + x),
                   offkey::v1::TLS_1_2, "point length is");
      // Compressed prefix in an uncompressed-sized point.
      ExpectDenied(EcdheWith(c.id, c.point, std::string(1, prefix) + point.substr(1)),
                   offkey::v1::TLS_1_2, "does not start with 0x04");
    }
    // Hybrid form (0x06/0x07, X9.62) is not TLS's either.
    ExpectDenied(EcdheWith(c.id, c.point, "\x06" + point.substr(1)), offkey::v1::TLS_1_2,
                 "does not start with 0x04");
  }
}

// The point at infinity has the one-byte encoding 0x00 and no uncompressed one.
TEST(HandshakeShapeTest, Tls12EcdhePointAtInfinity) {
  ExpectDenied(EcdheWith(23, 1, std::string(1, '\0')), offkey::v1::TLS_1_2,
               "secp256r1 point length is 1; expected 65");
}

TEST(HandshakeShapeTest, Tls12EcdheTruncatedPoint) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.openssl_name);
    const std::string point = KeyShare(c);
    ExpectDenied(EcdheWith(c.id, c.point, point.substr(0, c.point - 1)),
                 offkey::v1::TLS_1_2, "truncated");
    ExpectDenied(EcdheWith(c.id, c.point, ""), offkey::v1::TLS_1_2, "truncated");
  }
}

TEST(HandshakeShapeTest, Tls12EcdheTrailingBytes) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.openssl_name);
    ExpectDenied(Ecdhe(c) + "x", offkey::v1::TLS_1_2, "1 bytes after ServerECDHParams");
    ExpectDenied(Ecdhe(c) + Filler(100), offkey::v1::TLS_1_2,
                 "100 bytes after ServerECDHParams");
  }
}

TEST(HandshakeShapeTest, Tls12EcdheUnknownCurve) {
  // secp256k1, brainpoolP256r1, ffdhe2048 (a DH group id),
  // arbitrary_explicit_prime_curves.
  for (uint16_t id : {22, 26, 0x0100, 0xff01, 0}) {
    SCOPED_TRACE(id);
    ExpectDenied(Ecdhe(id, 65, 65), offkey::v1::TLS_1_2, "NamedCurve is not one of");
  }
}

TEST(HandshakeShapeTest, Tls12EcdheExplicitCurveTypes) {
  for (uint8_t type : {1, 2}) {
    ExpectDenied(Ecdhe(23, 65, 65, 0x04, type), offkey::v1::TLS_1_2,
                 "curve_type is not named_curve (3)");
  }
  ExpectDenied(Ecdhe(23, 65, 65, 0x04, 0x05), offkey::v1::TLS_1_2,
               "curve_type is not named_curve (3)");
  ExpectDenied(Ecdhe(23, 65, 65, 0x04, 0xff), offkey::v1::TLS_1_2,
               "curve_type is not named_curve (3)");
}

TEST(HandshakeShapeTest, Tls12EcdheWrongPointLength) {
  ExpectDenied(Ecdhe(23, 97, 97), offkey::v1::TLS_1_2, "secp256r1 point length is 97");
  ExpectDenied(Ecdhe(24, 65, 65), offkey::v1::TLS_1_2, "secp384r1 point length is 65");
  ExpectDenied(Ecdhe(25, 132, 132), offkey::v1::TLS_1_2, "secp521r1 point length is 132");
  ExpectDenied(Ecdhe(29, 65, 65), offkey::v1::TLS_1_2, "x25519 point length is 65");
  ExpectDenied(Ecdhe(30, 32, 32), offkey::v1::TLS_1_2, "x448 point length is 32");
  ExpectDenied(Ecdhe(29, 0, 0), offkey::v1::TLS_1_2, "x25519 point length is 0");
}

TEST(HandshakeShapeTest, Tls12EcdheCutInsideHeader) {
  const std::string full = Ecdhe(kCurves[0]);
  ExpectDenied(full.substr(0, 65), offkey::v1::TLS_1_2, "ends inside the NamedCurve");
  ExpectDenied(full.substr(0, 66), offkey::v1::TLS_1_2, "ends inside the NamedCurve");
  ExpectDenied(full.substr(0, 67), offkey::v1::TLS_1_2,
               "ends before the secp256r1 point");
}

TEST(HandshakeShapeTest, Tls12RandomsOnly) {
  ExpectDenied("", offkey::v1::TLS_1_2, "message has 0 bytes");
  ExpectDenied(Filler(63), offkey::v1::TLS_1_2, "message has 63 bytes");
  ExpectDenied(Randoms(), offkey::v1::TLS_1_2, "nothing after the 64 bytes of randoms");
}

// RSA and ECDSA keys sign ECDHE params in TLS 1.2 whatever the scheme's hash.
TEST(HandshakeShapeTest, Tls12EcdheForEveryRsaAndEcdsaScheme) {
  for (const SchemeInfo& scheme : AllSchemes()) {
    if (!scheme.tls12 || scheme.family == hsm::KeyFamily::kEd25519) continue;
    SCOPED_TRACE(scheme.name);
    for (const Curve& c : kCurves) ExpectOk(Ecdhe(c), offkey::v1::TLS_1_2, scheme);
  }
}

// Ed25519 signs the message itself, and its SubjectPublicKeyInfo (44 bytes) fits in the
// 64 caller-chosen random bytes: see Tls12Ed25519CsrLayoutIsRefused.
TEST(HandshakeShapeTest, Tls12Ed25519IsRefused) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.openssl_name);
    ExpectDenied(Ecdhe(c), offkey::v1::TLS_1_2, "Ed25519 keys sign only TLS 1.3",
                 Info(offkey::v1::ED25519));
  }
}

// The key alone refuses it too, even under a scheme CheckScheme would not have matched
// with it (found by handshake_shape_fuzz).
TEST(HandshakeShapeTest, Tls12Ed25519KeyIsRefusedWhateverTheScheme) {
  for (const SchemeInfo& scheme : AllSchemes()) {
    if (!scheme.tls12) continue;
    SCOPED_TRACE(scheme.name);
    ExpectDenied(Ecdhe(kCurves[0]), offkey::v1::TLS_1_2, "Ed25519 keys sign only TLS 1.3",
                 Signer{scheme, KeyAlgorithm::kEd25519, DheOn()});
  }
}

// --- TLS 1.2 DHE
// ------------------------------------------------------------------------

struct Group {
  const char* name;  // OpenSSL's and RFC 7919's.
  size_t bytes;
};
constexpr Group kGroups[] = {
    {"ffdhe2048", 256}, {"ffdhe3072", 384},  {"ffdhe4096", 512},
    {"ffdhe6144", 768}, {"ffdhe8192", 1024},
};

// The RFC 7919 group `group` as OpenSSL knows it: the test does not trust a copy.
EvpPkeyPtr Rfc7919Params(const Group& group) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
  EVP_PKEY* raw = nullptr;
  EXPECT_EQ(EVP_PKEY_paramgen_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_group_name(ctx.get(), group.name), 1);
  EXPECT_EQ(EVP_PKEY_paramgen(ctx.get(), &raw), 1);
  return EvpPkeyPtr(raw);
}

std::string Rfc7919Prime(const Group& group) {
  EvpPkeyPtr params = Rfc7919Params(group);
  BIGNUM* p = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(params.get(), OSSL_PKEY_PARAM_FFC_P, &p), 1);
  BignumPtr owned(p);
  return BignumBytes(p, group.bytes);
}

std::string DhField(const std::string& value) { return Be16(value.size()) + value; }

// ServerDHParams (RFC 5246 §7.4.3) after `randoms`.
std::string DheWith(const std::string& p, const std::string& g, const std::string& ys,
                    const std::string& randoms = Randoms()) {
  return randoms + DhField(p) + DhField(g) + DhField(ys);
}

// A key share for `p`: Ys of exactly |p| bytes below p, not 0, 1 or p - 1.
std::string Ys(const std::string& p) { return "\x5a" + Filler(p.size() - 1); }

std::string Dhe(const Group& group) {
  const std::string p = Rfc7919Prime(group);
  return DheWith(p, "\x02", Ys(p));
}

KeyAlgorithm SmallestRsaKeyFor(const Group& group) {
  if (group.bytes <= 256) return KeyAlgorithm::kRsa2048;
  if (group.bytes <= 384) return KeyAlgorithm::kRsa3072;
  return KeyAlgorithm::kRsa4096;
}

TEST(HandshakeShapeTest, Tls12DheRfc7919GroupsWhenAllowed) {
  for (const Group& group : kGroups) {
    if (group.bytes > 512) continue;  // Larger than every offkey RSA key.
    SCOPED_TRACE(group.name);
    ExpectOk(Dhe(group), offkey::v1::TLS_1_2, Rsa(SmallestRsaKeyFor(group)));
    ExpectOk(Dhe(group), offkey::v1::TLS_1_2, Rsa(KeyAlgorithm::kRsa4096));
  }
}

TEST(HandshakeShapeTest, Tls12DheRefusedByDefault) {
  for (const Group& group : kGroups) {
    SCOPED_TRACE(group.name);
    ExpectDenied(Dhe(group), offkey::v1::TLS_1_2, "handshake.allow_rfc7919_dhe",
                 Rsa(KeyAlgorithm::kRsa4096, /*dhe=*/false));
  }
}

// DHE_RSA is the only DHE key exchange TLS 1.2 has for offkey's keys (there is no
// DHE_ECDSA suite), so EC and Ed25519 keys never sign ServerDHParams.
TEST(HandshakeShapeTest, Tls12DheOnlyWithRsaKeys) {
  const std::string message = Dhe(kGroups[0]);
  for (offkey::v1::SignatureScheme scheme :
       {offkey::v1::ECDSA_SECP256R1_SHA256, offkey::v1::ECDSA_SECP384R1_SHA384}) {
    const SchemeInfo& info = Info(scheme);
    ExpectDenied(message, offkey::v1::TLS_1_2, "DHE is signed only by RSA keys",
                 Signer{info, KeyFor(info), DheOn()});
  }
}

// A group larger than the key's modulus leaves room in Ys for the key's own
// SubjectPublicKeyInfo: Tls12DheCsrLayoutIsRefused.
TEST(HandshakeShapeTest, Tls12DheGroupLargerThanTheKey) {
  ExpectDenied(Dhe(kGroups[1]), offkey::v1::TLS_1_2,
               "ffdhe3072 is larger than the rsa-2048 key", Rsa(KeyAlgorithm::kRsa2048));
  ExpectDenied(Dhe(kGroups[2]), offkey::v1::TLS_1_2,
               "ffdhe4096 is larger than the rsa-3072 key", Rsa(KeyAlgorithm::kRsa3072));
  for (const Group& group : {kGroups[3], kGroups[4]}) {
    ExpectDenied(Dhe(group), offkey::v1::TLS_1_2, "is larger than the rsa-4096 key",
                 Rsa(KeyAlgorithm::kRsa4096));
  }
}

TEST(HandshakeShapeTest, Tls12DheOtherPrimesRefused) {
  // A well-known safe prime that is not an RFC 7919 one (RFC 3526 group 14, what
  // OpenSSL 3.0's automatic DH parameters use).
  BignumPtr modp(BN_get_rfc3526_prime_2048(nullptr));
  const std::string modp_p = BignumBytes(modp.get(), 256);
  ExpectDenied(DheWith(modp_p, "\x02", Ys(modp_p)), offkey::v1::TLS_1_2,
               "dh_p is not an RFC 7919 group", Rsa());
  // One bit away from ffdhe2048.
  std::string near = Rfc7919Prime(kGroups[0]);
  near[100] ^= 0x10;
  ExpectDenied(DheWith(near, "\x02", Ys(near)), offkey::v1::TLS_1_2,
               "dh_p is not an RFC 7919 group", Rsa());
  // The shapes the length-only check let through.
  for (size_t n : {1, 128, 255, 257, 300, 1024}) {
    SCOPED_TRACE(n);
    const std::string p = "\xc7" + Filler(n - 1);
    ExpectDenied(DheWith(p, "\x02", Ys(p)), offkey::v1::TLS_1_2,
                 "dh_p is not an RFC 7919 group", Rsa(KeyAlgorithm::kRsa4096));
  }
  // A leading zero in front of ffdhe2048.
  const std::string padded = std::string(1, '\0') + Rfc7919Prime(kGroups[0]);
  ExpectDenied(DheWith(padded, "\x02", Ys(padded)), offkey::v1::TLS_1_2,
               "dh_p is not an RFC 7919 group", Rsa(KeyAlgorithm::kRsa4096));
}

TEST(HandshakeShapeTest, Tls12DheGeneratorMustBeTwo) {
  const std::string p = Rfc7919Prime(kGroups[0]);
  for (const std::string g :
       {std::string("\x05"), std::string("\x00\x02", 2), std::string("\x03"),
        std::string(1, '\0'), std::string(), p}) {
    SCOPED_TRACE(g.size());
    ExpectDenied(DheWith(p, g, Ys(p)), offkey::v1::TLS_1_2,
                 "dh_g must be the single byte 0x02", Rsa());
  }
}

TEST(HandshakeShapeTest, Tls12DhePublicValueRange) {
  const std::string p = Rfc7919Prime(kGroups[0]);
  std::string p_minus_1 = p;
  p_minus_1.back() -= 1;  // p is odd: no borrow.
  std::string p_minus_2 = p;
  p_minus_2.back() -= 2;
  const std::string zero(256, '\0');
  std::string one = zero;
  one.back() = 1;
  std::string two = zero;
  two.back() = 2;
  for (const std::string& ys : {zero, one, p_minus_1, p, std::string(256, '\xff')}) {
    ExpectDenied(DheWith(p, "\x02", ys), offkey::v1::TLS_1_2, "dh_Ys must be in 2..p-2",
                 Rsa());
  }
  ExpectOk(DheWith(p, "\x02", two), offkey::v1::TLS_1_2, Rsa());
  ExpectOk(DheWith(p, "\x02", p_minus_2), offkey::v1::TLS_1_2, Rsa());
}

// RFC 7919 §3 / OpenSSL: Ys is left-padded with zeros to the length of p.
TEST(HandshakeShapeTest, Tls12DhePublicValueHasTheLengthOfP) {
  const std::string p = Rfc7919Prime(kGroups[0]);
  for (size_t n : {1, 255, 257, 512}) {
    SCOPED_TRACE(n);
    ExpectDenied(DheWith(p, "\x02", "\x01" + Filler(n - 1)), offkey::v1::TLS_1_2,
                 "dh_Ys has", Rsa());
  }
}

TEST(HandshakeShapeTest, Tls12DheTrailingData) {
  ExpectDenied(Dhe(kGroups[0]) + "x", offkey::v1::TLS_1_2, "1 bytes after ServerDHParams",
               Rsa());
  ExpectDenied(Dhe(kGroups[0]) + Dhe(kGroups[0]), offkey::v1::TLS_1_2,
               "bytes after ServerDHParams", Rsa());
  ExpectDenied(Dhe(kGroups[2]) + "x", offkey::v1::TLS_1_2, "1 bytes after ServerDHParams",
               Rsa(KeyAlgorithm::kRsa4096));
  // ffdhe6144's 768-byte p starts 0x03 0x00, like ServerECDHParams: both readings are
  // tried and named.
  ExpectDenied(Dhe(kGroups[3]), offkey::v1::TLS_1_2,
               "ServerECDHParams: NamedCurve is not one of", Rsa(KeyAlgorithm::kRsa4096));
  ExpectDenied(Dhe(kGroups[3]), offkey::v1::TLS_1_2,
               "(not ServerDHParams either: dh_p: ffdhe6144 is larger than the rsa-4096",
               Rsa(KeyAlgorithm::kRsa4096));
}

TEST(HandshakeShapeTest, Tls12DheTruncated) {
  const std::string full = Dhe(kGroups[0]);
  ExpectDenied(full.substr(0, 65), offkey::v1::TLS_1_2, "ends inside the dh_p length",
               Rsa());
  ExpectDenied(full.substr(0, 66 + 255), offkey::v1::TLS_1_2,
               "dh_p is truncated: 255 of 256 bytes", Rsa());
  ExpectDenied(full.substr(0, 66 + 256 + 1), offkey::v1::TLS_1_2,
               "ends inside the dh_g length", Rsa());
  ExpectDenied(full.substr(0, 66 + 256 + 4), offkey::v1::TLS_1_2, "ends inside the dh_Ys",
               Rsa());
  ExpectDenied(full.substr(0, full.size() - 1), offkey::v1::TLS_1_2,
               "dh_Ys is truncated: 255 of 256 bytes", Rsa());
}

TEST(HandshakeShapeTest, Tls12InputUnderTls13IsRefused) {
  ExpectDenied(Ecdhe(kCurves[0]), offkey::v1::TLS_1_3, "TLS 1.3 CertificateVerify input");
  ExpectDenied(Dhe(kGroups[0]), offkey::v1::TLS_1_3, "TLS 1.3 CertificateVerify input",
               Rsa());
}

// --- Real handshakes
// --------------------------------------------------------------------

struct SslCtxDeleter {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslDeleter {
  void operator()(SSL* p) const { SSL_free(p); }
};

X509Ptr SelfSigned(EVP_PKEY* key) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_set_pubkey(cert.get(), key);
  EXPECT_GT(X509_sign(cert.get(), key, EVP_sha256()), 0);
  return cert;
}

// Keeps the body of the ServerKeyExchange the server writes.
void KeepServerKeyExchange(int write_p, int, int content_type, const void* buf,
                           size_t len, SSL*, void* arg) {
  const auto* bytes = static_cast<const uint8_t*>(buf);
  if (write_p && content_type == SSL3_RT_HANDSHAKE && len > 4 &&
      bytes[0] == SSL3_MT_SERVER_KEY_EXCHANGE) {
    static_cast<std::string*>(arg)->assign(reinterpret_cast<const char*>(bytes) + 4,
                                           len - 4);
  }
}

// How to set up the server of a handshake.
struct Tls12Server {
  EVP_PKEY* key;
  const char* cipher;
  const char* groups = nullptr;  // ECDHE groups the client offers.
  EVP_PKEY* dh = nullptr;        // DHE parameters; nullptr with dh_auto for DHE.
};

// Runs a TLS 1.2 handshake between an OpenSSL client and server in memory and returns
// what the server signed for its ServerKeyExchange: client_random || server_random ||
// the params (RFC 5246 §7.4.3), cut from the message the server sent.
std::string ServerKeyExchangeInput(const Tls12Server& setup) {
  std::unique_ptr<SSL_CTX, SslCtxDeleter> server_ctx(SSL_CTX_new(TLS_server_method()));
  std::unique_ptr<SSL_CTX, SslCtxDeleter> client_ctx(SSL_CTX_new(TLS_client_method()));
  for (SSL_CTX* ctx : {server_ctx.get(), client_ctx.get()}) {
    EXPECT_EQ(SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION), 1);
    EXPECT_EQ(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION), 1);
    EXPECT_EQ(SSL_CTX_set_cipher_list(ctx, setup.cipher), 1);
    if (setup.groups != nullptr) {
      EXPECT_EQ(SSL_CTX_set1_groups_list(ctx, setup.groups), 1);
    }
  }
  X509Ptr cert = SelfSigned(setup.key);
  EXPECT_EQ(SSL_CTX_use_certificate(server_ctx.get(), cert.get()), 1);
  EXPECT_EQ(SSL_CTX_use_PrivateKey(server_ctx.get(), setup.key), 1);
  if (setup.dh != nullptr) {
    EVP_PKEY_up_ref(setup.dh);
    EXPECT_EQ(SSL_CTX_set0_tmp_dh_pkey(server_ctx.get(), setup.dh), 1);
  } else {
    SSL_CTX_set_dh_auto(server_ctx.get(), 1);
  }
  std::string body;
  SSL_CTX_set_msg_callback(server_ctx.get(), KeepServerKeyExchange);
  SSL_CTX_set_msg_callback_arg(server_ctx.get(), &body);

  std::unique_ptr<SSL, SslDeleter> server(SSL_new(server_ctx.get()));
  std::unique_ptr<SSL, SslDeleter> client(SSL_new(client_ctx.get()));
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&server_bio, 0, &client_bio, 0), 1);
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  bool server_done = false, client_done = false;
  for (int i = 0; i < 50 && !(server_done && client_done); ++i) {
    if (!client_done) client_done = SSL_do_handshake(client.get()) == 1;
    if (!server_done) server_done = SSL_do_handshake(server.get()) == 1;
  }
  EXPECT_TRUE(server_done && client_done) << DrainOpenSslErrors();
  EXPECT_EQ(SSL_version(server.get()), TLS1_2_VERSION);

  std::string randoms(64, '\0');
  auto* out = reinterpret_cast<unsigned char*>(randoms.data());
  EXPECT_EQ(SSL_get_client_random(server.get(), out, 32), 32u);
  EXPECT_EQ(SSL_get_server_random(server.get(), out + 32, 32), 32u);

  // The params end where SignatureAndHashAlgorithm begins.
  size_t params_size = 0;
  if (!body.empty() && body[0] == 3) {
    params_size = body.size() > 3 ? 4 + static_cast<uint8_t>(body[3]) : 0;
  } else {
    for (int field = 0; field < 3 && params_size + 2 <= body.size(); ++field) {
      params_size +=
          2 + (static_cast<size_t>(static_cast<uint8_t>(body[params_size])) << 8 |
               static_cast<uint8_t>(body[params_size + 1]));
    }
  }
  EXPECT_GT(params_size, 0u);
  EXPECT_LT(params_size, body.size());
  return randoms + body.substr(0, std::min(params_size, body.size()));
}

TEST(HandshakeShapeTest, Tls12EcdheFromOpenSslHandshakesIsAccepted) {
  EvpPkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  EvpPkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.openssl_name);
    // In TLS 1.2 the client must also accept the certificate's curve (RFC 8422 §5.1);
    // it prefers `c`, so that is the ECDHE group.
    const std::string ecdsa_groups =
        c.id == 23 ? "P-256" : absl::StrCat(c.openssl_name, ":P-256");
    const std::string ecdsa = ServerKeyExchangeInput(
        {ec.get(), "ECDHE-ECDSA-AES128-GCM-SHA256", ecdsa_groups.c_str()});
    EXPECT_EQ(ecdsa.size(), 64 + 4 + c.point);
    ExpectOk(ecdsa, offkey::v1::TLS_1_2);
    const std::string ecdhe_rsa = ServerKeyExchangeInput(
        {rsa.get(), "ECDHE-RSA-AES128-GCM-SHA256", c.openssl_name});
    ExpectOk(ecdhe_rsa, offkey::v1::TLS_1_2, Rsa(KeyAlgorithm::kRsa2048, false));
  }
}

TEST(HandshakeShapeTest, Tls12DheFromOpenSslHandshakes) {
  EvpPkeyPtr rsa(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  EvpPkeyPtr ffdhe2048 = Rfc7919Params(kGroups[0]);
  ASSERT_NE(ffdhe2048, nullptr);
  // Several handshakes: Ys below 2^2040 (about 1 in 256) must arrive padded to |p|.
  for (int i = 0; i < 8; ++i) {
    const std::string input = ServerKeyExchangeInput(
        {rsa.get(), "DHE-RSA-AES128-GCM-SHA256", nullptr, ffdhe2048.get()});
    EXPECT_EQ(input.size(), 64 + 2 + 256 + 3 + 2 + 256);
    ExpectOk(input, offkey::v1::TLS_1_2, Rsa(KeyAlgorithm::kRsa2048, /*dhe=*/true));
    ExpectDenied(input, offkey::v1::TLS_1_2, "handshake.allow_rfc7919_dhe",
                 Rsa(KeyAlgorithm::kRsa2048, /*dhe=*/false));
  }
  // OpenSSL 3.0's automatic DH parameters are RFC 3526 (MODP) groups, not RFC 7919
  // ones: a server relying on them is refused and must configure an ffdhe group.
  const std::string automatic =
      ServerKeyExchangeInput({rsa.get(), "DHE-RSA-AES128-GCM-SHA256"});
  ExpectDenied(automatic, offkey::v1::TLS_1_2, "dh_p is not an RFC 7919 group",
               Rsa(KeyAlgorithm::kRsa2048, /*dhe=*/true));
}

// --- Another structure laid over the shapes
// -------------------------------------------------

// DER, enough to lay out a CertificationRequestInfo (RFC 2986 §4.1).
std::string Tlv(uint8_t tag, const std::string& content) {
  std::string out(1, static_cast<char>(tag));
  const size_t n = content.size();
  if (n < 0x80) {
    out.push_back(static_cast<char>(n));
  } else if (n < 0x100) {
    out += "\x81";
    out.push_back(static_cast<char>(n));
  } else {
    out += "\x82" + Be16(n);
  }
  return out + content;
}
std::string Sequence(const std::string& content) { return Tlv(0x30, content); }
const std::string kVersion0("\x02\x01\x00", 3);
// 1.2: DER-valid and short, so the headers fit in front of offset 64.
const std::string kShortOid("\x06\x01\x2a", 3);

// One attribute (an unknown OID with an OCTET STRING value) under [0], exactly `total`
// bytes long; "a0 00" (no attributes) when total is 2.
std::string AttributesOfSize(size_t total) {
  if (total == 2) return std::string("\xa0\x00", 2);
  for (size_t n = total; n-- > 0;) {
    std::string out =
        Tlv(0xa0, Sequence(kShortOid + Tlv(0x31, Tlv(0x04, std::string(n, 'A')))));
    if (out.size() == total) return out;
  }
  ADD_FAILURE() << "no attribute of " << total << " bytes";
  return "";
}

// Builds the CertificationRequestInfo `build(free)` for the smallest amount of free
// (caller-chosen) bytes `free` that puts `fixed` at offset 64, as a caller of Sign would:
// the 64 randoms are theirs, the bytes at 64 are the shape's.
template <typename Build>
std::string LayOut(const std::string& fixed, Build build) {
  for (size_t free = 0; free <= 64; ++free) {
    const std::string cri = build(std::string(free, 'Z'));
    if (cri.size() > 64 && cri.compare(64, fixed.size(), fixed) == 0) return cri;
  }
  return "";  // The headers do not fit in front of offset 64.
}

// `cri` is a CertificationRequestInfo for `key`: signing exactly these bytes with `key`
// gives a PKCS#10 request that OpenSSL parses, that names `key` and whose signature
// verifies. That is, a signature from Sign over `cri` would be a CSR with proof of
// possession of the tls-server key.
void ExpectCsrBody(const std::string& cri, EVP_PKEY* key, const EVP_MD* md,
                   const std::string& algorithm_der) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key), 1);
  size_t length = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(cri.data());
  ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &length, data, cri.size()), 1);
  std::string signature(length, '\0');
  ASSERT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()),
                           &length, data, cri.size()),
            1);
  signature.resize(length);
  const std::string csr =
      Sequence(cri + algorithm_der + Tlv(0x03, std::string(1, '\0') + signature));
  const auto* in = reinterpret_cast<const unsigned char*>(csr.data());
  X509_REQ* request = d2i_X509_REQ(nullptr, &in, static_cast<long>(csr.size()));
  ASSERT_NE(request, nullptr) << DrainOpenSslErrors();
  EXPECT_EQ(in, reinterpret_cast<const unsigned char*>(csr.data()) + csr.size());
  EXPECT_EQ(EVP_PKEY_eq(X509_REQ_get0_pubkey(request), key), 1);
  EXPECT_EQ(X509_REQ_verify(request, key), 1) << DrainOpenSslErrors();
  X509_REQ_free(request);
}

// The attack: ServerDHParams whose bytes, with the randoms, make a DER
// CertificationRequestInfo for the RSA key. The shape's bytes from offset 64 (dh_p, dh_g
// and the dh_Ys length) sit inside an OCTET STRING value in the subject; dh_Ys carries
// the key's SubjectPublicKeyInfo and an attribute. With the length-only check, any
// dh_p of up to 1024 bytes did; with RFC 7919 groups it takes a group larger than the
// key (room for the 294-byte SubjectPublicKeyInfo in dh_Ys).
TEST(HandshakeShapeTest, Tls12DheCsrLayoutIsRefused) {
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048}));
  ASSERT_NE(key, nullptr);
  const std::string spki = SpkiDer(key.get());
  ASSERT_EQ(spki.size(), 294u);
  const std::string sha256_with_rsa =
      Sequence(std::string("\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b\x05\x00", 13));
  for (const std::string& p : {Rfc7919Prime(kGroups[1]), "\xc7" + Filler(399)}) {
    SCOPED_TRACE(p.size());
    const std::string fixed = DhField(p) + DhField("\x02") + Be16(p.size());
    const std::string ys_tail = spki + AttributesOfSize(p.size() - spki.size());
    const std::string cri = LayOut(fixed, [&](const std::string& free) {
      // TeletexString, a DirectoryString whose content is any octets.
      const std::string atv = Sequence(kShortOid + Tlv(0x14, free + fixed));
      return Sequence(kVersion0 + Sequence(Tlv(0x31, atv)) + ys_tail);
    });
    ASSERT_FALSE(cri.empty());
    ASSERT_EQ(cri.size(), 64 + fixed.size() + p.size());
    ASSERT_EQ(cri, DheWith(p, "\x02", ys_tail, cri.substr(0, 64)));
    ExpectCsrBody(cri, key.get(), EVP_sha256(), sha256_with_rsa);

    ExpectDenied(cri, offkey::v1::TLS_1_2, "handshake.allow_rfc7919_dhe",
                 Rsa(KeyAlgorithm::kRsa2048, /*dhe=*/false));
    ExpectDenied(cri, offkey::v1::TLS_1_2,
                 p.size() == 384 ? "ffdhe3072 is larger than the rsa-2048 key"
                                 : "dh_p is not an RFC 7919 group",
                 Rsa(KeyAlgorithm::kRsa2048, /*dhe=*/true));
  }
}

// Ed25519 in TLS 1.2 signs the ServerKeyExchange bytes as they are, and its 44-byte
// SubjectPublicKeyInfo fits in the randoms: a CertificationRequestInfo whose one
// attribute's OCTET STRING swallows the ECDHE header and the key share.
TEST(HandshakeShapeTest, Tls12Ed25519CsrLayoutIsRefused) {
  EvpPkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ASSERT_NE(key, nullptr);
  const std::string spki = SpkiDer(key.get());
  const std::string ed25519 = Sequence(std::string("\x06\x03\x2b\x65\x70", 5));
  // P-521's longer lengths take 3-byte headers, which no longer fit before offset 64 in
  // this simple layout; Tls12Ed25519IsRefused covers it.
  for (const Curve& c : {kCurves[0], kCurves[1], kCurves[3], kCurves[4]}) {
    SCOPED_TRACE(c.openssl_name);
    const std::string share = KeyShare(c);
    const std::string fixed =
        std::string(1, '\x03') + Be16(c.id) + std::string(1, static_cast<char>(c.point));
    const std::string cri = LayOut(fixed, [&](const std::string& free) {
      const std::string attribute =
          Sequence(kShortOid + Tlv(0x31, Tlv(0x04, free + fixed + share)));
      return Sequence(kVersion0 + Sequence("") + spki + Tlv(0xa0, attribute));
    });
    ASSERT_FALSE(cri.empty());
    ASSERT_EQ(cri, EcdheWith(c.id, c.point, share, 3).replace(0, 64, cri.substr(0, 64)));
    ExpectCsrBody(cri, key.get(), nullptr, ed25519);
    for (bool dhe : {false, true}) {
      ExpectDenied(cri, offkey::v1::TLS_1_2, "Ed25519 keys sign only TLS 1.3",
                   Signer{Info(offkey::v1::ED25519), KeyAlgorithm::kEd25519,
                          dhe ? DheOn() : HandshakeShapeOptions()});
    }
  }
}

// --- Versions
// ---------------------------------------------------------------------------

TEST(HandshakeShapeTest, UnspecifiedVersionIsRefused) {
  for (const std::string& message : {Tls13(32), Ecdhe(kCurves[0]), Dhe(kGroups[0])}) {
    ExpectDenied(message, offkey::v1::TLS_VERSION_UNSPECIFIED, "set context.version",
                 Rsa());
  }
}

TEST(HandshakeShapeTest, OtherVersionsAreRefused) {
  for (int version : {0x0300, 0x0301, 0x0302, 0x0305, -1}) {
    ExpectDenied(Tls13(32), static_cast<TlsVersion>(version),
                 "a tls-server key signs only");
    ExpectDenied(Ecdhe(kCurves[0]), static_cast<TlsVersion>(version),
                 "a tls-server key signs only");
  }
}

}  // namespace
}  // namespace offkey::service::tls
