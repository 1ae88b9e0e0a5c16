// offkeyd: the offkey key service. main() only parses flags, builds the configuration,
// opens the key store and runs the server library until SIGTERM or SIGINT; SIGHUP
// reloads the configuration.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "base/build_info.h"
#include "base/build_stamp.h"
#include "base/mutex.h"
#include "base/process_hardening.h"
#include "grpc/support/log.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "service/config/config_loader.h"
#include "service/config_diff.h"
#include "service/dev/dev_mode.h"
#include "service/oplog.h"
#include "service/sd_notify.h"
#include "service/server.h"
#include "service/startup_check.h"

ABSL_FLAG(std::string, config, "",
          "Configuration file (protobuf text format, schema offkey.v1.ServerConfig). "
          "Flags below override its fields.");
ABSL_FLAG(bool, dev, false,
          "Development mode: create (first start) or reuse a SoftHSM2 token, a "
          "development CA, certificates and a policy under --dev_state_dir.");
ABSL_FLAG(std::string, dev_state_dir, ".offkey/dev", "State directory for --dev.");
ABSL_FLAG(std::string, softhsm_module, "/usr/lib/softhsm/libsofthsm2.so",
          "SoftHSM2 module used by --dev.");
ABSL_FLAG(std::string, listen, "", "Data-plane listen address host:port (port 0: any).");
ABSL_FLAG(std::string, admin_listen, "",
          "Admin-plane (KeyAdmin) listen address host:port (admin_listen_address; port "
          "0: any).");
ABSL_FLAG(std::string, metrics_address, "",
          "Metrics and health HTTP address host:port (metrics_address; port 0: any).");
ABSL_FLAG(std::string, pkcs11_module, "", "PKCS#11 module path (hsm.module_path).");
ABSL_FLAG(std::string, token_uri, "", "RFC 7512 token URI (hsm.token_uri).");
ABSL_FLAG(std::string, pin_file, "", "File holding the token user PIN (hsm.pin_file).");
ABSL_FLAG(std::string, pin_env, "",
          "Environment variable holding the token user PIN (hsm.pin_env).");
ABSL_FLAG(int, max_sessions, 0, "HSM sessions, and so concurrent HSM operations.");
ABSL_FLAG(bool, insecure_plaintext_for_development, false,
          "DANGER: serve without TLS and without client authentication. Local "
          "experiments only; every caller becomes 'insecure:anonymous'.");
ABSL_FLAG(bool, allow_core_dumps, false,
          "DEBUGGING ONLY: leave offkeyd dumpable and its core size limit as inherited. "
          "A core file or an attached debugger then sees the token PIN, premasters and "
          "master secrets in memory. By default offkeyd is undumpable (no core files, "
          "no ptrace by same-user processes) with RLIMIT_CORE 0.");
ABSL_FLAG(std::string, log_format, "text",
          "Operational log on standard error: 'text' (offkeyd: <message>) or 'json' "
          "(one object per line: time, level, msg and fields). Audit records never go "
          "there (audit.path).");
ABSL_FLAG(std::string, check_config, "",
          "Check this configuration file (with the flags above applied) as start-up "
          "would: the file, its policy and trust bundles, the TLS, module and PIN "
          "files it names. Neither opens the HSM nor binds a port. Prints "
          "'configuration FILE is ok' and exits 0, or the problems and exits 1.");
ABSL_FLAG(std::string, port_file, "",
          "Write the bound data-plane port to this file once serving (for tests and "
          "scripts that listen on port 0).");
ABSL_FLAG(std::string, admin_port_file, "",
          "Write the bound admin-plane port to this file once serving.");
ABSL_FLAG(std::string, metrics_port_file, "",
          "Write the bound metrics/health HTTP port to this file once serving.");

