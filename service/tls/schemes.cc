#include "service/tls/schemes.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace offkey::service::tls {
namespace {

using hsm::HashAlgorithm;
using hsm::KeyAlgorithm;
using hsm::KeyFamily;
using hsm::SignatureKind;
using offkey::v1::SignatureScheme;
using offkey::v1::TlsVersion;

// Short names so each table row fits on two lines.
constexpr SignatureKind kEcdsa = SignatureKind::kEcdsa;
constexpr SignatureKind kEdDsa = SignatureKind::kEdDsa;
constexpr SignatureKind kPss = SignatureKind::kRsaPss;
constexpr SignatureKind kPkcs1 = SignatureKind::kRsaPkcs1;
constexpr HashAlgorithm kSha256 = HashAlgorithm::kSha256;
constexpr HashAlgorithm kSha384 = HashAlgorithm::kSha384;
constexpr HashAlgorithm kSha512 = HashAlgorithm::kSha512;
constexpr HashAlgorithm kNoHash = HashAlgorithm::kNone;
constexpr KeyFamily kRsa = KeyFamily::kRsa;
constexpr KeyFamily kEc = KeyFamily::kEc;
constexpr KeyFamily kEd = KeyFamily::kEd25519;
constexpr KeyAlgorithm kNoCurve = KeyAlgorithm::kUnknown;

// Row order is offkey's preference: within a family, earlier rows are suggested first
// (error messages) and listed first (SchemesForKey).
// clang-format off
constexpr SchemeInfo kSchemes[] = {
  // scheme, name,
  //   {kind, hash}, family, curve, needs_pss_key, tls12, tls13
  {offkey::v1::ECDSA_SECP256R1_SHA256, "ecdsa_secp256r1_sha256",
     {kEcdsa, kSha256}, kEc,  KeyAlgorithm::kEcP256, false, true, true},
  {offkey::v1::ECDSA_SECP384R1_SHA384, "ecdsa_secp384r1_sha384",
     {kEcdsa, kSha384}, kEc,  KeyAlgorithm::kEcP384, false, true, true},
  {offkey::v1::ECDSA_SECP521R1_SHA512, "ecdsa_secp521r1_sha512",
     {kEcdsa, kSha512}, kEc,  KeyAlgorithm::kEcP521, false, true, true},
  {offkey::v1::ED25519,                "ed25519",
     {kEdDsa, kNoHash}, kEd,  kNoCurve,              false, true, true},
  {offkey::v1::RSA_PSS_RSAE_SHA256,    "rsa_pss_rsae_sha256",
     {kPss,   kSha256}, kRsa, kNoCurve,              false, true, true},
  {offkey::v1::RSA_PSS_RSAE_SHA384,    "rsa_pss_rsae_sha384",
     {kPss,   kSha384}, kRsa, kNoCurve,              false, true, true},
  {offkey::v1::RSA_PSS_RSAE_SHA512,    "rsa_pss_rsae_sha512",
     {kPss,   kSha512}, kRsa, kNoCurve,              false, true, true},
  // PKCS#1 v1.5: TLS 1.2 only (RFC 8446 §4.2.3 keeps it for certificates, not handshakes).
  {offkey::v1::RSA_PKCS1_SHA256,       "rsa_pkcs1_sha256",
     {kPkcs1, kSha256}, kRsa, kNoCurve,              false, true, false},
  {offkey::v1::RSA_PKCS1_SHA384,       "rsa_pkcs1_sha384",
     {kPkcs1, kSha384}, kRsa, kNoCurve,              false, true, false},
  {offkey::v1::RSA_PKCS1_SHA512,       "rsa_pkcs1_sha512",
     {kPkcs1, kSha512}, kRsa, kNoCurve,              false, true, false},
  // RSASSA-PSS keys (id-RSASSA-PSS SPKI): offkey holds none, so these always refuse.
  {offkey::v1::RSA_PSS_PSS_SHA256,     "rsa_pss_pss_sha256",
     {kPss,   kSha256}, kRsa, kNoCurve,              true,  true, true},
  {offkey::v1::RSA_PSS_PSS_SHA384,     "rsa_pss_pss_sha384",
     {kPss,   kSha384}, kRsa, kNoCurve,              true,  true, true},
  {offkey::v1::RSA_PSS_PSS_SHA512,     "rsa_pss_pss_sha512",
     {kPss,   kSha512}, kRsa, kNoCurve,              true,  true, true},
};
// clang-format on

// Why a (scheme, key, version) triple is refused; kNone when it is allowed.
enum class Refusal { kNone, kUnknownKey, kFamily, kPssKey, kVersion, kCurve };

bool KnownVersion(TlsVersion version) {
  return version == offkey::v1::TLS_VERSION_UNSPECIFIED ||
         version == offkey::v1::TLS_1_2 || version == offkey::v1::TLS_1_3;
}

// The single place the rules live. `version` must satisfy KnownVersion.
Refusal WhyNot(const SchemeInfo& row, KeyAlgorithm key, TlsVersion version) {
  // KeyBits is 0 for kUnknown and for values outside the enum.
  if (hsm::KeyBits(key) == 0) return Refusal::kUnknownKey;
  if (hsm::FamilyOf(key) != row.family) return Refusal::kFamily;
  // offkey's RSA keys are all rsaEncryption keys, never RSASSA-PSS keys.
  if (row.needs_pss_key) return Refusal::kPssKey;
  switch (version) {
    case offkey::v1::TLS_1_3:
      if (!row.tls13) return Refusal::kVersion;
      if (row.curve != KeyAlgorithm::kUnknown && row.curve != key) return Refusal::kCurve;
      return Refusal::kNone;
    case offkey::v1::TLS_1_2:
      return row.tls12 ? Refusal::kNone : Refusal::kVersion;
    default:  // Not a handshake: key fit only.
      return Refusal::kNone;
  }
}

absl::string_view FamilyArticleName(KeyFamily family) {
  switch (family) {
    case KeyFamily::kRsa:
      return "an RSA";
    case KeyFamily::kEc:
      return "an EC";
    case KeyFamily::kEd25519:
      return "an Ed25519";
  }
  return "a different";
}

absl::string_view VersionName(TlsVersion version) {
  switch (version) {
    case offkey::v1::TLS_1_2:
      return "TLS 1.2";
    case offkey::v1::TLS_1_3:
      return "TLS 1.3";
    default:
      return "a non-handshake signature";
  }
}

// The scheme to suggest instead of `refused`: the first allowed row with the same hash,
// else the first allowed row at all. nullptr when the key can make nothing.
const SchemeInfo* Replacement(const SchemeInfo& refused, KeyAlgorithm key,
                              TlsVersion version) {
  const SchemeInfo* first_allowed = nullptr;
  for (const SchemeInfo& row : kSchemes) {
    if (WhyNot(row, key, version) != Refusal::kNone) continue;
    if (row.algorithm.hash == refused.algorithm.hash) return &row;
    if (first_allowed == nullptr) first_allowed = &row;
  }
  return first_allowed;
}

std::string UseInstead(const SchemeInfo& refused, KeyAlgorithm key, TlsVersion version) {
  const SchemeInfo* replacement = Replacement(refused, key, version);
  return replacement ? absl::StrCat("; use ", replacement->name) : "";
}

// "P-256" for an ECDSA row's curve (hsm's table of key algorithms).
absl::string_view CurveName(KeyAlgorithm curve) {
  const hsm::KeyAlgorithmInfo* row = hsm::FindKeyAlgorithm(curve);
  return row ? row->nist_name : "";
}

std::string Hex(SignatureScheme scheme) {
  return absl::StrFormat("0x%04x", static_cast<uint32_t>(scheme));
}

}  // namespace

