#include "base/testing/status_matchers.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace offkey::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(StatusMatchersTest, IsOkMatchesOnlyOk) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(absl::StatusOr<int>(3), IsOk());
  EXPECT_THAT(absl::NotFoundError("x"), Not(IsOk()));
  EXPECT_THAT(absl::StatusOr<int>(absl::InternalError("x")), Not(IsOk()));
}

TEST(StatusMatchersTest, StatusIsChecksCodeAndMessage) {
  absl::Status status = absl::NotFoundError("no key named 'web'");
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kNotFound, HasSubstr("'web'")));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("'api'"))));
  EXPECT_THAT(status, Not(StatusIs(absl::StatusCode::kInternal)));
  EXPECT_THAT(absl::StatusOr<int>(status), StatusIs(absl::StatusCode::kNotFound));
}

TEST(StatusMatchersTest, ExplainsTheStatusOnFailure) {
  ::testing::StringMatchResultListener listener;
  ::testing::Matcher<absl::Status> matcher = IsOk();
  EXPECT_FALSE(matcher.MatchAndExplain(absl::UnavailableError("token gone"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("token gone"));
}

TEST(StatusMatchersTest, AssertOkAndAssignMovesTheValue) {
  OFFKEY_ASSERT_OK_AND_ASSIGN(int value, absl::StatusOr<int>(7));
  EXPECT_EQ(value, 7);
}

}  // namespace
}  // namespace offkey::testing
