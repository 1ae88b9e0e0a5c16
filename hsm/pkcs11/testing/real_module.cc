#include "hsm/pkcs11/testing/real_module.h"

#include <dlfcn.h>

#include <cstdlib>

namespace offkey::hsm::pkcs11::testing {

CK_FUNCTION_LIST* RealModule() {
  static CK_FUNCTION_LIST* const real = []() -> CK_FUNCTION_LIST* {
    const char* path = getenv("OFFKEY_REAL_PKCS11_MODULE");
    void* handle = dlopen(path ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW);
    if (handle == nullptr) return nullptr;
    auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
    CK_FUNCTION_LIST* list = nullptr;
    if (get == nullptr || get(&list) != CKR_OK) return nullptr;
    return list;
  }();
  return real;
}

}  // namespace offkey::hsm::pkcs11::testing
