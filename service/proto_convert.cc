#include "service/proto_convert.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

#include "absl/strings/escaping.h"
#include "base/openssl_util.h"
#include "service/tls/schemes.h"

namespace offkey::service {
namespace {

struct AlgorithmPair {
  hsm::KeyAlgorithm hsm;
  offkey::v1::KeyAlgorithm proto;
};

constexpr AlgorithmPair kAlgorithms[] = {
    {hsm::KeyAlgorithm::kRsa2048, offkey::v1::RSA_2048},
    {hsm::KeyAlgorithm::kRsa3072, offkey::v1::RSA_3072},
    {hsm::KeyAlgorithm::kRsa4096, offkey::v1::RSA_4096},
    {hsm::KeyAlgorithm::kEcP256, offkey::v1::EC_P256},
    {hsm::KeyAlgorithm::kEcP384, offkey::v1::EC_P384},
    {hsm::KeyAlgorithm::kEcP521, offkey::v1::EC_P521},
    {hsm::KeyAlgorithm::kEd25519, offkey::v1::ED25519_KEY},
};

int64_t ToUnix(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

offkey::v1::KeyAlgorithm ToProtoAlgorithm(hsm::KeyAlgorithm algorithm) {
  for (const auto& pair : kAlgorithms) {
    if (pair.hsm == algorithm) return pair.proto;
  }
  return offkey::v1::KEY_ALGORITHM_UNSPECIFIED;
}

hsm::KeyAlgorithm FromProtoAlgorithm(offkey::v1::KeyAlgorithm algorithm) {
  for (const auto& pair : kAlgorithms) {
    if (pair.proto == algorithm) return pair.hsm;
  }
  return hsm::KeyAlgorithm::kUnknown;
}

absl::StatusOr<offkey::v1::CertificateSummary> SummarizeCertificate(
    absl::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  if (cert == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "not a DER certificate");
  }
  offkey::v1::CertificateSummary out;
  out.set_subject(X509NameText(X509_get_subject_name(cert.get())));
  out.set_issuer(X509NameText(X509_get_issuer_name(cert.get())));
  out.set_not_before(ToUnix(X509_get0_notBefore(cert.get())));
  out.set_not_after(ToUnix(X509_get0_notAfter(cert.get())));
  std::string sha(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(),
         reinterpret_cast<unsigned char*>(sha.data()));
  out.set_sha256(sha);
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
  if (serial != nullptr) {
    char* hex = BN_bn2hex(serial.get());
    out.set_serial_hex(hex);
    OPENSSL_free(hex);
  }
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    if (name->type == GEN_DNS || name->type == GEN_URI) {
      const ASN1_IA5STRING* s =
          name->type == GEN_DNS ? name->d.dNSName : name->d.uniformResourceIdentifier;
      std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(ASN1_STRING_length(s)));
      if (name->type == GEN_DNS) {
        out.add_dns_names(value);
      } else {
        out.add_uris(value);
      }
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      int len = ASN1_STRING_length(ip);
      char text[INET6_ADDRSTRLEN] = {0};
      if ((len == 4 || len == 16) &&
          inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                    sizeof(text)) != nullptr) {
        out.add_ip_addresses(text);
      }
    }
  }
  GENERAL_NAMES_free(sans);
  return out;
}

offkey::v1::KeyInfo ToProtoKeyInfo(const KeyRecord& key) {
  offkey::v1::KeyInfo out;
  out.set_name(key.info.name);
  out.set_key_id(key.info.key_id);
  out.set_ski(key.info.ski);
  out.set_algorithm(ToProtoAlgorithm(key.info.algorithm));
  out.set_usage(key.metadata.usage());
  out.set_state(key.metadata.state());
  *out.mutable_labels() = key.metadata.labels();
  out.set_public_key_spki(key.info.public_key_spki);
  for (offkey::v1::SignatureScheme s : tls::SchemesForKey(key.info.algorithm)) {
    out.add_schemes(s);
  }
  out.set_create_time(key.metadata.create_time());
  out.set_destroy_time(key.metadata.destroy_time());
  if (!key.chain.empty()) {
    absl::StatusOr<offkey::v1::CertificateSummary> summary =
        SummarizeCertificate(key.chain[0]);
    if (summary.ok()) *out.mutable_certificate() = *std::move(summary);
  }
  return out;
}

std::string KeyRefText(const offkey::v1::KeyRef& ref) {
  switch (ref.ref_case()) {
    case offkey::v1::KeyRef::kName:
      return ref.name();
    case offkey::v1::KeyRef::kKeyId:
      return "id:" + absl::BytesToHexString(ref.key_id());
    case offkey::v1::KeyRef::kSki:
      return "ski:" + absl::BytesToHexString(ref.ski());
    case offkey::v1::KeyRef::kCertSha256:
      return "cert:" + absl::BytesToHexString(ref.cert_sha256());
    case offkey::v1::KeyRef::REF_NOT_SET:
      break;
  }
  return "";
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace offkey::service
