#include "service/crypto/substitute.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "service/crypto/hkdf.h"
#include "service/crypto/premaster.h"

namespace offkey::service::crypto {

absl::StatusOr<SecretBytes> ExpandSubstitute(const SecretBytes& mac,
                                             uint16_t client_version) {
  if (mac.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("substitute MAC has ", mac.size(), " bytes, expected 32"));
  }
  SecretBytes out(kPremasterSize);
  out[0] = static_cast<uint8_t>(client_version >> 8);
  out[1] = static_cast<uint8_t>(client_version & 0xff);
  OFFKEY_RETURN_IF_ERROR(HkdfSha256Expand(mac, kSubstituteExpandInfo, out.data() + 2,
                                          out.size() - 2, "the substitute"));
  return out;
}

absl::StatusOr<SecretBytes> ComputeSubstitute(hsm::KeyStore& store,
                                              absl::string_view key_id,
                                              uint16_t client_version,
                                              absl::string_view ciphertext,
                                              const hsm::CallOptions& options) {
  OFFKEY_ASSIGN_OR_RETURN(
      SecretBytes mac, store.HmacWithStoreSecret(
                           SubstituteInput(key_id, client_version, ciphertext), options));
  return ExpandSubstitute(mac, client_version);
}

}  // namespace offkey::service::crypto
