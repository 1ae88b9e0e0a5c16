#include "base/build_info.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace offkey {
namespace {

BuildInfo& Current() {
  static BuildInfo* const info = new BuildInfo;  // Never destroyed: read at exit too.
  return *info;
}

}  // namespace

void SetBuildInfo(BuildInfo info) { Current() = std::move(info); }

const BuildInfo& GetBuildInfo() { return Current(); }

std::string VersionLine(absl::string_view program, const BuildInfo& info) {
  return absl::StrCat(
      program, " ", info.version, " (revision ", info.revision, ", built ",
      info.time == absl::InfinitePast()
          ? std::string("unknown")
          : absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", info.time, absl::UTCTimeZone()),
      ")");
}

}  // namespace offkey
