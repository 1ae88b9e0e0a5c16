#include "hsm/pkcs11/testing/softhsm.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"

namespace offkey::hsm::pkcs11::testing {
namespace {

offkey::Mutex mu(absl::kConstInit);
std::string* directory ABSL_GUARDED_BY(mu) = nullptr;
std::atomic<int> counter{0};

absl::Status RunCommand(const std::vector<std::string>& argv) {
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDOUT_FILENO);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat(argv[0], " failed with status ", status,
                     WEXITSTATUS(status) == 127 ? " (is softhsm2 installed?)" : ""));
  }
  return absl::OkStatus();
}

}  // namespace

std::string SoftHsmModulePath() {
  const char* env = getenv("OFFKEY_PKCS11_MODULE");
  return env != nullptr ? env : "/usr/lib/softhsm/libsofthsm2.so";
}

std::string SoftHsmDirectory(const SoftHsmConfig& config) {
  offkey::MutexLock lock(&mu);
  if (directory != nullptr) return *directory;
  const char* tmp = getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/softhsm.XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) abort();
  std::string tokens = pattern + "/tokens";
  mkdir(tokens.c_str(), 0700);
  std::string conf = pattern + "/softhsm2.conf";
  std::ofstream(conf) << "directories.tokendir = " << tokens << "\n"
                      << "objectstore.backend = file\n"
                      << "log.level = ERROR\n"
                      << "slots.removable = false\n"
                      << "slots.mechanisms = " << config.mechanisms << "\n";
  setenv("SOFTHSM2_CONF", conf.c_str(), 1);
  directory = new std::string(pattern);
  return *directory;
}

absl::StatusOr<SoftHsmToken> SoftHsmToken::Create(absl::string_view label_prefix) {
  SoftHsmToken token;
  token.directory = SoftHsmDirectory();
  token.label = absl::StrCat(label_prefix, "-", getpid(), "-", counter++);
  // A random PIN, recorded so the suite's log scan can prove no log ever shows it.
  std::random_device random;
  token.pin = absl::StrCat("pin-", absl::Hex(random(), absl::kZeroPad8),
                           absl::Hex(random(), absl::kZeroPad8),
                           absl::Hex(random(), absl::kZeroPad8));
  ::offkey::testing::RecordSecret("token PIN", token.pin);
  token.pin_file = absl::StrCat(token.directory, "/", token.label, ".pin");
  {
    std::ofstream out(token.pin_file);
    out << token.pin << "\n";
    if (!out) return absl::InternalError("cannot write " + token.pin_file);
  }
  chmod(token.pin_file.c_str(), 0600);
  auto list = [&] {
    std::set<std::string> names;
    for (const auto& entry :
         std::filesystem::directory_iterator(token.directory + "/tokens")) {
      names.insert(entry.path().string());
    }
    return names;
  };
  const std::set<std::string> before = list();
  absl::Status made =
      RunCommand({"softhsm2-util", "--init-token", "--free", "--label", token.label,
                  "--so-pin", "so-pin-1234", "--pin", token.pin});
  if (!made.ok()) return made;
  for (const std::string& path : list()) {
    if (!before.count(path)) token.token_path = path;
  }
  return token;
}

TokenOptions SoftHsmToken::Options(int max_sessions) const {
  TokenOptions options;
  options.module_path = SoftHsmModulePath();
  options.uri = Uri();
  options.pin.file = pin_file;
  options.max_sessions = max_sessions;
  return options;
}

}  // namespace offkey::hsm::pkcs11::testing
