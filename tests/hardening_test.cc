// offkeyd's secrets stay in offkeyd, checked on the real binary: no
// core dumps (not dumpable, RLIMIT_CORE 0) unless --allow_core_dumps, and a PIN given
// through the environment no longer readable there once the token is open.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "tests/process.h"

namespace offkey::tests {
namespace {

constexpr rlim_t kCoreLimit = 64 * 1024;  // Enough for the kernel to start a core file.

// Files named core* in `dir` (core_pattern "core", possibly with the pid appended).
std::vector<std::string> CoreFiles(const std::string& dir) {
  std::vector<std::string> found;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return found;
  while (dirent* entry = readdir(d)) {
    if (absl::StartsWith(entry->d_name, "core"))
      found.push_back(dir + "/" + entry->d_name);
  }
  closedir(d);
  return found;
}

// The soft and hard "Max core file size" of `pid`, as /proc/<pid>/limits says them.
std::string CoreLimits(pid_t pid) {
  for (absl::string_view line :
       absl::StrSplit(ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/limits")), '\n')) {
    if (absl::StartsWith(line, "Max core file size")) {
      std::vector<absl::string_view> words = absl::StrSplit(
          line.substr(strlen("Max core file size")), ' ', absl::SkipWhitespace());
      if (words.size() >= 2) return absl::StrCat(words[0], " ", words[1]);
    }
  }
  return "(not found)";
}

class HardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto token = hsm::pkcs11::testing::SoftHsmToken::Create("hardening");
    ASSERT_TRUE(token.ok()) << token.status();
    token_ = *token;
    dir_ = absl::StrCat(getenv("TEST_TMPDIR"), "/",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(system(absl::StrCat("mkdir -p ", dir_).c_str()), 0);
    // Cores would land in offkeyd's working directory, which it inherits from us.
    ASSERT_EQ(chdir(dir_.c_str()), 0);
    // Start offkeyd with core dumps allowed by the limit, so only offkeyd's own doing
    // can turn them off.
    rlimit limit{kCoreLimit, RLIM_INFINITY};
    getrlimit(RLIMIT_CORE, &limit);
    if (limit.rlim_max == 0) GTEST_SKIP() << "this test runs with a hard core limit of 0";
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY || limit.rlim_max > kCoreLimit
                         ? kCoreLimit
                         : limit.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_CORE, &limit), 0);
  }

  // Starts offkeyd (plaintext, no keys needed) with the PIN in $OFFKEY_TEST_PIN.
  void StartOffkeyd(const std::vector<std::string>& extra_flags) {
    const std::string config = dir_ + "/offkeyd.textproto";
    std::ofstream(config) << "listen_address: \"127.0.0.1:0\"\n"
                          << "metrics_address: \"127.0.0.1:0\"\n"
                          << "insecure_plaintext_for_development: true\n"
                          << "hsm {\n  module_path: \""
                          << hsm::pkcs11::testing::SoftHsmModulePath()
                          << "\"\n  token_uri: \"" << token_.Uri()
                          << "\"\n  pin_env: \"OFFKEY_TEST_PIN\"\n  max_sessions: 1\n}\n";
    std::vector<std::string> argv = {
        absl::StrCat(getenv("TEST_SRCDIR"), "/offkey/service/offkeyd"),
        "--config=" + config, "--port_file=" + dir_ + "/port"};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    std::string why;
    ASSERT_TRUE(daemon_.Start(argv, {"OFFKEY_TEST_PIN=" + token_.pin},
                              dir_ + "/offkeyd.log", {dir_ + "/port"}, &why))
        << why;
  }

  // Raises offkeyd's core limit from outside (prlimit; root or CAP_SYS_RESOURCE), so
  // that whether it dumps depends on its dumpable flag alone. False if not permitted.
  bool RaiseCoreLimit() {
    if (daemon_.pid() <= 0) return false;
    rlimit raised{kCoreLimit, kCoreLimit};
    return prlimit(daemon_.pid(), RLIMIT_CORE, &raised, nullptr) == 0;
  }

  // SIGABRT (whose default action dumps core); the exit status.
  int Abort() {
    if (daemon_.pid() <= 0) return -1;  // kill(-1) would signal every process.
    kill(daemon_.pid(), SIGABRT);
    return daemon_.Wait(absl::Seconds(30));
  }

  hsm::pkcs11::testing::SoftHsmToken token_;
  std::string dir_;
  Daemon daemon_;
};

TEST_F(HardeningTest, NoCoreDumpsAndNoPinInTheEnvironment) {
  StartOffkeyd({});
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(CoreLimits(daemon_.pid()), "0 0");

  // The PIN was read from the environment and wiped there. /proc/<pid>/environ shows
  // the initial environment block: the variable's name stays, its value is zeros.
  const std::string environ =
      ReadFileOrEmpty(absl::StrCat("/proc/", daemon_.pid(), "/environ"));
  EXPECT_TRUE(absl::StrContains(environ, "OFFKEY_TEST_PIN=")) << "cannot read environ";
  EXPECT_FALSE(absl::StrContains(environ, token_.pin)) << "the PIN is in environ";

  // With the limit raised, only the dumpable flag stops a core. Raising a hard limit of 0
  // fails here even as root (EPERM on this kernel), so then the abort below checks both
  // measures together; process_hardening_test checks the flag alone.
  if (!RaiseCoreLimit()) {
    std::cerr << "cannot raise offkeyd's RLIMIT_CORE: " << strerror(errno) << "\n";
  }
  EXPECT_EQ(Abort(), 128 + SIGABRT);
  EXPECT_EQ(CoreFiles(dir_), std::vector<std::string>{}) << "offkeyd dumped core";
  for (const std::string& core : CoreFiles(dir_)) unlink(core.c_str());  // Secrets.
}

// The opt-out works, and shows that this machine would write the core the test above
// looks for (otherwise that check proves nothing and this test says so).
TEST_F(HardeningTest, AllowCoreDumpsLeavesThemOn) {
  StartOffkeyd({"--allow_core_dumps"});
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_NE(CoreLimits(daemon_.pid()), "0 0");  // As inherited from the test.
  EXPECT_EQ(Abort(), 128 + SIGABRT);
  std::vector<std::string> cores = CoreFiles(dir_);
  for (const std::string& core : cores) unlink(core.c_str());  // It holds secrets.
  if (cores.empty()) {
    GTEST_SKIP() << "no core file from a dumpable offkeyd here (core_pattern: "
                 << ReadFileOrEmpty("/proc/sys/kernel/core_pattern")
                 << "), so NoCoreDumps... cannot tell dumpable from not";
  }
}

}  // namespace
}  // namespace offkey::tests
