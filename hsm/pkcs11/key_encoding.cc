#include "hsm/pkcs11/key_encoding.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/status_macros.h"
#include "hsm/openssl_key.h"

namespace offkey::hsm::pkcs11 {
namespace {

// Debian's Abseil has its own string_view (not std's), so binary constants with
// embedded NULs are spelled out as arrays and wrapped with their exact size.
#define OFFKEY_BYTES(name, literal)        \
  constexpr char name##_bytes[] = literal; \
  constexpr absl::string_view name(name##_bytes, sizeof(name##_bytes) - 1)

// hsm/key_types.h spells the key types as plain numbers so that hsm/ needs no PKCS#11
// header; here they meet the header.
static_assert(kPkcs11KeyTypeRsa == CKK_RSA);
static_assert(kPkcs11KeyTypeEc == CKK_EC);
static_assert(kPkcs11KeyTypeEcEdwards == CKK_EC_EDWARDS);

// DigestInfo prefixes (RFC 8017 9.2, note 1): AlgorithmIdentifier with NULL parameters,
// then the OCTET STRING header.
OFFKEY_BYTES(kSha1Prefix, "\x30\x21\x30\x09\x06\x05\x2b\x0e\x03\x02\x1a\x05\x00\x04\x14");
OFFKEY_BYTES(
    kSha256Prefix,
    "\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20");
OFFKEY_BYTES(
    kSha384Prefix,
    "\x30\x41\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x05\x00\x04\x30");
OFFKEY_BYTES(
    kSha512Prefix,
    "\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40");

absl::StatusOr<std::string> FromData(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
      OSSL_PARAM_BLD_to_param(bld), OSSL_PARAM_free);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("invalid ", type, " public key"));
  }
  EvpPkeyPtr pkey(raw);
  return SpkiOf(pkey.get());
}

}  // namespace

// Explicitly fetched: OpenSSL 3's implicit fetch behind EVP_sha256() and friends takes
// global locks on every digest, which shows at tens of thousands of calls a second.
const EVP_MD* MessageDigest(HashAlgorithm hash) {
  static const EVP_MD* const kSha1 = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  static const EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static const EVP_MD* const kSha384 = EVP_MD_fetch(nullptr, "SHA384", nullptr);
  static const EVP_MD* const kSha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  switch (hash) {
    case HashAlgorithm::kSha1:
      return kSha1;
    case HashAlgorithm::kSha256:
      return kSha256;
    case HashAlgorithm::kSha384:
      return kSha384;
    case HashAlgorithm::kSha512:
      return kSha512;
    case HashAlgorithm::kNone:
      return nullptr;
  }
  return nullptr;
}

absl::StatusOr<std::string> SpkiOf(EVP_PKEY* pkey) {
  std::string der = SpkiDer(pkey);
  if (der.empty()) return absl::InternalError("i2d_PUBKEY cannot encode the public key");
  return der;
}

namespace {

// `bn` big-endian, left-padded with zeros to `pad_to` bytes.
SecretBytes BnBytes(const BIGNUM* bn, size_t pad_to = 0) {
  size_t n = std::max(static_cast<size_t>(BN_num_bytes(bn)), pad_to);
  SecretBytes out(n);
  BN_bn2binpad(bn, out.data(), static_cast<int>(n));
  return out;
}

// The BIGNUM parameter `name` of `pkey`, cleared from OpenSSL's memory once copied.
absl::StatusOr<SecretBytes> BnParam(EVP_PKEY* pkey, const char* name, size_t pad_to = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("the key has no ", name));
  }
  SecretBytes out = BnBytes(bn, pad_to);
  BN_clear_free(bn);
  return out;
}

}  // namespace

