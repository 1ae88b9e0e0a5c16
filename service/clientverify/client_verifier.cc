#include "service/clientverify/client_verifier.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/identity.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "hsm/key_types.h"
#include "hsm/openssl_key.h"
#include "service/tls/schemes.h"

namespace offkey::service::clientverify {

using offkey::v1::VerifyClientRequest;
using offkey::v1::VerifyClientResponse;
using offkey::v1::VerifyResult;

struct TrustStore::Bundle {
  X509_STORE* store = nullptr;  // Anchors and CRLs; shared read-only by verifications.
  bool check_crls = false;
  std::vector<offkey::v1::SignatureScheme> allowed;  // Empty: every fitting scheme.
  ~Bundle() { X509_STORE_free(store); }
};

namespace {

constexpr int kMaxCertificates = 10;
constexpr size_t kMaxCertificateBytes = 64 * 1024;
constexpr size_t kMaxBundleName = 128;
constexpr size_t kMaxSignedContent = 1 << 20;
constexpr size_t kMaxSignature = 1024;

// Trust bundle files: room for a system CA bundle (~150 certificates, ~200 KiB) and
// large CRLs. Other blocks in them are passed over, as OpenSSL's readers always did.
constexpr PemOptions kCaFilePem = {/*max_input_bytes=*/size_t{8} << 20,
                                   /*max_blocks=*/4096, /*skip_other_types=*/true};
constexpr PemOptions kCrlFilePem = {/*max_input_bytes=*/size_t{64} << 20,
                                    /*max_blocks=*/1024, /*skip_other_types=*/true};
constexpr int kMinRsaBits = 2048;

struct StoreCtxDeleter {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct X509StackDeleter {
  void operator()(STACK_OF(X509) * p) const { sk_X509_free(p); }
};

absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": cannot read '", path, "'"));
  }
  std::stringstream data;
  data << in.rdbuf();
  return data.str();
}

VerifyClientResponse Refuse(VerifyResult result, std::string detail) {
  VerifyClientResponse response;
  response.set_result(result);
  response.set_detail(std::move(detail));
  return response;
}

std::string SubjectOf(X509* cert) { return X509NameText(X509_get_subject_name(cert)); }

std::string Where(int depth, X509* cert) {
  return absl::StrCat("certificate ", depth, " (",
                      cert != nullptr ? SubjectOf(cert) : std::string("?"), ")");
}

// The VerifyResult for an X509_verify_cert error.
VerifyResult ResultOf(int error) {
  switch (error) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return offkey::v1::EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return offkey::v1::NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED:
    // Revocation could not be established: never a pass.
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
      return offkey::v1::REVOKED;
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_PERMITTED_VIOLATION:
    case X509_V_ERR_EXCLUDED_VIOLATION:
    case X509_V_ERR_SUBTREE_MINMAX:
    case X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE:
    case X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX:
    case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
    case X509_V_ERR_INVALID_POLICY_EXTENSION:
    case X509_V_ERR_NO_EXPLICIT_POLICY:
      return offkey::v1::WRONG_PURPOSE;
    default:
      return offkey::v1::UNTRUSTED_ISSUER;
  }
}

absl::Status CheckLimits(const VerifyClientRequest& r) {
  const offkey::v1::TlsVersion version = r.context().version();
  if (version != offkey::v1::TLS_1_2 && version != offkey::v1::TLS_1_3) {
    return absl::InvalidArgumentError(
        "context.version: VerifyClient needs TLS_1_2 or TLS_1_3 (it decides which "
        "schemes are allowed)");
  }
  if (r.certificate_chain_size() < 1 || r.certificate_chain_size() > kMaxCertificates) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate_chain: ", r.certificate_chain_size(),
                     " certificates; give 1..", kMaxCertificates, ", leaf first"));
  }
  for (int i = 0; i < r.certificate_chain_size(); ++i) {
    const size_t size = r.certificate_chain(i).size();
    if (size == 0 || size > kMaxCertificateBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("certificate_chain[", i, "]: ", size, " bytes; must be 1..65536"));
    }
  }
  if (r.trust_bundle().empty() || r.trust_bundle().size() > kMaxBundleName) {
    return absl::InvalidArgumentError(
        "trust_bundle: required, 1..128 bytes (a bundle named in the offkeyd config)");
  }
  if (r.scheme() == offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "scheme: required (the SignatureScheme of the client's CertificateVerify)");
  }
  if (r.signed_content().empty() || r.signed_content().size() > kMaxSignedContent) {
    return absl::InvalidArgumentError(
        absl::StrCat("signed_content: ", r.signed_content().size(),
                     " bytes; must be 1..1048576 (what the client signed, unhashed)"));
  }
  if (r.signature().empty() || r.signature().size() > kMaxSignature) {
    return absl::InvalidArgumentError(absl::StrCat("signature: ", r.signature().size(),
                                                   " bytes; must be 1..", kMaxSignature));
  }
  return absl::OkStatus();
}

