// ValueBarrier: hides a value from the optimiser in constant-time code, so it cannot
// prove a mask is 0 or all-ones and turn mask arithmetic back into a branch (the same
// trick as OpenSSL's value_barrier, which OpenSSL does not install).
#ifndef OFFKEY_BASE_VALUE_BARRIER_H_
#define OFFKEY_BASE_VALUE_BARRIER_H_

#include <type_traits>

namespace offkey {

template <typename T>
inline T ValueBarrier(T x) {
  static_assert(std::is_unsigned_v<T>, "masks are unsigned");
#if defined(__GNUC__) || defined(__clang__)
  __asm__("" : "+r"(x) : :);
#else
  volatile T v = x;
  x = v;
#endif
  return x;
}

}  // namespace offkey

#endif  // OFFKEY_BASE_VALUE_BARRIER_H_