absl::Span<const SchemeInfo> AllSchemes() { return kSchemes; }

const SchemeInfo* FindScheme(SignatureScheme scheme) {
  for (const SchemeInfo& row : kSchemes) {
    if (row.scheme == scheme) return &row;
  }
  return nullptr;
}

absl::Status CheckScheme(SignatureScheme scheme, KeyAlgorithm key, TlsVersion version) {
  const SchemeInfo* row = FindScheme(scheme);
  if (row == nullptr) {
    if (scheme == offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          "signature scheme is not set; choose one of the key's schemes "
          "(KeyInfo.schemes)");
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown signature scheme ", Hex(scheme),
                     "; offkey signs with the schemes listed in KeyInfo.schemes"));
  }
  if (!KnownVersion(version)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "TLS version 0x%04x is not supported; offkey signs for TLS 1.2 (0x0303) and "
        "TLS 1.3 (0x0304), or with the version unset outside a handshake",
        static_cast<uint32_t>(version)));
  }
  switch (WhyNot(*row, key, version)) {
    case Refusal::kNone:
      return absl::OkStatus();
    case Refusal::kUnknownKey:
      return absl::InvalidArgumentError(
          absl::StrCat(row->name,
                       " refused: the key's algorithm is unknown to offkey, so "
                       "no signature scheme fits it"));
    case Refusal::kFamily:
      return absl::InvalidArgumentError(absl::StrCat(
          row->name, " needs ", FamilyArticleName(row->family), " key; key is ",
          hsm::KeyAlgorithmName(key), UseInstead(*row, key, version)));
    case Refusal::kPssKey: {
      const SchemeInfo* replacement = Replacement(*row, key, version);
      return absl::InvalidArgumentError(absl::StrCat(
          row->name, " needs an RSASSA-PSS key; offkey RSA keys are rsaEncryption",
          replacement ? absl::StrCat(", use ", replacement->name) : ""));
    }
    case Refusal::kVersion:
      return absl::InvalidArgumentError(absl::StrCat(row->name, " is not allowed in ",
                                                     VersionName(version),
                                                     UseInstead(*row, key, version)));
    case Refusal::kCurve:
      return absl::InvalidArgumentError(absl::StrCat(
          row->name, " needs a ", CurveName(row->curve), " key in ", VersionName(version),
          "; key is ", hsm::KeyAlgorithmName(key), UseInstead(*row, key, version)));
  }
  return absl::InternalError("unreachable");
}

