#include "base/client_tls.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"

namespace offkey {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(strerror(errno));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

absl::StatusOr<std::string> Read(const NamedFile& file, absl::string_view what) {
  absl::StatusOr<std::string> text = ReadSmallFile(file.path);
  if (!text.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read the ", what, " ", file.description, ": ", text.status().message()));
  }
  return text;
}

X509Ptr ParseCertificate(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) DrainOpenSslErrors();
  return cert;
}

}  // namespace

absl::StatusOr<ClientTlsMaterial> LoadClientTlsFiles(const NamedFile& ca,
                                                     const NamedFile& cert,
                                                     const NamedFile& key) {
  ClientTlsMaterial m;
  OFFKEY_ASSIGN_OR_RETURN(m.ca_pem, Read(ca, "CA certificate"));
  OFFKEY_ASSIGN_OR_RETURN(m.cert_pem, Read(cert, "client certificate"));
  absl::StatusOr<std::string> key_text = Read(key, "client key");
  if (!key_text.ok()) return key_text.status();
  m.key_pem = SecretBytes(*key_text);
  WipeString(&*key_text);

  if (ParseCertificate(m.ca_pem) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CA certificate ", ca.description, " holds no PEM certificate"));
  }
  X509Ptr leaf = ParseCertificate(m.cert_pem);
  if (leaf == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the client certificate ", cert.description, " holds no PEM certificate"));
  }
  BioPtr key_bio(BIO_new_mem_buf(m.key_pem.data(), static_cast<int>(m.key_pem.size())));
  EvpPkeyPtr private_key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (private_key == nullptr) {
    DrainOpenSslErrors();
    return absl::FailedPreconditionError(absl::StrCat(
        "the client key ", key.description, " holds no unencrypted PEM private key"));
  }
  if (X509_check_private_key(leaf.get(), private_key.get()) != 1) {
    DrainOpenSslErrors();
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " does not belong to the key ", key.description));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(leaf.get())) < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " has expired; offkeyd will refuse it. Renew it"));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(leaf.get())) > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " is not valid yet (check this machine's clock)"));
  }
  return m;
}

}  // namespace offkey
