#include "hsm/pkcs11/ck_rv.h"

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "base/testing/status_matchers.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

using ::offkey::testing::Contains;

TEST(CkRvTest, NamesOfKnownCodes) {
  EXPECT_EQ(CkRvName(CKR_OK), "CKR_OK");
  EXPECT_EQ(CkRvName(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  EXPECT_EQ(CkRvName(CKR_MECHANISM_INVALID), "CKR_MECHANISM_INVALID");
  EXPECT_EQ(CkRvName(CKR_DEVICE_REMOVED), "CKR_DEVICE_REMOVED");
  EXPECT_EQ(CkRvName(CKR_SESSION_HANDLE_INVALID), "CKR_SESSION_HANDLE_INVALID");
  EXPECT_EQ(CkRvName(CKR_USER_NOT_LOGGED_IN), "CKR_USER_NOT_LOGGED_IN");
  EXPECT_EQ(CkRvName(CKR_BUFFER_TOO_SMALL), "CKR_BUFFER_TOO_SMALL");
  EXPECT_EQ(CkRvName(CKR_FUNCTION_REJECTED), "CKR_FUNCTION_REJECTED");
  // Spot-check a few numeric values so a wrong table row cannot hide behind the macro.
  EXPECT_EQ(CkRvName(0xA0), "CKR_PIN_INCORRECT");
  EXPECT_EQ(CkRvName(0x70), "CKR_MECHANISM_INVALID");
  EXPECT_EQ(CkRvName(0x32), "CKR_DEVICE_REMOVED");
  EXPECT_EQ(CkRvName(0x101), "CKR_USER_NOT_LOGGED_IN");
}

TEST(CkRvTest, NamesOfUnknownCodes) {
  EXPECT_EQ(CkRvName(CKR_VENDOR_DEFINED | 0x42), "CKR_0x80000042(unknown)");
  EXPECT_EQ(CkRvName(0x999), "CKR_0x999(unknown)");
}

TEST(CkRvTest, CodeMapping) {
  using C = absl::StatusCode;
  EXPECT_EQ(CkRvCode(CKR_OK), C::kOk);
  EXPECT_EQ(CkRvCode(CKR_PIN_INCORRECT), C::kPermissionDenied);
  EXPECT_EQ(CkRvCode(CKR_PIN_LOCKED), C::kPermissionDenied);
  EXPECT_EQ(CkRvCode(CKR_KEY_FUNCTION_NOT_PERMITTED), C::kPermissionDenied);
  EXPECT_EQ(CkRvCode(CKR_MECHANISM_INVALID), C::kUnimplemented);
  EXPECT_EQ(CkRvCode(CKR_FUNCTION_NOT_SUPPORTED), C::kUnimplemented);
  EXPECT_EQ(CkRvCode(CKR_DATA_LEN_RANGE), C::kInvalidArgument);
  EXPECT_EQ(CkRvCode(CKR_ARGUMENTS_BAD), C::kInvalidArgument);
  EXPECT_EQ(CkRvCode(CKR_DEVICE_REMOVED), C::kUnavailable);
  EXPECT_EQ(CkRvCode(CKR_TOKEN_NOT_PRESENT), C::kUnavailable);
  EXPECT_EQ(CkRvCode(CKR_SESSION_HANDLE_INVALID), C::kUnavailable);
  EXPECT_EQ(CkRvCode(CKR_KEY_HANDLE_INVALID), C::kNotFound);
  EXPECT_EQ(CkRvCode(CKR_OBJECT_HANDLE_INVALID), C::kNotFound);
  EXPECT_EQ(CkRvCode(CKR_HOST_MEMORY), C::kResourceExhausted);
  EXPECT_EQ(CkRvCode(CKR_SESSION_COUNT), C::kResourceExhausted);
  EXPECT_EQ(CkRvCode(CKR_GENERAL_ERROR), C::kUnavailable);
  EXPECT_EQ(CkRvCode(CKR_FUNCTION_FAILED), C::kUnavailable);
  EXPECT_EQ(CkRvCode(CKR_OPERATION_ACTIVE), C::kInternal);
  EXPECT_EQ(CkRvCode(CKR_FUNCTION_CANCELED), C::kCancelled);
  EXPECT_EQ(CkRvCode(CKR_TOKEN_WRITE_PROTECTED), C::kFailedPrecondition);
  EXPECT_EQ(CkRvCode(CKR_USER_ALREADY_LOGGED_IN), C::kAlreadyExists);
}

TEST(CkRvTest, CodeOfUnknownValues) {
  // Vendor codes carry meaning we cannot know; undefined standard values are a bug.
  EXPECT_EQ(CkRvCode(CKR_VENDOR_DEFINED), absl::StatusCode::kUnknown);
  EXPECT_EQ(CkRvCode(CKR_VENDOR_DEFINED | 0x42), absl::StatusCode::kUnknown);
  EXPECT_EQ(CkRvCode(0x999), absl::StatusCode::kInternal);
}

TEST(CkRvTest, StatusCarriesTheCkRvAsPayload) {
  absl::Status status = CkRvStatus(CKR_SESSION_HANDLE_INVALID, "C_Sign");
  EXPECT_EQ(CkRvOf(status), CKR_SESSION_HANDLE_INVALID);
  EXPECT_TRUE(status.GetPayload(kCkRvPayloadUrl).has_value());
  // Copies and re-coded statuses keep it; statuses that did not come from PKCS#11 have
  // none.
  const absl::Status copy =
      status;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(CkRvOf(copy), CKR_SESSION_HANDLE_INVALID);
  EXPECT_EQ(CkRvOf(CkRvStatus(CKR_VENDOR_DEFINED | 0x42, "x")),
            CKR_VENDOR_DEFINED | 0x42);
  EXPECT_EQ(CkRvOf(CkRvStatus(CKR_OK, "x")), std::nullopt);
  EXPECT_EQ(CkRvOf(absl::OkStatus()), std::nullopt);
  EXPECT_EQ(CkRvOf(absl::UnavailableError("no CK_RV")), std::nullopt);
  absl::Status garbled = absl::InternalError("x");
  garbled.SetPayload(kCkRvPayloadUrl, absl::Cord("not a number"));
  EXPECT_EQ(CkRvOf(garbled), std::nullopt);
}

TEST(CkRvTest, CkStatusOkIsOk) {
  absl::Status status = CkRvStatus(CKR_OK, "C_Sign with key 'web'");
  EXPECT_THAT(status, IsOk());
  EXPECT_EQ(status.code(), absl::StatusCode::kOk);
  EXPECT_TRUE(status.message().empty());
}

TEST(CkRvTest, CkStatusCarriesOperationNameAndHex) {
  absl::Status status = CkRvStatus(CKR_PIN_INCORRECT, "C_Login on token 'offkey'");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(Contains(status.message(), "C_Login on token 'offkey'"));
  EXPECT_TRUE(Contains(status.message(), "CKR_PIN_INCORRECT"));
  EXPECT_TRUE(Contains(status.message(), "0xA0"));
  EXPECT_EQ(status.message(), "C_Login on token 'offkey': CKR_PIN_INCORRECT (0xA0)");

  absl::Status removed = CkRvStatus(CKR_DEVICE_REMOVED, "C_Sign with key 'web'");
  EXPECT_EQ(removed.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(removed.message(), "C_Sign with key 'web'"));
  EXPECT_TRUE(Contains(removed.message(), "CKR_DEVICE_REMOVED"));
  EXPECT_TRUE(Contains(removed.message(), "(0x32)"));
}

TEST(CkRvTest, CkStatusOfVendorCode) {
  absl::Status status = CkRvStatus(CKR_VENDOR_DEFINED | 0x42, "C_GenerateKeyPair");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
  EXPECT_TRUE(Contains(status.message(), "C_GenerateKeyPair"));
  EXPECT_TRUE(Contains(status.message(), "CKR_0x80000042(unknown)"));
  EXPECT_TRUE(Contains(status.message(), "(0x80000042)"));
}

TEST(CkRvTest, SessionLost) {
  EXPECT_TRUE(IsSessionLost(CKR_SESSION_HANDLE_INVALID));
  EXPECT_TRUE(IsSessionLost(CKR_SESSION_CLOSED));
  EXPECT_FALSE(IsSessionLost(CKR_OK));
  EXPECT_FALSE(IsSessionLost(CKR_USER_NOT_LOGGED_IN));
  EXPECT_FALSE(IsSessionLost(CKR_DEVICE_REMOVED));
  EXPECT_FALSE(IsSessionLost(CKR_SESSION_COUNT));
}

TEST(CkRvTest, LoginLost) {
  EXPECT_TRUE(IsLoginLost(CKR_USER_NOT_LOGGED_IN));
  EXPECT_FALSE(IsLoginLost(CKR_OK));
  EXPECT_FALSE(IsLoginLost(CKR_PIN_INCORRECT));
  EXPECT_FALSE(IsLoginLost(CKR_USER_ALREADY_LOGGED_IN));
  EXPECT_FALSE(IsLoginLost(CKR_SESSION_HANDLE_INVALID));
}

TEST(CkRvTest, TokenLost) {
  EXPECT_TRUE(IsTokenLost(CKR_DEVICE_REMOVED));
  EXPECT_TRUE(IsTokenLost(CKR_TOKEN_NOT_PRESENT));
  EXPECT_TRUE(IsTokenLost(CKR_TOKEN_NOT_RECOGNIZED));
  EXPECT_TRUE(IsTokenLost(CKR_SLOT_ID_INVALID));
  EXPECT_TRUE(IsTokenLost(CKR_CRYPTOKI_NOT_INITIALIZED));
  EXPECT_TRUE(IsTokenLost(CKR_DEVICE_ERROR));
  EXPECT_FALSE(IsTokenLost(CKR_OK));
  EXPECT_FALSE(IsTokenLost(CKR_SESSION_HANDLE_INVALID));
  EXPECT_FALSE(IsTokenLost(CKR_USER_NOT_LOGGED_IN));
  EXPECT_FALSE(IsTokenLost(CKR_DEVICE_MEMORY));
  EXPECT_FALSE(IsTokenLost(CKR_GENERAL_ERROR));
}

TEST(CkRvTest, HandleStale) {
  EXPECT_TRUE(IsHandleStale(CKR_OBJECT_HANDLE_INVALID));
  EXPECT_TRUE(IsHandleStale(CKR_KEY_HANDLE_INVALID));
  EXPECT_FALSE(IsHandleStale(CKR_OK));
  EXPECT_FALSE(IsHandleStale(CKR_SESSION_HANDLE_INVALID));
  EXPECT_FALSE(IsHandleStale(CKR_WRAPPING_KEY_HANDLE_INVALID));
  EXPECT_FALSE(IsHandleStale(CKR_KEY_TYPE_INCONSISTENT));
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
