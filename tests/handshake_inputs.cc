#include "tests/handshake_inputs.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "base/openssl_util.h"
#include "base/testing/secret_ledger.h"

namespace offkey::tests {

using ::offkey::testing::RecordPrivateKeyPem;
namespace {

std::string CertificateVerifyInput(absl::string_view context, size_t hash_len) {
  return std::string(64, ' ') + std::string(context) + std::string(1, '\0') +
         Random(hash_len);
}

}  // namespace

std::string Random(size_t n) {
  std::string out(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n));
  return out;
}

std::string Tls13Input(size_t hash_len) {
  return CertificateVerifyInput("TLS 1.3, server CertificateVerify", hash_len);
}

std::string Tls13ClientInput(size_t hash_len) {
  return CertificateVerifyInput("TLS 1.3, client CertificateVerify", hash_len);
}

std::string Tls12EcdheInput() {
  EvpPkeyPtr share(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  std::string point(65, '\0');
  size_t length = 0;
  if (share == nullptr ||
      EVP_PKEY_get_octet_string_param(share.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                      reinterpret_cast<unsigned char*>(point.data()),
                                      point.size(), &length) != 1 ||
      length != point.size()) {
    return "";  // Refused by the shape check, so the caller's test fails loudly.
  }
  return Random(64) + std::string("\x03\x00\x17\x41", 4) + point;
}

std::string Tls12DheInput() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_paramgen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_group_name(ctx.get(), "ffdhe2048") != 1 ||
      EVP_PKEY_paramgen(ctx.get(), &raw) != 1) {
    return "";
  }
  EvpPkeyPtr params(raw);
  BIGNUM* p = nullptr;
  if (EVP_PKEY_get_bn_param(params.get(), OSSL_PKEY_PARAM_FFC_P, &p) != 1) return "";
  BignumPtr owned(p);
  std::string prime(256, '\0');
  if (BN_bn2binpad(p, reinterpret_cast<unsigned char*>(prime.data()), 256) != 256) {
    return "";
  }
  // Below p: ffdhe2048 starts with 64 one bits.
  const std::string ys = "\x7f" + Random(255);
  return Random(64) + std::string("\x01\x00", 2) + prime +
         std::string("\x00\x01\x02\x01\x00", 5) + ys;
}

std::string SignWithPem(absl::string_view key_pem, const std::string& content) {
  RecordPrivateKeyPem("signing key", key_pem);
  BIO* bio = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  if (key == nullptr) return "";
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ed25519 = EVP_PKEY_get_base_id(key.get()) == EVP_PKEY_ED25519;
  const auto* in = reinterpret_cast<const unsigned char*>(content.data());
  size_t len = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, ed25519 ? nullptr : EVP_sha256(), nullptr,
                         key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, in, content.size()) != 1) {
    return "";
  }
  std::string signature(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                     in, content.size()) != 1) {
    return "";
  }
  signature.resize(len);
  return signature;
}

}  // namespace offkey::tests
