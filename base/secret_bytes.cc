#include "base/secret_bytes.h"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "base/mutex.h"

namespace offkey {
namespace secret_memory {
namespace {

// Size classes 64, 128, ..., 4096 bytes; larger buffers get their own pages.
constexpr size_t kMinClass = 64;
constexpr size_t kMaxClass = 4096;
constexpr int kClasses = 7;
// What a class maps at a time: little locked memory per class, few system calls.
constexpr size_t kChunk = 16 * 1024;

std::atomic<uint64_t> mapped_bytes{0};
std::atomic<uint64_t> locked_bytes{0};
std::atomic<uint64_t> lock_failures{0};

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

size_t RoundToPages(size_t size) {
  const size_t page = PageSize();
  return (size + page - 1) / page * page;
}

int ClassOf(size_t size) {
  int i = 0;
  for (size_t c = kMinClass; c < size; c <<= 1) ++i;
  return i;
}

// `size` bytes (whole pages) for secrets; whether they were locked in `*locked`.
void* MapPages(size_t size, bool* locked) {
  void* p =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // Best effort: both fail only on kernels too old to matter (MADV_DONTDUMP is 3.4).
  madvise(p, size, MADV_DONTDUMP);
  mapped_bytes += size;
  *locked = mlock(p, size) == 0;
  if (*locked) {
    locked_bytes += size;
  } else {
    ++lock_failures;  // RLIMIT_MEMLOCK reached: keep going unlocked.
  }
  return p;
}

// One free list per class, threaded through the free blocks.
struct FreeList {
  offkey::Mutex mu;
  void* head ABSL_GUARDED_BY(mu) = nullptr;
};

FreeList& List(int i) {
  static FreeList* const lists = new FreeList[kClasses];  // Never destroyed.
  return lists[i];
}

// Large buffers: their page count and lock state sit in a header page before them, so
// Free can undo exactly what Allocate did.
struct LargeHeader {
  size_t mapped;
  bool locked;
};

}  // namespace

void* Allocate(size_t size) {
  if (size == 0) size = 1;
  if (size > kMaxClass) {
    const size_t mapped = PageSize() + RoundToPages(size);
    bool locked = false;
    auto* base = static_cast<uint8_t*>(MapPages(mapped, &locked));
    *reinterpret_cast<LargeHeader*>(base) = LargeHeader{mapped, locked};
    return base + PageSize();
  }
  const int i = ClassOf(size);
  const size_t block = kMinClass << i;
  FreeList& list = List(i);
  offkey::MutexLock lock(&list.mu);
  if (list.head == nullptr) {
    bool locked = false;
    auto* chunk = static_cast<uint8_t*>(MapPages(kChunk, &locked));
    for (size_t offset = kChunk; offset >= block; offset -= block) {
      void* free_block = chunk + offset - block;
      *static_cast<void**>(free_block) = list.head;
      list.head = free_block;
    }
  }
  void* p = list.head;
  list.head = *static_cast<void**>(p);
  return p;
}

void Free(void* p, size_t size) {
  if (p == nullptr) return;
  if (size == 0) size = 1;
  OPENSSL_cleanse(p, size);
  if (size > kMaxClass) {
    uint8_t* base = static_cast<uint8_t*>(p) - PageSize();
    const LargeHeader header = *reinterpret_cast<LargeHeader*>(base);
    munmap(base, header.mapped);  // Unlocks too.
    mapped_bytes -= header.mapped;
    if (header.locked) locked_bytes -= header.mapped;
    return;
  }
  FreeList& list = List(ClassOf(size));
  offkey::MutexLock lock(&list.mu);
  *static_cast<void**>(p) = list.head;
  list.head = p;
}

}  // namespace secret_memory

SecretMemoryStats SecretMemoryUsage() {
  SecretMemoryStats stats;
  stats.mapped_bytes = secret_memory::mapped_bytes.load();
  stats.locked_bytes = secret_memory::locked_bytes.load();
  stats.lock_failures = secret_memory::lock_failures.load();
  return stats;
}

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
