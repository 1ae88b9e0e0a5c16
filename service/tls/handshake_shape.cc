#include "service/tls/handshake_shape.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/openssl_util.h"

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

// --- ECDHE (RFC 8422 §5.4)

struct NamedCurve {
  uint16_t id;
  absl::string_view name;
  size_t point_size;
  // NIST curves: the OpenSSL curve, and the point is 0x04 || X || Y (RFC 8422 §5.4.1
  // allows only the uncompressed form). NID_undef for X25519/X448, whose key share is the
  // u-coordinate (RFC 7748 §5).
  int nid;
};

constexpr NamedCurve kNamedCurves[] = {
    {23, "secp256r1", 65, NID_X9_62_prime256v1},
    {24, "secp384r1", 97, NID_secp384r1},
    {25, "secp521r1", 133, NID_secp521r1},
    {29, "x25519", 32, NID_undef},
    {30, "x448", 56, NID_undef},
};

constexpr uint8_t kNamedCurveType = 3;

uint8_t Byte(absl::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

// The group of a NIST curve of kNamedCurves, built once and kept for the process;
// nullptr if OpenSSL cannot build it (then no point on it is accepted).
const EC_GROUP* NistGroup(int nid) {
  static const auto* const groups = [] {
    auto* built = new std::vector<std::pair<int, const EC_GROUP*>>();
    for (const NamedCurve& curve : kNamedCurves) {
      if (curve.nid == NID_undef) continue;
      built->emplace_back(curve.nid, EC_GROUP_new_by_curve_name(curve.nid));
    }
    ERR_clear_error();
    return built;
  }();
  for (const auto& [group_nid, group] : *groups) {
    if (group_nid == nid) return group;
  }
  return nullptr;
}

// Whether `point` (0x04 || X || Y of the curve's size) is a point of `curve`: both
// coordinates below the field prime, on the curve, not the point at infinity. Leaves
// OpenSSL's error queue as it found it.
bool IsPointOnCurve(const NamedCurve& curve, absl::string_view point) {
  const EC_GROUP* group = NistGroup(curve.nid);
  if (group == nullptr) return false;
  EC_POINT* decoded = EC_POINT_new(group);
  if (decoded == nullptr) return false;
  ERR_set_mark();
  // oct2point refuses coordinates >= p and points off the curve; the explicit checks
  // state the contract rather than lean on that.
  const bool ok =
      EC_POINT_oct2point(group, decoded, reinterpret_cast<const uint8_t*>(point.data()),
                         point.size(), nullptr) == 1 &&
      EC_POINT_is_at_infinity(group, decoded) == 0 &&
      EC_POINT_is_on_curve(group, decoded, nullptr) == 1;
  ERR_pop_to_mark();
  EC_POINT_free(decoded);
  return ok;
}

// ServerECDHParams. On failure returns false and sets *why.
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
  const bool nist = curve->nid != NID_undef;
  if (length != curve->point_size) {
    *why = absl::StrCat(curve->name, " point length is ", length, "; expected ",
                        curve->point_size, nist ? " (uncompressed)" : "");
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
  if (!nist) return true;  // Every 32/56-byte string is an X25519/X448 public key.
  if (Byte(point, 0) != 0x04) {
    *why = absl::StrCat(curve->name, " point does not start with 0x04 (uncompressed)");
    return false;
  }
  if (!IsPointOnCurve(*curve, point)) {
    *why = absl::StrCat(curve->name,
                        " point is not a point on the curve (coordinates below the field "
                        "prime, satisfying the curve equation)");
    return false;
  }
  return true;
}

// --- DHE (RFC 5246 §7.4.3) with the RFC 7919 groups

struct FfdheGroup {
  std::string name;
  std::string p;  // Big-endian, no leading zero (the top bit of every RFC 7919 p is set).
  std::string p_minus_1;
};

// The RFC 7919 groups as OpenSSL defines them, loaded once. Empty if OpenSSL has none
// (then DHE is refused whatever the configuration says).
const std::vector<FfdheGroup>& FfdheGroups() {
  static const auto* const groups = [] {
    auto* loaded = new std::vector<FfdheGroup>();
    for (const char* name :
         {"ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"}) {
      EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
      const OSSL_PARAM params[] = {
          OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                           const_cast<char*>(name), 0),
          OSSL_PARAM_construct_end()};
      EVP_PKEY* raw = nullptr;
      if (ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
          EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_KEY_PARAMETERS,
                            const_cast<OSSL_PARAM*>(params)) != 1) {
        continue;
      }
      EvpPkeyPtr key(raw);
      BIGNUM* p = nullptr;
      if (EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_FFC_P, &p) != 1) continue;
      BignumPtr owned(p);
      FfdheGroup group{name, std::string(BN_num_bytes(p), '\0'), ""};
      BN_bn2bin(p, reinterpret_cast<uint8_t*>(group.p.data()));
      group.p_minus_1 = group.p;
      group.p_minus_1.back() -= 1;  // p is odd: no borrow.
      loaded->push_back(std::move(group));
    }
    ERR_clear_error();
    return loaded;
  }();
  return *groups;
}

