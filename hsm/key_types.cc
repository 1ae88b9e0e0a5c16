#include "hsm/key_types.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace offkey::hsm {
namespace {

// Debian's Abseil has its own string_view (not std's), so binary constants with
// embedded NULs are spelled out as arrays and wrapped with their exact size.
#define OFFKEY_BYTES(name, literal)        \
  constexpr char name##_bytes[] = literal; \
  constexpr absl::string_view name(name##_bytes, sizeof(name##_bytes) - 1)

// DER OBJECT IDENTIFIERs of the named curves (RFC 5480 2.1.1.1, RFC 8410 3).
OFFKEY_BYTES(kP256Oid, "\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07");
OFFKEY_BYTES(kP384Oid, "\x06\x05\x2b\x81\x04\x00\x22");
OFFKEY_BYTES(kP521Oid, "\x06\x05\x2b\x81\x04\x00\x23");
OFFKEY_BYTES(kEd25519Oid, "\x06\x03\x2b\x65\x70");
// PrintableString "edwards25519", which SoftHSM2 and others also accept and report.
OFFKEY_BYTES(kEd25519Name,
             "\x13\x0c"
             "edwards25519");

#undef OFFKEY_BYTES

constexpr SignAlgorithm kPkcs1Sha256{SignatureKind::kRsaPkcs1, HashAlgorithm::kSha256};
constexpr SignAlgorithm kEcdsaSha256{SignatureKind::kEcdsa, HashAlgorithm::kSha256};
constexpr SignAlgorithm kEcdsaSha384{SignatureKind::kEcdsa, HashAlgorithm::kSha384};
constexpr SignAlgorithm kEcdsaSha512{SignatureKind::kEcdsa, HashAlgorithm::kSha512};
constexpr SignAlgorithm kEdDsa{SignatureKind::kEdDsa, HashAlgorithm::kNone};

constexpr KeyFamily kRsa = KeyFamily::kRsa;
constexpr KeyFamily kEc = KeyFamily::kEc;
constexpr KeyFamily kEd = KeyFamily::kEd25519;
constexpr absl::string_view kNone;

// clang-format off
constexpr KeyAlgorithmInfo kAlgorithms[] = {
  // algorithm, name, family, bits, openssl_type, openssl_group, nist_name,
  //   ec_params, ec_params_alias, public_point_length, csr_signature, pkcs11_key_type
  {KeyAlgorithm::kRsa2048, "rsa-2048", kRsa, 2048, "RSA", "", "",
     kNone, kNone, 0, kPkcs1Sha256, kPkcs11KeyTypeRsa},
  {KeyAlgorithm::kRsa3072, "rsa-3072", kRsa, 3072, "RSA", "", "",
     kNone, kNone, 0, kPkcs1Sha256, kPkcs11KeyTypeRsa},
  {KeyAlgorithm::kRsa4096, "rsa-4096", kRsa, 4096, "RSA", "", "",
     kNone, kNone, 0, kPkcs1Sha256, kPkcs11KeyTypeRsa},
  {KeyAlgorithm::kEcP256,  "ec-p256",  kEc,  256,  "EC", "prime256v1", "P-256",
     kP256Oid, kNone, 65, kEcdsaSha256, kPkcs11KeyTypeEc},
  {KeyAlgorithm::kEcP384,  "ec-p384",  kEc,  384,  "EC", "secp384r1", "P-384",
     kP384Oid, kNone, 97, kEcdsaSha384, kPkcs11KeyTypeEc},
  {KeyAlgorithm::kEcP521,  "ec-p521",  kEc,  521,  "EC", "secp521r1", "P-521",
     kP521Oid, kNone, 133, kEcdsaSha512, kPkcs11KeyTypeEc},
  {KeyAlgorithm::kEd25519, "ed25519",  kEd,  255,  "ED25519", "", "",
     kEd25519Oid, kEd25519Name, 32, kEdDsa, kPkcs11KeyTypeEcEdwards},
};
// clang-format on

}  // namespace

absl::Span<const KeyAlgorithmInfo> AllKeyAlgorithms() { return kAlgorithms; }

const KeyAlgorithmInfo* FindKeyAlgorithm(KeyAlgorithm algorithm) {
  for (const auto& row : kAlgorithms) {
    if (row.algorithm == algorithm) return &row;
  }
  return nullptr;
}

KeyAlgorithm RsaAlgorithmForBits(int modulus_bits) {
  for (const auto& row : kAlgorithms) {
    if (row.family == KeyFamily::kRsa && row.bits == modulus_bits) return row.algorithm;
  }
  return KeyAlgorithm::kUnknown;
}

KeyAlgorithm EcAlgorithmForGroup(absl::string_view group) {
  if (group.empty()) return KeyAlgorithm::kUnknown;
  for (const auto& row : kAlgorithms) {
    if (row.family == KeyFamily::kEc &&
        (group == row.openssl_group || group == row.nist_name)) {
      return row.algorithm;
    }
  }
  return KeyAlgorithm::kUnknown;
}

KeyAlgorithm AlgorithmFromEcParams(absl::string_view params) {
  if (params.empty()) return KeyAlgorithm::kUnknown;
  for (const auto& row : kAlgorithms) {
    if (params == row.ec_params || params == row.ec_params_alias) return row.algorithm;
  }
  return KeyAlgorithm::kUnknown;
}

std::string SupportedSizes(KeyFamily family) {
  std::vector<std::string> names;
  for (const auto& row : kAlgorithms) {
    if (row.family != family) continue;
    switch (family) {
      case KeyFamily::kRsa:
        names.push_back(std::to_string(row.bits));
        break;
      case KeyFamily::kEc:
        names.push_back(row.nist_name);
        break;
      case KeyFamily::kEd25519:
        names.push_back("Ed25519");
        break;
    }
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
    out += names[i];
  }
  return out;
}

KeyFamily FamilyOf(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  return row ? row->family : KeyFamily::kRsa;
}

int KeyBits(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  return row ? row->bits : 0;
}

absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  return row ? row->name : "unknown";
}

