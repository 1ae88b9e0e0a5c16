#include "base/testing/secret_ledger.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "base/openssl_util.h"
#include "gtest/gtest.h"

namespace offkey::testing {
namespace {

offkey::Mutex ledger_mutex;

std::string BignumParam(const EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return "";
  BignumPtr bn(raw);
  std::string out(static_cast<size_t>(BN_num_bytes(bn.get())), '\0');
  BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

void RecordPrivateParts(absl::string_view what, const EVP_PKEY* key) {
  for (const char* param : {OSSL_PKEY_PARAM_RSA_D, OSSL_PKEY_PARAM_RSA_FACTOR1,
                            OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_PRIV_KEY}) {
    RecordSecret(absl::StrCat(what, ".", param), BignumParam(key, param));
  }
  size_t raw_len = 0;
  if (EVP_PKEY_get_raw_private_key(key, nullptr, &raw_len) == 1) {
    std::string raw(raw_len, '\0');
    EVP_PKEY_get_raw_private_key(key, reinterpret_cast<unsigned char*>(raw.data()),
                                 &raw_len);
    RecordSecret(absl::StrCat(what, ".raw"), raw);
  }
  DrainOpenSslErrors();  // get_bn_param misses on other key types leave errors queued.
}

}  // namespace

void RecordSecret(absl::string_view what, absl::string_view secret) {
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  if (dir == nullptr || secret.size() < 8) return;
  const std::string line = absl::StrCat(what.empty() ? "secret" : what, " ",
                                        absl::BytesToHexString(secret), "\n");
  offkey::MutexLock lock(&ledger_mutex);
  FILE* f = std::fopen(absl::StrCat(dir, "/", kSecretLedgerName).c_str(), "a");
  ASSERT_NE(f, nullptr) << "cannot append to the secret ledger in " << dir;
  std::fputs(line.c_str(), f);
  std::fclose(f);
}

void RecordPrivateKeyPem(absl::string_view what, absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  ASSERT_NE(key, nullptr) << "not a PEM private key: " << DrainOpenSslErrors();
  RecordPrivateParts(what, key.get());
}

void RecordPrivateKeyDer(absl::string_view what, absl::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EvpPkeyPtr key(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  ASSERT_NE(key, nullptr) << "not a DER private key: " << DrainOpenSslErrors();
  RecordPrivateParts(what, key.get());
}

std::string OutputPath(absl::string_view name) {
  const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  if (dir == nullptr) dir = std::getenv("TEST_TMPDIR");
  if (dir == nullptr) dir = "/tmp";
  return absl::StrCat(dir, "/", name);
}

}  // namespace offkey::testing
