#include "hsm/openssl_key.h"

#include "absl/strings/str_cat.h"

namespace offkey::hsm {

std::string EcGroupOf(EVP_PKEY* key) {
  char group[80] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof(group), &len) != 1) {
    DrainOpenSslErrors();
    return "";
  }
  return std::string(group, len);
}

KeyAlgorithm KeyAlgorithmOf(EVP_PKEY* key) {
  if (key == nullptr) return KeyAlgorithm::kUnknown;
  for (const KeyAlgorithmInfo& row : AllKeyAlgorithms()) {
    if (!EVP_PKEY_is_a(key, row.openssl_type)) continue;
    switch (row.family) {
      case KeyFamily::kRsa:
        return RsaAlgorithmForBits(EVP_PKEY_get_bits(key));
      case KeyFamily::kEc:
        return EcAlgorithmForGroup(EcGroupOf(key));
      case KeyFamily::kEd25519:
        return row.algorithm;
    }
  }
  return KeyAlgorithm::kUnknown;
}

absl::Status UnsupportedKeyError(EVP_PKEY* key) {
  if (key != nullptr && EVP_PKEY_is_a(key, "RSA")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RSA-", EVP_PKEY_get_bits(key), " is not supported; offkey stores RSA ",
        SupportedSizes(KeyFamily::kRsa)));
  }
  if (key != nullptr && EVP_PKEY_is_a(key, "EC")) {
    return absl::InvalidArgumentError(absl::StrCat("EC curve '", EcGroupOf(key),
                                                   "' is not supported; offkey stores ",
                                                   SupportedSizes(KeyFamily::kEc)));
  }
  const char* type = key != nullptr ? EVP_PKEY_get0_type_name(key) : nullptr;
  return absl::InvalidArgumentError(absl::StrCat(
      type != nullptr ? type : "this", " keys are not supported; offkey stores RSA, EC (",
      SupportedSizes(KeyFamily::kEc), ") and Ed25519"));
}

EvpPkeyPtr GenerateOpenSslKey(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  if (row == nullptr) return nullptr;
  switch (row->family) {
    case KeyFamily::kRsa:
      return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, row->openssl_type,
                                          static_cast<size_t>(row->bits)));
    case KeyFamily::kEc:
      return EvpPkeyPtr(
          EVP_PKEY_Q_keygen(nullptr, nullptr, row->openssl_type, row->openssl_group));
    case KeyFamily::kEd25519:
      return EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, row->openssl_type));
  }
  return nullptr;
}

}  // namespace offkey::hsm
