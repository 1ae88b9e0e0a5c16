// Test helpers: read the shared Wycheproof and TLS known-answer files.
#ifndef OFFKEY_HSM_TESTING_WYCHEPROOF_H_
#define OFFKEY_HSM_TESTING_WYCHEPROOF_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace offkey::hsm::testing {

// Absolute path of `relative` (e.g. "wycheproof/ed25519_test.json") in the test
// data (//testdata): the runfiles of a Bazel test, else $OFFKEY_TESTDATA.
std::string TestDataPath(absl::string_view relative);

// Reads a JSON file of the test data as a google.protobuf.Struct.
absl::StatusOr<google::protobuf::Struct> LoadJson(absl::string_view relative);

// Decodes lowercase or uppercase hex; aborts on malformed input (test data is trusted).
std::string Unhex(absl::string_view hex);

}  // namespace offkey::hsm::testing

#endif  // OFFKEY_HSM_TESTING_WYCHEPROOF_H_
