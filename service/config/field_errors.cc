#include "service/config/field_errors.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace offkey::service::config {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::TextFormat;

FieldErrors::FieldErrors(std::string source_name)
    : source_name_(std::move(source_name)) {}

void FieldErrors::Add(TextFormat::ParseLocation location, absl::string_view path,
                      absl::string_view message) {
  std::string where = source_name_;
  if (location.line >= 0) {
    absl::StrAppend(&where, ":", location.line + 1, ":", location.column + 1);
  }
  if (!where.empty()) absl::StrAppend(&where, ": ");
  errors_.push_back(absl::StrCat(where, path, path.empty() ? "" : ": ", message));
}

absl::Status FieldErrors::ToStatus() const {
  if (errors_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors_, "\n"));
}

MessageCursor::MessageCursor(FieldErrors* errors, const Descriptor* descriptor,
                             const TextFormat::ParseInfoTree* tree)
    : MessageCursor(errors, descriptor, tree, "", TextFormat::ParseLocation()) {}

MessageCursor::MessageCursor(FieldErrors* errors, const Descriptor* descriptor,
                             const TextFormat::ParseInfoTree* tree, std::string path,
                             TextFormat::ParseLocation location)
    : errors_(errors),
      descriptor_(descriptor),
      tree_(tree),
      path_(std::move(path)),
      location_(location) {}

const FieldDescriptor* MessageCursor::Field(absl::string_view name) const {
  // Field names are compile-time constants of the validators; a miss is a bug there.
  return descriptor_ == nullptr ? nullptr
                                : descriptor_->FindFieldByName(std::string(name));
}

TextFormat::ParseLocation MessageCursor::LocationOf(const FieldDescriptor* field,
                                                    int index) const {
  if (tree_ == nullptr || field == nullptr) return location_;
  // ParseInfoTree wants -1 exactly for singular fields; a whole repeated field is
  // located at its first element.
  int i = field->is_repeated() ? (index < 0 ? 0 : index) : -1;
  TextFormat::ParseLocation found = tree_->GetLocation(field, i);
  return found.line >= 0 ? found : location_;
}

std::string MessageCursor::PathOf(absl::string_view field, int index) const {
  std::string path = path_.empty() ? std::string(field) : absl::StrCat(path_, ".", field);
  if (index >= 0) absl::StrAppend(&path, "[", index, "]");
  return path;
}

MessageCursor MessageCursor::Nested(absl::string_view field, int index) const {
  const FieldDescriptor* fd = Field(field);
  const TextFormat::ParseInfoTree* nested = nullptr;
  if (tree_ != nullptr && fd != nullptr &&
      fd->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
      (fd->is_repeated() ? index >= 0 : index < 0)) {
    nested = tree_->GetTreeForNested(fd, fd->is_repeated() ? index : -1);
  }
  return MessageCursor(errors_,
                       fd != nullptr && fd->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE
                           ? fd->message_type()
                           : nullptr,
                       nested, PathOf(field, index), LocationOf(fd, index));
}

void MessageCursor::Error(absl::string_view field, int index,
                          absl::string_view message) const {
  errors_->Add(LocationOf(Field(field), index), PathOf(field, index), message);
}

void MessageCursor::Error(absl::string_view message) const {
  errors_->Add(location_, path_, message);
}

}  // namespace offkey::service::config
