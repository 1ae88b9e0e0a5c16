#include "base/secret_bytes.h"

#include <openssl/crypto.h>

#include <cstring>
#include <utility>

namespace offkey {

SecretBytes::SecretBytes(size_t size) : bytes_(size) {}

SecretBytes::SecretBytes(const uint8_t* data, size_t size) : bytes_(data, data + size) {}

SecretBytes::SecretBytes(absl::string_view data)
    : SecretBytes(reinterpret_cast<const uint8_t*>(data.data()), data.size()) {}

SecretBytes::~SecretBytes() { Clear(); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
  other.bytes_.clear();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    Clear();
    bytes_ = std::move(other.bytes_);
    other.bytes_.clear();
  }
  return *this;
}

void SecretBytes::Truncate(size_t size) {
  if (size >= bytes_.size()) return;
  OPENSSL_cleanse(bytes_.data() + size, bytes_.size() - size);
  bytes_.resize(size);
}

void SecretBytes::Clear() {
  if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
  bytes_.clear();
  bytes_.shrink_to_fit();
}

void WipeString(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
  s->clear();
}

}  // namespace offkey
