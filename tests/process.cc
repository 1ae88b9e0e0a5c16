#include "tests/process.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace offkey::tests {
namespace {

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// Under AddressSanitizer (--config=asan), offkey's shared objects (the provider, the
// test PKCS#11 modules) need the ASan runtime loaded before anything else. The programs
// not built here that load them (openssl, nginx and haproxy, through the provider) get it
// preloaded, with leak checking off: their own leaks at exit are not ours to fix. No
// other program gets it: they never load offkey code, and some cannot start with it
// (Debian 12's curl deadlocks in setlocale at start-up). Empty when not built with ASan.
//
// offkeyd (built here, with the module leak suppressions) gets ASan's slow unwinder, so
// that SoftHSM2's leaks through libcrypto show its frames and are suppressed
// (hsm/pkcs11/testing/module_leaks.cc), unless the test set ASAN_OPTIONS for it itself.
std::vector<std::string> SanitizerEnvironment(const std::string& program,
                                              const std::vector<std::string>& extra) {
#if defined(__SANITIZE_ADDRESS__)
  const std::string name = program.substr(program.rfind('/') + 1);
  if (name == "offkeyd") {
    for (const std::string& e : extra) {
      if (absl::StartsWith(e, "ASAN_OPTIONS=")) return {};
    }
    const char* options = getenv("ASAN_OPTIONS");
    return {absl::StrCat("ASAN_OPTIONS=", options == nullptr ? "" : options,
                         options == nullptr || *options == '\0' ? "" : ":",
                         "fast_unwind_on_malloc=0")};
  }
  if (name != "openssl" && name != "nginx" && name != "haproxy") return {};
  Dl_info info;
  void* asan_init = dlsym(RTLD_DEFAULT, "__asan_init");
  if (asan_init == nullptr || dladdr(asan_init, &info) == 0 ||
      info.dli_fname == nullptr) {
    return {};
  }
  return {std::string("LD_PRELOAD=") + info.dli_fname,
          "ASAN_OPTIONS=detect_leaks=0:halt_on_error=1"};
#else
  (void)program;
  (void)extra;
  return {};
#endif
}

std::vector<std::string> Environment(const std::string& program,
                                     const std::vector<std::string>& extra) {
  const std::vector<std::string> sanitizer = SanitizerEnvironment(program, extra);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!sanitizer.empty() &&
        (absl::StartsWith(*e, "LD_PRELOAD=") || absl::StartsWith(*e, "ASAN_OPTIONS="))) {
      continue;
    }
    env.emplace_back(*e);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  env.insert(env.end(), sanitizer.begin(), sanitizer.end());
  return env;
}

int Reap(pid_t pid, absl::Time deadline) {
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Reads every fd in `fds` into `outs` until all reach EOF (or error) or the deadline.
void Drain(std::vector<int> fds, std::vector<std::string*> outs, absl::Time deadline) {
  std::vector<bool> open(fds.size(), true);
  char buffer[65536];
  for (;;) {
    std::vector<pollfd> polls;
    std::vector<size_t> which;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (open[i]) {
        polls.push_back({fds[i], POLLIN, 0});
        which.push_back(i);
      }
    }
    if (polls.empty()) return;
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return;
    const int n = poll(polls.data(), polls.size(), static_cast<int>(ms));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    for (size_t p = 0; p < polls.size(); ++p) {
      if (polls[p].revents == 0) continue;
      const size_t i = which[p];
      const ssize_t got = read(fds[i], buffer, sizeof(buffer));
      if (got > 0) {
        outs[i]->append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        open[i] = false;  // EOF, or EIO once a pty's last writer is gone.
      }
    }
  }
}

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& input,
                         const std::vector<std::string>& env, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(err, O_CLOEXEC) != 0) {
    return {};
  }
  const std::vector<std::string> environment = Environment(argv.at(0), env);
  // Built before fork: a child of a threaded process must not allocate (another
  // thread may have held the allocator's lock, AddressSanitizer's too, at the fork).
  std::vector<char*> args = CStrings(argv), envp = CStrings(environment);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  // Small inputs fit the pipe buffer; the tests send no more than a few KiB.
  signal(SIGPIPE, SIG_IGN);
  if (!input.empty()) (void)!write(in[1], input.data(), input.size());
  close(in[1]);
  ProcessResult result;
  Drain({out[0], err[0]}, {&result.out, &result.err}, deadline);
  close(out[0]);
  close(err[0]);
  result.exit_code = Reap(pid, deadline);
  return result;
}

