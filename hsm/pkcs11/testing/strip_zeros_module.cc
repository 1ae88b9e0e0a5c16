// A PKCS#11 module that forwards to a real one (SoftHSM2) but returns C_Decrypt results
// without their leading zero bytes, as some HSM modules do for CKM_RSA_X_509: the
// behaviour Pkcs11KeyStore::RsaDecryptRaw must undo without a timing side channel.
// Tests only.
//
//   OFFKEY_REAL_PKCS11_MODULE   the module to forward to (default: SoftHSM2)
//
// OffkeyStrippedZeroBytes() (exported) counts the zero bytes stripped so far, so a test
// can tell that the stripping happened.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "hsm/pkcs11/pkcs11.h"
#include "hsm/pkcs11/testing/real_module.h"

namespace {

CK_FUNCTION_LIST* real = nullptr;
CK_FUNCTION_LIST wrapped;
std::atomic<unsigned long> stripped{0};

CK_RV Decrypt(CK_SESSION_HANDLE session, CK_BYTE* in, CK_ULONG in_len, CK_BYTE* out,
              CK_ULONG* out_len) {
  const CK_RV rv = real->C_Decrypt(session, in, in_len, out, out_len);
  if (rv != CKR_OK || out == nullptr) return rv;
  CK_ULONG zeros = 0;
  while (zeros < *out_len && out[zeros] == 0) ++zeros;
  memmove(out, out + zeros, *out_len - zeros);
  *out_len -= zeros;
  stripped += zeros;
  return rv;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) unsigned long
OffkeyStrippedZeroBytes() {
  return stripped.load();
}

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST** out) {
  static CK_FUNCTION_LIST* const list = []() -> CK_FUNCTION_LIST* {
    real = offkey::hsm::pkcs11::testing::RealModule();
    if (real == nullptr) return nullptr;
    wrapped = *real;
    wrapped.C_Decrypt = &Decrypt;
    return &wrapped;
  }();
  if (list == nullptr) return CKR_GENERAL_ERROR;
  *out = list;
  return CKR_OK;
}
