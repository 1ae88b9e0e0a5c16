#include "service/tls/handshake_shape.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "offkey/v1/common.pb.h"
#include "service/tls/schemes.h"

namespace offkey::service::tls {
namespace {

using ::offkey::testing::IsOk;

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

// ServerECDHParams (RFC 8422 §5.4) after the randoms.
std::string Ecdhe(uint16_t curve, size_t declared, size_t actual, char first = 0x04,
                  uint8_t curve_type = 3) {
  std::string out = Randoms();
  out.push_back(static_cast<char>(curve_type));
  out += Be16(curve);
  out.push_back(static_cast<char>(declared));
  if (actual > 0) {
    out.push_back(first);
    out += Filler(actual - 1);
  }
  return out;
}

std::string DhField(size_t n, char first = '\xc7') {
  if (n == 0) return Be16(0);
  return Be16(n) + std::string(1, first) + Filler(n - 1);
}

// ServerDHParams (RFC 5246 §7.4.3) after the randoms.
std::string Dhe(size_t p, size_t g, size_t ys) {
  return Randoms() + DhField(p) + DhField(g, '\x02') + DhField(ys);
}

const SchemeInfo& Info(offkey::v1::SignatureScheme scheme) {
  const SchemeInfo* info = FindScheme(scheme);
  EXPECT_NE(info, nullptr);
  return *info;
}

const SchemeInfo& AnyScheme() { return Info(offkey::v1::ECDSA_SECP256R1_SHA256); }

void ExpectDenied(const std::string& message, TlsVersion version, const std::string& why,
                  const SchemeInfo& scheme = AnyScheme()) {
  absl::Status status = CheckHandshakeShaped(message, scheme, version);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(why));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("SECR"))) << "echoes input";
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("ECRE"))) << "echoes input";
}

void ExpectOk(const std::string& message, TlsVersion version,
              const SchemeInfo& scheme = AnyScheme()) {
  absl::Status status = CheckHandshakeShaped(message, scheme, version);
  EXPECT_THAT(status, IsOk());
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

// --- TLS 1.2 ECDHE
// ----------------------------------------------------------------------

struct Curve {
  uint16_t id;
  size_t point;
  bool nist;
};
constexpr Curve kCurves[] = {
    {23, 65, true}, {24, 97, true}, {25, 133, true}, {29, 32, false}, {30, 56, false},
};

TEST(HandshakeShapeTest, Tls12EcdheEveryCurve) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.id);
    ExpectOk(Ecdhe(c.id, c.point, c.point), offkey::v1::TLS_1_2);
    if (!c.nist) {
      // X25519/X448 keys are any bytes, including a leading 0x00 or 0x04.
      ExpectOk(Ecdhe(c.id, c.point, c.point, '\0'), offkey::v1::TLS_1_2);
    }
  }
}

// RFC 8422: Ed25519 signs the same ServerKeyExchange bytes in TLS 1.2.
TEST(HandshakeShapeTest, Tls12ShapeIsTheSameForEveryScheme) {
  for (const SchemeInfo& scheme : AllSchemes()) {
    SCOPED_TRACE(scheme.name);
    ExpectOk(Ecdhe(29, 32, 32), offkey::v1::TLS_1_2, scheme);
    ExpectOk(Dhe(256, 1, 256), offkey::v1::TLS_1_2, scheme);
  }
}

TEST(HandshakeShapeTest, Tls12EcdheTruncatedPoint) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.id);
    ExpectDenied(Ecdhe(c.id, c.point, c.point - 1), offkey::v1::TLS_1_2, "truncated");
    ExpectDenied(Ecdhe(c.id, c.point, 0), offkey::v1::TLS_1_2, "truncated");
  }
}

