// Fuzzes the key reference readers with the same bytes in each of its three forms: the
// PEM file (DecodeKeyReference), the serialized message (ParseKeyReference) and the
// `offkey:` URI (base64url of the message, decoded as client/openssl/store.cc does).
// Whatever one of them accepts must re-encode and decode to the same reference.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "client/key_reference.h"
#include "google/protobuf/stubs/logging.h"

namespace offkey::client {
namespace {

// An accepted reference passes EncodeKeyReference's checks (the decoders promise the
// same checks) and survives the round trip unchanged.
void CheckRoundTrip(const absl::StatusOr<v1::KeyReference>& ref) {
  if (!ref.ok()) return;
  absl::StatusOr<std::string> pem = EncodeKeyReference(*ref);
  if (!pem.ok()) std::abort();
  absl::StatusOr<v1::KeyReference> again = DecodeKeyReference(*pem);
  if (!again.ok() || again->SerializeAsString() != ref->SerializeAsString()) {
    std::abort();
  }
}

}  // namespace
}  // namespace offkey::client

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in a string field is logged on every parse: noise, and slow.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using offkey::client::CheckRoundTrip;
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  CheckRoundTrip(offkey::client::DecodeKeyReference(input));
  CheckRoundTrip(offkey::client::ParseKeyReference(input));
  if (absl::ConsumePrefix(&input, "offkey:")) {
    std::string bytes;
    if (absl::WebSafeBase64Unescape(input, &bytes)) {
      CheckRoundTrip(offkey::client::ParseKeyReference(bytes));
    }
  }
  return 0;
}
