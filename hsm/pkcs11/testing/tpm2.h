// Test fixture: tpm2-pkcs11 tokens on a software TPM.
//
// The first Create starts, for this process, swtpm (a TPM 2.0 simulator on a loopback
// TCP port chosen here), a private D-Bus session bus and tpm2-abrmd on it (the resource
// manager tpm2-pkcs11 needs: without one, swtpm's three object slots fill up), and
// points tpm2-pkcs11 and tpm2-tools at them through the environment (TPM2_PKCS11_TCTI,
// TPM2TOOLS_TCTI, TPM2_PKCS11_STORE, DBUS_SESSION_BUS_ADDRESS), so child processes
// (offkeyd in end-to-end tests) use them too. Everything lives under $TEST_TMPDIR and
// is stopped at exit.
#ifndef OFFKEY_HSM_PKCS11_TESTING_TPM2_H_
#define OFFKEY_HSM_PKCS11_TESTING_TPM2_H_

#include <string>

#include "absl/status/statusor.h"
#include "hsm/pkcs11/token.h"

namespace offkey::hsm::pkcs11::testing {

std::string Tpm2ModulePath();
// Whether libtpm2-pkcs11-1, libtpm2-pkcs11-tools, swtpm, tpm2-abrmd and dbus are
// installed.
bool Tpm2Installed();

// A token made with tpm2_ptool addtoken, as an operator would.
struct Tpm2Token {
  std::string label;
  std::string pin;
  std::string pin_file;  // Holds `pin`.

  // With `store_secret`, also provisions offkey's store secret (an HMAC-SHA256 key
  // labelled offkey-premaster-substitute-v1) with tpm2_ptool addkey: tpm2-pkcs11 cannot
  // generate secret keys through PKCS#11, so an operator has to. Must be first called
  // before this process starts threads that read the environment. FAILED_PRECONDITION
  // (with why) if the TPM or its daemons cannot be started.
  static absl::StatusOr<Tpm2Token> Create(bool store_secret = true);

  TokenOptions Options(int max_sessions = 4) const;
  std::string Uri() const { return "pkcs11:token=" + label; }
};

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_TPM2_H_
