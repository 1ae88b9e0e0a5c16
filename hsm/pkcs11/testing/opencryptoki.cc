#include "hsm/pkcs11/testing/opencryptoki.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"
#include "hsm/pkcs11/testing/command.h"

namespace offkey::hsm::pkcs11::testing {
namespace {

// swtok's SO PIN until changed (opencryptoki's documented default).
constexpr char kDefaultSoPin[] = "87654321";

offkey::Mutex mu(absl::kConstInit);
// The state directory once the daemon runs, or why it could not be started.
absl::StatusOr<std::string>* daemon_state ABSL_GUARDED_BY(mu) = nullptr;
std::atomic<pid_t> daemon_pid{0};
std::atomic<int> next_slot{0};

void StopDaemonAtExit() { StopProcess(daemon_pid.load()); }

absl::Status Errno(absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": ", strerror(errno),
                   " (a private pkcsslotd needs root and a mount namespace)"));
}

absl::Status Mkdirs(const std::string& path) {
  std::string partial;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&partial, "/", part);
    if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return Errno(absl::StrCat("mkdir ", partial));
    }
  }
  return absl::OkStatus();
}

absl::Status BindMount(const std::string& from, const std::string& to) {
  if (mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Errno(absl::StrCat("bind-mount ", from, " on ", to));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> StartDaemon() {
  if (!OpencryptokiInstalled()) {
    return absl::FailedPreconditionError("the opencryptoki package is not installed");
  }
  const char* tmp = getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/opencryptoki.XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) return Errno("mkdtemp");
  std::string conf = "version opencryptoki-3.8\n";
  for (int slot = 1; slot <= OpencryptokiToken::kOpencryptokiSlots; ++slot) {
    // `tokname` gives each slot's token a directory of its own under the state dir.
    absl::StrAppend(&conf, "slot ", slot, "\n{\nstdll = libpkcs11_sw.so\ntokname = tok",
                    slot, "\n}\n");
    absl::Status made = Mkdirs(absl::StrCat(dir, "/lib/tok", slot, "/TOK_OBJ"));
    if (!made.ok()) return made;
  }
  for (const char* sub : {"/etc", "/run/lock/opencryptoki", "/log"}) {
    absl::Status made = Mkdirs(dir + sub);
    if (!made.ok()) return made;
  }
  std::ofstream(dir + "/etc/opencryptoki.conf") << conf;

  // From here on this process (and its children) sees the private paths, and SysV IPC
  // of its own: pkcsslotd's shared memory key comes from ftok(), which gives tests
  // running side by side the same key now and then.
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0) {
    return Errno("unshare(CLONE_NEWNS | CLONE_NEWIPC)");
  }
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return Errno("making / private");
  }
  // /var/lock is /run/lock here, so the lock directory comes with /run.
  for (const auto& [from, to] :
       {std::pair<std::string, std::string>{dir + "/run", "/run"},
        {dir + "/etc", "/etc/opencryptoki"},
        {dir + "/lib", "/var/lib/opencryptoki"}}) {
    absl::Status bound = BindMount(from, to);
    if (!bound.ok()) return bound;
  }
  if (FileExists("/var/log/opencryptoki")) {
    absl::Status bound = BindMount(dir + "/log", "/var/log/opencryptoki");
    if (!bound.ok()) return bound;
  }
  if (mount("tmpfs", "/dev/shm", "tmpfs", 0, "mode=1777") != 0) {
    return Errno("mounting a private /dev/shm");
  }

  absl::StatusOr<std::string> started = RunCommand({"/usr/sbin/pkcsslotd"});
  if (!started.ok()) return started.status();
  // pkcsslotd forks into the background, then writes its pid and opens its socket.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  int pid = 0;
  for (;;) {
    std::string pid_text;
    std::getline(std::ifstream("/run/pkcsslotd.pid"), pid_text);
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(pid_text), &pid) && pid > 0 &&
        FileExists("/run/pkcsslotd.socket")) {
      break;
    }
    if (absl::Now() > deadline) {
      return absl::FailedPreconditionError(
          "pkcsslotd wrote no pid or made no socket within 30 s");
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  daemon_pid = pid;
  atexit(StopDaemonAtExit);
  return dir;
}

}  // namespace

std::string OpencryptokiModulePath() {
  return "/usr/lib/x86_64-linux-gnu/pkcs11/PKCS11_API.so";
}

bool OpencryptokiInstalled() {
  return FileExists(OpencryptokiModulePath()) && FileExists("/usr/sbin/pkcsslotd");
}

absl::StatusOr<OpencryptokiToken> OpencryptokiToken::Create() {
  std::string dir;
  {
    offkey::MutexLock lock(&mu);
    if (daemon_state == nullptr) {
      daemon_state = new absl::StatusOr<std::string>(StartDaemon());
    }
    if (!daemon_state->ok()) return daemon_state->status();
    dir = **daemon_state;
  }
  const int slot = ++next_slot;
  if (slot > kOpencryptokiSlots) {
    return absl::ResourceExhaustedError(
        absl::StrCat("all ", kOpencryptokiSlots, " opencryptoki test slots are used"));
  }
  OpencryptokiToken token;
  token.label = absl::StrCat("ock-", getpid(), "-", slot);
  std::random_device random;
  token.pin = absl::StrCat(absl::Hex(random(), absl::kZeroPad8));
  ::offkey::testing::RecordSecret("token PIN", token.pin);
  token.pin_file = absl::StrCat(dir, "/", token.label, ".pin");
  {
    std::ofstream out(token.pin_file);
    out << token.pin << "\n";
    if (!out) return absl::InternalError("cannot write " + token.pin_file);
  }
  chmod(token.pin_file.c_str(), 0600);
  // With pkcsconf, in processes of their own: opencryptoki 3.8 crashes in C_InitToken
  // (object_mgr_destroy_token_objects) when another slot of the same soft token library
  // is in use in the calling process.
  const std::string slot_arg = absl::StrCat(slot);
  absl::StatusOr<std::string> made =
      RunCommand({"/usr/sbin/pkcsconf", "-c", slot_arg, "-I", "-S", kDefaultSoPin},
                 absl::Seconds(60), token.label + "\n");
  if (made.ok()) {
    made = RunCommand({"/usr/sbin/pkcsconf", "-c", slot_arg, "-u", "-S", kDefaultSoPin,
                       "-n", token.pin});
  }
  if (!made.ok()) return made.status();
  return token;
}

TokenOptions OpencryptokiToken::Options(int max_sessions) const {
  TokenOptions options;
  options.module_path = OpencryptokiModulePath();
  options.uri = Uri();
  options.pin.file = pin_file;
  options.max_sessions = max_sessions;
  return options;
}

}  // namespace offkey::hsm::pkcs11::testing
