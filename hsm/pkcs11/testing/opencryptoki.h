// Test fixture: opencryptoki's software token (swtok) behind a private pkcsslotd.
//
// opencryptoki 3.8 hard-codes its paths (/etc/opencryptoki, /var/lib/opencryptoki, the
// daemon's socket under /run, shared memory in /dev/shm), so a private daemon needs a
// private view of them: the first Create moves this process into a mount namespace of
// its own (it runs as root), mounts directories under $TEST_TMPDIR over those paths and
// starts pkcsslotd there. Child processes (offkeyd in end-to-end tests) share the view.
// The system's opencryptoki is untouched. pkcsslotd is stopped at exit.
#ifndef OFFKEY_HSM_PKCS11_TESTING_OPENCRYPTOKI_H_
#define OFFKEY_HSM_PKCS11_TESTING_OPENCRYPTOKI_H_

#include <string>

#include "absl/status/statusor.h"
#include "hsm/pkcs11/token.h"

namespace offkey::hsm::pkcs11::testing {

// opencryptoki's PKCS#11 library.
std::string OpencryptokiModulePath();
// Whether the `opencryptoki` package is installed (library and pkcsslotd).
bool OpencryptokiInstalled();

// A freshly initialised swtok token in a slot of its own (the private daemon has
// kOpencryptokiSlots of them). PINs are 8 characters, swtok's maximum.
struct OpencryptokiToken {
  static constexpr int kOpencryptokiSlots = 48;

  std::string label;
  std::string pin;
  std::string pin_file;  // Holds `pin`.

  // Starts the private daemon on first use, which must happen before this process
  // starts any thread (a mount namespace is entered by the whole process).
  // FAILED_PRECONDITION if the namespace or the daemon cannot be set up (with why);
  // RESOURCE_EXHAUSTED when every slot has been used.
  static absl::StatusOr<OpencryptokiToken> Create();

  TokenOptions Options(int max_sessions = 4) const;
  std::string Uri() const { return "pkcs11:token=" + label; }
};

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_OPENCRYPTOKI_H_