// "" when `scheme` fits `key` in `version` and the bundle, else why not.
std::string SchemeProblem(const tls::SchemeInfo* info, offkey::v1::SignatureScheme scheme,
                          EVP_PKEY* key, offkey::v1::TlsVersion version,
                          const std::vector<offkey::v1::SignatureScheme>& allowed,
                          absl::string_view bundle) {
  if (info == nullptr) {
    return absl::StrCat(tls::SchemeName(scheme), " is not a scheme offkey knows");
  }
  if (version == offkey::v1::TLS_1_3 && !info->tls13) {
    return absl::StrCat(info->name, " is not allowed in TLS 1.3");
  }
  if (version == offkey::v1::TLS_1_2 && !info->tls12) {
    return absl::StrCat(info->name, " is not allowed in TLS 1.2");
  }
  const int type = EVP_PKEY_get_base_id(key);
  switch (info->family) {
    case hsm::KeyFamily::kRsa: {
      const bool pss_key = type == EVP_PKEY_RSA_PSS;
      if (type != EVP_PKEY_RSA && !pss_key) {
        return absl::StrCat(info->name, " needs an RSA key; the leaf's is not");
      }
      if (info->needs_pss_key != pss_key) {
        return absl::StrCat(info->name, info->needs_pss_key
                                            ? " needs an RSASSA-PSS key; the leaf's is "
                                              "rsaEncryption (use rsa_pss_rsae_*)"
                                            : " needs an rsaEncryption key; the leaf's "
                                              "is RSASSA-PSS (use rsa_pss_pss_*)");
      }
      if (EVP_PKEY_get_bits(key) < kMinRsaBits) {
        return absl::StrCat("the leaf's RSA key has ", EVP_PKEY_get_bits(key),
                            " bits; at least ", kMinRsaBits, " are required");
      }
      break;
    }
    case hsm::KeyFamily::kEc: {
      if (type != EVP_PKEY_EC) {
        return absl::StrCat(info->name, " needs an EC key; the leaf's is not");
      }
      const hsm::KeyAlgorithmInfo* curve =
          hsm::FindKeyAlgorithm(hsm::EcAlgorithmForGroup(hsm::EcGroupOf(key)));
      if (curve == nullptr) {
        return absl::StrCat("the leaf's EC curve ", hsm::EcGroupOf(key),
                            " is not one of ", hsm::SupportedSizes(hsm::KeyFamily::kEc));
      }
      if (version == offkey::v1::TLS_1_3 && curve->algorithm != info->curve) {
        const hsm::KeyAlgorithmInfo* named = hsm::FindKeyAlgorithm(info->curve);
        return absl::StrCat(info->name, " names ", named ? named->nist_name : "no curve",
                            " in TLS 1.3; the leaf's key is ", curve->nist_name);
      }
      break;
    }
    case hsm::KeyFamily::kEd25519:
      if (type != EVP_PKEY_ED25519) {
        return absl::StrCat(info->name, " needs an Ed25519 key; the leaf's is not");
      }
      break;
  }
  if (!allowed.empty() &&
      std::find(allowed.begin(), allowed.end(), scheme) == allowed.end()) {
    return absl::StrCat("trust bundle '", bundle, "' does not allow ", info->name);
  }
  return "";
}

bool SignatureVerifies(const tls::SchemeInfo& info, EVP_PKEY* key,
                       const std::string& content, const std::string& signature) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  const std::string md(hsm::HashName(info.algorithm.hash));
  const bool eddsa = info.algorithm.kind == hsm::SignatureKind::kEdDsa;
  bool ok = ctx != nullptr &&
            EVP_DigestVerifyInit_ex(ctx.get(), &pctx, eddsa ? nullptr : md.c_str(),
                                    nullptr, nullptr, key, nullptr) == 1;
  if (ok && info.algorithm.kind == hsm::SignatureKind::kRsaPss) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, md.c_str(), nullptr) == 1;
  } else if (ok && info.algorithm.kind == hsm::SignatureKind::kRsaPkcs1) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
  }
  ok = ok && EVP_DigestVerify(
                 ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                 signature.size(), reinterpret_cast<const unsigned char*>(content.data()),
                 content.size()) == 1;
  ERR_clear_error();
  return ok;
}

