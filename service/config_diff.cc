#include "service/config_diff.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/message_differencer.h"

namespace offkey::service {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

bool SameField(const Message& a, const Message& b, const FieldDescriptor* field) {
  google::protobuf::util::MessageDifferencer differencer;
  std::vector<const FieldDescriptor*> fields = {field};
  return differencer.CompareWithFields(a, b, fields, fields);
}

void Diff(const Message& a, const Message& b, const std::string& prefix,
          std::vector<std::string>* changes) {
  const google::protobuf::Descriptor* descriptor = a.GetDescriptor();
  const Reflection* reflection = a.GetReflection();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (SameField(a, b, field)) continue;
    if (field->is_repeated() || field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      changes->push_back(prefix + field->name());
    } else {
      Diff(reflection->GetMessage(a, field), reflection->GetMessage(b, field),
           absl::StrCat(prefix, field->name(), "."), changes);
    }
  }
}

}  // namespace

offkey::v1::ServerConfig RestartOnlyPart(offkey::v1::ServerConfig config) {
  config.clear_policy();
  config.clear_admin_identities();
  config.clear_trust_bundles();
  config.clear_handshake();
  return config;
}

std::vector<std::string> RestartOnlyChanges(const offkey::v1::ServerConfig& running,
                                            const offkey::v1::ServerConfig& next) {
  std::vector<std::string> changes;
  Diff(RestartOnlyPart(running), RestartOnlyPart(next), "", &changes);
  return changes;
}

}  // namespace offkey::service