absl::StatusOr<ImportedKey> ImportedKeyFromPkcs8(const SecretBytes& pkcs8_der) {
  OFFKEY_ASSIGN_OR_RETURN(EvpPkeyPtr pkey, ParsePkcs8PrivateKey(pkcs8_der));
  ImportedKey out;
  out.algorithm = KeyAlgorithmOf(pkey.get());
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(out.algorithm);
  if (row == nullptr) return UnsupportedKeyError(pkey.get());
  out.key_type = row->pkcs11_key_type;
  absl::StatusOr<std::string> spki = SpkiOf(pkey.get());
  if (!spki.ok()) {
    return OpenSslError(absl::StatusCode::kInvalidArgument,
                        "cannot derive the public key");
  }
  out.spki = *std::move(spki);

  auto add = [](std::vector<KeyAttribute>& to, CK_ATTRIBUTE_TYPE type,
                SecretBytes value) {
    to.push_back(KeyAttribute{type, std::move(value)});
  };
  switch (row->family) {
    case KeyFamily::kRsa: {
      static constexpr std::pair<const char*, CK_ATTRIBUTE_TYPE> kParts[] = {
          {OSSL_PKEY_PARAM_RSA_N, CKA_MODULUS},
          {OSSL_PKEY_PARAM_RSA_E, CKA_PUBLIC_EXPONENT},
          {OSSL_PKEY_PARAM_RSA_D, CKA_PRIVATE_EXPONENT},
          {OSSL_PKEY_PARAM_RSA_FACTOR1, CKA_PRIME_1},
          {OSSL_PKEY_PARAM_RSA_FACTOR2, CKA_PRIME_2},
          {OSSL_PKEY_PARAM_RSA_EXPONENT1, CKA_EXPONENT_1},
          {OSSL_PKEY_PARAM_RSA_EXPONENT2, CKA_EXPONENT_2},
          {OSSL_PKEY_PARAM_RSA_COEFFICIENT1, CKA_COEFFICIENT},
      };
      for (const auto& [param, type] : kParts) {
        absl::StatusOr<SecretBytes> part = BnParam(pkey.get(), param);
        if (!part.ok()) {
          return absl::InvalidArgumentError("RSA keys must carry their CRT parameters");
        }
        add(out.private_attributes, type, *std::move(part));
      }
      add(out.public_attributes, CKA_MODULUS, out.private_attributes[0].value.Copy());
      add(out.public_attributes, CKA_PUBLIC_EXPONENT,
          out.private_attributes[1].value.Copy());
      break;
    }
    case KeyFamily::kEc: {
      OFFKEY_ASSIGN_OR_RETURN(
          SecretBytes value,
          BnParam(pkey.get(), OSSL_PKEY_PARAM_PRIV_KEY, (row->bits + 7) / 8));
      std::string point(row->public_point_length, '\0');
      size_t point_len = 0;
      if (EVP_PKEY_get_octet_string_param(pkey.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                          reinterpret_cast<unsigned char*>(point.data()),
                                          point.size(), &point_len) != 1 ||
          point_len != point.size()) {
        return OpenSslError(absl::StatusCode::kInvalidArgument, "EC public point");
      }
      add(out.private_attributes, CKA_EC_PARAMS, SecretBytes(row->ec_params));
      add(out.private_attributes, CKA_VALUE, std::move(value));
      add(out.public_attributes, CKA_EC_PARAMS, SecretBytes(row->ec_params));
      add(out.public_attributes, CKA_EC_POINT, SecretBytes(WrapEcPoint(point)));
      break;
    }
    case KeyFamily::kEd25519: {
      SecretBytes value(row->public_point_length);
      std::string pub_raw(row->public_point_length, '\0');
      size_t n = value.size(), m = pub_raw.size();
      if (EVP_PKEY_get_raw_private_key(pkey.get(), value.data(), &n) != 1 ||
          EVP_PKEY_get_raw_public_key(
              pkey.get(), reinterpret_cast<unsigned char*>(pub_raw.data()), &m) != 1 ||
          n != value.size() || m != pub_raw.size()) {
        return OpenSslError(absl::StatusCode::kInvalidArgument, "Ed25519 key");
      }
      add(out.private_attributes, CKA_EC_PARAMS, SecretBytes(row->ec_params));
      add(out.private_attributes, CKA_VALUE, std::move(value));
      add(out.public_attributes, CKA_EC_PARAMS, SecretBytes(row->ec_params));
      add(out.public_attributes, CKA_EC_POINT, SecretBytes(WrapEcPoint(pub_raw)));
      break;
    }
  }
  return out;
}

absl::string_view EcParamsFor(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  return row ? row->ec_params : absl::string_view();
}

size_t PublicPointLength(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  return row ? row->public_point_length : 0;
}

CK_KEY_TYPE Pkcs11KeyType(KeyAlgorithm algorithm) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  return row ? row->pkcs11_key_type : CKK_VENDOR_DEFINED;
}

std::optional<KeyFamily> FamilyOfKeyType(CK_KEY_TYPE type) {
  for (const KeyAlgorithmInfo& row : AllKeyAlgorithms()) {
    if (row.pkcs11_key_type == type) return row.family;
  }
  return std::nullopt;
}

absl::StatusOr<std::string> UnwrapEcPoint(absl::string_view value,
                                          KeyAlgorithm algorithm) {
  size_t n = PublicPointLength(algorithm);
  if (n == 0) return absl::InvalidArgumentError("not an EC or EdDSA key");
  if (value.size() == n) return std::string(value);  // Bare point.
  // OCTET STRING: tag, short or one-byte long length form (n < 256).
  size_t header = n < 128 ? 2 : 3;
  if (value.size() == n + header && value[0] == 0x04 &&
      (n < 128 ? static_cast<uint8_t>(value[1]) == n
               : static_cast<uint8_t>(value[1]) == 0x81 &&
                     static_cast<uint8_t>(value[2]) == n)) {
    return std::string(value.substr(header));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("CKA_EC_POINT of ", value.size(), " bytes does not hold a ",
                   KeyAlgorithmName(algorithm), " public key"));
}

std::string WrapEcPoint(absl::string_view point) {
  std::string out = "\x04";
  if (point.size() >= 128) out.push_back(static_cast<char>(0x81));
  out.push_back(static_cast<char>(point.size()));
  out.append(point.data(), point.size());
  return out;
}