void FillIdentity(X509* leaf, offkey::v1::ClientIdentity* identity) {
  identity->set_subject(SubjectOf(leaf));
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    auto text = [](const ASN1_STRING* s) {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<size_t>(ASN1_STRING_length(s)));
    };
    switch (name->type) {
      case GEN_DNS:
        identity->add_dns_names(text(name->d.dNSName));
        break;
      case GEN_URI:
        identity->add_uris(text(name->d.uniformResourceIdentifier));
        break;
      case GEN_EMAIL:
        identity->add_emails(text(name->d.rfc822Name));
        break;
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = name->d.iPAddress;
        char buffer[INET6_ADDRSTRLEN] = {0};
        const int length = ASN1_STRING_length(ip);
        if ((length == 4 || length == 16) &&
            inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), buffer,
                      sizeof(buffer)) != nullptr) {
          identity->add_ip_addresses(buffer);
        }
        break;
      }
      default:
        break;
    }
  }
  // offkeyd's caller rule, so that the identity reported here is the one offkeyd's own
  // policy and audit would use for this certificate.
  absl::StatusOr<std::string> caller = IdentityFromCertificate(leaf);
  if (caller.ok()) {
    if (absl::StartsWith(*caller, kSpiffeIdentityPrefix))
      identity->set_spiffe_id(*caller);
    identity->set_identity(*std::move(caller));
  } else {
    identity->set_identity_error(std::string(caller.status().message()));
  }
  struct tm tm = {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1) {
    identity->set_not_after(static_cast<int64_t>(timegm(&tm)));
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  unsigned int len = 0;
  if (X509_digest(leaf, EVP_sha256(), digest, &len) == 1) {
    identity->set_sha256(reinterpret_cast<const char*>(digest), len);
  }
}

}  // namespace

TrustStore::~TrustStore() = default;

absl::StatusOr<std::shared_ptr<const TrustStore>> TrustStore::Load(
    const google::protobuf::RepeatedPtrField<offkey::v1::TrustBundle>& bundles) {
  std::shared_ptr<TrustStore> trust(new TrustStore());
  std::string material;  // Length-prefixed parts, hashed at the end.
  auto hash = [&material](absl::string_view part) {
    absl::StrAppend(&material, part.size(), ":", part);
  };
  for (const offkey::v1::TrustBundle& config : bundles) {
    const std::string where = absl::StrCat("trust bundle '", config.name(), "'");
    if (trust->bundles_.count(config.name()) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, " is defined twice"));
    }
    hash(config.SerializeAsString());
    auto bundle = std::make_unique<Bundle>();
    bundle->store = X509_STORE_new();
    for (int scheme : config.allowed_schemes()) {
      bundle->allowed.push_back(static_cast<offkey::v1::SignatureScheme>(scheme));
    }
    absl::StatusOr<std::string> pem = ReadFile(config.ca_file(), where + " ca_file");
    if (!pem.ok()) return pem.status();
    hash(*pem);
    absl::StatusOr<std::vector<X509Ptr>> anchors = ReadPemCertificates(*pem, kCaFilePem);
    if (!anchors.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, " ca_file '", config.ca_file(), "': ", anchors.status().message()));
    }
    for (const X509Ptr& cert : *anchors) X509_STORE_add_cert(bundle->store, cert.get());
    for (const std::string& path : config.crl_files()) {
      absl::StatusOr<std::string> crl_pem = ReadFile(path, where + " crl_files");
      if (!crl_pem.ok()) return crl_pem.status();
      hash(*crl_pem);
      absl::StatusOr<std::vector<X509CrlPtr>> crls = ReadPemCrls(*crl_pem, kCrlFilePem);
      if (!crls.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " crl_files '", path, "': ", crls.status().message()));
      }
      for (const X509CrlPtr& crl : *crls) X509_STORE_add_crl(bundle->store, crl.get());
      bundle->check_crls = true;
    }
    trust->bundles_[config.name()] = std::move(bundle);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(material.data(), material.size(), digest, &digest_len, EVP_sha256(),
                 nullptr) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "SHA-256 of the trust bundles");
  }
  trust->fingerprint_.assign(reinterpret_cast<const char*>(digest), digest_len);
  return std::shared_ptr<const TrustStore>(std::move(trust));
}

