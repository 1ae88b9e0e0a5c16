#include "service/admin/csr.h"

#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"

namespace offkey::service::admin {
namespace {

constexpr size_t kMaxSubject = 1024;
constexpr size_t kMaxSans = 100;

struct X509ReqDeleter {
  void operator()(X509_REQ* p) const { X509_REQ_free(p); }
};
struct X509NameDeleter {
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
};
struct ExtensionsDeleter {
  void operator()(STACK_OF(X509_EXTENSION) * p) const {
    sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free);
  }
};

int AttributeNid(absl::string_view type) {
  static constexpr std::pair<absl::string_view, int> kTypes[] = {
      {"CN", NID_commonName},
      {"O", NID_organizationName},
      {"OU", NID_organizationalUnitName},
      {"C", NID_countryName},
      {"ST", NID_stateOrProvinceName},
      {"L", NID_localityName},
      {"DC", NID_domainComponent},
      {"SERIALNUMBER", NID_serialNumber},
  };
  for (const auto& [name, nid] : kTypes) {
    if (absl::EqualsIgnoreCase(name, type)) return nid;
  }
  return NID_undef;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The signature algorithm identifier for `scheme`: the OID, with no parameters except
// the NULL that RSA PKCS#1 algorithms carry.
absl::StatusOr<int> SignatureNid(offkey::v1::SignatureScheme scheme) {
  switch (scheme) {
    case offkey::v1::RSA_PKCS1_SHA256:
      return NID_sha256WithRSAEncryption;
    case offkey::v1::RSA_PKCS1_SHA384:
      return NID_sha384WithRSAEncryption;
    case offkey::v1::RSA_PKCS1_SHA512:
      return NID_sha512WithRSAEncryption;
    case offkey::v1::ECDSA_SECP256R1_SHA256:
      return NID_ecdsa_with_SHA256;
    case offkey::v1::ECDSA_SECP384R1_SHA384:
      return NID_ecdsa_with_SHA384;
    case offkey::v1::ECDSA_SECP521R1_SHA512:
      return NID_ecdsa_with_SHA512;
    case offkey::v1::ED25519:
      return NID_ED25519;
    default:
      return absl::InvalidArgumentError(
          "scheme: CSRs are signed with PKCS#1 v1.5 (RSA keys), ECDSA or Ed25519; leave "
          "scheme unset for the key's default");
  }
}

absl::Status AddSans(const CsrSpec& spec, X509_REQ* req) {
  const size_t count =
      spec.dns_names.size() + spec.ip_addresses.size() + spec.uris.size();
  if (count == 0) return absl::OkStatus();
  if (count > kMaxSans) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxSans, " SANs in all; got ", count));
  }
  GeneralNamesPtr names(GENERAL_NAMES_new());
  auto add_string = [&](int type, const std::string& value) {
    GENERAL_NAME* name = GENERAL_NAME_new();
    ASN1_IA5STRING* text = ASN1_IA5STRING_new();
    ASN1_STRING_set(text, value.data(), static_cast<int>(value.size()));
    GENERAL_NAME_set0_value(name, type, text);
    sk_GENERAL_NAME_push(names.get(), name);
  };
  for (const std::string& dns : spec.dns_names) {
    const bool ok =
        !dns.empty() && dns.size() <= 253 &&
        std::all_of(dns.begin(), dns.end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '*' || c == '_';
        });
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dns_names: '", dns, "' is not a DNS name (letters, digits, '-', '.', '*')"));
    }
    add_string(GEN_DNS, dns);
  }
  for (const std::string& ip : spec.ip_addresses) {
    ASN1_OCTET_STRING* address = a2i_IPADDRESS(ip.c_str());
    if (address == nullptr) {
      DrainOpenSslErrors();
      return absl::InvalidArgumentError(
          absl::StrCat("ip_addresses: '", ip, "' is not an IPv4 or IPv6 address"));
    }
    GENERAL_NAME* name = GENERAL_NAME_new();
    GENERAL_NAME_set0_value(name, GEN_IPADD, address);
    sk_GENERAL_NAME_push(names.get(), name);
  }
  for (const std::string& uri : spec.uris) {
    const size_t colon = uri.find(':');
    if (colon == std::string::npos || colon == 0 || uri.size() > 2048 ||
        !std::all_of(uri.begin(), uri.end(),
                     [](char c) { return c > ' ' && c < 0x7f; })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "uris: '", uri, "' is not a URI (scheme:rest, printable ASCII, no spaces)"));
    }
    add_string(GEN_URI, uri);
  }
  std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionsDeleter> extensions(
      sk_X509_EXTENSION_new_null());
  X509_EXTENSION* san = X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get());
  if (san == nullptr) return OpenSslError(absl::StatusCode::kInternal, "encoding SANs");
  sk_X509_EXTENSION_push(extensions.get(), san);
  if (X509_REQ_add_extensions(req, extensions.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "adding the SAN extension request");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseRfc4514(
    absl::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  if (text.size() > kMaxSubject) {
    return absl::InvalidArgumentError(
        absl::StrCat("subject: at most ", kMaxSubject, " bytes"));
  }
  size_t i = 0;
  while (i < text.size()) {
    const size_t eq = text.find('=', i);
    if (eq == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject: '", text.substr(i),
                       "' lacks '='; write TYPE=value, e.g. CN=example"));
    }
    std::string type(absl::StripAsciiWhitespace(text.substr(i, eq - i)));
    if (AttributeNid(type) == NID_undef) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject: attribute type '", type,
                       "' is not one of CN, O, OU, C, ST, L, DC, SERIALNUMBER"));
    }
    std::string value;
    i = eq + 1;
    for (; i < text.size() && text[i] != ','; ++i) {
      char c = text[i];
      if (c == '+') {
        return absl::InvalidArgumentError(
            "subject: multi-valued RDNs ('+') are not supported; escape a literal '+' "
            "as '\\+'");
      }
      if (c == '\\') {
        if (i + 1 >= text.size()) {
          return absl::InvalidArgumentError("subject: a '\\' ends the string");
        }
        const int hi = HexValue(text[i + 1]);
        const int lo = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
        if (hi >= 0 && lo >= 0) {
          value.push_back(static_cast<char>(hi * 16 + lo));
          i += 2;
        } else {
          value.push_back(text[++i]);
        }
        continue;
      }
      value.push_back(c);
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("subject: ", type, " has an empty value"));
    }
    out.emplace_back(absl::AsciiStrToUpper(type), std::move(value));
    if (i < text.size()) ++i;  // The ','.
    if (i == text.size() && text.back() == ',') {
      return absl::InvalidArgumentError("subject: ends with ','");
    }
  }
  return out;
}

