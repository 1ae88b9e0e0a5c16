// Test fixture: real SoftHSM2 tokens in a temporary directory.
#ifndef OFFKEY_HSM_PKCS11_TESTING_SOFTHSM_H_
#define OFFKEY_HSM_PKCS11_TESTING_SOFTHSM_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "hsm/pkcs11/token.h"

namespace offkey::hsm::pkcs11::testing {

// Path of the SoftHSM2 module ($OFFKEY_PKCS11_MODULE overrides).
std::string SoftHsmModulePath();

struct SoftHsmConfig {
  // SoftHSM2's slots.mechanisms setting: "ALL" or a comma-separated allow-list.
  std::string mechanisms = "ALL";
};

// Sets up this process's SoftHSM2 configuration: a token directory under $TEST_TMPDIR
// (or a fresh /tmp directory) and SOFTHSM2_CONF pointing at it. Must run before the
// module is first loaded; later calls return the same directory and ignore `config`.
std::string SoftHsmDirectory(const SoftHsmConfig& config = {});

// A freshly initialised token with a unique label, made with softhsm2-util as an
// operator would. Tokens stay until the temporary directory is removed.
struct SoftHsmToken {
  std::string label;
  std::string pin;
  std::string pin_file;  // Holds `pin`.
  std::string directory;
  std::string token_path;  // SoftHSM2's directory for this token (to make it vanish).

  static absl::StatusOr<SoftHsmToken> Create(absl::string_view label_prefix = "test");

  // Options for Token::Open / Pkcs11KeyStore::Create on this token.
  TokenOptions Options(int max_sessions = 4) const;
  std::string Uri() const { return "pkcs11:token=" + label; }
};

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_SOFTHSM_H_
