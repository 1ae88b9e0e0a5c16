// `offkeyctl ticket-keys`: session-ticket keys from offkeyd into the files nginx and
// haproxy read, kept current across rotations.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/secret_bytes.h"
#include "base/status_macros.h"
#include "client/cli/commands.h"
#include "client/cli/ticket_key_files.h"
#include "google/protobuf/struct.pb.h"

namespace offkey::client::cli {
namespace {

using offkey::v1::GetTicketKeysResponse;
using offkey::v1::TicketKey;

constexpr mode_t kKeyFileMode = 0600;
// After a rotation the writer fetches this long after current.not_after (by offkeyd's
// clock), plus jitter so a fleet of writers does not call at one instant.
constexpr absl::Duration kAfterRotation = absl::Seconds(1);
constexpr absl::Duration kMaxJitter = absl::Seconds(10);
// Retries of transient failures back off from the first to the last.
constexpr absl::Duration kFirstRetry = absl::Seconds(1);
constexpr absl::Duration kLastRetry = absl::Seconds(60);
constexpr absl::Duration kReloadTimeout = absl::Seconds(60);
constexpr absl::Duration kSocketTimeout = absl::Seconds(5);

enum class Format { kNginx, kHaproxy };

// Failures worth retrying while watching: offkeyd unreachable, overloaded or slow.
bool Transient(grpc::StatusCode code) {
  return code == grpc::UNAVAILABLE || code == grpc::DEADLINE_EXCEEDED ||
         code == grpc::RESOURCE_EXHAUSTED || code == grpc::ABORTED;
}

// One file to write and what it should hold.
struct KeyFile {
  std::string path;
  SecretBytes contents;
};

// Blocks SIGTERM and SIGINT so they are taken only by WaitOrStop (and stay pending
// during a call, which is bounded by --timeout).
class StopSignals {
 public:
  StopSignals() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  }
  // Sleeps for `delay`; the signal's name if one arrived first, else "".
  std::string WaitOrStop(absl::Duration delay) const {
    const absl::Time until = absl::Now() + delay;
    for (;;) {
      const absl::Duration left = std::max(until - absl::Now(), absl::ZeroDuration());
      const timespec wait = absl::ToTimespec(left);
      const int signal_number = sigtimedwait(&set_, nullptr, &wait);
      if (signal_number == SIGTERM) return "SIGTERM";
      if (signal_number == SIGINT) return "SIGINT";
      if (signal_number < 0 && errno == EINTR) continue;
      if (absl::Now() >= until) return "";
    }
  }
  const sigset_t& set() const { return set_; }

 private:
  sigset_t set_;
};

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
}

absl::Duration Jitter(absl::Duration max) {
  static std::mt19937_64 random{std::random_device{}()};
  if (max <= absl::ZeroDuration()) return absl::ZeroDuration();
  std::uniform_int_distribution<int64_t> ms(0, absl::ToInt64Milliseconds(max));
  return absl::Milliseconds(ms(random));
}

// The file's current contents equal `data`. Read into secret memory, never a stream's
// buffers, which would be freed unwiped.
bool FileHolds(const std::string& path, const SecretBytes& data) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  SecretBytes on_disk(data.size() + 1);  // One byte more: a longer file differs.
  size_t size = 0;
  while (size < on_disk.size()) {
    const ssize_t n = read(fd, on_disk.data() + size, on_disk.size() - size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size += static_cast<size_t>(n);
  }
  close(fd);
  return size == data.size() && on_disk.view().substr(0, size) == data.view();
}

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return absl::StrCat(cwd, "/", path);
}

// Runs `command` with /bin/sh -c, its output going where offkeyctl's goes, with the
// stop signals unblocked and at their defaults. Kills it after kReloadTimeout.
absl::Status RunReloadCommand(const std::string& command) {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::string sh = "sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, "/bin/sh", nullptr, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  if (spawned != 0) {
    return absl::InternalError(absl::StrCat("cannot run the reload command `", command,
                                            "`: ", strerror(spawned)));
  }
  const absl::Time deadline = absl::Now() + kReloadTimeout;
  int status = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("waiting for the reload command `", command,
                                              "`: ", strerror(errno)));
    }
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return absl::DeadlineExceededError(
          absl::StrCat("the reload command `", command, "` did not finish in ",
                       absl::FormatDuration(kReloadTimeout), "; killed it"));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(
      WIFEXITED(status) ? absl::StrCat("the reload command `", command,
                                       "` exited with status ", WEXITSTATUS(status))
                        : absl::StrCat("the reload command `", command,
                                       "` was killed by signal ", WTERMSIG(status)));
}

