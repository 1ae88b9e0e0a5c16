#include "service/tickets/ticket_crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/big_endian.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"
#include "service/crypto/hkdf.h"

namespace offkey::service::tickets {
namespace {

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

int64_t PeriodSeconds(absl::Duration period) {
  const int64_t seconds = absl::ToInt64Seconds(period);
  return seconds > 0 ? seconds : 1;
}

// Floor division: epochs before 1970 count down from -1.
int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

const uint8_t* Bytes(absl::string_view s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

// AES-256-GCM open; nullopt when the tag does not verify (checked by OpenSSL, in
// constant time) or OpenSSL fails.
std::optional<SecretBytes> OpenGcm(const SecretBytes& key, absl::string_view aad,
                                   const SealedParts& parts) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) return std::nullopt;
  SecretBytes plaintext(parts.ciphertext.size());
  int len = 0;
  int final_len = 0;
  const bool ok =
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key.data(), Bytes(parts.nonce)) ==
          1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(aad),
                        static_cast<int>(aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), plaintext.data(), &len, Bytes(parts.ciphertext),
                        static_cast<int>(parts.ciphertext.size())) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes,
                          const_cast<char*>(parts.tag.data())) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), plaintext.data() + len, &final_len) == 1;
  if (!ok) {
    DrainOpenSslErrors();  // A failed tag leaves nothing worth reporting.
    return std::nullopt;
  }
  return plaintext;
}

}  // namespace

int64_t EpochAt(absl::Time now, absl::Duration period) {
  return FloorDiv(absl::ToUnixSeconds(now), PeriodSeconds(period));
}

absl::Time EpochStart(int64_t epoch, absl::Duration period) {
  return absl::FromUnixSeconds(epoch * PeriodSeconds(period));
}

absl::StatusOr<std::shared_ptr<const EpochMaterial>> EpochMaterial::FromSecret(
    int64_t epoch, const SecretBytes& secret) {
  if (secret.size() != kEpochSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ticket epoch secret has ", kEpochSecretBytes, " bytes; got ", secret.size()));
  }
  OFFKEY_ASSIGN_OR_RETURN(SecretBytes ticket_key,
                          crypto::HkdfSha256Expand(secret, kTicketKeyInfo,
                                                   kTicketKeyBytes, "the ticket key"));
  OFFKEY_ASSIGN_OR_RETURN(
      SecretBytes seal_key,
      crypto::HkdfSha256Expand(secret, kSealKeyInfo, kSealKeyBytes, "the sealing key"));
  return std::shared_ptr<const EpochMaterial>(
      new EpochMaterial(epoch, std::move(ticket_key), std::move(seal_key)));
}

absl::StatusOr<std::string> Seal(const EpochMaterial& material,
                                 absl::string_view set_name,
                                 absl::string_view plaintext) {
  if (plaintext.empty() || plaintext.size() > kMaxPlaintextBytes) {
    return absl::InvalidArgumentError(absl::StrCat("plaintext: 1 to ", kMaxPlaintextBytes,
                                                   " bytes; got ", plaintext.size()));
  }
  std::string sealed(1, static_cast<char>(kSealedVersion));
  AppendBigEndian64(static_cast<uint64_t>(material.epoch()), &sealed);
  sealed.resize(kSealedOverheadBytes + plaintext.size());
  auto* out = reinterpret_cast<uint8_t*>(sealed.data());
  uint8_t* nonce = out + 1 + 8;
  if (RAND_bytes(nonce, kNonceBytes) != 1) {
    return OpenSslError(absl::StatusCode::kInternal, "random nonce");
  }
  uint8_t* ciphertext = out + kSealedHeaderBytes;
  uint8_t* tag = ciphertext + plaintext.size();
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  int final_len = 0;
  const bool ok =
      ctx != nullptr &&
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, material.seal_key().data(),
                         nonce) == 1 &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(set_name),
                        static_cast<int>(set_name.size())) == 1 &&
      EVP_EncryptUpdate(ctx.get(), ciphertext, &len, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx.get(), ciphertext + len, &final_len) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  if (!ok) return OpenSslError(absl::StatusCode::kInternal, "AES-256-GCM seal");
  return sealed;
}

std::optional<SealedParts> ParseSealed(absl::string_view sealed) {
  if (sealed.size() < kSealedOverheadBytes + 1 || sealed.size() > kMaxSealedBytes) {
    return std::nullopt;
  }
  if (static_cast<uint8_t>(sealed[0]) != kSealedVersion) return std::nullopt;
  SealedParts parts;
  parts.epoch = static_cast<int64_t>(ReadBigEndian64(sealed.substr(1, 8)));
  parts.header = sealed.substr(0, kSealedHeaderBytes);
  parts.nonce = sealed.substr(1 + 8, kNonceBytes);
  parts.ciphertext =
      sealed.substr(kSealedHeaderBytes, sealed.size() - kSealedHeaderBytes - kTagBytes);
  parts.tag = sealed.substr(sealed.size() - kTagBytes);
  return parts;
}

absl::StatusOr<Unsealed> Unseal(absl::string_view set_name, absl::string_view sealed,
                                int64_t current_epoch, const MaterialSource& material) {
  Unsealed answer;
  std::optional<SealedParts> parts = ParseSealed(sealed);
  if (!parts.has_value()) return answer;  // kInvalid
  answer.epoch = parts->epoch;
  // The window [current - 1, current + 1]. The differences are taken unsigned, exact
  // for any two int64 values in that order, so a hostile epoch cannot overflow them.
  const auto distance = [](int64_t from, int64_t to) {
    return static_cast<uint64_t>(to) - static_cast<uint64_t>(from);
  };
  const bool too_old =
      parts->epoch < current_epoch && distance(parts->epoch, current_epoch) > 1;
  const bool too_new =
      parts->epoch > current_epoch && distance(current_epoch, parts->epoch) > 1;
  if (too_old || too_new) {
    answer.result = Unsealed::Result::kExpired;
    return answer;
  }
  OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<const EpochMaterial> keys,
                          material(parts->epoch));
  // The header is authenticated through the key (epoch) and the nonce; the version is
  // fixed. The associated data is the set name, so another set's ticket fails here.
  std::optional<SecretBytes> plaintext = OpenGcm(keys->seal_key(), set_name, *parts);
  if (!plaintext.has_value()) return answer;  // kInvalid
  answer.result = Unsealed::Result::kOpened;
  answer.plaintext = *std::move(plaintext);
  answer.renew = parts->epoch < current_epoch;
  return answer;
}

}  // namespace offkey::service::tickets
