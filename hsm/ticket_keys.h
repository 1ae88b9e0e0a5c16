// What every KeyStore shares about ticket-key sets (hsm/key_store.h): the set name rules
// and the fixed input from which an epoch's secret is derived under the set's root.
#ifndef OFFKEY_HSM_TICKET_KEYS_H_
#define OFFKEY_HSM_TICKET_KEYS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace offkey::hsm {

// The root secret's size and the derived epoch secret's (HMAC-SHA256 output).
inline constexpr size_t kTicketRootSecretSize = 32;
inline constexpr size_t kTicketEpochSecretSize = 32;

// Set names follow the key name limits: 1 to 64 characters of [A-Za-z0-9._-], starting
// with a letter or digit. INVALID_ARGUMENT otherwise.
absl::Status ValidateTicketKeySetName(absl::string_view name);

// A rotation period the store can record: a positive whole number of seconds.
// INVALID_ARGUMENT otherwise. (The admin API's tighter range is the service's to check.)
absl::Status ValidateTicketRotationPeriod(absl::Duration period);

// The message an epoch's secret is the HMAC-SHA256 of, under the set's root secret:
//   "offkey ticket epoch v1" || 0x00 || set name || 0x00 || epoch (8 bytes, big-endian)
// The name cannot contain 0x00 (see ValidateTicketKeySetName), so the framing is
// unambiguous. Changing it changes every derived key: a new framing needs a new "vN".
std::string TicketEpochMessage(absl::string_view set_name, int64_t epoch);

// INVALID_ARGUMENT for a negative epoch (epochs count periods since the Unix epoch).
absl::Status ValidateTicketEpoch(int64_t epoch);

}  // namespace offkey::hsm

#endif  // OFFKEY_HSM_TICKET_KEYS_H_