// Sends one command line to haproxy's admin socket and returns its answer (haproxy
// answers and closes the connection in its default, non-interactive mode).
absl::StatusOr<std::string> HaproxyCommand(const std::string& socket_path,
                                           const SecretBytes& line) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--haproxy-socket '", socket_path, "' is too long a path"));
  }
  memcpy(address.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  auto fail = [&](absl::string_view what) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("haproxy's admin socket '", socket_path,
                                               "' (--haproxy-socket): ", what, ": ",
                                               strerror(error)));
  };
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return fail("cannot connect");
  }
  size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot send");
    sent += static_cast<size_t>(n);
  }
  std::string answer;
  const absl::Time deadline = absl::Now() + kSocketTimeout;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int left = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    const int ready = poll(&p, 1, left);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      errno = ETIMEDOUT;
      return fail("no answer");
    }
    char buffer[512];
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("cannot read the answer");
    if (n == 0) break;
    answer.append(buffer, static_cast<size_t>(n));
    if (answer.size() > 4096) break;
  }
  close(fd);
  return answer;
}

class Writer {
 public:
  Writer(Context& ctx, const TicketKeysArgs& args, Format format,
         const StopSignals* signals)
      : ctx_(ctx), args_(args), format_(format), signals_(signals) {
    dir_ = AbsolutePath(args.out_dir);
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    haproxy_ref_ =
        args.haproxy_keys_ref.empty() ? dir_ + "/haproxy.keys" : args.haproxy_keys_ref;
  }

