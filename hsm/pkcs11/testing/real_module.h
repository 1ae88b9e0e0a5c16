// The loader every forwarding test module (fault_module.cc, removable_module.cc,
// strip_zeros_module.cc) shares: each wraps the function list of a real module.
#ifndef OFFKEY_HSM_PKCS11_TESTING_REAL_MODULE_H_
#define OFFKEY_HSM_PKCS11_TESTING_REAL_MODULE_H_

#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11::testing {

// The function list of the module named by $OFFKEY_REAL_PKCS11_MODULE (default:
// SoftHSM2), loaded on the first call; nullptr if it cannot be loaded. Thread-safe.
// The module stays loaded for the life of the process.
CK_FUNCTION_LIST* RealModule();

}  // namespace offkey::hsm::pkcs11::testing

#endif  // OFFKEY_HSM_PKCS11_TESTING_REAL_MODULE_H_
