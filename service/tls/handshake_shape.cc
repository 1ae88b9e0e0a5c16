#include "service/tls/handshake_shape.h"

#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace offkey::service::tls {
namespace {

// Every message below is built from lengths, offsets and offkey's own constants only:
// the signed bytes may be a transcript hash or randoms and must not reach logs.

absl::Status Deny13(absl::string_view detail) {
  return absl::PermissionDeniedError(
      absl::StrCat("TLS 1.3 CertificateVerify input: ", detail));
}

absl::Status Deny12(absl::string_view detail) {
  return absl::PermissionDeniedError(
      absl::StrCat("TLS 1.2 ServerKeyExchange input (client_random, server_random, then "
                   "ServerECDHParams or ServerDHParams): ",
                   detail));
}

absl::Status CheckTls13(absl::string_view message, const SchemeInfo& scheme) {
  for (size_t i = 0; i < kTls13PaddingSize; ++i) {
    if (i == message.size()) {
      return Deny13(absl::StrCat("message ends after ", i,
                                 " bytes; expected 64 bytes of 0x20 padding first"));
    }
    if (message[i] != 0x20) {
      return Deny13(absl::StrCat(
          "byte ", i, " is not 0x20; expected 64 bytes of 0x20 padding first"));
    }
  }
  absl::string_view rest = message.substr(kTls13PaddingSize);
  if (!rest.empty() && rest[0] == 0x20) {
    return Deny13(
        "more than 64 bytes of 0x20 padding; expected exactly 64, then the context "
        "string");
  }
  if (absl::StartsWith(rest, kTls13ClientContext)) {
    return Deny13(absl::StrCat(
        "context string is the client CertificateVerify context; a tls-server key signs "
        "only \"",
        kTls13ServerContext, "\""));
  }
  if (!absl::StartsWith(rest, kTls13ServerContext)) {
    return Deny13(absl::StrCat("context string after the padding is not \"",
                               kTls13ServerContext, "\""));
  }
  rest.remove_prefix(kTls13ServerContext.size());
  if (rest.empty()) {
    return Deny13(
        "message ends after the context string; expected 0x00, then the "
        "transcript hash");
  }
  if (rest[0] != 0x00) {
    return Deny13("no 0x00 byte after the context string");
  }
  rest.remove_prefix(1);
  // The transcript hash is the cipher suite's hash, not the signature scheme's (RFC 8446
  // §4.4.1): TLS_*_SHA256 suites give 32 bytes, TLS_AES_256_GCM_SHA384 gives 48.
  const size_t sha256 = hsm::HashLength(hsm::HashAlgorithm::kSha256);
  const size_t sha384 = hsm::HashLength(hsm::HashAlgorithm::kSha384);
  if (rest.size() != sha256 && rest.size() != sha384) {
    return Deny13(absl::StrCat("transcript hash has ", rest.size(), " bytes; ",
                               scheme.name, " in TLS 1.3 needs ", sha256, " or ", sha384,
                               " (the cipher suite's SHA-256 or SHA-384)"));
  }
  return absl::OkStatus();
}

struct NamedCurve {
  uint16_t id;
  absl::string_view name;
  size_t point_size;
  bool uncompressed;  // NIST curves: 0x04 || X || Y. RFC 8422 §5.4.1 forbids compression.
};

constexpr NamedCurve kNamedCurves[] = {
    {23, "secp256r1", 65, true},  {24, "secp384r1", 97, true},
    {25, "secp521r1", 133, true}, {29, "x25519", 32, false},
    {30, "x448", 56, false},
};

constexpr uint8_t kNamedCurveType = 3;

uint8_t Byte(absl::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

// ServerECDHParams (RFC 8422 §5.4). On failure returns false and sets *why.
bool ParseEcdhParams(absl::string_view params, std::string* why) {
  if (Byte(params, 0) != kNamedCurveType) {
    *why = "curve_type is not named_curve (3); explicit curves are not accepted";
    return false;
  }
  if (params.size() < 3) {
    *why = "ServerECDHParams ends inside the NamedCurve";
    return false;
  }
  const uint16_t id = static_cast<uint16_t>(Byte(params, 1) << 8 | Byte(params, 2));
  const NamedCurve* curve = nullptr;
  for (const NamedCurve& c : kNamedCurves) {
    if (c.id == id) curve = &c;
  }
  if (curve == nullptr) {
    *why =
        "NamedCurve is not one of secp256r1 (23), secp384r1 (24), secp521r1 (25), "
        "x25519 (29), x448 (30)";
    return false;
  }
  if (params.size() < 4) {
    *why =
        absl::StrCat("ServerECDHParams ends before the ", curve->name, " point length");
    return false;
  }
  const size_t length = Byte(params, 3);
  absl::string_view point = params.substr(4);
  if (length != curve->point_size) {
    *why = absl::StrCat(curve->name, " point length is ", length, "; expected ",
                        curve->point_size, curve->uncompressed ? " (uncompressed)" : "");
    return false;
  }
  if (point.size() < length) {
    *why = absl::StrCat(curve->name, " point is truncated: ", point.size(), " of ",
                        length, " bytes");
    return false;
  }
  if (point.size() > length) {
    *why = absl::StrCat(point.size() - length,
                        " bytes after ServerECDHParams; nothing may follow the point");
    return false;
  }
  if (curve->uncompressed && Byte(point, 0) != 0x04) {
    *why = absl::StrCat(curve->name, " point does not start with 0x04 (uncompressed)");
    return false;
  }
  return true;
}

// One ServerDHParams field: a 2-byte length and 1..kMaxDhFieldSize bytes. Advances *rest.
bool ReadDhField(absl::string_view name, absl::string_view* rest,
                 absl::string_view* field, std::string* why) {
  if (rest->size() < 2) {
    *why = absl::StrCat("ServerDHParams ends inside the ", name, " length");
    return false;
  }
  const size_t length = static_cast<size_t>(Byte(*rest, 0)) << 8 | Byte(*rest, 1);
  rest->remove_prefix(2);
  if (length == 0 || length > kMaxDhFieldSize) {
    *why = absl::StrCat(name, " has length ", length, "; expected 1..", kMaxDhFieldSize,
                        " bytes");
    return false;
  }
  if (rest->size() < length) {
    *why = absl::StrCat(name, " is truncated: ", rest->size(), " of ", length, " bytes");
    return false;
  }
  *field = rest->substr(0, length);
  rest->remove_prefix(length);
  return true;
}

// ServerDHParams (RFC 5246 §7.4.3). On failure returns false and sets *why.
bool ParseDhParams(absl::string_view params, std::string* why) {
  absl::string_view rest = params;
  absl::string_view p, g, ys;
  if (!ReadDhField("dh_p", &rest, &p, why)) return false;
  if (Byte(p, 0) == 0) {
    *why = "dh_p starts with a 0x00 byte; expected a minimal encoding";
    return false;
  }
  if (!ReadDhField("dh_g", &rest, &g, why)) return false;
  if (!ReadDhField("dh_Ys", &rest, &ys, why)) return false;
  // g and Ys are numbers below p, so their encodings are never longer than p's.
  if (g.size() > p.size()) {
    *why = absl::StrCat("dh_g has ", g.size(), " bytes, more than dh_p's ", p.size());
    return false;
  }
  if (ys.size() > p.size()) {
    *why = absl::StrCat("dh_Ys has ", ys.size(), " bytes, more than dh_p's ", p.size());
    return false;
  }
  if (!rest.empty()) {
    *why = absl::StrCat(rest.size(),
                        " bytes after ServerDHParams; nothing may follow dh_Ys");
    return false;
  }
  return true;
}

absl::Status CheckTls12(absl::string_view message) {
  if (message.size() < kTls12RandomsSize) {
    return Deny12(absl::StrCat("message has ", message.size(),
                               " bytes, fewer than the 64 bytes of randoms"));
  }
  absl::string_view params = message.substr(kTls12RandomsSize);
  if (params.empty()) {
    return Deny12("nothing after the 64 bytes of randoms");
  }
  // The first params byte is curve_type for ECDHE and the high byte of the dh_p length
  // for DHE (0x00..0x04 for 1..1024 bytes). 0x01..0x03 can be either (a 2048-bit dh_p
  // is 0x01 0x00 ...), so both readings are tried and either may accept.
  const uint8_t first = Byte(params, 0);
  const bool maybe_ecdh = first >= 1 && first <= kNamedCurveType;
  const bool maybe_dh = first <= (kMaxDhFieldSize >> 8);
  if (!maybe_ecdh && !maybe_dh) {
    return Deny12(
        "params start with neither curve_type named_curve (3) nor a dh_p length of "
        "1..1024");
  }
  std::string ecdh_why, dh_why;
  if (maybe_ecdh && ParseEcdhParams(params, &ecdh_why)) return absl::OkStatus();
  if (maybe_dh && ParseDhParams(params, &dh_why)) return absl::OkStatus();
  if (!maybe_dh) return Deny12(absl::StrCat("ServerECDHParams: ", ecdh_why));
  if (!maybe_ecdh) return Deny12(absl::StrCat("ServerDHParams: ", dh_why));
  // Ambiguous first byte: lead with the more likely reading.
  if (first == kNamedCurveType) {
    return Deny12(absl::StrCat("ServerECDHParams: ", ecdh_why,
                               " (not ServerDHParams either: ", dh_why, ")"));
  }
  return Deny12(absl::StrCat("ServerDHParams: ", dh_why,
                             " (not ServerECDHParams either: ", ecdh_why, ")"));
}

}  // namespace

absl::Status CheckHandshakeShaped(absl::string_view message, const SchemeInfo& scheme,
                                  offkey::v1::TlsVersion version) {
  switch (version) {
    case offkey::v1::TLS_1_3:
      return CheckTls13(message, scheme);
    case offkey::v1::TLS_1_2:
      return CheckTls12(message);
    case offkey::v1::TLS_VERSION_UNSPECIFIED:
      return absl::PermissionDeniedError(
          "a tls-server key signs only TLS handshake inputs (TLS 1.3 server "
          "CertificateVerify, TLS 1.2 ServerKeyExchange); set context.version to TLS_1_2 "
          "or TLS_1_3");
    default:
      return absl::PermissionDeniedError(absl::StrFormat(
          "TLS version 0x%04x: a tls-server key signs only TLS 1.2 ServerKeyExchange and "
          "TLS 1.3 server CertificateVerify inputs",
          static_cast<uint32_t>(version)));
  }
}

}  // namespace offkey::service::tls
