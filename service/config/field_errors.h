// Semantic errors in a configuration message, named by field path ("policy.grants[2].
// identities[0]") and, when the message was parsed from text with a ParseInfoTree, by
// "file:line:col". Internal to service/config: shared by the config loader and Policy so
// that both report the same paths.
#ifndef OFFKEY_SERVICE_CONFIG_FIELD_ERRORS_H_
#define OFFKEY_SERVICE_CONFIG_FIELD_ERRORS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"

namespace offkey::service::config {

// Collects errors; reports all of them at once so an operator fixes a file in one pass.
// Not thread-safe (one per validation).
class FieldErrors {
 public:
  // `source_name` (a file name, may be empty) prefixes every located error.
  explicit FieldErrors(std::string source_name = "");

  // `location` is zero-based as protobuf reports it (line -1: unknown).
  void Add(google::protobuf::TextFormat::ParseLocation location, absl::string_view path,
           absl::string_view message);

  bool empty() const { return errors_.empty(); }

  // OK when no error was added, else INVALID_ARGUMENT listing every error, one per line,
  // each as "source:LINE:COL: path: message" (the location parts only when known).
  absl::Status ToStatus() const;

 private:
  std::string source_name_;
  std::vector<std::string> errors_;
};

// One message inside the configuration under validation: its path from the root and,
// when known, the ParseInfoTree with the locations of its fields. Cheap to copy; refers
// to the FieldErrors, descriptor and tree, which must outlive it.
class MessageCursor {
 public:
  // The root message. `tree` may be null (a configuration built in code).
  MessageCursor(FieldErrors* errors, const google::protobuf::Descriptor* descriptor,
                const google::protobuf::TextFormat::ParseInfoTree* tree);

  // The message in field `field` (a message field of this message); `index` is the
  // element for a repeated field and -1 for a singular one.
  MessageCursor Nested(absl::string_view field, int index = -1) const;

  // "policy.grants[2].identities" (index -1) or "...identities[0]".
  std::string PathOf(absl::string_view field, int index = -1) const;

  // Reports `message` at `field` (element `index`, or -1 for a singular field or a whole
  // repeated field). Without a location for the field itself, the nearest enclosing
  // message that has one is used.
  void Error(absl::string_view field, int index, absl::string_view message) const;

  // Reports `message` about this message as a whole.
  void Error(absl::string_view message) const;

 private:
  MessageCursor(FieldErrors* errors, const google::protobuf::Descriptor* descriptor,
                const google::protobuf::TextFormat::ParseInfoTree* tree, std::string path,
                google::protobuf::TextFormat::ParseLocation location);

  const google::protobuf::FieldDescriptor* Field(absl::string_view name) const;
  google::protobuf::TextFormat::ParseLocation LocationOf(
      const google::protobuf::FieldDescriptor* field, int index) const;

  FieldErrors* errors_;
  const google::protobuf::Descriptor* descriptor_;
  const google::protobuf::TextFormat::ParseInfoTree* tree_;  // May be null.
  std::string path_;                                         // "" for the root.
  google::protobuf::TextFormat::ParseLocation location_;     // Of this message, if known.
};

}  // namespace offkey::service::config

#endif  // OFFKEY_SERVICE_CONFIG_FIELD_ERRORS_H_
