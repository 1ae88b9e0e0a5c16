// Fuzzes the sealed-ticket parser and Unseal: input byte 0 picks the current epoch's
// offset from a fixed epoch (so the window check sees tickets inside and outside it),
// the rest is the ticket. Whatever the bytes, Unseal must not crash, must never ask for
// material outside the window, and must open only tickets that round-trip: a blob it
// opens re-seals (under the same key, epoch and set) to something that opens to the
// same plaintext.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"
#include "service/tickets/ticket_crypto.h"

namespace {

namespace tickets = offkey::service::tickets;

std::shared_ptr<const tickets::EpochMaterial> MaterialFor(int64_t epoch) {
  const offkey::SecretBytes secret(std::string(tickets::kEpochSecretBytes, 'k'));
  return *tickets::EpochMaterial::FromSecret(epoch, secret);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int64_t current = 1000 + static_cast<int8_t>(data[0]);
  const absl::string_view sealed(reinterpret_cast<const char*>(data + 1), size - 1);
  auto source = [current](int64_t epoch)
      -> absl::StatusOr<std::shared_ptr<const tickets::EpochMaterial>> {
    if (epoch < current - 1 || epoch > current + 1) abort();  // Window not enforced.
    return MaterialFor(epoch);
  };
  absl::StatusOr<tickets::Unsealed> got =
      tickets::Unseal("fuzz", sealed, current, source);
  if (!got.ok()) abort();  // The source never fails.
  const std::optional<tickets::SealedParts> parts = tickets::ParseSealed(sealed);
  if (parts.has_value() != got->epoch.has_value()) abort();
  if (parts.has_value() && parts->epoch != *got->epoch) abort();
  if (got->result == tickets::Unsealed::Result::kOpened) {
    if (got->plaintext.size() != parts->ciphertext.size()) abort();
    absl::StatusOr<std::string> again =
        tickets::Seal(*MaterialFor(parts->epoch), "fuzz", got->plaintext.view());
    if (!again.ok()) abort();
    absl::StatusOr<tickets::Unsealed> reopened =
        tickets::Unseal("fuzz", *again, current, source);
    if (!reopened.ok() || reopened->plaintext.view() != got->plaintext.view()) abort();
    // Another set's name is other associated data: it must not open.
    absl::StatusOr<tickets::Unsealed> other =
        tickets::Unseal("fuzz2", sealed, current, source);
    if (!other.ok() || other->result != tickets::Unsealed::Result::kInvalid) abort();
  }
  return 0;
}
