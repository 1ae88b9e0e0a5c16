// The one place that includes the PKCS#11 header (v3.0, from p11-kit; offkey uses v2.40
// calls plus the Ed25519 constants).
#ifndef OFFKEY_HSM_PKCS11_PKCS11_H_
#define OFFKEY_HSM_PKCS11_PKCS11_H_

#include "p11-kit/pkcs11.h"  // IWYU pragma: export

#endif  // OFFKEY_HSM_PKCS11_PKCS11_H_
