#include "hsm/pkcs11/testing/tpm2.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/mutex.h"
#include "base/status_macros.h"
#include "base/testing/secret_ledger.h"
#include "hsm/pkcs11/testing/command.h"

namespace offkey::hsm::pkcs11::testing {
namespace {

constexpr char kStoreSecretLabel[] = "offkey-premaster-substitute-v1";

offkey::Mutex mu(absl::kConstInit);
absl::StatusOr<std::string>* tpm_state ABSL_GUARDED_BY(mu) = nullptr;
std::atomic<pid_t> swtpm_pid{0}, dbus_pid{0}, abrmd_pid{0};
std::atomic<int> counter{0};

void StopAllAtExit() {
  StopProcess(abrmd_pid.load());
  StopProcess(dbus_pid.load());
  StopProcess(swtpm_pid.load());
}

bool CanConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

bool CanConnectAbstract(const std::string& name) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  // A leading NUL byte names an abstract socket; the length bounds the name.
  memcpy(addr.sun_path + 1, name.data(), name.size());
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr),
                    offsetof(sockaddr_un, sun_path) + 1 + name.size()) == 0;
  close(fd);
  return ok;
}

bool StillRunning(pid_t pid) {
  int status;
  return waitpid(pid, &status, WNOHANG) == 0;
}

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
}

// Waits until `ready` holds, while `pid` runs; FAILED_PRECONDITION with the log if it
// exits or takes longer than `timeout`.
template <typename Ready>
absl::Status WaitReady(absl::string_view what, pid_t pid, const std::string& log,
                       Ready ready, absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!ready()) {
    if (!StillRunning(pid)) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, " exited while starting: ", Tail(log)));
    }
    if (absl::Now() > deadline) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, " was not ready in time: ", Tail(log)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> StartTpm() {
  if (!Tpm2Installed()) {
    return absl::FailedPreconditionError(
        "tpm2-pkcs11 is not installed (libtpm2-pkcs11-1, libtpm2-pkcs11-tools, swtpm, "
        "tpm2-abrmd, dbus)");
  }
  const char* tmp = getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/tpm2.XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  for (const char* sub : {"/state", "/store"}) {
    mkdir((dir + sub).c_str(), 0700);
  }
  atexit(StopAllAtExit);

  // The TPM on a loopback port below the ephemeral range; another port if it is taken.
  std::random_device random;
  int port = 0;
  for (int attempt = 0; attempt < 8 && port == 0; ++attempt) {
    const int candidate = 20000 + 2 * static_cast<int>(random() % 5000);
    if (CanConnect(candidate) || CanConnect(candidate + 1)) continue;
    const std::string log = dir + "/swtpm.log";
    absl::StatusOr<pid_t> pid = StartProcess(
        {"swtpm", "socket", "--tpm2", "--server",
         absl::StrCat("type=tcp,port=", candidate, ",bindaddr=127.0.0.1"), "--ctrl",
         absl::StrCat("type=tcp,port=", candidate + 1, ",bindaddr=127.0.0.1"),
         "--tpmstate", absl::StrCat("dir=", dir, "/state"), "--flags",
         "not-need-init,startup-clear"},
        log);
    if (!pid.ok()) return pid.status();
    if (WaitReady("swtpm", *pid, log, [&] { return CanConnect(candidate); }).ok()) {
      swtpm_pid = *pid;
      port = candidate;
    } else {
      StopProcess(*pid);
    }
  }
  if (port == 0) return absl::FailedPreconditionError("swtpm did not start on any port");

  // An abstract socket: $TEST_TMPDIR paths are often longer than a socket path may be.
  const std::string bus =
      absl::StrCat("offkey-test-", getpid(), "-", absl::Hex(random(), absl::kZeroPad8));
  const std::string dbus_log = dir + "/dbus.log";
  absl::StatusOr<pid_t> dbus =
      StartProcess({"dbus-daemon", "--session", "--nofork", "--nopidfile",
                    absl::StrCat("--address=unix:abstract=", bus)},
                   dbus_log);
  if (!dbus.ok()) return dbus.status();
  dbus_pid = *dbus;
  OFFKEY_RETURN_IF_ERROR(
      WaitReady("dbus-daemon", *dbus, dbus_log, [&] { return CanConnectAbstract(bus); }));

  setenv("DBUS_SESSION_BUS_ADDRESS", absl::StrCat("unix:abstract=", bus).c_str(), 1);
  setenv("TPM2TOOLS_TCTI", "tabrmd:bus_type=session", 1);
  setenv("TPM2_PKCS11_TCTI", "tabrmd:bus_type=session", 1);
  setenv("TPM2_PKCS11_STORE", (dir + "/store").c_str(), 1);
  setenv("TPM2_PKCS11_LOG_LEVEL", "0", 1);

  const std::string abrmd_log = dir + "/abrmd.log";
  // Every store keeps a connection for the life of the process (modules are never
  // finalised at exit), one per test token; and tpm2-pkcs11 keeps every key it made or
  // used loaded on its connection, destroyed ones too. 100 is tpm2-abrmd's maximum of
  // both (the defaults, 27, run out within one test).
  absl::StatusOr<pid_t> abrmd = StartProcess(
      {"/usr/sbin/tpm2-abrmd", "--session", "--allow-root", "--max-connections=100",
       "--max-transients=100", absl::StrCat("--tcti=swtpm:host=127.0.0.1,port=", port)},
      abrmd_log);
  if (!abrmd.ok()) return abrmd.status();
  abrmd_pid = *abrmd;
  // Ready once a TPM command goes through it.
  OFFKEY_RETURN_IF_ERROR(WaitReady("tpm2-abrmd", *abrmd, abrmd_log, [] {
    return RunCommand({"tpm2_getrandom", "--hex", "8"}, absl::Seconds(10)).ok();
  }));
  absl::StatusOr<std::string> init =
      RunCommand({"tpm2_ptool", "init", absl::StrCat("--path=", dir, "/store")});
  if (!init.ok()) return init.status();
  return dir;
}

}  // namespace

