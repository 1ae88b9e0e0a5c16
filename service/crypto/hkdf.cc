#include "service/crypto/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"

namespace offkey::service::crypto {
namespace {

struct EvpKdfCtxDeleter {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};

}  // namespace

absl::Status HkdfSha256Expand(const SecretBytes& prk, absl::string_view info,
                              uint8_t* out, size_t length, absl::string_view what) {
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
                                        const_cast<uint8_t*>(prk.data()), prk.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
                                        const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_KDF_derive(ctx.get(), out, length, params) != 1) {
    return OpenSslError(absl::StatusCode::kInternal,
                        absl::StrCat("HKDF-Expand of ", what));
  }
  return absl::OkStatus();
}

absl::StatusOr<SecretBytes> HkdfSha256Expand(const SecretBytes& prk,
                                             absl::string_view info, size_t length,
                                             absl::string_view what) {
  SecretBytes out(length);
  absl::Status expanded = HkdfSha256Expand(prk, info, out.data(), out.size(), what);
  if (!expanded.ok()) return expanded;
  return out;
}

}  // namespace offkey::service::crypto
