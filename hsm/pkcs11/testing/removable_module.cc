// A PKCS#11 module that forwards to a real one (SoftHSM2) and can pretend that the token
// was pulled out and put back: the one HSM behaviour SoftHSM2 cannot show. Tests only.
//
//   OFFKEY_REAL_PKCS11_MODULE   the module to forward to (default: SoftHSM2)
//   OFFKEY_TOKEN_REMOVED_FILE   while this file exists the token is "removed":
//     C_GetSlotList(present only) lists no slot, session and object calls fail with
//     CKR_DEVICE_REMOVED, C_OpenSession with CKR_TOKEN_NOT_PRESENT. When the file goes
//     away the token "comes back" with every earlier session closed and logged out, as a
//     reinserted token does.
//
// It also counts C_Login calls, which tests read through the exported
// OffkeyTestLoginCalls() (dlsym on this module).
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "hsm/pkcs11/pkcs11.h"
#include "hsm/pkcs11/testing/real_module.h"

namespace {

CK_FUNCTION_LIST* real = nullptr;
CK_FUNCTION_LIST wrapped;
std::mutex mu;
bool was_removed = false;

// True while the control file exists. On removed -> present, closes every real session.
bool Removed() {
  const char* path = getenv("OFFKEY_TOKEN_REMOVED_FILE");
  struct stat st;
  bool removed = path != nullptr && stat(path, &st) == 0;
  std::lock_guard<std::mutex> lock(mu);
  if (was_removed && !removed) {
    CK_ULONG n = 0;
    real->C_GetSlotList(CK_TRUE, nullptr, &n);
    std::vector<CK_SLOT_ID> slots(n);
    real->C_GetSlotList(CK_TRUE, slots.data(), &n);
    for (CK_ULONG i = 0; i < n; ++i) real->C_CloseAllSessions(slots[i]);
  }
  was_removed = removed;
  return removed;
}

template <typename F, F CK_FUNCTION_LIST::*Field, CK_RV kWhenRemoved>
struct Wrap;

template <typename... A, CK_RV (*CK_FUNCTION_LIST::*Field)(A...), CK_RV kWhenRemoved>
struct Wrap<CK_RV (*)(A...), Field, kWhenRemoved> {
  static CK_RV Call(A... args) {
    if (Removed()) return kWhenRemoved;
    return (real->*Field)(args...);
  }
};

#define OFFKEY_WRAP(name, rv) \
  wrapped.name = &Wrap<decltype(real->name), &CK_FUNCTION_LIST::name, rv>::Call

std::atomic<unsigned long> login_calls{0};

CK_RV Login(CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_UTF8CHAR* pin,
            CK_ULONG pin_len) {
  ++login_calls;
  if (Removed()) return CKR_DEVICE_REMOVED;
  return real->C_Login(session, user, pin, pin_len);
}

CK_RV GetSlotList(CK_BBOOL present, CK_SLOT_ID* list, CK_ULONG* count) {
  if (present && Removed()) {
    *count = 0;
    return CKR_OK;
  }
  return real->C_GetSlotList(present, list, count);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST** out) {
  static CK_FUNCTION_LIST* const list = []() -> CK_FUNCTION_LIST* {
    real = offkey::hsm::pkcs11::testing::RealModule();
    if (real == nullptr) return nullptr;
    wrapped = *real;
    wrapped.C_GetSlotList = &GetSlotList;
    OFFKEY_WRAP(C_GetTokenInfo, CKR_TOKEN_NOT_PRESENT);
    OFFKEY_WRAP(C_OpenSession, CKR_TOKEN_NOT_PRESENT);
    OFFKEY_WRAP(C_CloseSession, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_GetSessionInfo, CKR_DEVICE_REMOVED);
    wrapped.C_Login = &Login;
    OFFKEY_WRAP(C_Logout, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_CreateObject, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_DestroyObject, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_GetAttributeValue, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_SetAttributeValue, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_FindObjectsInit, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_FindObjects, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_FindObjectsFinal, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_SignInit, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_Sign, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_DecryptInit, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_Decrypt, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_GenerateKey, CKR_DEVICE_REMOVED);
    OFFKEY_WRAP(C_GenerateKeyPair, CKR_DEVICE_REMOVED);
    return &wrapped;
  }();
  if (list == nullptr) return CKR_GENERAL_ERROR;
  *out = list;
  return CKR_OK;
}

extern "C" __attribute__((visibility("default"))) unsigned long OffkeyTestLoginCalls() {
  return login_calls.load();
}