std::string Tpm2ModulePath() { return "/usr/lib/x86_64-linux-gnu/libtpm2_pkcs11.so.1"; }

bool Tpm2Installed() {
  return FileExists(Tpm2ModulePath()) && FileExists("/usr/bin/swtpm") &&
         FileExists("/usr/bin/tpm2_ptool") && FileExists("/usr/sbin/tpm2-abrmd") &&
         FileExists("/usr/bin/dbus-daemon");
}

absl::StatusOr<Tpm2Token> Tpm2Token::Create(bool store_secret) {
  std::string dir;
  {
    offkey::MutexLock lock(&mu);
    if (tpm_state == nullptr) tpm_state = new absl::StatusOr<std::string>(StartTpm());
    if (!tpm_state->ok()) return tpm_state->status();
    dir = **tpm_state;
  }
  Tpm2Token token;
  token.label = absl::StrCat("tpm-", getpid(), "-", counter++);
  std::random_device random;
  token.pin = absl::StrCat("pin-", absl::Hex(random(), absl::kZeroPad8),
                           absl::Hex(random(), absl::kZeroPad8));
  ::offkey::testing::RecordSecret("token PIN", token.pin);
  token.pin_file = absl::StrCat(dir, "/", token.label, ".pin");
  {
    std::ofstream out(token.pin_file);
    out << token.pin << "\n";
    if (!out) return absl::InternalError("cannot write " + token.pin_file);
  }
  chmod(token.pin_file.c_str(), 0600);
  const std::string path = absl::StrCat("--path=", dir, "/store");
  const std::string so_pin = absl::StrCat("so-", token.pin);
  absl::StatusOr<std::string> made = RunCommand(
      {"tpm2_ptool", "addtoken", "--pid=1", absl::StrCat("--label=", token.label),
       absl::StrCat("--sopin=", so_pin), absl::StrCat("--userpin=", token.pin), path});
  if (!made.ok()) return made.status();
  if (store_secret) {
    made = RunCommand({"tpm2_ptool", "addkey", absl::StrCat("--label=", token.label),
                       absl::StrCat("--userpin=", token.pin), "--algorithm=hmac:sha256",
                       absl::StrCat("--key-label=", kStoreSecretLabel), path});
    if (!made.ok()) return made.status();
  }
  return token;
}

TokenOptions Tpm2Token::Options(int max_sessions) const {
  TokenOptions options;
  options.module_path = Tpm2ModulePath();
  options.uri = Uri();
  options.pin.file = pin_file;
  options.max_sessions = max_sessions;
  return options;
}

}  // namespace offkey::hsm::pkcs11::testing