absl::StatusOr<Csr> MakeCsr(const CsrSpec& spec, const CsrSigner& sign) {
  OFFKEY_ASSIGN_OR_RETURN(auto rdns, ParseRfc4514(spec.subject));
  if (rdns.empty() && spec.dns_names.empty() && spec.ip_addresses.empty() &&
      spec.uris.empty()) {
    return absl::InvalidArgumentError(
        "subject: may be empty only when at least one SAN is given");
  }
  OFFKEY_ASSIGN_OR_RETURN(const int signature_nid, SignatureNid(spec.scheme));

  std::unique_ptr<X509_REQ, X509ReqDeleter> req(X509_REQ_new());
  X509_REQ_set_version(req.get(), X509_REQ_VERSION_1);
  std::unique_ptr<X509_NAME, X509NameDeleter> name(X509_NAME_new());
  // X.501 order is the reverse of RFC 4514's: the least specific RDN first.
  for (auto it = rdns.rbegin(); it != rdns.rend(); ++it) {
    const int nid = AttributeNid(it->first);
    if (X509_NAME_add_entry_by_NID(
            name.get(), nid, MBSTRING_UTF8,
            reinterpret_cast<const unsigned char*>(it->second.data()),
            static_cast<int>(it->second.size()), -1, 0) != 1) {
      DrainOpenSslErrors();
      return absl::InvalidArgumentError(
          absl::StrCat("subject: ", it->first, "='", it->second,
                       "' is not a valid value (C is two "
                       "letters; values are at most 64 characters)"));
    }
  }
  X509_REQ_set_subject_name(req.get(), name.get());
  EvpPkeyPtr key;
  OFFKEY_RETURN_IF_ERROR(ParseSpki(spec.public_key_spki, &key));
  if (X509_REQ_set_pubkey(req.get(), key.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "setting the CSR's public key");
  }
  OFFKEY_RETURN_IF_ERROR(AddSans(spec, req.get()));

  unsigned char* info = nullptr;
  const int info_len = i2d_re_X509_REQ_tbs(req.get(), &info);
  if (info_len <= 0) return OpenSslError(absl::StatusCode::kInternal, "encoding the CSR");
  const std::string request_info(reinterpret_cast<char*>(info), info_len);
  OPENSSL_free(info);
  OFFKEY_ASSIGN_OR_RETURN(std::string signature, sign(spec.scheme, request_info));

  X509_ALGOR* algorithm = X509_ALGOR_new();
  const bool rsa = signature_nid == NID_sha256WithRSAEncryption ||
                   signature_nid == NID_sha384WithRSAEncryption ||
                   signature_nid == NID_sha512WithRSAEncryption;
  X509_ALGOR_set0(algorithm, OBJ_nid2obj(signature_nid), rsa ? V_ASN1_NULL : V_ASN1_UNDEF,
                  nullptr);
  const int set_algorithm = X509_REQ_set1_signature_algo(req.get(), algorithm);
  X509_ALGOR_free(algorithm);
  if (set_algorithm != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "setting the CSR's algorithm");
  }
  ASN1_BIT_STRING* bits = ASN1_BIT_STRING_new();
  ASN1_BIT_STRING_set(bits, reinterpret_cast<unsigned char*>(signature.data()),
                      static_cast<int>(signature.size()));
  // Whole bytes: zero unused bits (else the encoder counts trailing zero bits).
  bits->flags = (bits->flags & ~0x07L) | ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), bits);

  Csr csr;
  unsigned char* der = nullptr;
  const int der_len = i2d_X509_REQ(req.get(), &der);
  if (der_len <= 0) return OpenSslError(absl::StatusCode::kInternal, "encoding the CSR");
  csr.der.assign(reinterpret_cast<char*>(der), der_len);
  OPENSSL_free(der);
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  csr.pem = BioContents(bio.get());
  return csr;
}

}  // namespace offkey::service::admin
