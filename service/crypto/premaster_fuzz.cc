// Differential fuzzing of SelectPremaster against the plain reading of RFC 5246
// §7.4.7.1 below, which branches freely and returns early; the constant-time selection
// must agree with it on every input. Layout of the input: client version (2 bytes,
// big-endian) || substitute (48 bytes) || the raw RSA output (64 bytes or more).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "base/secret_bytes.h"
#include "service/crypto/premaster.h"

namespace offkey::service::crypto {
namespace {

// True if `em` (k bytes) is 0x00 0x02, k-51 nonzero padding bytes, 0x00 and a 48-byte
// message that starts with `version`.
bool ReferenceAccepts(const uint8_t* em, size_t k, uint16_t version) {
  if (em[0] != 0x00 || em[1] != 0x02) return false;
  const size_t separator = k - kPremasterSize - 1;
  for (size_t i = 2; i < separator; ++i) {
    if (em[i] == 0x00) return false;
  }
  if (em[separator] != 0x00) return false;
  const uint8_t* message = em + separator + 1;
  return message[0] == (version >> 8) && message[1] == (version & 0xff);
}

}  // namespace
}  // namespace offkey::service::crypto

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace crypto = offkey::service::crypto;
  constexpr size_t kHeader = 2 + crypto::kPremasterSize;
  if (size < kHeader + crypto::kMinRsaOutputSize) return 0;
  const uint16_t version = static_cast<uint16_t>((data[0] << 8) | data[1]);
  const offkey::SecretBytes substitute(data + 2, crypto::kPremasterSize);
  const offkey::SecretBytes decrypted(data + kHeader, size - kHeader);

  const offkey::SecretBytes got = crypto::SelectPremaster(decrypted, version, substitute);
  const uint8_t* want =
      crypto::ReferenceAccepts(decrypted.data(), decrypted.size(), version)
          ? decrypted.data() + decrypted.size() - crypto::kPremasterSize
          : substitute.data();
  if (got.size() != crypto::kPremasterSize ||
      std::memcmp(got.data(), want, crypto::kPremasterSize) != 0) {
    std::abort();
  }
  return 0;
}
