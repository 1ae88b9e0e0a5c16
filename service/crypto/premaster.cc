#include "service/crypto/premaster.h"

#include <cstdio>
#include <cstdlib>
#include <limits>

#include "base/value_barrier.h"

namespace offkey::service::crypto {
namespace {

// Constant-time helpers. A "mask" is 0xffffffff for true and 0 for false; every helper
// is straight-line arithmetic. OpenSSL has the same helpers (crypto/constant_time.h) but
// does not install them.

// All-ones if the top bit of `x` is set.
inline uint32_t CtMsb(uint32_t x) { return 0u - (x >> 31); }

// All-ones if `x` (a byte widened to 32 bits) is zero: only x == 0 makes x - 1 wrap to a
// value with the top bit set while ~x keeps it.
inline uint32_t CtIsZero8(uint8_t x) {
  const uint32_t w = x;
  return CtMsb(~w & (w - 1));
}

// All-ones if a == b.
inline uint32_t CtEq8(uint8_t a, uint8_t b) {
  return CtIsZero8(static_cast<uint8_t>(a ^ b));
}

// `a` where `mask` is all-ones, `b` where it is zero.
inline uint8_t CtSelect8(uint32_t mask, uint8_t a, uint8_t b) {
  mask = ValueBarrier(mask);
  return static_cast<uint8_t>((mask & a) | (~mask & b));
}

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "offkey: %s\n", what);
  std::abort();
}

void AppendLengthPrefixed(absl::string_view bytes, std::string* out) {
  if (bytes.size() > std::numeric_limits<uint32_t>::max()) {
    Fatal("SubstituteInput: input of 4 GiB or more");
  }
  const uint32_t n = static_cast<uint32_t>(bytes.size());
  const char prefix[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                          static_cast<char>(n >> 8), static_cast<char>(n)};
  out->append(prefix, sizeof(prefix));
  out->append(bytes.data(), bytes.size());
}

}  // namespace

std::string SubstituteInput(absl::string_view key_id, uint16_t client_version,
                            absl::string_view ciphertext) {
  std::string out;
  out.reserve(kSubstituteLabel.size() + 10 + key_id.size() + ciphertext.size());
  out.append(kSubstituteLabel.data(), kSubstituteLabel.size());
  out.push_back(static_cast<char>(client_version >> 8));
  out.push_back(static_cast<char>(client_version & 0xff));
  AppendLengthPrefixed(key_id, &out);
  AppendLengthPrefixed(ciphertext, &out);
  return out;
}

SecretBytes SelectPremaster(const SecretBytes& decrypted, uint16_t client_version,
                            const SecretBytes& substitute) {
  // Sizes are public (the modulus size and a fixed 48): branching on them is fine.
  if (decrypted.size() < kMinRsaOutputSize) {
    Fatal("SelectPremaster: raw RSA output shorter than 64 bytes");
  }
  if (substitute.size() < kPremasterSize) {
    Fatal("SelectPremaster: substitute shorter than 48 bytes");
  }
  const size_t k = decrypted.size();
  const uint8_t* em = decrypted.data();
  // Public positions: a 48-byte message sits at the end, the separator just before it.
  const size_t msg = k - kPremasterSize;
  const size_t separator = msg - 1;

  // From here on nothing branches on or indexes by a byte of `em`; `good` collects every
  // check as a mask and every byte of `em` is read exactly once or twice, whatever its
  // value.
  uint32_t good = CtIsZero8(em[0]);
  good &= CtEq8(em[1], 0x02);
  // Padding string: bytes 2 .. separator-1 (k-51 >= 13 bytes) must all be nonzero. A zero
  // anywhere here means the message is longer than 48 bytes (or the padding shorter
  // than 8): both fail.
  uint32_t zero_in_padding = 0;
  for (size_t i = 2; i < separator; ++i) zero_in_padding |= CtIsZero8(em[i]);
  good &= ~zero_in_padding;
  // No zero at the separator position means the message is shorter than 48 bytes (or
  // there is no separator at all).
  good &= CtIsZero8(em[separator]);
  // RFC 5246 §7.4.7.1: the premaster starts with ClientHello.client_version.
  good &= CtEq8(em[msg], static_cast<uint8_t>(client_version >> 8));
  good &= CtEq8(em[msg + 1], static_cast<uint8_t>(client_version & 0xff));

  SecretBytes out(kPremasterSize);
  for (size_t i = 0; i < kPremasterSize; ++i) {
    out[i] = CtSelect8(good, em[msg + i], substitute[i]);
  }
  return out;
}

}  // namespace offkey::service::crypto