  absl::Status Run() {
    OFFKEY_RETURN_IF_ERROR(PrepareDirectory());
    absl::Duration retry = kFirstRetry;
    bool printed_config = false;
    for (;;) {
      grpc::Status rpc;
      GetTicketKeysResponse keys;
      OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyService::Stub * stub, ctx_.Data());
      {
        offkey::v1::GetTicketKeysRequest request;
        request.set_ticket_key_set(args_.set);
        std::unique_ptr<grpc::ClientContext> call = ctx_.CallContext();
        rpc = stub->GetTicketKeys(call.get(), request, &keys);
      }
      const absl::Time answered = absl::Now();
      if (!rpc.ok()) {
        absl::Status failed =
            ctx_.Failed(rpc, ctx_.connection().data,
                        absl::StrCat("get the ticket keys of set '", args_.set, "'"));
        if (rpc.error_code() == grpc::PERMISSION_DENIED) {
          failed = absl::PermissionDeniedError(absl::StrCat(
              failed.message(),
              ". offkeyd's policy needs a grant for this identity with operation "
              "GET_TICKET_KEYS and ticket_key_sets: \"",
              args_.set, "\" (and the set must exist)"));
        }
        if (signals_ == nullptr || !Transient(rpc.error_code())) return failed;
        Log(absl::StrCat(failed.message(), "; retrying in ",
                         absl::FormatDuration(retry)));
        if (Stopped(retry + Jitter(retry / 2))) return absl::OkStatus();
        retry = std::min(retry * 2, kLastRetry);
        continue;
      }
      retry = kFirstRetry;
      WipeOnExit wipe(&keys);

      OFFKEY_ASSIGN_OR_RETURN(std::vector<KeyFile> files, Files(keys));
      bool changed = false;
      for (const KeyFile& file : files) {
        if (FileHolds(file.path, file.contents)) continue;
        OFFKEY_RETURN_IF_ERROR(
            ReplaceFileAtomically(file.path, file.contents.view(), kKeyFileMode));
        changed = true;
      }
      if (changed) {
        Log(absl::StrCat("wrote the ticket keys of set '", args_.set, "' for epochs ",
                         keys.previous().epoch(), "..", keys.next().epoch(), " (current ",
                         keys.current().epoch(), " until ",
                         TimeText(keys.current().not_after()), ") to ", dir_));
        reload_pending_ = !args_.reload_command.empty();
      }
      if (!printed_config) {
        PrintConfig(keys);
        printed_config = true;
      }
      absl::Status reload = Reload();
      absl::Status pushed = PushToHaproxy(keys);
      if (signals_ == nullptr) {
        OFFKEY_RETURN_IF_ERROR(reload);
        return pushed;
      }
      absl::Duration delay;
      if (!reload.ok() || !pushed.ok()) {
        if (!reload.ok()) Log(absl::StrCat(reload.message(), "; trying again"));
        if (!pushed.ok()) Log(absl::StrCat(pushed.message(), "; trying again"));
        delay = retry;
        retry = std::min(retry * 2, kLastRetry);
      } else {
        // Keys change at current.not_after by offkeyd's clock; measured from when it
        // answered, so this host's clock does not matter.
        const absl::Duration until_rotation =
            absl::Seconds(keys.current().not_after() - keys.server_time());
        const absl::Duration period = absl::Seconds(keys.rotation_period_seconds());
        delay = std::max(until_rotation, absl::ZeroDuration()) + kAfterRotation +
                Jitter(std::min(kMaxJitter, period / 10));
      }
      if (Stopped(delay - (absl::Now() - answered))) return absl::OkStatus();
    }
  }

 private:
  // Clears the key bytes of a response when it goes out of scope.
  class WipeOnExit {
   public:
    explicit WipeOnExit(GetTicketKeysResponse* keys) : keys_(keys) {}
    ~WipeOnExit() {
      for (TicketKey* key :
           {keys_->mutable_previous(), keys_->mutable_current(), keys_->mutable_next()}) {
        WipeString(key->mutable_name());
        WipeString(key->mutable_aes_key());
        WipeString(key->mutable_hmac_key());
      }
    }
    WipeOnExit(const WipeOnExit&) = delete;
    WipeOnExit& operator=(const WipeOnExit&) = delete;

   private:
    GetTicketKeysResponse* keys_;
  };

  absl::Status PrepareDirectory() {
    struct stat st {};
    if (stat(dir_.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return UsageError(absl::StrCat("--out '", args_.out_dir, "' is not a directory"));
      }
      return absl::OkStatus();
    }
    if (mkdir(dir_.c_str(), 0700) != 0) {
      return absl::PermissionDeniedError(absl::StrCat("cannot create the directory '",
                                                      args_.out_dir,
                                                      "' (--out): ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<KeyFile>> Files(const GetTicketKeysResponse& keys) {
    std::vector<KeyFile> files;
    if (format_ == Format::kHaproxy) {
      OFFKEY_ASSIGN_OR_RETURN(SecretBytes contents, HaproxyTicketKeysFile(keys));
      files.push_back({dir_ + "/haproxy.keys", std::move(contents)});
      return files;
    }
    // Next first and current last: a reload racing the writer finds the new next key
    // before the new current one encrypts.
    for (const auto& [name, key] :
         {std::pair<const char*, const TicketKey*>{"next.key", &keys.next()},
          {"previous.key", &keys.previous()},
          {"current.key", &keys.current()}}) {
      OFFKEY_ASSIGN_OR_RETURN(SecretBytes contents, NginxTicketKeyFile(*key));
      files.push_back({absl::StrCat(dir_, "/", name), std::move(contents)});
    }
    return files;
  }

  // The configuration lines that use the files (no key bytes), once.
  void PrintConfig(const GetTicketKeysResponse& keys) {
    std::vector<std::string> lines;
    if (format_ == Format::kNginx) {
      for (const char* name : {"current.key", "previous.key", "next.key"}) {
        lines.push_back(absl::StrCat("ssl_session_ticket_key ", dir_, "/", name, ";"));
      }
    } else {
      lines.push_back(absl::StrCat("tls-ticket-keys ", dir_, "/haproxy.keys"));
    }
    if (ctx_.format() == OutputFormat::kJson) {
      google::protobuf::Struct json;
      auto& fields = *json.mutable_fields();
      fields["ticket_key_set"].set_string_value(args_.set);
      fields["format"].set_string_value(args_.format);
      fields["directory"].set_string_value(dir_);
      fields["current_epoch"].set_number_value(
          static_cast<double>(keys.current().epoch()));
      fields["current_not_after"].set_string_value(TimeText(keys.current().not_after()));
      for (const std::string& line : lines) {
        fields["config"].mutable_list_value()->add_values()->set_string_value(line);
      }
      ctx_.out() << Json(json);
    } else if (ctx_.format() == OutputFormat::kTable) {
      ctx_.out() << (format_ == Format::kNginx
                         ? "# nginx, in the server block (the first key encrypts, all "
                           "decrypt; reload nginx after each rotation):\n"
                         : "# haproxy, on the bind line (the middle key of the file "
                           "encrypts):\n");
      for (const std::string& line : lines) ctx_.out() << line << "\n";
    }
    ctx_.out().flush();
  }

  absl::Status Reload() {
    if (!reload_pending_) return absl::OkStatus();
    OFFKEY_RETURN_IF_ERROR(RunReloadCommand(args_.reload_command));
    reload_pending_ = false;
    Log(absl::StrCat("the reload command `", args_.reload_command,
                     "` exited with status 0"));
    return absl::OkStatus();
  }

  // Brings haproxy's in-memory keys to previous, current, next without a reload. Each
  // `set ssl tls-key` replaces haproxy's oldest key with a new newest one and moves
  // encryption to the key before it, so after a rotation only the keys newer than the
  // last one pushed are sent; on the first call (haproxy's keys unknown) all three are.
  absl::Status PushToHaproxy(const GetTicketKeysResponse& keys) {
    if (args_.haproxy_socket.empty()) return absl::OkStatus();
    if (pushed_next_.has_value() && *pushed_next_ == keys.next().epoch()) {
      return absl::OkStatus();
    }
    std::vector<const TicketKey*> to_push;
    for (const TicketKey* key : {&keys.previous(), &keys.current(), &keys.next()}) {
      if (!pushed_next_.has_value() || *pushed_next_ >= keys.next().epoch() ||
          key->epoch() > *pushed_next_) {
        to_push.push_back(key);
      }
    }
    pushed_next_.reset();  // Unknown until every push succeeded.
    for (const TicketKey* key : to_push) {
      OFFKEY_ASSIGN_OR_RETURN(SecretBytes entry, HaproxyTicketKey(*key));
      const std::string head = absl::StrCat("set ssl tls-key ", haproxy_ref_, " ");
      SecretBytes line(head.size() + entry.size() + 1);
      memcpy(line.data(), head.data(), head.size());
      memcpy(line.data() + head.size(), entry.data(), entry.size());
      line[line.size() - 1] = '\n';
      OFFKEY_ASSIGN_OR_RETURN(std::string answer,
                              HaproxyCommand(args_.haproxy_socket, line));
      if (!absl::StrContains(answer, "TLS ticket key updated")) {
        // haproxy's answers to this command never repeat the key.
        return absl::FailedPreconditionError(absl::StrCat(
            "haproxy refused the ticket key of epoch ", key->epoch(), " for '",
            haproxy_ref_, "' (--haproxy-keys-ref must name the tls-ticket-keys file as ",
            "haproxy's configuration does): ", absl::StripAsciiWhitespace(answer)));
      }
    }
    pushed_next_ = keys.next().epoch();
    Log(absl::StrCat("haproxy at ", args_.haproxy_socket, " now encrypts with epoch ",
                     keys.current().epoch(), " (", to_push.size(),
                     to_push.size() == 1 ? " key" : " keys", " pushed)"));
    return absl::OkStatus();
  }

  // True when a stop signal arrived within `delay`.
  bool Stopped(absl::Duration delay) {
    const std::string signal = signals_->WaitOrStop(delay);
    if (signal.empty()) return false;
    Log(absl::StrCat("stopping on ", signal));
    return true;
  }

  void Log(const std::string& line) {
    ctx_.err() << "offkeyctl: " << Now() << " " << line << std::endl;
  }

  Context& ctx_;
  const TicketKeysArgs& args_;
  const Format format_;
  const StopSignals* signals_;  // Null: write once.
  std::string dir_;
  std::string haproxy_ref_;
  bool reload_pending_ = false;
  std::optional<int64_t> pushed_next_;  // haproxy's newest key, when known.
};

}  // namespace

absl::Status WriteTicketKeys(Context& ctx, const TicketKeysArgs& args) {
  Format format;
  if (args.format == "nginx") {
    format = Format::kNginx;
  } else if (args.format == "haproxy") {
    format = Format::kHaproxy;
  } else {
    return UsageError(absl::StrCat("--format '", args.format, "': use nginx or haproxy"));
  }
  if (format != Format::kHaproxy &&
      (!args.haproxy_socket.empty() || !args.haproxy_keys_ref.empty())) {
    return UsageError("--haproxy-socket and --haproxy-keys-ref go with --format haproxy");
  }
  std::optional<StopSignals> signals;
  if (args.watch) signals.emplace();  // Before any channel starts its threads.
  Writer writer(ctx, args, format, signals.has_value() ? &*signals : nullptr);
  return writer.Run();
}

}  // namespace offkey::client::cli