ProcessResult RunOnTerminal(const std::vector<std::string>& argv,
                            const std::string& prompt, const std::string& typed,
                            absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int master = -1;
  const std::vector<std::string> environment = Environment(argv.at(0), {});
  std::vector<char*> args = CStrings(argv), envp = CStrings(environment);
  const pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  if (pid == 0) {
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  ProcessResult result;
  if (pid < 0) return result;
  char buffer[4096];
  while (result.out.find(prompt) == std::string::npos && absl::Now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const ssize_t got = read(master, buffer, sizeof(buffer));
    if (got <= 0) break;  // It exited without asking.
    result.out.append(buffer, static_cast<size_t>(got));
  }
  if (!typed.empty()) (void)!write(master, typed.data(), typed.size());
  Drain({master}, {&result.out}, deadline);
  close(master);
  result.exit_code = Reap(pid, deadline);
  return result;
}

Daemon::~Daemon() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool Daemon::Start(const std::vector<std::string>& argv,
                   const std::vector<std::string>& env, const std::string& log,
                   const std::vector<std::string>& ready_files, std::string* why,
                   absl::Duration timeout) {
  for (const std::string& f : ready_files) unlink(f.c_str());
  return StartUntil(
      argv, env, log,
      [&ready_files] {
        for (const std::string& f : ready_files) {
          if (ReadFileOrEmpty(f).empty()) return false;
        }
        return true;
      },
      why, timeout);
}

bool Daemon::StartUntil(const std::vector<std::string>& argv,
                        const std::vector<std::string>& env, const std::string& log,
                        const std::function<bool()>& ready, std::string* why,
                        absl::Duration timeout) {
  const std::vector<std::string> environment = Environment(argv.at(0), env);
  // Built before fork: a child of a threaded process must not allocate (another
  // thread may have held the allocator's lock, AddressSanitizer's too, at the fork).
  std::vector<char*> args = CStrings(argv), envp = CStrings(environment);
  pid_ = fork();
  if (pid_ == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (ready()) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_ || absl::Now() > deadline) {
      *why = "not ready; log:\n" + ReadFileOrEmpty(log);
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
      pid_ = -1;
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

int Daemon::Stop(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const int code = Reap(pid_, absl::Now() + timeout);
  pid_ = -1;
  return code;
}

int Daemon::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  const int code = Reap(pid_, absl::Now() + timeout);
  pid_ = -1;
  return code;
}

std::string Runfile(const std::string& path) {
  return absl::StrCat(getenv("TEST_SRCDIR"), "/offkey/", path);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

}  // namespace

int UnusedPort(int socket_type) {
  std::mt19937 random(static_cast<unsigned>(getpid()) ^
                      static_cast<unsigned>(absl::ToUnixNanos(absl::Now())));
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int port = 20000 + static_cast<int>(random() % 12000);
    const int fd = socket(AF_INET, socket_type, 0);
    if (fd < 0) return -1;
    const sockaddr_in address = Loopback(port);
    const bool free =
        bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    if (free) return port;
  }
  return -1;
}

bool Accepting(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  const sockaddr_in address = Loopback(port);
  const bool ok =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

bool AwaitAccepting(int port, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!Accepting(port) && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  return Accepting(port);
}

std::vector<std::string> FastUnwindEnvironment() {
#if defined(__SANITIZE_ADDRESS__)
  const char* options = getenv("ASAN_OPTIONS");
  return {absl::StrCat("ASAN_OPTIONS=", options == nullptr ? "" : options)};
#else
  return {};
#endif
}

int SanitizerSlowdown() {
#if defined(__SANITIZE_ADDRESS__)
  return 5;
#else
  return 1;
#endif
}

}  // namespace offkey::tests