absl::StatusOr<std::string> RsaSpki(absl::string_view modulus,
                                    absl::string_view exponent) {
  BignumPtr n(BN_bin2bn(reinterpret_cast<const unsigned char*>(modulus.data()),
                        static_cast<int>(modulus.size()), nullptr));
  BignumPtr e(BN_bin2bn(reinterpret_cast<const unsigned char*>(exponent.data()),
                        static_cast<int>(exponent.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(
      OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  if (n == nullptr || e == nullptr || bld == nullptr ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, e.get())) {
    return OpenSslError(absl::StatusCode::kInternal, "building an RSA public key");
  }
  return FromData("RSA", bld.get());
}

absl::StatusOr<std::string> EcSpki(KeyAlgorithm algorithm, absl::string_view point) {
  const KeyAlgorithmInfo* row = FindKeyAlgorithm(algorithm);
  if (row == nullptr || row->family != KeyFamily::kEc) {
    return absl::InvalidArgumentError("not an EC key algorithm");
  }
  const char* group = row->openssl_group;
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(
      OSSL_PARAM_BLD_new(), OSSL_PARAM_BLD_free);
  if (bld == nullptr ||
      !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size())) {
    return OpenSslError(absl::StatusCode::kInternal, "building an EC public key");
  }
  return FromData("EC", bld.get());
}

absl::StatusOr<std::string> Ed25519Spki(absl::string_view public_key) {
  EvpPkeyPtr pkey(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr,
      reinterpret_cast<const unsigned char*>(public_key.data()), public_key.size()));
  if (pkey == nullptr) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "invalid Ed25519 public key");
  }
  return SpkiOf(pkey.get());
}

absl::StatusOr<std::string> SkiOfSpki(absl::string_view spki_der) {
  const auto* p = reinterpret_cast<const unsigned char*>(spki_der.data());
  std::unique_ptr<X509_PUBKEY, decltype(&X509_PUBKEY_free)> pub(
      d2i_X509_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size())), X509_PUBKEY_free);
  const unsigned char* bits = nullptr;
  int bits_len = 0;
  if (pub == nullptr ||
      X509_PUBKEY_get0_param(nullptr, &bits, &bits_len, nullptr, pub.get()) != 1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "not a SubjectPublicKeyInfo");
  }
  std::string ski(SHA_DIGEST_LENGTH, '\0');
  SHA1(bits, static_cast<size_t>(bits_len), reinterpret_cast<unsigned char*>(ski.data()));
  return ski;
}

absl::StatusOr<std::string> Digest(HashAlgorithm hash, absl::string_view message) {
  const EVP_MD* md = MessageDigest(hash);
  if (md == nullptr) return absl::InvalidArgumentError("no hash algorithm given");
  std::string out(static_cast<size_t>(EVP_MD_get_size(md)), '\0');
  unsigned int len = 0;
  if (EVP_Digest(message.data(), message.size(),
                 reinterpret_cast<unsigned char*>(out.data()), &len, md, nullptr) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "EVP_Digest");
  }
  return out;
}

absl::StatusOr<std::string> DigestInfo(HashAlgorithm hash, absl::string_view digest) {
  absl::string_view prefix;
  switch (hash) {
    case HashAlgorithm::kSha1:
      prefix = kSha1Prefix;
      break;
    case HashAlgorithm::kSha256:
      prefix = kSha256Prefix;
      break;
    case HashAlgorithm::kSha384:
      prefix = kSha384Prefix;
      break;
    case HashAlgorithm::kSha512:
      prefix = kSha512Prefix;
      break;
    case HashAlgorithm::kNone:
      return absl::InvalidArgumentError("PKCS#1 v1.5 signing needs a hash");
  }
  if (digest.size() != HashLength(hash)) {
    return absl::InvalidArgumentError(absl::StrCat("a ", HashName(hash), " digest has ",
                                                   HashLength(hash), " bytes, got ",
                                                   digest.size()));
  }
  return absl::StrCat(prefix, digest);
}

absl::StatusOr<std::string> EcdsaRawToDer(absl::string_view raw) {
  if (raw.empty() || raw.size() % 2 != 0) {
    return absl::InternalError(
        absl::StrCat("CKM_ECDSA returned ", raw.size(), " bytes; expected r||s"));
  }
  size_t half = raw.size() / 2;
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(bytes, static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(bytes + half, static_cast<int>(half), nullptr);
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(),
                                                            ECDSA_SIG_free);
  if (r == nullptr || s == nullptr || sig == nullptr ||
      ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return OpenSslError(absl::StatusCode::kInternal, "building ECDSA-Sig-Value");
  }
  int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return OpenSslError(absl::StatusCode::kInternal, "i2d_ECDSA_SIG");
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  i2d_ECDSA_SIG(sig.get(), &p);
  return der;
}

}  // namespace offkey::hsm::pkcs11
