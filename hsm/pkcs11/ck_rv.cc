#include "hsm/pkcs11/ck_rv.h"

#include <cstdint>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace offkey::hsm::pkcs11 {
namespace {

struct RvRow {
  CK_RV rv;
  const char* name;
  absl::StatusCode code;
};

using C = absl::StatusCode;

// Every return value of PKCS#11 v2.40 (and the v3.0 additions a module may send).
constexpr RvRow kRvTable[] = {
    {CKR_OK, "CKR_OK", C::kOk},
    {CKR_CANCEL, "CKR_CANCEL", C::kCancelled},
    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY", C::kResourceExhausted},
    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID", C::kUnavailable},
    // The HSM failed a call it was given correctly, for a reason of its own (PKCS#11
    // says no more): as for a device error, the caller can only retry, here or on
    // another replica. INTERNAL is kept for offkey misusing the module.
    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR", C::kUnavailable},
    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED", C::kUnavailable},
    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD", C::kInvalidArgument},
    {CKR_NO_EVENT, "CKR_NO_EVENT", C::kInternal},
    {CKR_NEED_TO_CREATE_THREADS, "CKR_NEED_TO_CREATE_THREADS", C::kInternal},
    {CKR_CANT_LOCK, "CKR_CANT_LOCK", C::kInternal},
    {CKR_ATTRIBUTE_READ_ONLY, "CKR_ATTRIBUTE_READ_ONLY", C::kFailedPrecondition},
    {CKR_ATTRIBUTE_SENSITIVE, "CKR_ATTRIBUTE_SENSITIVE", C::kPermissionDenied},
    {CKR_ATTRIBUTE_TYPE_INVALID, "CKR_ATTRIBUTE_TYPE_INVALID", C::kInvalidArgument},
    {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID", C::kInvalidArgument},
    {CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED", C::kFailedPrecondition},
    {CKR_DATA_INVALID, "CKR_DATA_INVALID", C::kInvalidArgument},
    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE", C::kInvalidArgument},
    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", C::kUnavailable},
    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY", C::kResourceExhausted},
    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", C::kUnavailable},
    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID", C::kInvalidArgument},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE", C::kInvalidArgument},
    {CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED", C::kCancelled},
    {CKR_FUNCTION_NOT_PARALLEL, "CKR_FUNCTION_NOT_PARALLEL", C::kInternal},
    {CKR_FUNCTION_NOT_SUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED", C::kUnimplemented},
    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", C::kNotFound},
    {CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE", C::kInvalidArgument},
    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT", C::kInvalidArgument},
    {CKR_KEY_NOT_NEEDED, "CKR_KEY_NOT_NEEDED", C::kInvalidArgument},
    {CKR_KEY_CHANGED, "CKR_KEY_CHANGED", C::kFailedPrecondition},
    {CKR_KEY_NEEDED, "CKR_KEY_NEEDED", C::kInvalidArgument},
    {CKR_KEY_INDIGESTIBLE, "CKR_KEY_INDIGESTIBLE", C::kInvalidArgument},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED",
     C::kPermissionDenied},
    {CKR_KEY_NOT_WRAPPABLE, "CKR_KEY_NOT_WRAPPABLE", C::kPermissionDenied},
    {CKR_KEY_UNEXTRACTABLE, "CKR_KEY_UNEXTRACTABLE", C::kPermissionDenied},
    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", C::kUnimplemented},
    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID", C::kInvalidArgument},
    {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID", C::kNotFound},
    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE", C::kInternal},
    {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED", C::kInternal},
    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", C::kPermissionDenied},
    {CKR_PIN_INVALID, "CKR_PIN_INVALID", C::kPermissionDenied},
    {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE", C::kPermissionDenied},
    {CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED", C::kPermissionDenied},
    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED", C::kPermissionDenied},
    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED", C::kUnavailable},
    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT", C::kResourceExhausted},
    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", C::kUnavailable},
    {CKR_SESSION_PARALLEL_NOT_SUPPORTED, "CKR_SESSION_PARALLEL_NOT_SUPPORTED",
     C::kInternal},
    {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY", C::kFailedPrecondition},
    {CKR_SESSION_EXISTS, "CKR_SESSION_EXISTS", C::kFailedPrecondition},
    {CKR_SESSION_READ_ONLY_EXISTS, "CKR_SESSION_READ_ONLY_EXISTS",
     C::kFailedPrecondition},
    {CKR_SESSION_READ_WRITE_SO_EXISTS, "CKR_SESSION_READ_WRITE_SO_EXISTS",
     C::kFailedPrecondition},
    {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID", C::kInvalidArgument},
    {CKR_SIGNATURE_LEN_RANGE, "CKR_SIGNATURE_LEN_RANGE", C::kInvalidArgument},
    {CKR_TEMPLATE_INCOMPLETE, "CKR_TEMPLATE_INCOMPLETE", C::kInvalidArgument},
    {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT", C::kInvalidArgument},
    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", C::kUnavailable},
    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED", C::kUnavailable},
    {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED", C::kFailedPrecondition},
    {CKR_UNWRAPPING_KEY_HANDLE_INVALID, "CKR_UNWRAPPING_KEY_HANDLE_INVALID",
     C::kNotFound},
    {CKR_UNWRAPPING_KEY_SIZE_RANGE, "CKR_UNWRAPPING_KEY_SIZE_RANGE", C::kInvalidArgument},
    {CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
     C::kInvalidArgument},
    {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN", C::kAlreadyExists},
    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", C::kUnavailable},
    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED",
     C::kFailedPrecondition},
    {CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID", C::kInvalidArgument},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "CKR_USER_ANOTHER_ALREADY_LOGGED_IN",
     C::kFailedPrecondition},
    {CKR_USER_TOO_MANY_TYPES, "CKR_USER_TOO_MANY_TYPES", C::kResourceExhausted},
    {CKR_WRAPPED_KEY_INVALID, "CKR_WRAPPED_KEY_INVALID", C::kInvalidArgument},
    {CKR_WRAPPED_KEY_LEN_RANGE, "CKR_WRAPPED_KEY_LEN_RANGE", C::kInvalidArgument},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "CKR_WRAPPING_KEY_HANDLE_INVALID", C::kNotFound},
    {CKR_WRAPPING_KEY_SIZE_RANGE, "CKR_WRAPPING_KEY_SIZE_RANGE", C::kInvalidArgument},
    {CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
     C::kInvalidArgument},
    {CKR_RANDOM_SEED_NOT_SUPPORTED, "CKR_RANDOM_SEED_NOT_SUPPORTED", C::kUnimplemented},
    {CKR_RANDOM_NO_RNG, "CKR_RANDOM_NO_RNG", C::kUnimplemented},
    {CKR_DOMAIN_PARAMS_INVALID, "CKR_DOMAIN_PARAMS_INVALID", C::kUnimplemented},
    {CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED", C::kUnimplemented},
    {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL", C::kInternal},
    {CKR_SAVED_STATE_INVALID, "CKR_SAVED_STATE_INVALID", C::kInvalidArgument},
    {CKR_INFORMATION_SENSITIVE, "CKR_INFORMATION_SENSITIVE", C::kPermissionDenied},
    {CKR_STATE_UNSAVEABLE, "CKR_STATE_UNSAVEABLE", C::kFailedPrecondition},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED", C::kUnavailable},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED",
     C::kFailedPrecondition},
    {CKR_MUTEX_BAD, "CKR_MUTEX_BAD", C::kInternal},
    {CKR_MUTEX_NOT_LOCKED, "CKR_MUTEX_NOT_LOCKED", C::kInternal},
    {CKR_FUNCTION_REJECTED, "CKR_FUNCTION_REJECTED", C::kPermissionDenied},
};

const RvRow* Find(CK_RV rv) {
  for (const auto& row : kRvTable) {
    if (row.rv == rv) return &row;
  }
  return nullptr;
}

}  // namespace

std::string CkRvName(CK_RV rv) {
  const RvRow* row = Find(rv);
  if (row != nullptr) return row->name;
  return absl::StrFormat("CKR_0x%X(unknown)", rv);
}

absl::StatusCode CkRvCode(CK_RV rv) {
  const RvRow* row = Find(rv);
  if (row != nullptr) return row->code;
  return rv >= CKR_VENDOR_DEFINED ? C::kUnknown : C::kInternal;
}

absl::Status CkRvStatus(CK_RV rv, absl::string_view what) {
  if (rv == CKR_OK) return absl::OkStatus();
  absl::Status status(CkRvCode(rv),
                      absl::StrFormat("%s: %s (0x%X)", what, CkRvName(rv), rv));
  status.SetPayload(kCkRvPayloadUrl, absl::Cord(absl::StrCat(rv)));
  return status;
}

std::optional<CK_RV> CkRvOf(const absl::Status& status) {
  if (status.ok()) return std::nullopt;
  auto payload = status.GetPayload(kCkRvPayloadUrl);
  uint64_t rv = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &rv)) {
    return std::nullopt;
  }
  return static_cast<CK_RV>(rv);
}

bool IsSessionLost(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED;
}

bool IsLoginLost(CK_RV rv) { return rv == CKR_USER_NOT_LOGGED_IN; }

bool IsTokenLost(CK_RV rv) {
  return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
         rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID ||
         rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_DEVICE_ERROR;
}

bool IsHandleStale(CK_RV rv) {
  return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
}

}  // namespace offkey::hsm::pkcs11
