// Where the user PIN comes from. Never a command-line value: those show in `ps`.
#ifndef OFFKEY_HSM_PKCS11_PIN_H_
#define OFFKEY_HSM_PKCS11_PIN_H_

#include <string>

#include "absl/status/statusor.h"
#include "base/secret_bytes.h"

namespace offkey::hsm::pkcs11 {

struct PinSource {
  std::string file;  // Read whole; one trailing newline (LF or CRLF) is dropped.
  std::string env;   // Name of an environment variable holding the PIN.
};

// Exactly one source must be set. INVALID_ARGUMENT if none or both, NOT_FOUND if the
// file or variable is missing, INVALID_ARGUMENT if the PIN is empty or over 256 bytes.
// Messages name the file or variable, never the PIN. A variable is wiped and unset once
// read (whether or not its value is accepted), so a second read finds NOT_FOUND; not
// thread-safe against other environment access (call it at start-up).
absl::StatusOr<SecretBytes> ReadPin(const PinSource& source);

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_PIN_H_
