#include "hsm/testing/wycheproof.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace offkey::hsm::testing {

std::string TestDataPath(absl::string_view relative) {
  std::vector<std::string> candidates;
  if (const char* srcdir = getenv("TEST_SRCDIR")) {
    candidates.push_back(absl::StrCat(srcdir, "/offkey/testdata/", relative));
  }
  if (const char* env = getenv("OFFKEY_TESTDATA")) {
    candidates.push_back(absl::StrCat(env, "/", relative));
  }
  for (const std::string& path : candidates) {
    if (access(path.c_str(), R_OK) == 0) return path;
  }
  return candidates.empty() ? std::string(relative) : candidates.front();
}

absl::StatusOr<google::protobuf::Struct> LoadJson(absl::string_view relative) {
  std::string path = TestDataPath(relative);
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  google::protobuf::Struct out;
  auto status = google::protobuf::util::JsonStringToMessage(buffer.str(), &out);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", std::string(status.message())));
  }
  return out;
}

std::string Unhex(absl::string_view hex) {
  if (hex.size() % 2 != 0) abort();
  for (char c : hex) {
    if (!isxdigit(static_cast<unsigned char>(c))) abort();
  }
  return absl::HexStringToBytes(hex);
}

}  // namespace offkey::hsm::testing
