// Right-aligning a raw RSA result without a timing side channel on its length.
#ifndef OFFKEY_HSM_RIGHT_ALIGN_H_
#define OFFKEY_HSM_RIGHT_ALIGN_H_

#include <cstddef>

#include "base/secret_bytes.h"

namespace offkey::hsm {

// Moves the first `len` bytes of `buffer` to its end and sets the bytes before them to
// zero, so that a raw RSA output of `len` bytes becomes the k-byte (k = buffer.size())
// big-endian integer it stands for. Bytes from `len` on are discarded.
//
// Why: some PKCS#11 modules return CKM_RSA_X_509 results without their leading zero
// bytes, so `len` says how many zeros the plaintext starts with. For a TLS premaster that
// is secret (a well-formed PKCS#1 block starts with exactly one zero), so the copy must
// take the same time and touch the same memory whatever `len` is: `len` only ever feeds
// masks, and the work is a fixed sequence of conditional shifts by 1, 2, 4, ... bytes
// (O(k log k) byte operations; about 5,000 for a 4096-bit key).
//
// Requires len <= buffer.size() (the caller checks; a module that reports more is broken
// and its result unusable). Thread-compatible.
void RightAlignConstantTime(SecretBytes& buffer, size_t len);

}  // namespace offkey::hsm

#endif  // OFFKEY_HSM_RIGHT_ALIGN_H_
