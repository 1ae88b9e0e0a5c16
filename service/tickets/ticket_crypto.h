// Session-ticket crypto for ticket-key sets (key_service.proto, "Session tickets"):
// epoch arithmetic, the expansion of an epoch's store-derived secret into its ticket
// key and sealing key, and the sealed-ticket format. No key store here: the caller
// brings the 32-byte epoch secret (KeyStore::DeriveTicketEpochSecret).
#ifndef OFFKEY_SERVICE_TICKETS_TICKET_CRYPTO_H_
#define OFFKEY_SERVICE_TICKETS_TICKET_CRYPTO_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/secret_bytes.h"
#include "hsm/ticket_keys.h"

namespace offkey::service::tickets {

// Epoch N of a set with period P covers Unix time [N*P, (N+1)*P). `period` is whole
// seconds, at least one.
int64_t EpochAt(absl::Time now, absl::Duration period);
absl::Time EpochStart(int64_t epoch, absl::Duration period);
inline absl::Time EpochEnd(int64_t epoch, absl::Duration period) {
  return EpochStart(epoch + 1, period);
}

// The store's per-epoch secret, and what it expands to.
inline constexpr size_t kEpochSecretBytes = hsm::kTicketEpochSecretSize;
inline constexpr absl::string_view kTicketKeyInfo = "offkey ticket key v1";
inline constexpr absl::string_view kSealKeyInfo = "offkey ticket seal v1";
// The ticket key: key name | AES-256 key | HMAC-SHA256 key (RFC 5077 section 4's
// layout, what nginx and haproxy key files hold).
inline constexpr size_t kTicketNameBytes = 16;
inline constexpr size_t kTicketAesKeyBytes = 32;
inline constexpr size_t kTicketHmacKeyBytes = 32;
inline constexpr size_t kTicketKeyBytes =
    kTicketNameBytes + kTicketAesKeyBytes + kTicketHmacKeyBytes;
inline constexpr size_t kSealKeyBytes = 32;  // AES-256-GCM.

// One epoch's key material. Immutable once made; wiped when destroyed.
class EpochMaterial {
 public:
  // Expands `secret` (kEpochSecretBytes) with HKDF-SHA256-Expand into the ticket key
  // (info kTicketKeyInfo) and the sealing key (info kSealKeyInfo). INVALID_ARGUMENT for a
  // secret of another size.
  static absl::StatusOr<std::shared_ptr<const EpochMaterial>> FromSecret(
      int64_t epoch, const SecretBytes& secret);

  int64_t epoch() const { return epoch_; }
  absl::string_view name() const {
    return ticket_key_.view().substr(0, kTicketNameBytes);
  }
  absl::string_view aes_key() const {
    return ticket_key_.view().substr(kTicketNameBytes, kTicketAesKeyBytes);
  }
  absl::string_view hmac_key() const {
    return ticket_key_.view().substr(kTicketNameBytes + kTicketAesKeyBytes);
  }
  const SecretBytes& seal_key() const { return seal_key_; }

 private:
  EpochMaterial(int64_t epoch, SecretBytes ticket_key, SecretBytes seal_key)
      : epoch_(epoch),
        ticket_key_(std::move(ticket_key)),
        seal_key_(std::move(seal_key)) {}

  const int64_t epoch_;
  const SecretBytes ticket_key_;
  const SecretBytes seal_key_;
};

// Sealed tickets: version (1 byte, kSealedVersion) | epoch (8 bytes, big-endian, two's
// complement) | nonce (12) | ciphertext (plaintext's size) | tag (16), AES-256-GCM under
// the epoch's sealing key with the set name as associated data.
inline constexpr uint8_t kSealedVersion = 1;
inline constexpr size_t kNonceBytes = 12;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kSealedHeaderBytes = 1 + 8 + kNonceBytes;
inline constexpr size_t kSealedOverheadBytes = kSealedHeaderBytes + kTagBytes;
// SealTicketRequest.plaintext: 1 byte to 16 KiB; UnsealTicketRequest.sealed: up to 16
// KiB + 64 (key_service.proto).
inline constexpr size_t kMaxPlaintextBytes = 16 * 1024;
inline constexpr size_t kMaxSealedBytes = kMaxPlaintextBytes + 64;
static_assert(kSealedOverheadBytes <= 64, "the proto promises plaintext + 64 at most");

// Seals `plaintext` (1..kMaxPlaintextBytes; INVALID_ARGUMENT otherwise) under
// `material` with a fresh random nonce.
absl::StatusOr<std::string> Seal(const EpochMaterial& material,
                                 absl::string_view set_name, absl::string_view plaintext);

// The parts of a sealed ticket, viewing the bytes given to ParseSealed.
struct SealedParts {
  int64_t epoch = 0;
  absl::string_view header;  // version | epoch | nonce
  absl::string_view nonce;
  absl::string_view ciphertext;
  absl::string_view tag;
};
// nullopt unless `sealed` has the format above with version kSealedVersion, at least
// one byte of ciphertext and at most kMaxSealedBytes in all. Reads only; no crypto.
std::optional<SealedParts> ParseSealed(absl::string_view sealed);

// What UnsealTicket answers (UnsealTicketResponse).
struct Unsealed {
  enum class Result { kOpened, kExpired, kInvalid };
  Result result = Result::kInvalid;
  SecretBytes plaintext;         // When kOpened.
  bool renew = false;            // Opened, and sealed before the current epoch.
  std::optional<int64_t> epoch;  // The epoch the ticket names, when it could be read.
};

// Supplies an epoch's material (from a cache or the key store).
using MaterialSource =
    std::function<absl::StatusOr<std::shared_ptr<const EpochMaterial>>(int64_t epoch)>;

// Opens `sealed` for the set `set_name` whose epoch now is `current_epoch`:
//   malformed, wrong version        -> kInvalid (no epoch)
//   epoch outside [current - 1, current + 1] -> kExpired, decided before any crypto,
//                                      so `material` is not asked
//   authentication fails            -> kInvalid
//   otherwise                       -> kOpened, renew when epoch < current_epoch.
// Errors are `material`'s only (the key store's).
absl::StatusOr<Unsealed> Unseal(absl::string_view set_name, absl::string_view sealed,
                                int64_t current_epoch, const MaterialSource& material);

}  // namespace offkey::service::tickets

#endif  // OFFKEY_SERVICE_TICKETS_TICKET_CRYPTO_H_