std::optional<KeyAlgorithm> KeyAlgorithmFromName(absl::string_view name) {
  for (const auto& row : kAlgorithms) {
    if (row.name == name) return row.algorithm;
  }
  return std::nullopt;
}

size_t HashLength(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kNone:
      return 0;
    case HashAlgorithm::kSha1:
      return 20;
    case HashAlgorithm::kSha256:
      return 32;
    case HashAlgorithm::kSha384:
      return 48;
    case HashAlgorithm::kSha512:
      return 64;
  }
  return 0;
}

absl::string_view HashName(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kNone:
      return "none";
    case HashAlgorithm::kSha1:
      return "sha1";
    case HashAlgorithm::kSha256:
      return "sha256";
    case HashAlgorithm::kSha384:
      return "sha384";
    case HashAlgorithm::kSha512:
      return "sha512";
  }
  return "none";
}

absl::string_view SignatureKindName(SignatureKind kind) {
  switch (kind) {
    case SignatureKind::kRsaPkcs1:
      return "rsa-pkcs1";
    case SignatureKind::kRsaPss:
      return "rsa-pss";
    case SignatureKind::kEcdsa:
      return "ecdsa";
    case SignatureKind::kEdDsa:
      return "eddsa";
  }
  return "unknown";
}

bool SignAlgorithmFitsKey(SignAlgorithm algorithm, KeyAlgorithm key) {
  if (FindKeyAlgorithm(key) == nullptr) return false;
  switch (algorithm.kind) {
    case SignatureKind::kRsaPkcs1:
    case SignatureKind::kRsaPss:
      return FamilyOf(key) == KeyFamily::kRsa && algorithm.hash != HashAlgorithm::kNone;
    case SignatureKind::kEcdsa:
      return FamilyOf(key) == KeyFamily::kEc && algorithm.hash != HashAlgorithm::kNone;
    case SignatureKind::kEdDsa:
      return FamilyOf(key) == KeyFamily::kEd25519 &&
             algorithm.hash == HashAlgorithm::kNone;
  }
  return false;
}

absl::Status ValidateKeyName(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError("a key name has 1 to 64 characters");
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("key name '", absl::CHexEscape(name),
                       "' may only use letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace offkey::hsm
