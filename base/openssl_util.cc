#include "base/openssl_util.h"

#include <openssl/err.h>

#include "absl/strings/str_cat.h"

namespace offkey {

std::string DrainOpenSslErrors() {
  std::string out;
  unsigned long err;  // NOLINT(runtime/int): OpenSSL's type.
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

absl::Status OpenSslError(absl::StatusCode code, absl::string_view what) {
  std::string errors = DrainOpenSslErrors();
  if (errors.empty()) return absl::Status(code, what);
  return absl::Status(code, absl::StrCat(what, " (OpenSSL: ", errors, ")"));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : std::string();
}

std::string X509NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return BioContents(bio.get());
}

namespace {

// `encode` is an OpenSSL i2d function: it allocates the output when given a null one.
template <typename T>
std::string EncodeDer(const T* object, int (*encode)(const T*, unsigned char**)) {
  unsigned char* der = nullptr;
  const int len = encode(object, &der);
  if (len <= 0) {
    DrainOpenSslErrors();
    return "";
  }
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

std::string CertificateDer(const X509* cert) { return EncodeDer(cert, i2d_X509); }

std::string SpkiDer(const EVP_PKEY* key) { return EncodeDer(key, i2d_PUBKEY); }

absl::Status ParseSpki(absl::string_view der, EvpPkeyPtr* out) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EVP_PKEY* pkey = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (pkey == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "not a DER SubjectPublicKeyInfo");
  }
  out->reset(pkey);
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    out->reset();
    return absl::InvalidArgumentError("trailing bytes after the SubjectPublicKeyInfo");
  }
  return absl::OkStatus();
}

}  // namespace offkey
