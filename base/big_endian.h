// 64-bit big-endian (network order) integers in byte strings, for the fixed binary
// layouts offkey defines itself (ticket-key derivation input, sealed tickets).
#ifndef OFFKEY_BASE_BIG_ENDIAN_H_
#define OFFKEY_BASE_BIG_ENDIAN_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace offkey {

// Appends the 8 bytes of `v`, most significant first.
inline void AppendBigEndian64(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

// The value of the first 8 bytes of `in`, most significant first. `in` must hold at
// least 8 bytes.
inline uint64_t ReadBigEndian64(absl::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

}  // namespace offkey

#endif  // OFFKEY_BASE_BIG_ENDIAN_H_