TEST(HandshakeShapeTest, Tls12EcdheTrailingByte) {
  for (const Curve& c : kCurves) {
    SCOPED_TRACE(c.id);
    ExpectDenied(Ecdhe(c.id, c.point, c.point) + "x", offkey::v1::TLS_1_2,
                 "1 bytes after ServerECDHParams");
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
  // A curve type that is neither ECDHE nor a plausible dh_p length.
  ExpectDenied(Ecdhe(23, 65, 65, 0x04, 0x05), offkey::v1::TLS_1_2,
               "neither curve_type named_curve (3) nor a dh_p length");
  ExpectDenied(Ecdhe(23, 65, 65, 0x04, 0xff), offkey::v1::TLS_1_2, "neither");
}

TEST(HandshakeShapeTest, Tls12EcdheWrongPointLength) {
  ExpectDenied(Ecdhe(23, 33, 33, 0x02), offkey::v1::TLS_1_2,
               "secp256r1 point length is 33; expected 65");  // Compressed.
  ExpectDenied(Ecdhe(23, 97, 97), offkey::v1::TLS_1_2, "secp256r1 point length is 97");
  ExpectDenied(Ecdhe(24, 65, 65), offkey::v1::TLS_1_2, "secp384r1 point length is 65");
  ExpectDenied(Ecdhe(25, 132, 132), offkey::v1::TLS_1_2, "secp521r1 point length is 132");
  ExpectDenied(Ecdhe(29, 65, 65), offkey::v1::TLS_1_2, "x25519 point length is 65");
  ExpectDenied(Ecdhe(30, 32, 32), offkey::v1::TLS_1_2, "x448 point length is 32");
  ExpectDenied(Ecdhe(29, 0, 0), offkey::v1::TLS_1_2, "x25519 point length is 0");
}

TEST(HandshakeShapeTest, Tls12EcdheNistPointMustBeUncompressed) {
  for (char first : {'\0', '\x02', '\x03', '\x06'}) {
    ExpectDenied(Ecdhe(23, 65, 65, first), offkey::v1::TLS_1_2,
                 "does not start with 0x04");
  }
}

TEST(HandshakeShapeTest, Tls12EcdheCutInsideHeader) {
  const std::string full = Ecdhe(23, 65, 65);
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

// --- TLS 1.2 DHE
// ------------------------------------------------------------------------

TEST(HandshakeShapeTest, Tls12Dhe) {
  // dh_p lengths whose high byte collides with curve_type values 0..4, including 0x03
  // (768-byte p) which starts like ServerECDHParams.
  for (size_t p : {1, 128, 256, 384, 512, 768, 1000, 1024}) {
    SCOPED_TRACE(p);
    ExpectOk(Dhe(p, 1, p), offkey::v1::TLS_1_2);
    ExpectOk(Dhe(p, 1, 1), offkey::v1::TLS_1_2);
    ExpectOk(Dhe(p, p, p - (p > 1 ? 1 : 0)), offkey::v1::TLS_1_2);
  }
}

TEST(HandshakeShapeTest, Tls12DheZeroLengthFields) {
  ExpectDenied(Dhe(0, 1, 256), offkey::v1::TLS_1_2, "dh_p has length 0");
  ExpectDenied(Dhe(256, 0, 256), offkey::v1::TLS_1_2, "dh_g has length 0");
  ExpectDenied(Dhe(256, 1, 0), offkey::v1::TLS_1_2, "dh_Ys has length 0");
}

TEST(HandshakeShapeTest, Tls12DheTrailingData) {
  ExpectDenied(Dhe(256, 1, 256) + "x", offkey::v1::TLS_1_2,
               "1 bytes after ServerDHParams; nothing may follow dh_Ys");
  ExpectDenied(Dhe(256, 1, 256) + Dhe(256, 1, 256), offkey::v1::TLS_1_2,
               "bytes after ServerDHParams");
  // Same with a 768-byte p, whose first byte (0x03) also reads as curve_type.
  ExpectDenied(Dhe(768, 1, 768) + "x", offkey::v1::TLS_1_2,
               "1 bytes after ServerDHParams");
}

TEST(HandshakeShapeTest, Tls12DheTooLong) {
  ExpectDenied(Dhe(1025, 1, 256), offkey::v1::TLS_1_2, "dh_p has length 1025");
  ExpectDenied(Dhe(256, 1, 1025), offkey::v1::TLS_1_2, "dh_Ys has length 1025");
  ExpectDenied(Dhe(256, 2, 257), offkey::v1::TLS_1_2, "dh_Ys has 257 bytes, more than");
  ExpectDenied(Dhe(256, 257, 256), offkey::v1::TLS_1_2, "dh_g has 257 bytes, more than");
}

TEST(HandshakeShapeTest, Tls12DheLeadingZeroP) {
  std::string message = Randoms() + Be16(256) + std::string(1, '\0') + Filler(255) +
                        DhField(1, '\x02') + DhField(256);
  ExpectDenied(message, offkey::v1::TLS_1_2, "dh_p starts with a 0x00 byte");
}

TEST(HandshakeShapeTest, Tls12DheTruncated) {
  const std::string full = Dhe(256, 1, 256);
  ExpectDenied(full.substr(0, 65), offkey::v1::TLS_1_2, "ends inside the dh_p length");
  ExpectDenied(full.substr(0, 66 + 255), offkey::v1::TLS_1_2,
               "dh_p is truncated: 255 of 256 bytes");
  ExpectDenied(full.substr(0, 66 + 256 + 1), offkey::v1::TLS_1_2,
               "ends inside the dh_g length");
  ExpectDenied(full.substr(0, 66 + 256 + 3), offkey::v1::TLS_1_2,
               "ends inside the dh_Ys");
  ExpectDenied(full.substr(0, full.size() - 1), offkey::v1::TLS_1_2,
               "dh_Ys is truncated: 255 of 256 bytes");
}

TEST(HandshakeShapeTest, Tls12InputUnderTls13IsRefused) {
  ExpectDenied(Ecdhe(23, 65, 65), offkey::v1::TLS_1_3, "TLS 1.3 CertificateVerify input");
  ExpectDenied(Dhe(256, 1, 256), offkey::v1::TLS_1_3, "TLS 1.3 CertificateVerify input");
}

// --- Versions
// ---------------------------------------------------------------------------

TEST(HandshakeShapeTest, UnspecifiedVersionIsRefused) {
  for (const std::string& message : {Tls13(32), Ecdhe(23, 65, 65), Dhe(256, 1, 256)}) {
    ExpectDenied(message, offkey::v1::TLS_VERSION_UNSPECIFIED, "set context.version");
  }
}

TEST(HandshakeShapeTest, OtherVersionsAreRefused) {
  for (int version : {0x0300, 0x0301, 0x0302, 0x0305, -1}) {
    ExpectDenied(Tls13(32), static_cast<TlsVersion>(version),
                 "a tls-server key signs only");
    ExpectDenied(Ecdhe(23, 65, 65), static_cast<TlsVersion>(version),
                 "a tls-server key signs only");
  }
}

}  // namespace
}  // namespace offkey::service::tls
