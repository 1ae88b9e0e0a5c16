#include "hsm/openssl_key.h"

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