// One ServerDHParams field: a 2-byte length and that many bytes. Advances *rest.
bool ReadDhField(absl::string_view name, absl::string_view* rest,
                 absl::string_view* field, std::string* why) {
  if (rest->size() < 2) {
    *why = absl::StrCat("ServerDHParams ends inside the ", name, " length");
    return false;
  }
  const size_t length = static_cast<size_t>(Byte(*rest, 0)) << 8 | Byte(*rest, 1);
  rest->remove_prefix(2);
  if (rest->size() < length) {
    *why = absl::StrCat(name, " is truncated: ", rest->size(), " of ", length, " bytes");
    return false;
  }
  *field = rest->substr(0, length);
  rest->remove_prefix(length);
  return true;
}

// ServerDHParams of an RFC 7919 group, for an RSA key of `key_bytes` modulus bytes.
// On failure returns false and sets *why.
bool ParseDhParams(absl::string_view params, size_t key_bytes, absl::string_view key_name,
                   std::string* why) {
  absl::string_view rest = params;
  absl::string_view p, g, ys;
  if (!ReadDhField("dh_p", &rest, &p, why)) return false;
  const FfdheGroup* group = nullptr;
  for (const FfdheGroup& candidate : FfdheGroups()) {
    if (p == candidate.p) group = &candidate;
  }
  if (group == nullptr) {
    *why =
        "dh_p is not an RFC 7919 group (ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, "
        "ffdhe8192, byte for byte)";
    return false;
  }
  // A dh_Ys longer than the modulus would have room for this key's own
  // SubjectPublicKeyInfo (see README.md).
  if (p.size() > key_bytes) {
    *why = absl::StrCat("dh_p: ", group->name, " is larger than the ", key_name,
                        " key; with it use a group of at most ", key_bytes * 8, " bits");
    return false;
  }
  if (!ReadDhField("dh_g", &rest, &g, why)) return false;
  if (g != "\x02") {
    *why = "dh_g must be the single byte 0x02 (the RFC 7919 generator)";
    return false;
  }
  if (!ReadDhField("dh_Ys", &rest, &ys, why)) return false;
  if (ys.size() != p.size()) {
    *why = absl::StrCat("dh_Ys has ", ys.size(), " bytes; with ", group->name,
                        " it has exactly ", p.size(), " (left-padded with zeros)");
    return false;
  }
  // Same-length big-endian strings compare as the numbers they encode.
  const bool above_one =
      ys.substr(0, ys.size() - 1).find_first_not_of('\0') != absl::string_view::npos ||
      Byte(ys, ys.size() - 1) > 1;
  if (!above_one || ys.compare(group->p_minus_1) >= 0) {
    *why = "dh_Ys must be in 2..p-2";
    return false;
  }
  if (!rest.empty()) {
    *why = absl::StrCat(rest.size(),
                        " bytes after ServerDHParams; nothing may follow dh_Ys");
    return false;
  }
  return true;
}

