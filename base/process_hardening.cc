#include "base/process_hardening.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace offkey {

absl::Status DisableCoreDumps() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return absl::InternalError(
        absl::StrCat("prctl(PR_SET_DUMPABLE, 0): ", strerror(errno)));
  }
  const rlimit none{0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0) {
    return absl::InternalError(
        absl::StrCat("setrlimit(RLIMIT_CORE, 0): ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace offkey
