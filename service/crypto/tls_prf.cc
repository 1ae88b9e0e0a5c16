#include "service/crypto/tls_prf.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"

namespace offkey::service::crypto {
namespace {

constexpr absl::string_view kMasterSecretLabel = "master secret";
constexpr absl::string_view kExtendedMasterSecretLabel = "extended master secret";

struct EvpKdfCtxDeleter {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};

// OpenSSL's digest name for a PRF hash, or nullptr if TLS 1.2 never uses it as one.
const char* PrfDigestName(hsm::HashAlgorithm hash) {
  switch (hash) {
    case hsm::HashAlgorithm::kSha256:
      return "SHA256";
    case hsm::HashAlgorithm::kSha384:
      return "SHA384";
    default:
      return nullptr;
  }
}

absl::Status CheckPremaster(const SecretBytes& premaster) {
  if (premaster.size() != 48) {
    return absl::InvalidArgumentError(
        absl::StrCat("premaster has ", premaster.size(), " bytes, expected 48"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SecretBytes> Tls12Prf(hsm::HashAlgorithm hash, const SecretBytes& secret,
                                     absl::string_view label, absl::string_view seed,
                                     size_t out_len) {
  const char* digest = PrfDigestName(hash);
  if (digest == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the TLS 1.2 PRF hash must be SHA-256 or SHA-384, not ", hsm::HashName(hash)));
  }
  if (secret.empty()) return absl::InvalidArgumentError("TLS 1.2 PRF: empty secret");
  if (label.empty()) return absl::InvalidArgumentError("TLS 1.2 PRF: empty label");
  if (out_len == 0) return absl::InvalidArgumentError("TLS 1.2 PRF: zero output length");

  // Fetched once per process (thread-safe static initialisation), never freed.
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "TLS1-PRF", nullptr);
  if (kdf == nullptr) return OpenSslError(absl::StatusCode::kInternal, "fetch TLS1-PRF");
  std::unique_ptr<EVP_KDF_CTX, EvpKdfCtxDeleter> ctx(EVP_KDF_CTX_new(kdf));
  if (ctx == nullptr) {
    return OpenSslError(absl::StatusCode::kInternal, "TLS1-PRF context");
  }
  // The PRF's seed is label || seed (RFC 5246 §5); neither is secret.
  std::string full_seed;
  full_seed.reserve(label.size() + seed.size());
  full_seed.append(label.data(), label.size());
  full_seed.append(seed.data(), seed.size());
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest),
                                       0),
      OSSL_PARAM_construct_octet_string(
          OSSL_KDF_PARAM_SECRET, const_cast<uint8_t*>(secret.data()), secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, full_seed.data(),
                                        full_seed.size()),
      OSSL_PARAM_construct_end(),
  };
  SecretBytes out(out_len);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return OpenSslError(absl::StatusCode::kInternal,
                        absl::StrCat("TLS1-PRF with ", hsm::HashName(hash)));
  }
  return out;
}

absl::StatusOr<SecretBytes> MasterSecret(hsm::HashAlgorithm hash,
                                         const SecretBytes& premaster,
                                         absl::string_view client_random,
                                         absl::string_view server_random) {
  if (absl::Status s = CheckPremaster(premaster); !s.ok()) return s;
  if (client_random.size() != kHelloRandomSize ||
      server_random.size() != kHelloRandomSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello randoms must be 32 bytes each; client_random has ",
                     client_random.size(), ", server_random has ", server_random.size()));
  }
  std::string seed;
  seed.reserve(2 * kHelloRandomSize);
  seed.append(client_random.data(), client_random.size());
  seed.append(server_random.data(), server_random.size());
  return Tls12Prf(hash, premaster, kMasterSecretLabel, seed, kMasterSecretSize);
}

absl::StatusOr<SecretBytes> ExtendedMasterSecret(hsm::HashAlgorithm hash,
                                                 const SecretBytes& premaster,
                                                 absl::string_view session_hash) {
  if (PrfDigestName(hash) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the TLS 1.2 PRF hash must be SHA-256 or SHA-384, not ", hsm::HashName(hash)));
  }
  if (absl::Status s = CheckPremaster(premaster); !s.ok()) return s;
  if (session_hash.size() != hsm::HashLength(hash)) {
    return absl::InvalidArgumentError(
        absl::StrCat("session_hash has ", session_hash.size(), " bytes; the ",
                     hsm::HashName(hash), " PRF needs ", hsm::HashLength(hash)));
  }
  return Tls12Prf(hash, premaster, kExtendedMasterSecretLabel, session_hash,
                  kMasterSecretSize);
}

}  // namespace offkey::service::crypto
