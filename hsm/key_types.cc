#include "hsm/key_types.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace offkey::hsm {
namespace {

struct AlgorithmRow {
  KeyAlgorithm algorithm;
  KeyFamily family;
  int bits;
  absl::string_view name;
};

constexpr AlgorithmRow kAlgorithms[] = {
    {KeyAlgorithm::kRsa2048, KeyFamily::kRsa, 2048, "rsa-2048"},
    {KeyAlgorithm::kRsa3072, KeyFamily::kRsa, 3072, "rsa-3072"},
    {KeyAlgorithm::kRsa4096, KeyFamily::kRsa, 4096, "rsa-4096"},
    {KeyAlgorithm::kEcP256, KeyFamily::kEc, 256, "ec-p256"},
    {KeyAlgorithm::kEcP384, KeyFamily::kEc, 384, "ec-p384"},
    {KeyAlgorithm::kEcP521, KeyFamily::kEc, 521, "ec-p521"},
    {KeyAlgorithm::kEd25519, KeyFamily::kEd25519, 255, "ed25519"},
};

const AlgorithmRow* Row(KeyAlgorithm algorithm) {
  for (const auto& row : kAlgorithms) {
    if (row.algorithm == algorithm) return &row;
  }
  return nullptr;
}

}  // namespace

KeyFamily FamilyOf(KeyAlgorithm algorithm) {
  const AlgorithmRow* row = Row(algorithm);
  return row ? row->family : KeyFamily::kRsa;
}

int KeyBits(KeyAlgorithm algorithm) {
  const AlgorithmRow* row = Row(algorithm);
  return row ? row->bits : 0;
}

KeyAlgorithm RsaKeyAlgorithm(int modulus_bits) {
  for (const auto& row : kAlgorithms) {
    if (row.family == KeyFamily::kRsa && row.bits == modulus_bits) return row.algorithm;
  }
  return KeyAlgorithm::kUnknown;
}

absl::string_view KeyAlgorithmName(KeyAlgorithm algorithm) {
  const AlgorithmRow* row = Row(algorithm);
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
  if (Row(key) == nullptr) return false;
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
