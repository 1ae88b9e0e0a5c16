#include "base/pem.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace offkey {
namespace {

constexpr size_t kMaxLabel = 64;

struct Pkcs8Deleter {
  void operator()(PKCS8_PRIV_KEY_INFO* p) const { PKCS8_PRIV_KEY_INFO_free(p); }
};
using Pkcs8Ptr = std::unique_ptr<PKCS8_PRIV_KEY_INFO, Pkcs8Deleter>;

struct LabelType {
  const char* label;
  PemType type;
};
constexpr LabelType kLabels[] = {
    {PEM_STRING_X509, PemType::kCertificate},
    {PEM_STRING_X509_OLD, PemType::kCertificate},
    {PEM_STRING_X509_CRL, PemType::kX509Crl},
    {PEM_STRING_X509_REQ, PemType::kCertificateRequest},
    {PEM_STRING_X509_REQ_OLD, PemType::kCertificateRequest},
    {PEM_STRING_PUBLIC, PemType::kPublicKey},
    {PEM_STRING_PKCS8INF, PemType::kPrivateKey},
    {PEM_STRING_RSA, PemType::kRsaPrivateKey},
    {PEM_STRING_ECPRIVATEKEY, PemType::kEcPrivateKey},
    {PEM_STRING_PKCS8, PemType::kEncryptedPrivateKey},
};

PemType TypeOf(absl::string_view label) {
  for (const LabelType& known : kLabels) {
    if (label == known.label) return known.type;
  }
  return PemType::kOther;
}

// A label fit for an error message: bounded and printable.
std::string Quoted(absl::string_view label) {
  return absl::StrCat("'", absl::CHexEscape(label.substr(0, 40)),
                      label.size() > 40 ? "...'" : "'");
}

// Frees what PEM_read_bio_ex allocated (from the secure heap with PEM_FLAG_SECURE),
// wiping it.
struct PemAllocation {
  explicit PemAllocation(bool secure) : secure(secure) {}
  const bool secure;
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;  // NOLINT(runtime/int): OpenSSL's type.
  ~PemAllocation() {
    Free(name, name != nullptr ? std::strlen(name) : 0);
    Free(header, header != nullptr ? std::strlen(header) : 0);
    Free(data, static_cast<size_t>(len));
  }
  void Free(void* p, size_t n) const {
    if (p == nullptr) return;
    if (secure) {
      OPENSSL_secure_clear_free(p, n);
    } else {
      OPENSSL_clear_free(p, n);
    }
  }
};

// True when OpenSSL's last error says the input held no further BEGIN line.
bool EndOfInput() {
  const unsigned long e = ERR_peek_last_error();  // NOLINT(runtime/int)
  return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
}

// The blocks that `wanted` accepts (at least one), refusing or skipping the rest as
// options.skip_other_types says. `what` names the wanted blocks in messages.
absl::StatusOr<std::vector<PemBlock>> ReadWanted(absl::string_view text,
                                                 const PemOptions& options,
                                                 bool (*wanted)(PemType),
                                                 absl::string_view what) {
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPem(text, options);
  if (!blocks.ok()) return blocks.status();
  std::vector<PemBlock> kept;
  for (size_t i = 0; i < blocks->size(); ++i) {
    PemBlock& block = (*blocks)[i];
    if (wanted(block.type)) {
      kept.push_back(std::move(block));
    } else if (!options.skip_other_types) {
      return absl::InvalidArgumentError(absl::StrCat("PEM block ", i + 1, " is ",
                                                     Quoted(block.label), "; only ", what,
                                                     " blocks belong here"));
    }
  }
  if (kept.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no ", what, " PEM block found"));
  }
  return kept;
}

bool IsCertificate(PemType type) { return type == PemType::kCertificate; }
bool IsCrl(PemType type) { return type == PemType::kX509Crl; }

// Parses all of `der` with d2i (no trailing bytes); null on failure, errors drained.
// `Ptr` owns a T, so an object d2i made before trailing bytes refuse it is freed.
template <typename Ptr, typename T,
          T* (*d2i)(T**, const unsigned char**, long)>  // NOLINT
Ptr ParseWhole(absl::string_view der) {
  const auto* start = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = start;
  Ptr parsed(d2i(nullptr, &p, static_cast<long>(der.size())));  // NOLINT
  if (parsed != nullptr && p == start + der.size()) return parsed;
  (void)DrainOpenSslErrors();
  return nullptr;
}

// Each block parsed whole by `d2i`; `what` ("certificate") names the failing one and
// `structure` ("X.509") what it should have been.
template <typename Ptr, typename T,
          T* (*d2i)(T**, const unsigned char**, long)>  // NOLINT
absl::StatusOr<std::vector<Ptr>> ParseAll(const std::vector<PemBlock>& blocks,
                                          absl::string_view what,
                                          absl::string_view structure) {
  std::vector<Ptr> parsed;
  for (const PemBlock& block : blocks) {
    Ptr one = ParseWhole<Ptr, T, d2i>(block.der_view());
    if (one == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " ", parsed.size() + 1, " does not parse as DER ", structure));
    }
    parsed.push_back(std::move(one));
  }
  return parsed;
}

