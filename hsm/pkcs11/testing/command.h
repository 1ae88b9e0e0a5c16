// Running the command-line tools that set up test tokens (pkcsslotd, swtpm, tpm2_ptool).
#ifndef OFFKEY_HSM_PKCS11_TESTING_COMMAND_H_
#define OFFKEY_HSM_PKCS11_TESTING_COMMAND_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace offkey::hsm::pkcs11::testing {

// Runs argv (argv[0] looked up in PATH) to completion with `input` on standard input,
// and returns what it wrote to standard output and error, interleaved. INTERNAL with
// that output if it fails or runs longer than `timeout` (then killed). The message
// names argv[0] and argv[1] only: later arguments may be PINs.
absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv,
                                       absl::Duration timeout = absl::Seconds(120),
                                       const std::string& input = "");

// Starts argv in the background with standard output and error appended to `log`;
// returns its process id. The caller stops it (StopProcess).
absl::StatusOr<pid_t> StartProcess(const std::vector<std::string>& argv,
                                   const std::string& log);

// SIGTERM to `pid`, then SIGKILL if it is still there after `timeout`; reaps it if it
// is our child.
void StopProcess(pid_t pid, absl::Duration timeout = absl::Seconds(10));

// Whether `path` names an existing file.
bool FileExists(const std::string& path);

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_COMMAND_H_