absl::StatusOr<VerifyClientResponse> TrustStore::Verify(const VerifyClientRequest& r,
                                                        absl::Time now) const {
  if (absl::Status limits = CheckLimits(r); !limits.ok()) return limits;
  auto found = bundles_.find(r.trust_bundle());
  if (found == bundles_.end()) {
    return absl::NotFoundError(absl::StrCat("trust_bundle: no bundle named '",
                                            absl::CHexEscape(r.trust_bundle()),
                                            "' is configured (see trust_bundles "
                                            "in the offkeyd config)"));
  }
  const Bundle& bundle = *found->second;

  // The chain as given: DER, leaf first, each certificate issued by the next.
  std::vector<X509Ptr> chain;
  for (int i = 0; i < r.certificate_chain_size(); ++i) {
    const std::string& der = r.certificate_chain(i);
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
    if (cert == nullptr ||
        p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
      ERR_clear_error();
      return Refuse(offkey::v1::MALFORMED_CHAIN, absl::StrCat("certificate_chain[", i,
                                                              "] is not one DER X.509 "
                                                              "certificate"));
    }
    chain.push_back(std::move(cert));
  }
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    if (X509_NAME_cmp(X509_get_issuer_name(chain[i].get()),
                      X509_get_subject_name(chain[i + 1].get())) != 0) {
      return Refuse(
          offkey::v1::MALFORMED_CHAIN,
          absl::StrCat("certificate_chain[", i + 1, "] (", SubjectOf(chain[i + 1].get()),
                       ") did not issue certificate_chain[", i,
                       "]; give the chain leaf first, in issuing order"));
    }
  }
  X509* leaf = chain[0].get();

  // The path to the bundle's anchors, for client authentication, at `now`.
  std::unique_ptr<STACK_OF(X509), X509StackDeleter> untrusted(sk_X509_new_null());
  for (size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());
  std::unique_ptr<X509_STORE_CTX, StoreCtxDeleter> ctx(X509_STORE_CTX_new());
  if (ctx == nullptr ||
      X509_STORE_CTX_init(ctx.get(), bundle.store, leaf, untrusted.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "X509_STORE_CTX_init");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(now));
  if (bundle.check_crls) {
    X509_STORE_CTX_set_flags(ctx.get(),
                             X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    const int error = X509_STORE_CTX_get_error(ctx.get());
    const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
    X509* culprit = X509_STORE_CTX_get_current_cert(ctx.get());
    ERR_clear_error();
    VerifyResult result = ResultOf(error);
    return Refuse(result, absl::StrCat(Where(depth, culprit), ": ",
                                       result == offkey::v1::REVOKED &&
                                               error != X509_V_ERR_CERT_REVOKED
                                           ? "revocation unknown: "
                                           : "",
                                       X509_verify_cert_error_string(error)));
  }
  // OpenSSL's client purpose also admits keyAgreement-only keys; a CertificateVerify
  // needs digitalSignature.
  if ((X509_get_extension_flags(leaf) & EXFLAG_KUSAGE) != 0 &&
      (X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE) == 0) {
    return Refuse(offkey::v1::WRONG_PURPOSE,
                  absl::StrCat(Where(0, leaf),
                               ": keyUsage lacks digitalSignature, so it cannot sign a "
                               "CertificateVerify"));
  }

  EVP_PKEY* key = X509_get0_pubkey(leaf);
  const tls::SchemeInfo* info = tls::FindScheme(r.scheme());
  if (key == nullptr) {
    ERR_clear_error();
    return Refuse(offkey::v1::MALFORMED_CHAIN,
                  absl::StrCat(Where(0, leaf), ": unreadable public key"));
  }
  if (std::string problem = SchemeProblem(info, r.scheme(), key, r.context().version(),
                                          bundle.allowed, r.trust_bundle());
      !problem.empty()) {
    return Refuse(offkey::v1::SCHEME_NOT_ALLOWED, std::move(problem));
  }
  if (!SignatureVerifies(*info, key, r.signed_content(), r.signature())) {
    return Refuse(offkey::v1::BAD_SIGNATURE,
                  absl::StrCat("the ", info->name,
                               " signature does not verify with the "
                               "key of ",
                               Where(0, leaf)));
  }
  VerifyClientResponse response;
  response.set_result(offkey::v1::VERIFIED);
  FillIdentity(leaf, response.mutable_identity());
  return response;
}

}  // namespace offkey::service::clientverify
