// Small helpers for OpenSSL 3: owning pointers and error text for statuses.
#ifndef OFFKEY_BASE_OPENSSL_UTIL_H_
#define OFFKEY_BASE_OPENSSL_UTIL_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace offkey {

struct EvpPkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct EvpPkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct EvpMdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct BignumDeleter {
  void operator()(BIGNUM* p) const { BN_clear_free(p); }
};
struct X509Deleter {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioDeleter {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct GeneralNamesDeleter {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyDeleter>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxDeleter>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxDeleter>;
using BignumPtr = std::unique_ptr<BIGNUM, BignumDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesDeleter>;

// Drains OpenSSL's thread-local error queue into one line ("" when empty).
std::string DrainOpenSslErrors();

// A status of `code` whose message is `what` followed by the drained OpenSSL errors.
absl::Status OpenSslError(absl::StatusCode code, absl::string_view what);

// Everything written to a memory BIO so far.
std::string BioContents(BIO* bio);

// A name as RFC 2253 text ("CN=www.example.com,O=Example").
std::string X509NameText(const X509_NAME* name);

// DER encodings of a certificate and of a key's SubjectPublicKeyInfo; "" when OpenSSL
// cannot encode it (its error queue is then drained).
std::string CertificateDer(const X509* cert);
std::string SpkiDer(const EVP_PKEY* key);

// Parses a DER SubjectPublicKeyInfo.
absl::Status ParseSpki(absl::string_view der, EvpPkeyPtr* out);

}  // namespace offkey

#endif  // OFFKEY_BASE_OPENSSL_UTIL_H_
