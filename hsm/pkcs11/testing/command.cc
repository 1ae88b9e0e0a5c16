#include "hsm/pkcs11/testing/command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace offkey::hsm::pkcs11::testing {
namespace {

// In the child: runs argv with stdin from `in_fd` (/dev/null if -1) and stdout/stderr
// on `out_fd`.
[[noreturn]] void ExecChild(const std::vector<std::string>& argv, int in_fd, int out_fd) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (in_fd < 0) in_fd = open("/dev/null", O_RDONLY);
  if (in_fd >= 0) dup2(in_fd, STDIN_FILENO);
  dup2(out_fd, STDOUT_FILENO);
  dup2(out_fd, STDERR_FILENO);
  setpgid(0, 0);  // Its own group, so that a timeout can stop what it started too.
  execvp(args[0], args.data());
  _exit(127);
}

// Whether `pid` has ended: reaped if it is our child, else gone or a zombie.
bool Exited(pid_t pid, int* status) {
  pid_t r;
  do {
    r = waitpid(pid, status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid) return true;
  if (r == 0) return false;
  // Not our child (a daemon that forked away): read its state from /proc. With read(2),
  // not a stream: when the process ends between open and read, the read fails with
  // ESRCH, which libstdc++'s filebuf throws (and at exit that terminates the test).
  std::string text;
  const int fd = open(absl::StrCat("/proc/", pid, "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buffer[512];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0) {
      text.append(buffer, static_cast<size_t>(n));
    }
    close(fd);
  }
  const size_t paren = text.rfind(')');
  return paren == std::string::npos || paren + 2 >= text.size() || text[paren + 2] == 'Z';
}

}  // namespace

absl::StatusOr<std::string> RunCommand(const std::vector<std::string>& argv,
                                       absl::Duration timeout, const std::string& input) {
  int fds[2], in[2];
  if (pipe2(fds, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  // Small inputs (a label, a PIN) fit in the pipe's buffer: written before the child
  // runs.
  if (write(in[1], input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
    return absl::InternalError(absl::StrCat("write: ", strerror(errno)));
  }
  close(in[1]);
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) ExecChild(argv, in[0], fds[1]);
  close(in[0]);
  close(fds[1]);
  std::string out;
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    pollfd p = {fds[0], POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the command (and whatever it left running) closed it.
    out.append(buf, n);
  }
  close(fds[0]);
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        argv[0], argv.size() > 1 ? " " + argv[1] : "",
        timed_out ? " timed out" : absl::StrCat(" failed with status ", status),
        WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (not installed?)" : "", ": ",
        out));
  }
  return out;
}

absl::StatusOr<pid_t> StartProcess(const std::vector<std::string>& argv,
                                   const std::string& log) {
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("open ", log, ": ", strerror(errno)));
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) ExecChild(argv, -1, fd);
  close(fd);
  return pid;
}

void StopProcess(pid_t pid, absl::Duration timeout) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (absl::Now() < deadline) {
    if (Exited(pid, &status)) return;
    absl::SleepFor(absl::Milliseconds(10));  // Polls for the exit; bounded by timeout.
  }
  kill(pid, SIGKILL);
  Exited(pid, &status);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace offkey::hsm::pkcs11::testing
