// GoogleTest matchers for absl::Status and absl::StatusOr<T> (Abseil's own are not in
// the Debian 12 release).
//
//   EXPECT_THAT(store.DestroyKey(id), IsOk());
//   EXPECT_THAT(store.FindKey(lookup), StatusIs(absl::StatusCode::kNotFound));
//   EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("name")));
//   OFFKEY_ASSERT_OK_AND_ASSIGN(KeyInfo key, store.GenerateKey("web", kEcP256));
#ifndef OFFKEY_BASE_TESTING_STATUS_MATCHERS_H_
#define OFFKEY_BASE_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace offkey::testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

template <typename T>
class StatusIsMatcherImpl : public ::testing::MatcherInterface<T> {
 public:
  StatusIsMatcherImpl(::testing::Matcher<absl::StatusCode> code,
                      ::testing::Matcher<const std::string&> message)
      : code_(std::move(code)), message_(std::move(message)) {}

  void DescribeTo(std::ostream* os) const override {
    *os << "has a status code that ";
    code_.DescribeTo(os);
    *os << " and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const override {
    *os << "has a status code that ";
    code_.DescribeNegationTo(os);
    *os << " or a message that ";
    message_.DescribeNegationTo(os);
  }
  bool MatchAndExplain(T value, ::testing::MatchResultListener* listener) const override {
    const absl::Status& status = GetStatus(value);
    *listener << "whose status is " << status;
    return code_.Matches(status.code()) &&
           message_.Matches(std::string(status.message()));
  }

 private:
  const ::testing::Matcher<absl::StatusCode> code_;
  const ::testing::Matcher<const std::string&> message_;
};

class StatusIsMatcher {
 public:
  StatusIsMatcher(::testing::Matcher<absl::StatusCode> code,
                  ::testing::Matcher<const std::string&> message)
      : code_(std::move(code)), message_(std::move(message)) {}
  template <typename T>
  operator ::testing::Matcher<T>() const {  // NOLINT(google-explicit-constructor)
    return ::testing::Matcher<T>(new StatusIsMatcherImpl<T>(code_, message_));
  }

 private:
  const ::testing::Matcher<absl::StatusCode> code_;
  const ::testing::Matcher<const std::string&> message_;
};

}  // namespace internal

// Matches a Status or StatusOr whose code matches `code` and message matches `message`.
inline internal::StatusIsMatcher StatusIs(
    ::testing::Matcher<absl::StatusCode> code,
    ::testing::Matcher<const std::string&> message = ::testing::_) {
  return internal::StatusIsMatcher(std::move(code), std::move(message));
}

// Matches an OK Status or a StatusOr that holds a value.
inline internal::StatusIsMatcher IsOk() { return StatusIs(absl::StatusCode::kOk); }

}  // namespace offkey::testing

#define OFFKEY_TESTING_CONCAT_INNER_(a, b) a##b
#define OFFKEY_TESTING_CONCAT_(a, b) OFFKEY_TESTING_CONCAT_INNER_(a, b)

// ASSERT_THAT(rexpr, IsOk()), then moves the value into `lhs` (which may declare it).
#define OFFKEY_ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                         \
  OFFKEY_ASSERT_OK_AND_ASSIGN_IMPL_(OFFKEY_TESTING_CONCAT_(offkey_statusor_, __LINE__), \
                                    lhs, rexpr)
#define OFFKEY_ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr)      \
  auto statusor = (rexpr);                                           \
  ASSERT_TRUE(statusor.ok()) << #rexpr << ": " << statusor.status(); \
  lhs = std::move(statusor).value()

#endif  // OFFKEY_BASE_TESTING_STATUS_MATCHERS_H_
