// GoogleTest helpers for checking text, such as error messages.
#ifndef OFFKEY_BASE_TESTING_TEXT_H_
#define OFFKEY_BASE_TESTING_TEXT_H_

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace offkey::testing {

// EXPECT_TRUE(Contains(status.message(), "CKR_PIN_INCORRECT")): on failure the message
// shows both the text and the missing part.
inline ::testing::AssertionResult Contains(absl::string_view text,
                                           absl::string_view part) {
  if (absl::StrContains(text, part)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' lacks '" << part << "'";
}

// Parses proto3 JSON (offkeyctl's `-o json`) into a `Message`; fails the calling test,
// showing the text, when it does not parse.
template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(json, &message).ok()) << json;
  return message;
}

}  // namespace offkey::testing

#endif  // OFFKEY_BASE_TESTING_TEXT_H_
