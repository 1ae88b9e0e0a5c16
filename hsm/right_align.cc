#include "hsm/right_align.h"

#include <cstdint>

#include "base/value_barrier.h"

namespace offkey::hsm {

void RightAlignConstantTime(SecretBytes& buffer, size_t len) {
  const size_t k = buffer.size();
  uint8_t* const b = buffer.data();
  // The distance to move is secret; it is applied one bit at a time, each step a
  // conditional shift right by `stride` bytes over the whole buffer. Strides run up to
  // the largest power of two <= k, which covers every shift 0..k (a shift of k clears
  // the buffer). Positions and strides are public; only the masks depend on `len`.
  const size_t shift = k - len;
  // (No division: its latency can depend on the operands.)
  for (unsigned i = 0; i < sizeof(size_t) * 8 && (size_t{1} << i) <= k; ++i) {
    const size_t stride = size_t{1} << i;
    const size_t bit = (ValueBarrier(shift) >> i) & 1;
    const uint8_t mask = static_cast<uint8_t>(0u - static_cast<unsigned>(bit));
    // Downwards, so b[j - stride] is read before this step overwrites it.
    for (size_t j = k; j-- > 0;) {
      const uint8_t moved = j >= stride ? b[j - stride] : 0;
      b[j] = static_cast<uint8_t>((moved & mask) | (b[j] & ~mask));
    }
  }
}

}  // namespace offkey::hsm
