#include "base/client_tls.h"

#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"
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

// The first certificate of a PEM file; other blocks (a key beside it) are passed over.
absl::StatusOr<X509Ptr> FirstCertificate(absl::string_view pem) {
  PemOptions options;
  options.skip_other_types = true;
  absl::StatusOr<std::vector<X509Ptr>> certs = ReadPemCertificates(pem, options);
  if (!certs.ok()) return certs.status();
  return std::move(certs->front());
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

  if (absl::StatusOr<X509Ptr> anchor = FirstCertificate(m.ca_pem); !anchor.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CA certificate ", ca.description,
                     " is not a usable PEM certificate: ", anchor.status().message()));
  }
  absl::StatusOr<X509Ptr> leaf = FirstCertificate(m.cert_pem);
  if (!leaf.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " is not a usable PEM certificate: ", leaf.status().message()));
  }
  PemOptions key_options;
  key_options.skip_other_types = true;  // EC PARAMETERS, or the certificate beside it.
  absl::StatusOr<SecretBytes> pkcs8 = ReadPemPrivateKey(m.key_pem.view(), key_options);
  absl::StatusOr<EvpPkeyPtr> private_key =
      pkcs8.ok() ? ParsePkcs8PrivateKey(*pkcs8) : pkcs8.status();
  if (!private_key.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client key ", key.description,
                     " is not a usable unencrypted PEM private key: ",
                     private_key.status().message()));
  }
  if (X509_check_private_key(leaf->get(), private_key->get()) != 1) {
    DrainOpenSslErrors();
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " does not belong to the key ", key.description));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(leaf->get())) < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " has expired; offkeyd will refuse it. Renew it"));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(leaf->get())) > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the client certificate ", cert.description,
                     " is not valid yet (check this machine's clock)"));
  }
  return m;
}

}  // namespace offkey
