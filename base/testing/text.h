// GoogleTest helpers for checking text, such as error messages.
#ifndef OFFKEY_BASE_TESTING_TEXT_H_
#define OFFKEY_BASE_TESTING_TEXT_H_

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace offkey::testing {

// EXPECT_TRUE(Contains(status.message(), "CKR_PIN_INCORRECT")): on failure the message
// shows both the text and the missing part.
inline ::testing::AssertionResult Contains(absl::string_view text,
                                           absl::string_view part) {
  if (absl::StrContains(text, part)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' lacks '" << part << "'";
}

}  // namespace offkey::testing

#endif  // OFFKEY_BASE_TESTING_TEXT_H_
