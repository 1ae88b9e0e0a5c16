#include "hsm/testing/verify.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstdlib>

#include "base/openssl_util.h"
#include "base/testing/secret_ledger.h"
#include "hsm/openssl_key.h"

namespace offkey::hsm::testing {
namespace {

const EVP_MD* Md(HashAlgorithm hash) {
  switch (hash) {
    case HashAlgorithm::kSha1:
      return EVP_sha1();
    case HashAlgorithm::kSha256:
      return EVP_sha256();
    case HashAlgorithm::kSha384:
      return EVP_sha384();
    case HashAlgorithm::kSha512:
      return EVP_sha512();
    case HashAlgorithm::kNone:
      return nullptr;
  }
  return nullptr;
}

EvpPkeyPtr Public(absl::string_view spki) {
  EvpPkeyPtr key;
  if (!ParseSpki(spki, &key).ok()) abort();
  return key;
}

std::string Encrypt(absl::string_view spki, absl::string_view message, int padding) {
  EvpPkeyPtr key = Public(spki);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  size_t len = 0;
  if (EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), padding) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
    abort();
  }
  std::string out(len, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                       reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) != 1) {
    abort();
  }
  out.resize(len);
  return out;
}

}  // namespace

absl::Status VerifyWithOpenSsl(absl::string_view spki, SignAlgorithm algorithm,
                               absl::string_view message, absl::string_view signature) {
  EvpPkeyPtr key;
  if (absl::Status s = ParseSpki(spki, &key); !s.ok()) return s;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, Md(algorithm.hash), nullptr, key.get()) !=
      1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "EVP_DigestVerifyInit");
  }
  if (algorithm.kind == SignatureKind::kRsaPss &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, Md(algorithm.hash)) != 1)) {
    return OpenSslError(absl::StatusCode::kInternal, "PSS parameters");
  }
  if (EVP_DigestVerify(
          ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
          message.size()) != 1) {
    return OpenSslError(absl::StatusCode::kInvalidArgument, "signature does not verify");
  }
  return absl::OkStatus();
}

std::string RsaEncryptRaw(absl::string_view spki, absl::string_view message) {
  return Encrypt(spki, message, RSA_NO_PADDING);
}

std::string RsaEncryptPkcs1(absl::string_view spki, absl::string_view message) {
  return Encrypt(spki, message, RSA_PKCS1_PADDING);
}

std::string GeneratePkcs8(KeyAlgorithm algorithm) {
  EvpPkeyPtr key = GenerateOpenSslKey(algorithm);
  if (key == nullptr) abort();
  PKCS8_PRIV_KEY_INFO* p8 = EVP_PKEY2PKCS8(key.get());
  unsigned char* der = nullptr;
  int len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
  PKCS8_PRIV_KEY_INFO_free(p8);
  std::string out(reinterpret_cast<char*>(der), len);
  OPENSSL_clear_free(der, len);
  ::offkey::testing::RecordPrivateKeyDer("generated key", out);
  return out;
}

}  // namespace offkey::hsm::testing
