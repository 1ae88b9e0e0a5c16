// What build a binary is: its version (`git describe --always --dirty`), revision and
// build time. A binary's main() sets it once from StampedBuildInfo() (build_stamp.h);
// libraries read it. Unset, or built outside a git checkout, everything is "unknown".
#ifndef OFFKEY_BASE_BUILD_INFO_H_
#define OFFKEY_BASE_BUILD_INFO_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace offkey {

struct BuildInfo {
  std::string version = "unknown";         // "v1.2.0-3-gabcdef0-dirty", "abcdef0".
  std::string revision = "unknown";        // The full commit id.
  absl::Time time = absl::InfinitePast();  // When built; InfinitePast: not recorded.
};

// Sets what GetBuildInfo() returns. Call at the start of main(), before other threads
// start: it is not synchronized with readers.
void SetBuildInfo(BuildInfo info);
// The build info set, or the defaults above. Thread-safe once set.
const BuildInfo& GetBuildInfo();

// The line `--version` prints for `info`:
//   "<program> <version> (revision <revision>, built <RFC 3339 UTC time>)"
// with "built unknown" when the build time was not recorded.
std::string VersionLine(absl::string_view program, const BuildInfo& info);

}  // namespace offkey

#endif  // OFFKEY_BASE_BUILD_INFO_H_