// A traditional RSA or EC private key, re-encoded as PKCS#8.
absl::StatusOr<SecretBytes> TraditionalToPkcs8(const PemBlock& block, int evp_type,
                                               const std::string& where) {
  const absl::string_view der = block.der_view();
  const auto* start = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* p = start;
  EvpPkeyPtr key(d2i_PrivateKey(evp_type, nullptr, &p, static_cast<long>(der.size())));
  if (key == nullptr || p != start + der.size()) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat(where, " does not parse as a private key"));
  }
  Pkcs8Ptr info(EVP_PKEY2PKCS8(key.get()));
  unsigned char* out = nullptr;
  const int len = info != nullptr ? i2d_PKCS8_PRIV_KEY_INFO(info.get(), &out) : -1;
  if (len <= 0) {
    return OpenSslError(absl::StatusCode::kInternal,
                        absl::StrCat(where, ": re-encoding it as PKCS#8"));
  }
  SecretBytes pkcs8(out, static_cast<size_t>(len));
  OPENSSL_clear_free(out, static_cast<size_t>(len));
  return pkcs8;
}

}  // namespace

absl::string_view PemTypeLabel(PemType type) {
  for (const LabelType& known : kLabels) {
    if (known.type == type) return known.label;
  }
  return "";
}

bool IsPrivateKeyType(PemType type) {
  return type == PemType::kPrivateKey || type == PemType::kRsaPrivateKey ||
         type == PemType::kEcPrivateKey || type == PemType::kEncryptedPrivateKey;
}

bool LooksLikePem(absl::string_view text) {
  return absl::StrContains(text, "-----BEGIN ");
}

absl::StatusOr<std::vector<PemBlock>> ReadPem(absl::string_view text,
                                              const PemOptions& options) {
  const size_t cap = std::min<size_t>(options.max_input_bytes, INT_MAX);
  if (text.size() > cap) {
    return absl::InvalidArgumentError(
        absl::StrCat("PEM input is ", text.size(), " bytes; at most ", cap));
  }
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  if (bio == nullptr) return OpenSslError(absl::StatusCode::kInternal, "BIO_new_mem_buf");
  std::vector<PemBlock> blocks;
  for (;;) {
    PemAllocation read(options.secure);
    // PEM_FLAG_SECURE for every block, since a key's type is known only once it is
    // read: OpenSSL then wipes its line buffers too.
    const unsigned int flags =
        PEM_FLAG_EAY_COMPATIBLE | (options.secure ? PEM_FLAG_SECURE : 0u);
    if (PEM_read_bio_ex(bio.get(), &read.name, &read.header, &read.data, &read.len,
                        flags) != 1) {
      if (EndOfInput()) break;
      return OpenSslError(
          absl::StatusCode::kInvalidArgument,
          absl::StrCat("PEM block ", blocks.size() + 1,
                       " is truncated or corrupt (a BEGIN line without its END line, or "
                       "bad base64)"));
    }
    if (blocks.size() == options.max_blocks) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("PEM input holds more than ", options.max_blocks, " blocks"));
    }
    PemBlock block;
    block.label.assign(read.name, std::min(std::strlen(read.name), kMaxLabel));
    block.type = TypeOf(read.name);
    block.legacy_encrypted = absl::StrContains(read.header, "ENCRYPTED");
    const absl::string_view der(reinterpret_cast<const char*>(read.data),
                                static_cast<size_t>(read.len));
    if (IsPrivateKeyType(block.type)) {
      block.secret_der = SecretBytes(der);
    } else {
      block.der = std::string(der);
    }
    blocks.push_back(std::move(block));
  }
  ERR_clear_error();  // The end of the input reads as an error.
  if (blocks.empty()) {
    return absl::InvalidArgumentError(
        "no PEM block found (expected a '-----BEGIN ...-----' line)");
  }
  return blocks;
}

