// Initialising a token in a free slot (development mode; production tokens are set up
// with the HSM vendor's tools).
#ifndef OFFKEY_HSM_PKCS11_TOKEN_INIT_H_
#define OFFKEY_HSM_PKCS11_TOKEN_INIT_H_

#include <string>

#include "absl/status/status.h"
#include "base/secret_bytes.h"

namespace offkey::hsm::pkcs11 {

// Initialises the first uninitialised token of `module_path` with `label`, sets the SO
// PIN and the user PIN. ALREADY_EXISTS if a token with that label exists, NOT_FOUND if no
// free slot is left, the mapped CK_RV otherwise. PINs are passed in memory only.
absl::Status InitializeToken(const std::string& module_path, const std::string& label,
                             const SecretBytes& so_pin, const SecretBytes& user_pin);

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_TOKEN_INIT_H_
