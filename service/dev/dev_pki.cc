#include "service/dev/dev_pki.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/openssl_util.h"
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
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  X509Ptr x509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (x509 == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "not a PEM certificate");
  }
  unsigned char* der = nullptr;
  int len = i2d_X509(x509.get(), &der);
  std::string out(reinterpret_cast<char*>(der), len > 0 ? static_cast<size_t>(len) : 0);
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<IssuedCert> MakeCa(absl::string_view common_name) {
  CertSpec spec;
  spec.common_name = std::string(common_name);
  spec.not_after = absl::Now() + absl::Hours(24 * 365 * 5);
  return Build(spec, nullptr, nullptr, /*is_ca=*/true);
}

absl::StatusOr<IssuedCert> Issue(const IssuedCert& ca, const CertSpec& spec) {
  BioPtr cert_bio(
      BIO_new_mem_buf(ca.cert_pem.data(), static_cast<int>(ca.cert_pem.size())));
  X509Ptr ca_cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  BioPtr key_bio(BIO_new_mem_buf(ca.key_pem.data(), static_cast<int>(ca.key_pem.size())));
  EvpPkeyPtr ca_key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (ca_cert == nullptr || ca_key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "reading the CA");
  }
  return Build(spec, ca_cert.get(), ca_key.get(), /*is_ca=*/false);
}

}  // namespace offkey::service::dev
