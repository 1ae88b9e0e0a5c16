// Fuzzes the configuration loader (text format, defaults, semantic checks). A refusal
// must be INVALID_ARGUMENT; an accepted configuration must pass ValidateConfig, be a
// fixed point of ApplyDefaults, and read back unchanged from its own text form.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "offkey/v1/config.pb.h"
#include "service/config/config_loader.h"

namespace offkey::service::config {
namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckLoad(absl::string_view text, Completeness completeness) {
  using google::protobuf::util::MessageDifferencer;
  absl::StatusOr<v1::ServerConfig> config =
      ParseConfigText(text, "fuzz.textproto", completeness);
  if (!config.ok()) {
    Check(config.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  Check(ValidateConfig(*config, completeness).ok());
  v1::ServerConfig again = *config;
  ApplyDefaults(&again);
  Check(MessageDifferencer::Equals(again, *config));
  std::string printed;
  Check(google::protobuf::TextFormat::PrintToString(*config, &printed));
  absl::StatusOr<v1::ServerConfig> reread =
      ParseConfigText(printed, "printed.textproto", completeness);
  Check(reread.ok() && MessageDifferencer::Equals(*reread, *config));
}

}  // namespace
}  // namespace offkey::service::config

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The text parser logs every syntax error: noise, and slow.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace config = offkey::service::config;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  config::CheckLoad(text, config::Completeness::kComplete);
  config::CheckLoad(text, config::Completeness::kAllowIncomplete);
  return 0;
}
