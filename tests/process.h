// Running real binaries from tests: one-shot commands with captured output, commands on
// a pseudo-terminal (for prompts), and long-running daemons stopped by process id.
#ifndef OFFKEY_TESTS_PROCESS_H_
#define OFFKEY_TESTS_PROCESS_H_

#include <sys/socket.h>
#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace offkey::tests {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal if killed.
  std::string out;     // Standard output (with a terminal: everything it printed).
  std::string err;     // Standard error (empty with a terminal).
};

// Runs argv[0] (a path) with `input` on standard input and `env` ("NAME=value") added to
// the environment; kills it after `timeout`.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::string& input = "",
                         const std::vector<std::string>& env = {},
                         absl::Duration timeout = absl::Seconds(60));

// The same with a pseudo-terminal as standard input, output and error, so the program
// sees an interactive user who types `typed` once the output shows `prompt` (as a person
// would: text typed earlier is echoed before the program can turn echo off).
ProcessResult RunOnTerminal(const std::vector<std::string>& argv,
                            const std::string& prompt, const std::string& typed,
                            absl::Duration timeout = absl::Seconds(30));

// A background process with standard error (and output) in `log`.
class Daemon {
 public:
  Daemon() = default;
  ~Daemon();  // SIGKILL if still running.
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts it and waits until every file in `ready_files` exists and is non-empty.
  // False (with the log's contents in `*why`) if it exits or is not ready in time.
  bool Start(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             const std::string& log, const std::vector<std::string>& ready_files,
             std::string* why, absl::Duration timeout = absl::Seconds(60));
  // The same, for a daemon that is ready when asking it gets an answer (a DNS query):
  // waits until `ready` (called every 20 ms while the process runs) returns true.
  bool StartUntil(const std::vector<std::string>& argv,
                  const std::vector<std::string>& env, const std::string& log,
                  const std::function<bool()>& ready, std::string* why,
                  absl::Duration timeout = absl::Seconds(60));
  // SIGTERM, then waits; returns the exit status (-1 if it did not exit in time).
  int Stop(absl::Duration timeout = absl::Seconds(30));
  // Waits for it to exit by itself (SIGKILL after `timeout`); returns the exit status.
  int Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

std::string ReadFileOrEmpty(const std::string& path);

// The path of one of the test's data dependencies: $TEST_SRCDIR/offkey/`path`
// ("client/cli/offkeyctl").
std::string Runfile(const std::string& path);

// Environment entries for an offkeyd that a test loads with calls: they keep ASan's fast
// unwinder, where offkeyd would otherwise get the slow one (tests/process.cc), which
// makes it tens of times slower. Empty when not built with ASan.
std::vector<std::string> FastUnwindEnvironment();

// How many times longer the deadlines of tests that load offkeyd with calls should be
// in this build: 1, or 5 under AddressSanitizer, whose instrumentation and allocator
// make offkeyd several times slower on a machine the other tests keep busy.
int SanitizerSlowdown();

// A port of 127.0.0.1 below the ephemeral range that nothing is bound to now, for
// `socket_type` (SOCK_STREAM or SOCK_DGRAM), for a server the test starts with it (which
// may still lose a race for it: its start then fails and says so); -1 if none is found.
int UnusedPort(int socket_type = SOCK_STREAM);

// Whether a server accepts TCP connections on 127.0.0.1:`port` now; AwaitAccepting
// waits up to `timeout` for it (for servers that cannot report readiness otherwise, such
// as nginx and haproxy).
bool Accepting(int port);
bool AwaitAccepting(int port, absl::Duration timeout = absl::Seconds(20));

}  // namespace offkey::tests

#endif  // OFFKEY_TESTS_PROCESS_H_
