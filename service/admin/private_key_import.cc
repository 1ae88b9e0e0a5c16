#include "service/admin/private_key_import.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "hsm/key_types.h"
#include "hsm/openssl_key.h"

namespace offkey::service::admin {
namespace {

struct P8Deleter {
  void operator()(PKCS8_PRIV_KEY_INFO* p) const { PKCS8_PRIV_KEY_INFO_free(p); }
};
using P8Ptr = std::unique_ptr<PKCS8_PRIV_KEY_INFO, P8Deleter>;

absl::Status WrongPassphrase(const SecretBytes& passphrase) {
  DrainOpenSslErrors();
  return absl::InvalidArgumentError(passphrase.empty()
                                        ? "private_key is encrypted; give its passphrase"
                                        : "private_key: cannot decrypt it with the "
                                          "passphrase given (wrong passphrase?)");
}

absl::Status CheckAlgorithm(EVP_PKEY* key) {
  if (hsm::KeyAlgorithmOf(key) != hsm::KeyAlgorithm::kUnknown) return absl::OkStatus();
  if (EVP_PKEY_is_a(key, "RSA")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "private_key: RSA keys must be ", hsm::SupportedSizes(hsm::KeyFamily::kRsa),
        " bits; this one has ", EVP_PKEY_get_bits(key)));
  }
  if (EVP_PKEY_is_a(key, "EC")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "private_key: EC keys must be on ", hsm::SupportedSizes(hsm::KeyFamily::kEc),
        "; this one is on '", hsm::EcGroupOf(key), "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "private_key: ", EVP_PKEY_get0_type_name(key), " keys are not supported (RSA, EC ",
      hsm::SupportedSizes(hsm::KeyFamily::kEc), " or Ed25519)"));
}

// The PKCS#8 structure in `der`, unencrypted. `encrypted`: true for an
// EncryptedPrivateKeyInfo, false for a PrivateKeyInfo, unset when not known (raw DER).
absl::StatusOr<P8Ptr> DecodePkcs8(absl::string_view der, std::optional<bool> encrypted,
                                  const SecretBytes& passphrase) {
  const auto* start = reinterpret_cast<const unsigned char*>(der.data());
  const long len = static_cast<long>(der.size());  // NOLINT(runtime/int)
  if (encrypted != true) {
    const unsigned char* p = start;
    P8Ptr info(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, len));
    if (info != nullptr) return info;
  }
  if (encrypted != false) {
    const unsigned char* p = start;
    X509_SIG* sealed = d2i_X509_SIG(nullptr, &p, len);
    if (sealed != nullptr) {
      P8Ptr info;
      if (!passphrase.empty()) {
        info.reset(PKCS8_decrypt(sealed, reinterpret_cast<const char*>(passphrase.data()),
                                 static_cast<int>(passphrase.size())));
      }
      X509_SIG_free(sealed);
      if (info == nullptr) return WrongPassphrase(passphrase);
      return info;
    }
  }
  DrainOpenSslErrors();
  return absl::InvalidArgumentError(
      encrypted.has_value()
          ? "private_key: the PEM block does not parse"
          : "private_key: neither PEM nor DER PKCS#8 (PrivateKeyInfo or "
            "EncryptedPrivateKeyInfo)");
}

}  // namespace

absl::StatusOr<SecretBytes> NormalizePrivateKey(const SecretBytes& input,
                                                const SecretBytes& passphrase) {
  if (input.empty()) return absl::InvalidArgumentError("private_key: required");
  if (input.size() > kMaxPrivateKeyInput) {
    return absl::InvalidArgumentError(absl::StrCat(
        "private_key: at most ", kMaxPrivateKeyInput, " bytes; got ", input.size()));
  }
  absl::StatusOr<P8Ptr> info = absl::InternalError("unset");
  if (absl::StrContains(input.view(), "-----BEGIN ")) {
    // PEM: its type says which PKCS#8 structure the DER inside is.
    BioPtr bio(BIO_new_mem_buf(input.data(), static_cast<int>(input.size())));
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long der_len = 0;  // NOLINT(runtime/int)
    const bool read = PEM_read_bio(bio.get(), &name, &header, &der, &der_len) == 1;
    const std::string type = read ? name : "";
    const SecretBytes block =
        read ? SecretBytes(der, static_cast<size_t>(der_len)) : SecretBytes();
    OPENSSL_free(name);
    OPENSSL_free(header);
    if (der != nullptr) OPENSSL_clear_free(der, static_cast<size_t>(der_len));
    if (!read) {
      DrainOpenSslErrors();
      return absl::InvalidArgumentError("private_key: the PEM block does not parse");
    }
    if (type != PEM_STRING_PKCS8INF && type != PEM_STRING_PKCS8) {
      return absl::InvalidArgumentError(absl::StrCat(
          "private_key: PEM type '", type.substr(0, 40),
          "' is not PKCS#8; convert it with `openssl pkcs8 -topk8` (add -nocrypt for no "
          "passphrase)"));
    }
    info = DecodePkcs8(block.view(), type == PEM_STRING_PKCS8, passphrase);
  } else {
    info = DecodePkcs8(input.view(), std::nullopt, passphrase);
  }
  if (!info.ok()) return info.status();
  EvpPkeyPtr key(EVP_PKCS82PKEY(info->get()));
  if (key == nullptr) {
    DrainOpenSslErrors();
    return absl::InvalidArgumentError("private_key: the PKCS#8 key does not parse");
  }
  if (absl::Status s = CheckAlgorithm(key.get()); !s.ok()) return s;

  P8Ptr normalized(EVP_PKEY2PKCS8(key.get()));
  unsigned char* der = nullptr;
  const int len = normalized ? i2d_PKCS8_PRIV_KEY_INFO(normalized.get(), &der) : -1;
  if (len <= 0) return OpenSslError(absl::StatusCode::kInternal, "re-encoding the key");
  SecretBytes out(der, static_cast<size_t>(len));
  OPENSSL_clear_free(der, static_cast<size_t>(len));
  return out;
}

}  // namespace offkey::service::admin
