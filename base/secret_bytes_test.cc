#include "base/secret_bytes.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace offkey {
namespace {

TEST(SecretBytesTest, HoldsAndCopiesExplicitly) {
  SecretBytes a(absl::string_view("premaster"));
  SecretBytes b = a.Copy();
  EXPECT_EQ(a.view(), "premaster");
  EXPECT_EQ(b.view(), "premaster");
  EXPECT_NE(a.data(), b.data());
}

TEST(SecretBytesTest, MoveLeavesSourceEmpty) {
  SecretBytes a(absl::string_view("secret"));
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test.
  EXPECT_EQ(b.view(), "secret");
  SecretBytes c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c.view(), "secret");
}

TEST(SecretBytesTest, TruncateWipesTailInPlace) {
  SecretBytes a(absl::string_view("abcdef"));
  const uint8_t* base = a.data();
  a.Truncate(2);
  EXPECT_EQ(a.view(), "ab");
  // The vector keeps its allocation on shrink; the removed bytes must be zero.
  EXPECT_EQ(base, a.data());
  for (int i = 2; i < 6; ++i) EXPECT_EQ(base[i], 0) << i;
  a.Truncate(10);  // Never grows.
  EXPECT_EQ(a.size(), 2u);
}

TEST(SecretBytesTest, WipeStringClears) {
  std::string s = "pin-1234";
  WipeString(&s);
  EXPECT_TRUE(s.empty());
}

// AddressSanitizer makes mlock and munlock do nothing (and report success), so under
// --config=asan no page is ever locked and no refusal is ever seen.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMlockWorks = false;
#else
constexpr bool kMlockWorks = true;
#endif

// The VmFlags of the mapping of this process that holds `p` ("" if none does).
std::string VmFlagsOf(const void* p) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    const std::vector<std::string> words = absl::StrSplit(line, ' ');
    std::vector<std::string> range = absl::StrSplit(words[0], '-');
    uint64_t start = 0, end = 0;
    if (range.size() == 2 && absl::SimpleHexAtoi(range[0], &start) &&
        absl::SimpleHexAtoi(range[1], &end) && line.find(':') != 0) {
      if (words.size() > 1 && words[1].size() == 4)
        inside = address >= start && address < end;
    }
    if (inside && absl::StartsWith(line, "VmFlags:")) return line;
  }
  return "";
}

// Secret buffers of every size live in pages excluded from core dumps ("dd") and, here
// (root, or within RLIMIT_MEMLOCK), locked in memory ("lo").
TEST(SecretBytesTest, PagesAreExcludedFromDumpsAndLocked) {
  for (size_t size : {1, 48, 64, 65, 300, 4096, 5000, 70000}) {
    SecretBytes secret(size);
    const std::string flags = VmFlagsOf(secret.data());
    ASSERT_FALSE(flags.empty()) << size;
    EXPECT_TRUE(absl::StrContains(flags, " dd")) << size << ": " << flags;
    if (kMlockWorks && SecretMemoryUsage().lock_failures == 0) {
      EXPECT_TRUE(absl::StrContains(flags, " lo")) << size << ": " << flags;
    }
  }
  EXPECT_GT(SecretMemoryUsage().mapped_bytes, 0u);
}

// When mlock is not allowed the buffer still works and still stays out of dumps; the
// failure is counted, never fatal. (In a child without CAP_IPC_LOCK and with
// RLIMIT_MEMLOCK 0, so the parent's state is untouched.)
TEST(SecretBytesTest, LockRefusedIsCountedNotFatal) {
  if (!kMlockWorks) GTEST_SKIP() << "mlock is a no-op under AddressSanitizer";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[2] = {};
    if (syscall(SYS_capget, &header, caps) != 0) _exit(10);
    caps[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
    caps[CAP_TO_INDEX(CAP_IPC_LOCK)].permitted &= ~CAP_TO_MASK(CAP_IPC_LOCK);
    if (syscall(SYS_capset, &header, caps) != 0) _exit(11);
    const rlimit none{0, 0};
    if (setrlimit(RLIMIT_MEMLOCK, &none) != 0) _exit(12);
    const uint64_t failures = SecretMemoryUsage().lock_failures;
    SecretBytes secret(absl::string_view(std::string(100000, 's')));  // Fresh pages.
    if (secret.view() != std::string(100000, 's')) _exit(13);
    if (!absl::StrContains(VmFlagsOf(secret.data()), " dd")) _exit(14);
    if (absl::StrContains(VmFlagsOf(secret.data()), " lo")) _exit(15);
    if (SecretMemoryUsage().lock_failures <= failures) _exit(16);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "child check failed (see the exit codes above)";
}

// Not a benchmark: one figure for the review, printed. The secret path must stay in the
// range of a malloc (well under a microsecond per buffer), not of a system call.
TEST(SecretBytesTest, AllocationCostIsPrinted) {
  // As offkeyd runs (Debian's Abseil records lock orders unless told not to).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  constexpr int kRounds = 200000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i) {
    SecretBytes premaster(48);
    premaster[0] = static_cast<uint8_t>(i);
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start)
          .count() /
      kRounds;
  printf("SecretBytes(48) allocate+wipe+free: %.0f ns\n", ns);
  EXPECT_LT(ns, 20000);  // Only a gross regression (a syscall storm under load) trips it.
}

}  // namespace
}  // namespace offkey
