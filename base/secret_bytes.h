// SecretBytes: a byte buffer for key material, premasters and PINs.
#ifndef OFFKEY_BASE_SECRET_BYTES_H_
#define OFFKEY_BASE_SECRET_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace offkey {

// Owns a byte buffer that is wiped (OPENSSL_cleanse) when destroyed, resized or
// reassigned. Move-only so that copies are explicit (`Copy()`), which keeps the places
// where a secret is duplicated visible in review. Not thread-safe.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t size);
  SecretBytes(const uint8_t* data, size_t size);
  explicit SecretBytes(absl::string_view data);
  ~SecretBytes();

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  SecretBytes Copy() const { return SecretBytes(data(), size()); }

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  uint8_t& operator[](size_t i) { return bytes_[i]; }
  uint8_t operator[](size_t i) const { return bytes_[i]; }

  // Shrinks to `size` bytes, wiping the tail. Never grows (growing could reallocate and
  // leave an unwiped copy behind).
  void Truncate(size_t size);
  // Wipes and empties.
  void Clear();

  absl::string_view view() const {
    return absl::string_view(reinterpret_cast<const char*>(data()), size());
  }

 private:
  std::vector<uint8_t> bytes_;
};

// Wipes a std::string's contents in place (for secrets that arrived in protobuf fields).
void WipeString(std::string* s);

}  // namespace offkey

#endif  // OFFKEY_BASE_SECRET_BYTES_H_