SignatureScheme DefaultCsrScheme(KeyAlgorithm key) {
  const hsm::KeyAlgorithmInfo* info = hsm::FindKeyAlgorithm(key);
  if (info == nullptr) return offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED;
  for (const SchemeInfo& row : kSchemes) {
    if (row.algorithm == info->csr_signature &&
        (row.curve == KeyAlgorithm::kUnknown || row.curve == key) &&
        WhyNot(row, key, offkey::v1::TLS_VERSION_UNSPECIFIED) == Refusal::kNone) {
      return row.scheme;
    }
  }
  return offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED;
}

std::vector<SignatureScheme> SchemesForKey(KeyAlgorithm key) {
  std::vector<SignatureScheme> with_tls13;
  std::vector<SignatureScheme> tls12_only;
  for (const SchemeInfo& row : kSchemes) {
    if (WhyNot(row, key, offkey::v1::TLS_1_3) == Refusal::kNone) {
      with_tls13.push_back(row.scheme);
    } else if (WhyNot(row, key, offkey::v1::TLS_1_2) == Refusal::kNone) {
      tls12_only.push_back(row.scheme);
    }
  }
  with_tls13.insert(with_tls13.end(), tls12_only.begin(), tls12_only.end());
  return with_tls13;
}

std::string SchemeName(SignatureScheme scheme) {
  if (const SchemeInfo* row = FindScheme(scheme)) return std::string(row->name);
  if (scheme == offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) return "unspecified";
  return Hex(scheme);
}

}  // namespace offkey::service::tls
