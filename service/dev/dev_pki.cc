#include "service/dev/dev_pki.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/status_macros.h"

namespace offkey::service::dev {
namespace {

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return OpenSslError(
        absl::StatusCode::kInvalidArgument,
        absl::StrCat("certificate extension ", OBJ_nid2sn(nid), "=", value));
  }
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return absl::OkStatus();
}

absl::StatusOr<IssuedCert> Build(const CertSpec& spec, X509* issuer_cert,
                                 EVP_PKEY* issuer_key, bool is_ca) {
  EvpPkeyPtr own_key;
  EvpPkeyPtr subject_key;
  if (spec.public_key_spki.empty()) {
    own_key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (own_key == nullptr) return OpenSslError(absl::StatusCode::kInternal, "keygen");
  } else {
    OFFKEY_RETURN_IF_ERROR(ParseSpki(spec.public_key_spki, &subject_key));
  }
  EVP_PKEY* pub = own_key ? own_key.get() : subject_key.get();
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BignumPtr serial_bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  BN_to_ASN1_INTEGER(serial_bn.get(), X509_get_serialNumber(cert.get()));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("offkey development"),
                             -1, -1, 0);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_UTF8,
      reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1, -1, 0);
  X509* issuer = issuer_cert != nullptr ? issuer_cert : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(spec.not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(spec.not_after));
  X509_set_pubkey(cert.get(), pub);

  OFFKEY_RETURN_IF_ERROR(AddExtension(cert.get(), issuer, NID_basic_constraints,
                                      is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"));
  OFFKEY_RETURN_IF_ERROR(AddExtension(cert.get(), issuer, NID_key_usage,
                                      is_ca
                                          ? "critical,keyCertSign,cRLSign"
                                          : "critical,digitalSignature,keyEncipherment"));
  OFFKEY_RETURN_IF_ERROR(
      AddExtension(cert.get(), issuer, NID_subject_key_identifier, "hash"));
  if (issuer_cert != nullptr) {
    OFFKEY_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer, NID_authority_key_identifier, "keyid"));
  }
  std::vector<std::string> eku;
  if (spec.server_auth) eku.push_back("serverAuth");
  if (spec.client_auth) eku.push_back("clientAuth");
  if (!eku.empty()) {
    OFFKEY_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer, NID_ext_key_usage, absl::StrJoin(eku, ",")));
  }
  std::vector<std::string> sans;
  for (const auto& d : spec.dns_names) sans.push_back("DNS:" + d);
  for (const auto& ip : spec.ip_addresses) sans.push_back("IP:" + ip);
  for (const auto& u : spec.uris) sans.push_back("URI:" + u);
  if (!sans.empty()) {
    OFFKEY_RETURN_IF_ERROR(
        AddExtension(cert.get(), issuer, NID_subject_alt_name, absl::StrJoin(sans, ",")));
  }
  EVP_PKEY* signer = issuer_key != nullptr ? issuer_key : own_key.get();
  if (X509_sign(cert.get(), signer, EVP_sha256()) <= 0) {
    return OpenSslError(absl::StatusCode::kInternal, "X509_sign");
  }
  IssuedCert out;
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(cert_bio.get(), cert.get());
  out.cert_pem = BioContents(cert_bio.get());
  if (own_key != nullptr) {
    BioPtr key_bio(BIO_new(BIO_s_secmem()));
    PEM_write_bio_PrivateKey(key_bio.get(), own_key.get(), nullptr, nullptr, 0, nullptr,
                             nullptr);
    out.key_pem = SecretBytes(BioContents(key_bio.get()));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> PemToDer(absl::string_view pem) {
  PemOptions options;
  options.skip_other_types = true;
  absl::StatusOr<std::vector<std::string>> ders = ReadPemCertificatesDer(pem, options);
  if (!ders.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a PEM certificate: ", ders.status().message()));
  }
  return std::move(ders->front());
}

absl::StatusOr<IssuedCert> MakeCa(absl::string_view common_name) {
  CertSpec spec;
  spec.common_name = std::string(common_name);
  spec.not_after = absl::Now() + absl::Hours(24 * 365 * 5);
  return Build(spec, nullptr, nullptr, /*is_ca=*/true);
}

absl::StatusOr<IssuedCert> Issue(const IssuedCert& ca, const CertSpec& spec) {
  absl::StatusOr<std::vector<X509Ptr>> ca_cert = ReadPemCertificates(ca.cert_pem);
  absl::StatusOr<SecretBytes> pkcs8 = ReadPemPrivateKey(ca.key_pem.view());
  absl::StatusOr<EvpPkeyPtr> ca_key =
      pkcs8.ok() ? ParsePkcs8PrivateKey(*pkcs8) : pkcs8.status();
  if (!ca_cert.ok() || !ca_key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reading the CA: ",
                     (ca_cert.ok() ? ca_key.status() : ca_cert.status()).message()));
  }
  return Build(spec, ca_cert->front().get(), ca_key->get(), /*is_ca=*/false);
}

}  // namespace offkey::service::dev