absl::StatusOr<std::vector<std::string>> ReadPemCertificatesDer(
    absl::string_view text, const PemOptions& options) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadWanted(text, options, IsCertificate, PEM_STRING_X509);
  if (!blocks.ok()) return blocks.status();
  absl::StatusOr<std::vector<X509Ptr>> parsed =
      ParseAll<X509Ptr, X509, d2i_X509>(*blocks, "certificate", "X.509");
  if (!parsed.ok()) return parsed.status();  // Parsed only to check them.
  std::vector<std::string> ders;
  for (PemBlock& block : *blocks) ders.push_back(std::move(block.der));
  return ders;
}

absl::StatusOr<std::vector<X509Ptr>> ReadPemCertificates(absl::string_view text,
                                                         const PemOptions& options) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadWanted(text, options, IsCertificate, PEM_STRING_X509);
  if (!blocks.ok()) return blocks.status();
  return ParseAll<X509Ptr, X509, d2i_X509>(*blocks, "certificate", "X.509");
}

absl::StatusOr<std::vector<X509CrlPtr>> ReadPemCrls(absl::string_view text,
                                                    const PemOptions& options) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadWanted(text, options, IsCrl, PEM_STRING_X509_CRL);
  if (!blocks.ok()) return blocks.status();
  return ParseAll<X509CrlPtr, X509_CRL, d2i_X509_CRL>(*blocks, "CRL", "X.509 CRL");
}

absl::StatusOr<SecretBytes> ReadPemPrivateKey(absl::string_view text,
                                              const PemOptions& options) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadWanted(text, options, IsPrivateKeyType, "PRIVATE KEY");
  if (!blocks.ok()) return blocks.status();
  if (blocks->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PEM input holds ", blocks->size(), " private keys; expected one"));
  }
  const PemBlock& block = blocks->front();
  const std::string where = absl::StrCat("the ", Quoted(block.label), " block");
  if (block.type == PemType::kEncryptedPrivateKey || block.legacy_encrypted) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, " is encrypted; decrypt it first (`openssl pkey -in KEY -out PLAIN`)"));
  }
  switch (block.type) {
    case PemType::kRsaPrivateKey:
      return TraditionalToPkcs8(block, EVP_PKEY_RSA, where);
    case PemType::kEcPrivateKey:
      return TraditionalToPkcs8(block, EVP_PKEY_EC, where);
    default:
      break;
  }
  Pkcs8Ptr info(ParseWhole<Pkcs8Ptr, PKCS8_PRIV_KEY_INFO, d2i_PKCS8_PRIV_KEY_INFO>(
      block.der_view()));
  if (info == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " does not parse as PKCS#8 PrivateKeyInfo"));
  }
  return block.secret_der.Copy();
}

absl::StatusOr<EvpPkeyPtr> ParsePkcs8PrivateKey(const SecretBytes& der) {
  Pkcs8Ptr info(
      ParseWhole<Pkcs8Ptr, PKCS8_PRIV_KEY_INFO, d2i_PKCS8_PRIV_KEY_INFO>(der.view()));
  if (info == nullptr) {
    return absl::InvalidArgumentError("not an unencrypted DER PKCS#8 private key");
  }
  EvpPkeyPtr key(EVP_PKCS82PKEY(info.get()));
  if (key == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "the PKCS#8 key cannot be decoded");
  }
  return key;
}

}  // namespace offkey