namespace offkey::service {
namespace {

// The operational log; text until main() has read --log_format.
std::unique_ptr<const OpLog>& LogSlot() {
  static auto* const log = new std::unique_ptr<const OpLog>(new OpLog(LogFormat::kText));
  return *log;
}
const OpLog& Log() { return *LogSlot(); }

// gRPC's own log lines (gpr_log), as records of the operational log in JSON mode.
void GrpcLog(gpr_log_func_args* args) {
  const LogLevel level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LogLevel::kError
                         : args->severity == GPR_LOG_SEVERITY_INFO ? LogLevel::kInfo
                                                                   : LogLevel::kDebug;
  Log().Log(level, args->message,
            {{"source", "grpc"}, {"file", absl::StrCat(args->file, ":", args->line)}});
}

int Fail(const absl::Status& status, absl::string_view what) {
  Log().Error(absl::StrCat(what, ": ", status.ToString()));
  return 1;
}

void ApplyFlags(offkey::v1::ServerConfig* config) {
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    config->set_listen_address(absl::GetFlag(FLAGS_listen));
  }
  if (!absl::GetFlag(FLAGS_admin_listen).empty()) {
    config->set_admin_listen_address(absl::GetFlag(FLAGS_admin_listen));
  }
  if (!absl::GetFlag(FLAGS_metrics_address).empty()) {
    config->set_metrics_address(absl::GetFlag(FLAGS_metrics_address));
  }
  auto* hsm = config->mutable_hsm();
  if (!absl::GetFlag(FLAGS_pkcs11_module).empty()) {
    hsm->set_module_path(absl::GetFlag(FLAGS_pkcs11_module));
  }
  if (!absl::GetFlag(FLAGS_token_uri).empty()) {
    hsm->set_token_uri(absl::GetFlag(FLAGS_token_uri));
  }
  if (!absl::GetFlag(FLAGS_pin_file).empty()) {
    hsm->set_pin_file(absl::GetFlag(FLAGS_pin_file));
    hsm->clear_pin_env();
  }
  if (!absl::GetFlag(FLAGS_pin_env).empty()) {
    hsm->set_pin_env(absl::GetFlag(FLAGS_pin_env));
    hsm->clear_pin_file();
  }
  if (absl::GetFlag(FLAGS_max_sessions) > 0) {
    hsm->set_max_sessions(absl::GetFlag(FLAGS_max_sessions));
  }
  if (absl::GetFlag(FLAGS_insecure_plaintext_for_development)) {
    config->set_insecure_plaintext_for_development(true);
  }
}

// The file, then the flags over it, then defaults; validated whole.
absl::StatusOr<offkey::v1::ServerConfig> LoadConfig(const std::string& path) {
  absl::StatusOr<offkey::v1::ServerConfig> config = service::config::LoadConfigFile(
      path, service::config::Completeness::kAllowIncomplete);
  if (!config.ok()) return config.status();
  ApplyFlags(&*config);
  service::config::ApplyDefaults(&*config);
  if (absl::Status valid = service::config::ValidateConfig(*config); !valid.ok()) {
    return valid;
  }
  return config;
}

// --check_config: the exit status.
int CheckConfig(const std::string& path) {
  absl::StatusOr<offkey::v1::ServerConfig> config = LoadConfig(path);
  std::vector<std::string> problems;
  if (!config.ok()) {
    problems.push_back(std::string(config.status().message()));
  } else {
    problems = CheckStartupResources(*config);
  }
  if (problems.empty()) {
    printf("configuration %s is ok\n", path.c_str());
    return 0;
  }
  fprintf(stderr, "offkeyd: configuration %s has problems:\n", path.c_str());
  for (const std::string& problem : problems) fprintf(stderr, "%s\n", problem.c_str());
  return 1;
}

// The configuration the last reload pass read (ServerOptions::reload_config).
struct LastLoaded {
  offkey::Mutex mu;
  offkey::v1::ServerConfig config ABSL_GUARDED_BY(mu);
};

// SIGHUP: one reload pass now. What it applied, or why it refused the file (the running
// configuration keeps serving), and which changed settings need a restart, are logged
// every time, since an operator asked.
void ReloadOnSighup(service::OffkeyServer& server,
                    const offkey::v1::ServerConfig& started_with, LastLoaded& last_loaded,
                    const service::SdNotifier& notifier) {
  Log().Info("SIGHUP received; reloading the configuration", {{"signal", "SIGHUP"}});
  notifier.Reloading("reloading the configuration").IgnoreError();
  absl::Status reloaded = server.ReloadNow();
  notifier
      .Notify(absl::StrCat("READY=1\nSTATUS=serving; ",
                           reloaded.ok() ? "configuration reloaded"
                                         : "configuration reload refused, see the log"))
      .IgnoreError();
  if (!reloaded.ok()) {
    Log().Error(
        absl::StrCat("configuration reload on SIGHUP refused, keeping the running one: ",
                     reloaded.ToString()));
    return;
  }
  std::vector<std::string> restart;
  {
    offkey::MutexLock lock(&last_loaded.mu);
    restart = service::RestartOnlyChanges(started_with, last_loaded.config);
  }
  Log().Info("configuration reloaded on SIGHUP");
  if (!restart.empty()) {
    Log().Warning(absl::StrCat("changed settings that need a restart to take effect: ",
                               absl::StrJoin(restart, ", ")),
                  {{"fields", absl::StrJoin(restart, ",")}});
  }
}

// Writes `port` to `path` atomically (a reader never sees a partial file).
absl::Status WritePortFile(const std::string& path, int port) {
  std::string tmp = path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "w");
  if (f == nullptr || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 ||
      rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

// Removes the port file at `path` if it still holds `port`: another offkeyd on the same
// development state may have written its own port there since.
void RemovePortFile(const std::string& path, int port) {
  FILE* f = fopen(path.c_str(), "r");
  if (f == nullptr) return;
  int written = 0;
  const bool ours = fscanf(f, "%d", &written) == 1 && written == port;
  fclose(f);
  if (ours) unlink(path.c_str());
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the offkey key service.\n\n"
      "  offkeyd --dev                      development mode (SoftHSM2, dev CA, policy)\n"
      "  offkeyd --config=/etc/offkey/offkeyd.textproto\n\n"
      "The PIN comes from a file or an environment variable, never from the command "
      "line.");
  SetBuildInfo(StampedBuildInfo());
  absl::FlagsUsageConfig usage_config;
  usage_config.version_string = [] {
    return VersionLine("offkeyd", GetBuildInfo()) + "\n";
  };
  absl::SetFlagsUsageConfig(std::move(usage_config));
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  absl::StatusOr<LogFormat> log_format = ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) {
    fprintf(stderr, "offkeyd: --log_format: %s\n",
            std::string(log_format.status().message()).c_str());
    return 2;
  }
  LogSlot() = std::make_unique<const OpLog>(*log_format);
  if (*log_format == LogFormat::kJson) gpr_set_log_function(&GrpcLog);
  // Before any secret is read (the PIN, keys made in development mode).
  if (!absl::GetFlag(FLAGS_allow_core_dumps)) {
    if (absl::Status hardened = DisableCoreDumps(); !hardened.ok()) {
      return Fail(hardened, "turning core dumps off (--allow_core_dumps skips it)");
    }
  } else {
    Log().Warning(
        "--allow_core_dumps is set: a core file or a debugger would expose the PIN and "
        "secrets in memory. Debugging only.");
  }
  // Debian's Abseil is built with mutex deadlock detection on (a debugging aid that
  // records every lock order, measurable on the handshake path); production builds of
  // Abseil have it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (rest.size() > 1) {
    Log().Error(absl::StrCat("unexpected argument '", rest[1], "' (see --help)"));
    return 2;
  }
  const bool dev = absl::GetFlag(FLAGS_dev);
  std::string config_file = absl::GetFlag(FLAGS_config);
  if (!absl::GetFlag(FLAGS_check_config).empty()) {
    if (dev || !config_file.empty()) {
      Log().Error("--check_config takes the file itself; drop --dev and --config");
      return 2;
    }
    return CheckConfig(absl::GetFlag(FLAGS_check_config));
  }
  if (!dev && config_file.empty()) {
    Log().Error("give --config=FILE, or --dev for development mode (see --help)");
    return 2;
  }
  // Signals are handled by a thread of ours (sigwait), not by async handlers.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // Reload (ReloadOnSighup), not the default: exit.
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  service::dev::DevState dev_state;
  if (dev) {
    absl::StatusOr<service::dev::DevState> state = service::dev::PrepareDevState(
        absl::GetFlag(FLAGS_dev_state_dir), absl::GetFlag(FLAGS_softhsm_module));
    if (!state.ok()) return Fail(state.status(), "development mode");
    dev_state = *state;
    if (config_file.empty()) config_file = dev_state.config_file;
  }
  absl::StatusOr<offkey::v1::ServerConfig> config = LoadConfig(config_file);
  if (!config.ok()) return Fail(config.status(), "configuration");
  if (config->insecure_plaintext_for_development()) {
    Log().Warning(
        "insecure_plaintext_for_development is set: no TLS, no client authentication. "
        "Never use this outside a local experiment.");
  }

  // The service manager's readiness protocol, when one asks for it.
  const service::SdNotifier notifier = service::SdNotifier::FromEnvironment();
  notifier.Notify("STATUS=opening the HSM token").IgnoreError();

  hsm::pkcs11::TokenOptions token;
  token.module_path = config->hsm().module_path();
  token.uri = config->hsm().token_uri();
  token.pin.file = config->hsm().pin_file();
  token.pin.env = config->hsm().pin_env();
  token.max_sessions = config->hsm().max_sessions();
  absl::StatusOr<std::unique_ptr<hsm::pkcs11::Pkcs11KeyStore>> store =
      hsm::pkcs11::Pkcs11KeyStore::Create(token);
  if (!store.ok()) return Fail(store.status(), "opening the HSM token");
  // What this module can do, so a refused key type is no surprise later.
  Log().Info((*store)->capabilities().Summary());
  if (dev) {
    absl::StatusOr<int> made = service::dev::EnsureDevKeys(dev_state, **store);
    if (!made.ok()) return Fail(made.status(), "development keys");
    if (*made > 0) {
      Log().Info(absl::StrCat("made ", *made, " development keys"),
                 {{"keys", absl::StrCat(*made)}});
    }
    absl::StatusOr<bool> made_set = service::dev::EnsureDevTicketKeySet(**store);
    if (!made_set.ok()) return Fail(made_set.status(), "development ticket-key set");
    if (*made_set) {
      Log().Info(absl::StrCat("made the development ticket-key set '",
                              service::dev::kDevTicketKeySet, "'"));
    }
  }

  service::ServerOptions options;
  options.log = [](const std::string& line) { Log().Info(line); };
  // Re-read on every reload pass: policy and trust bundles change without a restart.
  // The last configuration read is kept so that a SIGHUP can say what needs a restart.
  LastLoaded last_loaded;
  options.reload_config = [config_file, &last_loaded] {
    absl::StatusOr<offkey::v1::ServerConfig> next = LoadConfig(config_file);
    if (next.ok()) {
      offkey::MutexLock lock(&last_loaded.mu);
      last_loaded.config = *next;
    }
    return next;
  };
  absl::StatusOr<std::unique_ptr<service::OffkeyServer>> server =
      service::OffkeyServer::Start(*config, store->get(), options);
  if (!server.ok()) return Fail(server.status(), "starting the server");
  const int port = (*server)->port();
  const int admin_port = (*server)->admin_port();
  // The development state's port files first: once a --port_file appears, they exist.
  std::vector<std::pair<std::string, int>> port_files;
  if (dev) {
    // Where `offkeyctl --dev` looks for the ports actually bound.
    port_files.emplace_back(dev_state.dir + "/offkeyd.port", port);
    if (admin_port != 0) {
      port_files.emplace_back(dev_state.dir + "/admin.port", admin_port);
    }
  }
  port_files.insert(port_files.end(), {{absl::GetFlag(FLAGS_port_file), port},
                                       {absl::GetFlag(FLAGS_admin_port_file), admin_port},
                                       {absl::GetFlag(FLAGS_metrics_port_file),
                                        (*server)->metrics_port()}});
  for (const auto& [flag, bound] : port_files) {
    if (flag.empty()) continue;
    if (absl::Status written = WritePortFile(flag, bound); !written.ok()) {
      return Fail(written, "port file");
    }
  }
  if (dev) {
    // Text as it always was, for the person at the terminal; one record in JSON.
    const std::string help = service::dev::ConnectHelp(dev_state, port, admin_port);
    if (Log().format() == LogFormat::kText) {
      fputs(help.c_str(), stderr);
    } else {
      Log().Info(absl::StripTrailingAsciiWhitespace(help));
    }
  }
  Log().Info(absl::StrCat("serving on port ", port, "; admin plane on port ", admin_port,
                          " (0: off); metrics and health on http port ",
                          (*server)->metrics_port()),
             {{"port", absl::StrCat(port)},
              {"admin_port", absl::StrCat(admin_port)},
              {"metrics_port", absl::StrCat((*server)->metrics_port())}});

  // Ready once the key store is open and every listener serves.
  if (absl::Status notified =
          notifier.Notify(absl::StrCat("READY=1\nSTATUS=serving on port ", port));
      !notified.ok()) {
    Log().Warning(notified.ToString());
  }

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    ReloadOnSighup(**server, *config, last_loaded, notifier);
  }
  const char* signal_name = signal_number == SIGTERM ? "SIGTERM" : "SIGINT";
  Log().Info(absl::StrCat(signal_name, " received; finishing calls in flight"),
             {{"signal", signal_name}});
  notifier.Notify("STOPPING=1\nSTATUS=finishing calls in flight").IgnoreError();
  (*server)->Shutdown(absl::Seconds(10));
  (*server)->Wait();
  server->reset();
  if (dev) {  // Stale ports would send `offkeyctl --dev` to whatever binds them next.
    RemovePortFile(dev_state.dir + "/offkeyd.port", port);
    RemovePortFile(dev_state.dir + "/admin.port", admin_port);
  }
  Log().Info("stopped");
  return 0;
}

}  // namespace
}  // namespace offkey::service

int main(int argc, char** argv) { return offkey::service::Main(argc, argv); }
