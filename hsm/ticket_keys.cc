#include "hsm/ticket_keys.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/big_endian.h"
#include "hsm/key_types.h"

namespace offkey::hsm {

absl::Status ValidateTicketKeySetName(absl::string_view name) {
  absl::Status key_rules = ValidateKeyName(name);
  if (!key_rules.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ticket-key set names follow the key name rules: ", key_rules.message()));
  }
  if (!absl::ascii_isalnum(name[0])) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ticket-key set name '", name, "' must start with a letter or digit"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTicketRotationPeriod(absl::Duration period) {
  if (period <= absl::ZeroDuration() || period == absl::InfiniteDuration() ||
      period % absl::Seconds(1) != absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ticket-key rotation period is a positive whole number of "
                     "seconds; got ",
                     absl::FormatDuration(period)));
  }
  return absl::OkStatus();
}

absl::Status ValidateTicketEpoch(int64_t epoch) {
  if (epoch < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("ticket epoch ", epoch, " is negative"));
  }
  return absl::OkStatus();
}

std::string TicketEpochMessage(absl::string_view set_name, int64_t epoch) {
  std::string out = absl::StrCat("offkey ticket epoch v1", absl::string_view("\0", 1),
                                 set_name, absl::string_view("\0", 1));
  AppendBigEndian64(static_cast<uint64_t>(epoch), &out);
  return out;
}

}  // namespace offkey::hsm
