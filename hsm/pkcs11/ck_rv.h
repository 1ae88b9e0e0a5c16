// CK_RV to absl::Status.
#ifndef OFFKEY_HSM_PKCS11_CK_RV_H_
#define OFFKEY_HSM_PKCS11_CK_RV_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11 {

// "CKR_PIN_INCORRECT", or "CKR_0x...(unknown)" for values outside the standard.
std::string CkRvName(CK_RV rv);

// The absl code that fits `rv` (see KeyStore's contract for the meaning of each code).
absl::StatusCode CkRvCode(CK_RV rv);

// The PKCS#11 layer has one error channel, absl::Status; a status that comes from a
// PKCS#11 call carries its CK_RV as the payload under this URL (the value in decimal),
// so that Token::Run can still tell a lost session, login or token from other failures.
inline constexpr char kCkRvPayloadUrl[] = "type.offkey.dev/offkey.pkcs11.CK_RV";

// OK for CKR_OK; otherwise a status of CkRvCode(rv) whose message reads
// "<what>: <CKR name> (0x..)" and whose payload is `rv`. `what` names the call and its
// subject, for example "C_Sign with key 'web'".
absl::Status CkRvStatus(CK_RV rv, absl::string_view what);

// The CK_RV a status carries (see kCkRvPayloadUrl); nullopt for OK and for statuses
// that did not come from a PKCS#11 call.
std::optional<CK_RV> CkRvOf(const absl::Status& status);

// Conditions after which a session, the login or the whole token must be re-established
// (the operation may succeed when retried on a fresh session).
bool IsSessionLost(CK_RV rv);  // SESSION_HANDLE_INVALID, SESSION_CLOSED
bool IsLoginLost(CK_RV rv);    // USER_NOT_LOGGED_IN
bool IsTokenLost(CK_RV rv);    // DEVICE_REMOVED, TOKEN_NOT_PRESENT, ...
bool IsHandleStale(CK_RV rv);  // OBJECT_HANDLE_INVALID, KEY_HANDLE_INVALID

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_CK_RV_H_
