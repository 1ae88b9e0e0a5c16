#include "hsm/pkcs11/token_init.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "hsm/pkcs11/ck_rv.h"
#include "hsm/pkcs11/module.h"
#include "hsm/pkcs11/token_uri.h"

namespace offkey::hsm::pkcs11 {
namespace {

CK_UTF8CHAR* Bytes(const SecretBytes& s) { return const_cast<CK_UTF8CHAR*>(s.data()); }

}  // namespace

absl::Status InitializeToken(const std::string& module_path, const std::string& label,
                             const SecretBytes& so_pin, const SecretBytes& user_pin) {
  if (label.empty() || label.size() > 32) {
    return absl::InvalidArgumentError("a token label has 1 to 32 bytes");
  }
  OFFKEY_ASSIGN_OR_RETURN(Module * module, Module::Load(module_path));
  const CK_FUNCTION_LIST* fn = module->fn();
  CK_ULONG count = 0;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(fn->C_GetSlotList(CK_TRUE, nullptr, &count), "C_GetSlotList"));
  std::vector<CK_SLOT_ID> slots(count);
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(fn->C_GetSlotList(CK_TRUE, slots.data(), &count), "C_GetSlotList"));
  slots.resize(count);
  CK_SLOT_ID free_slot = 0;
  bool found_free = false;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (fn->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if (info.flags & CKF_TOKEN_INITIALIZED) {
      if (TrimPadded(info.label, sizeof(info.label)) == label) {
        return absl::AlreadyExistsError(
            absl::StrCat("a token labelled '", label, "' exists"));
      }
    } else if (!found_free) {
      free_slot = slot;
      found_free = true;
    }
  }
  if (!found_free) {
    return absl::NotFoundError(
        absl::StrCat("module '", module_path, "' has no uninitialised token left"));
  }
  CK_UTF8CHAR padded[32];
  memset(padded, ' ', sizeof(padded));
  // A space-padded field, not a C string.
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
  memcpy(padded, label.data(), label.size());
  OFFKEY_RETURN_IF_ERROR(CkRvStatus(
      fn->C_InitToken(free_slot, Bytes(so_pin), so_pin.size(), padded), "C_InitToken"));
  CK_SESSION_HANDLE session;
  OFFKEY_RETURN_IF_ERROR(
      CkRvStatus(fn->C_OpenSession(free_slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                   nullptr, nullptr, &session),
                 "C_OpenSession"));
  CK_RV rv = fn->C_Login(session, CKU_SO, Bytes(so_pin), so_pin.size());
  if (rv == CKR_OK) {
    rv = fn->C_InitPIN(session, Bytes(user_pin), user_pin.size());
    fn->C_Logout(session);
  }
  fn->C_CloseSession(session);
  return CkRvStatus(rv, "C_InitPIN");
}

}  // namespace offkey::hsm::pkcs11
