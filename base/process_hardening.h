// Keeping a process's memory (keys, PINs, premasters) out of core dumps and debuggers.
#ifndef OFFKEY_BASE_PROCESS_HARDENING_H_
#define OFFKEY_BASE_PROCESS_HARDENING_H_

#include "absl/status/status.h"

namespace offkey {

// Makes this process undumpable (prctl PR_SET_DUMPABLE 0: no core file whatever the
// limit, no ptrace attach or /proc/<pid>/mem reading by same-uid processes without
// CAP_SYS_PTRACE) and sets RLIMIT_CORE to 0, soft and hard (so children get none
// either and it cannot be raised again without CAP_SYS_RESOURCE). Call it early in
// main, before any secret is read. INTERNAL with the errno text if either call fails.
absl::Status DisableCoreDumps();

}  // namespace offkey

#endif  // OFFKEY_BASE_PROCESS_HARDENING_H_