absl::Status CheckTls12(absl::string_view message, const SchemeInfo& scheme,
                        hsm::KeyAlgorithm key, const HandshakeShapeOptions& options) {
  // The key as well as the scheme: this refusal must not rest on CheckScheme having
  // matched the two first.
  const hsm::KeyAlgorithmInfo* key_info = hsm::FindKeyAlgorithm(key);
  if (scheme.family == hsm::KeyFamily::kEd25519 ||
      (key_info != nullptr && key_info->family == hsm::KeyFamily::kEd25519)) {
    return Deny12(
        "Ed25519 keys sign only TLS 1.3 CertificateVerify inputs: an Ed25519 signature "
        "covers the message itself, and in TLS 1.2 the 64 caller-chosen random bytes "
        "hold a whole Ed25519 SubjectPublicKeyInfo, so the input could be a certificate "
        "request for this key; negotiate TLS 1.3 or use an ECDSA or RSA key");
  }
  if (message.size() < kTls12RandomsSize) {
    return Deny12(absl::StrCat("message has ", message.size(),
                               " bytes, fewer than the 64 bytes of randoms"));
  }
  absl::string_view params = message.substr(kTls12RandomsSize);
  if (params.empty()) {
    return Deny12("nothing after the 64 bytes of randoms");
  }
  // The first params byte is curve_type for ECDHE and the high byte of the dh_p length
  // for DHE (0x00..0x04 for 0..1024 bytes; 0x01..0x04 for the RFC 7919 groups), and
  // ffdhe6144's 768 bytes start 0x03 like named_curve. So an ECDHE reading that fails
  // may still be DHE.
  const uint8_t first = Byte(params, 0);
  std::string ecdh_why;
  if (ParseEcdhParams(params, &ecdh_why)) return absl::OkStatus();
  const bool maybe_dh = first <= (kMaxDhFieldSize >> 8);
  if (!maybe_dh) return Deny12(absl::StrCat("ServerECDHParams: ", ecdh_why));
  if (!options.allow_rfc7919_dhe) {
    return Deny12(absl::StrCat(
        "ServerECDHParams: ", ecdh_why,
        "; and ServerDHParams (DHE) are refused unless the server configuration sets "
        "handshake.allow_rfc7919_dhe"));
  }
  const hsm::KeyAlgorithmInfo* info = hsm::FindKeyAlgorithm(key);
  if (scheme.family != hsm::KeyFamily::kRsa || info == nullptr ||
      info->family != hsm::KeyFamily::kRsa) {
    return Deny12(absl::StrCat("ServerECDHParams: ", ecdh_why,
                               "; and DHE is signed only by RSA keys (TLS 1.2 has "
                               "DHE_RSA cipher suites, no DHE_ECDSA)"));
  }
  std::string dh_why;
  if (ParseDhParams(params, static_cast<size_t>(info->bits) / 8, info->name, &dh_why)) {
    return absl::OkStatus();
  }
  if (first == kNamedCurveType) {
    return Deny12(absl::StrCat("ServerECDHParams: ", ecdh_why,
                               " (not ServerDHParams either: ", dh_why, ")"));
  }
  return Deny12(absl::StrCat("ServerDHParams: ", dh_why));
}

}  // namespace

absl::Status CheckHandshakeShaped(absl::string_view message, const SchemeInfo& scheme,
                                  hsm::KeyAlgorithm key, offkey::v1::TlsVersion version,
                                  const HandshakeShapeOptions& options) {
  switch (version) {
    case offkey::v1::TLS_1_3:
      return CheckTls13(message, scheme);
    case offkey::v1::TLS_1_2:
      return CheckTls12(message, scheme, key, options);
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
