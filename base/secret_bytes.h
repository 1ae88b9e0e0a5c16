// SecretBytes: a byte buffer for key material, premasters and PINs.
#ifndef OFFKEY_BASE_SECRET_BYTES_H_
#define OFFKEY_BASE_SECRET_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace offkey {

namespace secret_memory {
// Memory for secrets: page-aligned pages excluded from core dumps (MADV_DONTDUMP) and
// locked in RAM (mlock) when RLIMIT_MEMLOCK or CAP_IPC_LOCK allow; when they do not,
// the pages are used unlocked and the refusal counted (never an error). Small buffers
// come from per-size free lists over 16 KiB chunks kept for reuse (no system call on
// the hot path); buffers over 4 KiB get pages of their own, unmapped when freed.
// Buffers are wiped when freed. Thread-safe. Allocation failure throws std::bad_alloc
// like operator new.
void* Allocate(size_t size);
void Free(void* p, size_t size);
}  // namespace secret_memory

// The STL allocator over secret_memory (stateless: all instances are equal).
template <typename T>
struct SecretAllocator {
  using value_type = T;
  SecretAllocator() = default;
  template <typename U>
  SecretAllocator(const SecretAllocator<U>&) {}  // NOLINT(runtime/explicit)
  T* allocate(size_t n) {
    return static_cast<T*>(secret_memory::Allocate(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) { secret_memory::Free(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const SecretAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const SecretAllocator<U>&) const {
    return false;
  }
};

struct SecretMemoryStats {
  uint64_t mapped_bytes = 0;   // Pages mapped for secrets, now.
  uint64_t locked_bytes = 0;   // Of which locked in RAM.
  uint64_t lock_failures = 0;  // mlock calls refused since start.
};
// What secret_memory holds now and how often locking was refused (for metrics).
SecretMemoryStats SecretMemoryUsage();

// Owns a byte buffer that is wiped (OPENSSL_cleanse) when destroyed, resized or
// reassigned, in secret_memory pages (out of core dumps, locked when allowed). Move-only
// so that copies are explicit (`Copy()`), which keeps the places where a secret is
// duplicated visible in review. Not thread-safe.
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
  std::vector<uint8_t, SecretAllocator<uint8_t>> bytes_;
};

// Wipes a std::string's contents in place (for secrets that arrived in protobuf fields).
void WipeString(std::string* s);

}  // namespace offkey

#endif  // OFFKEY_BASE_SECRET_BYTES_H_
