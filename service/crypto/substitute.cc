#include "service/crypto/substitute.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"
#include "service/crypto/premaster.h"

namespace offkey::service::crypto {
namespace {

struct EvpKdfCtxDeleter {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};

}  // namespace

absl::StatusOr<SecretBytes> ExpandSubstitute(const SecretBytes& mac,
                                             uint16_t client_version) {
  if (mac.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("substitute MAC has ", mac.size(), " bytes, expected 32"));
  }
  // Fetched once per process (thread-safe static initialisation), never freed.
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return OpenSslError(absl::StatusCode::kInternal, "fetch HKDF");
  std::unique_ptr<EVP_KDF_CTX, EvpKdfCtxDeleter> ctx(EVP_KDF_CTX_new(kdf));
  if (ctx == nullptr) return OpenSslError(absl::StatusCode::kInternal, "HKDF context");
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                        const_cast<uint8_t*>(mac.data()), mac.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                        const_cast<char*>(kSubstituteExpandInfo.data()),
                                        kSubstituteExpandInfo.size()),
      OSSL_PARAM_construct_end(),
  };
  SecretBytes out(kPremasterSize);
  out[0] = static_cast<uint8_t>(client_version >> 8);
  out[1] = static_cast<uint8_t>(client_version & 0xff);
  if (EVP_KDF_derive(ctx.get(), out.data() + 2, out.size() - 2, params) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "HKDF-Expand of the substitute");
  }
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
