// The build info Bazel stamped into this binary (base/BUILD.bazel, :build_stamp_cc).
// Only binaries depend on it: they pass it to SetBuildInfo() in main().
#ifndef OFFKEY_BASE_BUILD_STAMP_H_
#define OFFKEY_BASE_BUILD_STAMP_H_

#include "base/build_info.h"

namespace offkey {

BuildInfo StampedBuildInfo();

}  // namespace offkey

#endif  // OFFKEY_BASE_BUILD_STAMP_H_
