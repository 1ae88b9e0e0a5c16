#include "client/cli/commands.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/openssl_util.h"
#include "base/pem.h"
#include "base/secret_bytes.h"
#include "base/status_macros.h"
#include "client/cli/diagnose.h"
#include "client/cli/names.h"
#include "client/key_reference.h"
#include "google/protobuf/struct.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace offkey::client::cli {
namespace {

using offkey::v1::KeyInfo;

constexpr char kUsagePayload[] = "type.offkey.dev/offkeyctl.usage";
constexpr size_t kMaxInputBytes =
    4 << 20;  // Certificates, messages, keys: all far smaller.

// Reads a file, or standard input for "-". Usage error when it cannot.
absl::StatusOr<std::string> ReadInput(Context& ctx, const std::string& path,
                                      absl::string_view what) {
  std::stringstream s;
  if (path == "-") {
    s << ctx.in().rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return UsageError(
          absl::StrCat("cannot read the ", what, " '", path, "': ", strerror(errno)));
    }
    s << in.rdbuf();
  }
  std::string data = s.str();
  if (data.size() > kMaxInputBytes) {
    return UsageError(absl::StrCat("the ", what, " '", path, "' is larger than 4 MiB"));
  }
  return data;
}

// Writes `data` to `path` (standard output when empty). Never replaces an existing file
// unless `overwrite`: the target could be the private key being migrated away from.
absl::Status WriteOutput(Context& ctx, const std::string& path, absl::string_view data,
                         bool overwrite) {
  if (path.empty() || path == "-") {
    ctx.out() << data;
    return absl::OkStatus();
  }
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
  const int fd = open(path.c_str(), flags, 0644);
  if (fd < 0) {
    if (errno == EEXIST) {
      return UsageError(
          absl::StrCat("'", path, "' exists; pass --overwrite to replace it"));
    }
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write '", path, "': ", strerror(errno)));
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string error = strerror(errno);
      close(fd);
      return absl::InternalError(absl::StrCat("writing '", path, "': ", error));
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    return absl::InternalError(absl::StrCat("writing '", path, "': ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<offkey::v1::KeyRef> KeyArg(const std::string& text) {
  absl::StatusOr<offkey::v1::KeyRef> ref = ParseKeyRef(text);
  if (!ref.ok()) return UsageError(ref.status().message());
  return ref;
}

// Wraps a parse error from names.h as a usage error.
template <typename T>
absl::StatusOr<T> Arg(absl::StatusOr<T> parsed) {
  if (!parsed.ok()) return UsageError(parsed.status().message());
  return parsed;
}

absl::Status AddLabels(const std::vector<std::string>& labels,
                       google::protobuf::Map<std::string, std::string>* out) {
  for (const std::string& text : labels) {
    OFFKEY_ASSIGN_OR_RETURN(auto label, Arg(ParseLabel(text)));
    (*out)[label.first] = label.second;
  }
  return absl::OkStatus();
}

// Prints a changed key: its table row, or the response as JSON.
void PrintKey(Context& ctx, const google::protobuf::Message& response,
              const KeyInfo& key) {
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(response);
  } else if (ctx.format() == OutputFormat::kName) {
    ctx.out() << key.name() << "\n";
  } else {
    PrintKeyTable({&key}, absl::Now(), ctx.out());
  }
}

// Runs one KeyAdmin call: opens the channel, sets the deadline, explains a failure.
template <typename Request, typename Response>
absl::Status AdminCall(Context& ctx, const std::string& what,
                       grpc::Status (offkey::v1::KeyAdmin::Stub::*method)(
                           grpc::ClientContext*, const Request&, Response*),
                       const Request& request, Response* response) {
  OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyAdmin::Stub * stub, ctx.Admin());
  std::unique_ptr<grpc::ClientContext> call = ctx.CallContext();
  grpc::Status status = (stub->*method)(call.get(), request, response);
  if (!status.ok()) return ctx.Failed(status, ctx.connection().admin, what);
  return absl::OkStatus();
}

// Reads a passphrase without echo from the terminal.
absl::StatusOr<std::string> PromptPassphrase(Context& ctx, const std::string& file) {
  // Echo goes off before the prompt shows, so nothing typed after it is ever echoed.
  termios old_mode{};
  const bool tty = tcgetattr(STDIN_FILENO, &old_mode) == 0;
  if (tty) {
    termios quiet = old_mode;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);  // Not TCSAFLUSH: keep typed-ahead input.
  }
  ctx.err() << "Passphrase for " << file << ": " << std::flush;
  std::string passphrase;
  std::getline(ctx.in(), passphrase);
  if (tty) tcsetattr(STDIN_FILENO, TCSANOW, &old_mode);
  ctx.err() << "\n";
  return passphrase;
}

// True when `key` is PEM with an ENCRYPTED PRIVATE KEY block: it needs a passphrase.
// (Encrypted DER is not recognised here; the server says so.)
bool IsEncryptedPem(const SecretBytes& key) {
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPem(key.view());
  if (!blocks.ok()) return false;
  return std::any_of(blocks->begin(), blocks->end(), [](const PemBlock& block) {
    return block.type == PemType::kEncryptedPrivateKey;
  });
}

}  // namespace

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

// --- Context
// -----------------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<grpc::Channel>> Context::Channel(
    const Endpoint& endpoint) {
  std::shared_ptr<grpc::Channel>& channel =
      &endpoint == &connection_.admin ? admin_channel_ : data_channel_;
  if (channel == nullptr) {
    OFFKEY_ASSIGN_OR_RETURN(channel, OpenChannel(endpoint));
  }
  return channel;
}

absl::StatusOr<offkey::v1::KeyAdmin::Stub*> Context::Admin() {
  if (admin_ == nullptr) {
    OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                            Channel(connection_.admin));
    admin_ = offkey::v1::KeyAdmin::NewStub(channel);
  }
  return admin_.get();
}

absl::StatusOr<offkey::v1::KeyService::Stub*> Context::Data() {
  if (data_ == nullptr) {
    OFFKEY_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                            Channel(connection_.data));
    data_ = offkey::v1::KeyService::NewStub(channel);
  }
  return data_.get();
}

std::unique_ptr<grpc::ClientContext> Context::CallContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + connection_.timeout));
  return context;
}

absl::Status Context::Failed(const grpc::Status& status, const Endpoint& endpoint,
                             const std::string& what) const {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      ExplainFailure(status, endpoint, what, connection_.timeout));
}

absl::Status Context::Confirm(const std::string& action, const std::string& consequence,
                              const std::string& typed, const std::string& typed_what) {
  if (assume_yes_) return absl::OkStatus();
  if (!interactive_) {
    return UsageError(absl::StrCat(
        action, " needs confirmation and standard input is not a terminal: pass --yes"));
  }
  err_ << "About to " << action << ". " << consequence << "\n";
  if (typed.empty()) {
    err_ << "Continue? [y/N] " << std::flush;
  } else {
    err_ << "Type the " << typed_what << " (" << typed << ") to confirm: " << std::flush;
  }
  std::string answer;
  std::getline(in_, answer);
  answer = std::string(absl::StripAsciiWhitespace(answer));
  const std::string lower = absl::AsciiStrToLower(answer);
  const bool agreed = typed.empty() ? (lower == "y" || lower == "yes") : answer == typed;
  if (!agreed) {
    return absl::AbortedError(absl::StrCat("not confirmed; ", action, " skipped"));
  }
  return absl::OkStatus();
}

// --- health
// ------------------------------------------------------------------------------

absl::Status Health(Context& ctx) {
  struct Check {
    const Endpoint* endpoint;
    const char* service;
  };
  std::vector<Check> checks;
  if (!ctx.connection().data.target.value.empty()) {
    checks.push_back({&ctx.connection().data, "offkey.v1.KeyService"});
  }
  if (!ctx.connection().admin.target.value.empty()) {
    checks.push_back({&ctx.connection().admin, "offkey.v1.KeyAdmin"});
  }
  if (checks.empty()) {
    return UsageError(
        "no endpoint to check: give --endpoint and/or --admin-endpoint, or --dev");
  }
  Table table({"PLANE", "ENDPOINT", "STATUS", "DETAIL"});
  google::protobuf::Struct json;
  bool all_serving = true;
  for (const Check& check : checks) {
    std::string status_text, detail;
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ctx.Channel(*check.endpoint);
    if (!channel.ok()) {
      status_text = "ERROR";
      detail = std::string(channel.status().message());
    } else {
      auto stub = grpc::health::v1::Health::NewStub(*channel);
      grpc::health::v1::HealthCheckRequest request;
      request.set_service(check.service);
      grpc::health::v1::HealthCheckResponse response;
      std::unique_ptr<grpc::ClientContext> call = ctx.CallContext();
      grpc::Status status = stub->Check(call.get(), request, &response);
      if (status.ok()) {
        status_text =
            grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
        if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
          detail = "offkeyd is up but not serving (HSM unreachable, or draining)";
        }
      } else {
        status_text = "UNREACHABLE";
        detail = ExplainFailure(status, *check.endpoint, "health check",
                                ctx.connection().timeout);
      }
    }
    all_serving = all_serving && status_text == "SERVING";
    table.Add({check.endpoint->plane, check.endpoint->target.value, status_text,
               detail.empty() ? "-" : detail});
    google::protobuf::Struct entry;
    (*entry.mutable_fields())["endpoint"].set_string_value(check.endpoint->target.value);
    (*entry.mutable_fields())["status"].set_string_value(status_text);
    (*entry.mutable_fields())["detail"].set_string_value(detail);
    *(*json.mutable_fields())[check.endpoint->plane].mutable_struct_value() = entry;
  }
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(json);
  } else {
    table.Print(ctx.out());
  }
  if (!all_serving) return absl::UnavailableError("offkeyd is not healthy (see above)");
  return absl::OkStatus();
}

// --- create / import
// ---------------------------------------------------------------------

absl::Status CreateKey(Context& ctx, const CreateArgs& args) {
  offkey::v1::CreateKeyRequest request;
  request.set_name(args.name);
  OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyAlgorithm algorithm,
                          Arg(ParseAlgorithm(args.algorithm)));
  request.set_algorithm(algorithm);
  if (!args.usage.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyUsage usage, Arg(ParseUsage(args.usage)));
    request.set_usage(usage);
  }
  OFFKEY_RETURN_IF_ERROR(AddLabels(args.labels, request.mutable_labels()));
  offkey::v1::CreateKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("create key '", args.name, "'"),
                                   &offkey::v1::KeyAdmin::Stub::CreateKey, request,
                                   &response));
  PrintKey(ctx, response, response.key());
  return absl::OkStatus();
}

absl::Status ImportKey(Context& ctx, const ImportArgs& args) {
  if (!args.passphrase_file.empty() && !args.passphrase_env.empty()) {
    return UsageError("give --passphrase-file or --passphrase-env, not both");
  }
  offkey::v1::ImportKeyRequest request;
  request.set_name(args.name);
  if (!args.usage.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyUsage usage, Arg(ParseUsage(args.usage)));
    request.set_usage(usage);
  }
  OFFKEY_RETURN_IF_ERROR(AddLabels(args.labels, request.mutable_labels()));

  // The key and passphrase are secrets: wiping buffers here, wiped request fields after.
  absl::StatusOr<std::string> read = ReadInput(ctx, args.file, "private key file");
  if (!read.ok()) return read.status();
  SecretBytes key(*read);
  WipeString(&*read);
  SecretBytes passphrase;
  if (!args.passphrase_file.empty()) {
    absl::StatusOr<std::string> text =
        ReadInput(ctx, args.passphrase_file, "passphrase file");
    if (!text.ok()) return text.status();
    // One line: a trailing newline is not part of the passphrase.
    passphrase = SecretBytes(absl::StripSuffix(absl::StripSuffix(*text, "\n"), "\r"));
    WipeString(&*text);
  } else if (!args.passphrase_env.empty()) {
    const char* value = getenv(args.passphrase_env.c_str());
    if (value == nullptr) {
      return UsageError(
          absl::StrCat("$", args.passphrase_env, " (--passphrase-env) is not set"));
    }
    passphrase = SecretBytes(absl::string_view(value));
  } else if (IsEncryptedPem(key)) {
    if (!ctx.interactive() || args.file == "-") {
      return UsageError(absl::StrCat("'", args.file,
                                     "' is encrypted: give --passphrase-file FILE or "
                                     "--passphrase-env VARIABLE"));
    }
    absl::StatusOr<std::string> typed = PromptPassphrase(ctx, args.file);
    if (!typed.ok()) return typed.status();
    passphrase = SecretBytes(*typed);
    WipeString(&*typed);
  }
  request.set_private_key(std::string(key.view()));
  request.set_passphrase(std::string(passphrase.view()));
  offkey::v1::ImportKeyResponse response;
  absl::Status called =
      AdminCall(ctx, absl::StrCat("import key '", args.name, "'"),
                &offkey::v1::KeyAdmin::Stub::ImportKey, request, &response);
  WipeString(request.mutable_private_key());
  WipeString(request.mutable_passphrase());
  OFFKEY_RETURN_IF_ERROR(called);
  PrintKey(ctx, response, response.key());
  return absl::OkStatus();
}

// --- list / show
// -------------------------------------------------------------------------

absl::Status ListKeys(Context& ctx, const ListArgs& args) {
  offkey::v1::AdminListKeysRequest request;
  OFFKEY_RETURN_IF_ERROR(AddLabels(args.labels, request.mutable_label_selector()));
  if (!args.state.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyState state, Arg(ParseState(args.state)));
    request.set_state(state);
  }
  if (!args.algorithm.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyAlgorithm algorithm,
                            Arg(ParseAlgorithm(args.algorithm)));
    request.set_algorithm(algorithm);
  }
  offkey::v1::AdminListKeysResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(
      ctx, "list keys", &offkey::v1::KeyAdmin::Stub::ListKeys, request, &response));
  switch (ctx.format()) {
    case OutputFormat::kJson:
      ctx.out() << Json(response);
      break;
    case OutputFormat::kName:
      for (const KeyInfo& key : response.keys()) ctx.out() << key.name() << "\n";
      break;
    case OutputFormat::kTable: {
      std::vector<const KeyInfo*> keys;
      for (const KeyInfo& key : response.keys()) keys.push_back(&key);
      PrintKeyTable(keys, absl::Now(), ctx.out());
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status ShowKey(Context& ctx, const std::string& key) {
  offkey::v1::GetKeyRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(key));
  offkey::v1::GetKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("show key '", key, "'"),
                                   &offkey::v1::KeyAdmin::Stub::GetKey, request,
                                   &response));
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(response);
  } else if (ctx.format() == OutputFormat::kName) {
    ctx.out() << response.key().info().name() << "\n";
  } else {
    PrintKeyDetails(response.key(), absl::Now(), ctx.out());
  }
  return absl::OkStatus();
}

// --- update / enable / disable
// -----------------------------------------------------------

absl::Status UpdateKey(Context& ctx, const UpdateArgs& args) {
  if (args.labels.empty() && args.remove_labels.empty() && !args.replace_labels &&
      args.usage.empty()) {
    return UsageError(
        "nothing to change: give --label, --remove-label, --replace-labels or --usage");
  }
  offkey::v1::UpdateKeyRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  OFFKEY_RETURN_IF_ERROR(AddLabels(args.labels, request.mutable_labels()));
  request.set_replace_labels(args.replace_labels);
  for (const std::string& label : args.remove_labels) request.add_remove_labels(label);
  if (!args.usage.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyUsage usage, Arg(ParseUsage(args.usage)));
    request.set_usage(usage);
  }
  offkey::v1::UpdateKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("update key '", args.key, "'"),
                                   &offkey::v1::KeyAdmin::Stub::UpdateKey, request,
                                   &response));
  PrintKey(ctx, response, response.key());
  return absl::OkStatus();
}

absl::Status EnableKey(Context& ctx, const std::string& key) {
  offkey::v1::EnableKeyRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(key));
  offkey::v1::EnableKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("enable key '", key, "'"),
                                   &offkey::v1::KeyAdmin::Stub::EnableKey, request,
                                   &response));
  PrintKey(ctx, response, response.key());
  return absl::OkStatus();
}

absl::Status DisableKey(Context& ctx, const std::string& key) {
  offkey::v1::DisableKeyRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(key));
  OFFKEY_RETURN_IF_ERROR(ctx.Confirm(
      absl::StrCat("disable key '", key, "'"),
      "TLS terminators using it will fail their handshakes until it is enabled."));
  offkey::v1::DisableKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("disable key '", key, "'"),
                                   &offkey::v1::KeyAdmin::Stub::DisableKey, request,
                                   &response));
  PrintKey(ctx, response, response.key());
  return absl::OkStatus();
}

// --- destruction
// -------------------------------------------------------------------------

absl::Status ScheduleDestruction(Context& ctx, const ScheduleArgs& args) {
  offkey::v1::ScheduleKeyDestructionRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  int64_t window = 0;  // The service's default, 7 days.
  if (!args.window.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(window, Arg(ParseDurationSeconds(args.window)));
  }
  // The service refuses it too; saying so here sends nothing.
  constexpr int64_t kMinWindow = 24 * 3600;
  if (window != 0 && window < kMinWindow && !args.force) {
    return UsageError(absl::StrCat("--window ", args.window,
                                   " is shorter than 24h, too little time to notice a "
                                   "mistake; add --force to schedule it anyway"));
  }
  request.set_pending_window_seconds(window);
  request.set_force(args.force);
  OFFKEY_RETURN_IF_ERROR(ctx.Confirm(
      absl::StrCat("schedule key '", args.key, "' for destruction in ",
                   window == 0 ? "7d" : DurationText(window)),
      "Terminators are refused the key at once; it is destroyed for good when the window "
      "ends unless you cancel (offkeyctl cancel-destroy)."));
  offkey::v1::ScheduleKeyDestructionResponse response;
  OFFKEY_RETURN_IF_ERROR(
      AdminCall(ctx, absl::StrCat("schedule destruction of key '", args.key, "'"),
                &offkey::v1::KeyAdmin::Stub::ScheduleKeyDestruction, request, &response));
  PrintKey(ctx, response, response.key());
  if (ctx.format() == OutputFormat::kTable) {
    ctx.err() << "Key '" << response.key().name() << "' will be destroyed at "
              << TimeText(response.key().destroy_time())
              << "; until then `offkeyctl cancel-destroy " << response.key().name()
              << "` keeps it.\n";
  }
  return absl::OkStatus();
}

absl::Status CancelDestruction(Context& ctx, const std::string& key) {
  offkey::v1::CancelKeyDestructionRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(key));
  offkey::v1::CancelKeyDestructionResponse response;
  OFFKEY_RETURN_IF_ERROR(
      AdminCall(ctx, absl::StrCat("cancel destruction of key '", key, "'"),
                &offkey::v1::KeyAdmin::Stub::CancelKeyDestruction, request, &response));
  PrintKey(ctx, response, response.key());
  if (ctx.format() == OutputFormat::kTable) {
    ctx.err() << "The key is kept, DISABLED; `offkeyctl enable " << response.key().name()
              << "` puts it back in service.\n";
  }
  return absl::OkStatus();
}

absl::Status DestroyKey(Context& ctx, const DestroyArgs& args) {
  offkey::v1::DestroyKeyRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  if (!args.force) {
    return UsageError(absl::StrCat(
        "destroy is immediate and cannot be undone: pass --force to mean it, or use "
        "`offkeyctl schedule-destroy ",
        args.key, "` for a window in which to change your mind"));
  }
  OFFKEY_RETURN_IF_ERROR(ctx.Confirm(
      absl::StrCat("destroy key '", args.key, "' now"),
      "The private key, its metadata and its certificates are deleted from the HSM; this "
      "cannot be undone.",
      args.key));
  request.set_force(true);
  offkey::v1::DestroyKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("destroy key '", args.key, "'"),
                                   &offkey::v1::KeyAdmin::Stub::DestroyKey, request,
                                   &response));
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(response);
  } else {
    ctx.out() << "destroyed key '" << response.name() << "' (key id "
              << Hex(response.key_id()) << ")\n";
  }
  return absl::OkStatus();
}

// --- csr / attach-cert
// -------------------------------------------------------------------

absl::Status CreateCsr(Context& ctx, const CsrArgs& args) {
  offkey::v1::CreateCsrRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  if (args.subject.empty() && args.dns_names.empty() && args.ip_addresses.empty() &&
      args.uris.empty()) {
    return UsageError("a CSR needs --subject and/or at least one --dns, --ip or --uri");
  }
  request.set_subject(args.subject);
  for (const std::string& n : args.dns_names) request.add_dns_names(n);
  for (const std::string& n : args.ip_addresses) request.add_ip_addresses(n);
  for (const std::string& n : args.uris) request.add_uris(n);
  if (!args.scheme.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::SignatureScheme scheme,
                            Arg(ParseScheme(args.scheme)));
    request.set_scheme(scheme);
  }
  offkey::v1::CreateCsrResponse response;
  OFFKEY_RETURN_IF_ERROR(
      AdminCall(ctx, absl::StrCat("make a CSR for key '", args.key, "'"),
                &offkey::v1::KeyAdmin::Stub::CreateCsr, request, &response));
  if (ctx.format() == OutputFormat::kJson) {
    return WriteOutput(ctx, args.out, Json(response), args.overwrite);
  }
  return WriteOutput(ctx, args.out, response.csr_pem(), args.overwrite);
}

absl::Status AttachCertificate(Context& ctx, const AttachArgs& args) {
  offkey::v1::AttachCertificateRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  OFFKEY_ASSIGN_OR_RETURN(std::string chain,
                          ReadInput(ctx, args.chain_file, "certificate chain file"));
  if (LooksLikePem(chain)) {
    request.set_chain_pem(chain);
  } else {
    request.mutable_chain_der()->add_certificates(chain);  // One DER certificate.
  }
  request.set_force(args.force);
  offkey::v1::AttachCertificateResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(
      ctx, absl::StrCat("attach '", args.chain_file, "' to key '", args.key, "'"),
      &offkey::v1::KeyAdmin::Stub::AttachCertificate, request, &response));
  PrintKey(ctx, response, response.key());
  return absl::OkStatus();
}

// --- sign / ref
// --------------------------------------------------------------------------

absl::Status Sign(Context& ctx, const SignArgs& args) {
  offkey::v1::SignRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  if (args.in.empty() == args.tls13_transcript_hash.empty()) {
    return UsageError(
        "give the message with --in FILE, or --tls13-transcript-hash HEX to "
        "sign a TLS 1.3 server CertificateVerify input");
  }
  offkey::v1::TlsVersion version = offkey::v1::TLS_1_3;
  if (!args.tls_version.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(version, Arg(ParseTlsVersion(args.tls_version)));
  }
  request.mutable_context()->set_version(version);
  if (!args.in.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(*request.mutable_message(),
                            ReadInput(ctx, args.in, "message"));
  } else {
    absl::StatusOr<std::string> parsed =
        ParseHex("--tls13-transcript-hash", args.tls13_transcript_hash);
    const std::string hash = parsed.ok() ? *parsed : "";
    if (hash.size() != 32 && hash.size() != 48) {
      return UsageError(
          "--tls13-transcript-hash must be 32 or 48 bytes of hex (a SHA-256 "
          "or SHA-384 transcript hash)");
    }
    if (version != offkey::v1::TLS_1_3) {
      return UsageError(
          "--tls13-transcript-hash makes a TLS 1.3 input; drop --tls-version");
    }
    // RFC 8446 4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
    request.set_message(absl::StrCat(std::string(64, ' '),
                                     "TLS 1.3, server CertificateVerify",
                                     std::string(1, '\0'), hash));
  }
  OFFKEY_ASSIGN_OR_RETURN(offkey::v1::KeyService::Stub * stub, ctx.Data());
  if (!args.scheme.empty()) {
    OFFKEY_ASSIGN_OR_RETURN(offkey::v1::SignatureScheme scheme,
                            Arg(ParseScheme(args.scheme)));
    request.set_scheme(scheme);
  } else {
    // The key's preferred scheme for this TLS version.
    offkey::v1::GetCertificateRequest get;
    *get.mutable_key() = request.key();
    get.mutable_context()->set_version(version);
    offkey::v1::GetCertificateResponse got;
    std::unique_ptr<grpc::ClientContext> call = ctx.CallContext();
    grpc::Status status = stub->GetCertificate(call.get(), get, &got);
    if (!status.ok()) {
      return ctx.Failed(
          status, ctx.connection().data,
          absl::StrCat("look up the schemes of key '", args.key, "' (or give --scheme)"));
    }
    if (got.schemes().empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "key '", args.key, "' has no signature scheme allowed in this TLS version"));
    }
    request.set_scheme(static_cast<offkey::v1::SignatureScheme>(got.schemes(0)));
  }
  offkey::v1::SignResponse response;
  std::unique_ptr<grpc::ClientContext> call = ctx.CallContext();
  grpc::Status status = stub->Sign(call.get(), request, &response);
  if (!status.ok()) {
    return ctx.Failed(status, ctx.connection().data,
                      absl::StrCat("sign with key '", args.key, "' (",
                                   SchemeName(request.scheme()), ")"));
  }
  if (ctx.format() == OutputFormat::kJson) {
    return WriteOutput(ctx, args.out, Json(response), args.overwrite);
  }
  if (!args.out.empty()) {
    OFFKEY_RETURN_IF_ERROR(
        WriteOutput(ctx, args.out, response.signature(), args.overwrite));
    ctx.err() << "wrote a " << response.signature().size() << "-byte "
              << SchemeName(request.scheme()) << " signature to " << args.out << "\n";
    return absl::OkStatus();
  }
  ctx.out() << Hex(response.signature()) << "\n";
  return absl::OkStatus();
}

absl::Status WriteReference(Context& ctx, const RefArgs& args) {
  offkey::v1::GetKeyRequest request;
  OFFKEY_ASSIGN_OR_RETURN(*request.mutable_key(), KeyArg(args.key));
  offkey::v1::GetKeyResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("read key '", args.key, "'"),
                                   &offkey::v1::KeyAdmin::Stub::GetKey, request,
                                   &response));
  const KeyInfo& key = response.key().info();
  offkey::v1::KeyReference ref;
  ref.set_version(client::kKeyReferenceVersion);
  ref.set_key_id(key.key_id());
  ref.set_key_name(key.name());
  ref.set_public_key_spki(key.public_key_spki());
  ref.set_algorithm(key.algorithm());
  ref.set_service(args.service.empty() ? ctx.connection().data.target.value
                                       : args.service);
  OFFKEY_ASSIGN_OR_RETURN(std::string pem, client::EncodeKeyReference(ref));
  if (ctx.format() == OutputFormat::kJson) {
    return WriteOutput(ctx, args.out, Json(ref), args.overwrite);
  }
  if (args.uri) {
    // The same reference for the provider's "offkey:" store loader.
    pem =
        absl::StrCat("offkey:", absl::WebSafeBase64Escape(ref.SerializeAsString()), "\n");
  }
  if (!args.chain_out.empty()) {
    // Checked first, so a missing chain writes neither file.
    if (response.key().certificate_chain_size() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("'", key.name(),
                       "' has no certificate chain; attach one with `offkeyctl "
                       "attach-cert` or leave out --chain-out"));
    }
  }
  OFFKEY_RETURN_IF_ERROR(WriteOutput(ctx, args.out, pem, args.overwrite));
  if (!args.out.empty()) {
    ctx.err()
        << "wrote the key reference for '" << key.name() << "' to " << args.out
        << " (no secret in it; the offkey OpenSSL provider loads it as a private key)\n";
  }
  if (!args.chain_out.empty()) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    for (const std::string& der : response.key().certificate_chain()) {
      PEM_write_bio(bio.get(), PEM_STRING_X509, "",
                    reinterpret_cast<const unsigned char*>(der.data()),
                    static_cast<long>(der.size()));  // NOLINT(runtime/int)
    }
    OFFKEY_RETURN_IF_ERROR(
        WriteOutput(ctx, args.chain_out, BioContents(bio.get()), args.overwrite));
    ctx.err() << "wrote the certificate chain of '" << key.name() << "' to "
              << args.chain_out << "\n";
  }
  return absl::OkStatus();
}

// --- ticket-key sets
// ---------------------------------------------------------------------

namespace {

void PrintTicketKeySet(Context& ctx, const google::protobuf::Message& response,
                       const offkey::v1::TicketKeySetInfo& set) {
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(response);
  } else if (ctx.format() == OutputFormat::kName) {
    ctx.out() << set.name() << "\n";
  } else {
    PrintTicketKeySetTable({&set}, absl::Now(), ctx.out());
  }
}

}  // namespace

absl::Status CreateTicketKeySet(Context& ctx, const TicketKeySetCreateArgs& args) {
  offkey::v1::CreateTicketKeySetRequest request;
  request.set_name(args.name);
  if (!args.rotation_period.empty()) {
    absl::StatusOr<int64_t> period_or = ParseDurationSeconds(args.rotation_period);
    if (!period_or.ok()) {
      return UsageError(
          absl::StrCat("--rotation-period '", args.rotation_period,
                       "' must be a whole number of d, h, m or s, e.g. 1h, 90m, "
                       "1h30m or 600s"));
    }
    const int64_t period = *period_or;
    // The service's limits (key_admin.proto); saying so here sends nothing.
    constexpr int64_t kMinPeriod = 10, kMaxPeriod = 7 * 86400;
    if (period < kMinPeriod || period > kMaxPeriod) {
      return UsageError(absl::StrCat("--rotation-period ", args.rotation_period,
                                     " is outside 10s..7d"));
    }
    request.set_rotation_period_seconds(period);
  }
  offkey::v1::CreateTicketKeySetResponse response;
  OFFKEY_RETURN_IF_ERROR(
      AdminCall(ctx, absl::StrCat("create ticket-key set '", args.name, "'"),
                &offkey::v1::KeyAdmin::Stub::CreateTicketKeySet, request, &response));
  PrintTicketKeySet(ctx, response, response.ticket_key_set());
  return absl::OkStatus();
}

absl::Status ListTicketKeySets(Context& ctx) {
  offkey::v1::ListTicketKeySetsRequest request;
  offkey::v1::ListTicketKeySetsResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, "list ticket-key sets",
                                   &offkey::v1::KeyAdmin::Stub::ListTicketKeySets,
                                   request, &response));
  switch (ctx.format()) {
    case OutputFormat::kJson:
      ctx.out() << Json(response);
      break;
    case OutputFormat::kName:
      for (const auto& set : response.ticket_key_sets()) ctx.out() << set.name() << "\n";
      break;
    case OutputFormat::kTable: {
      std::vector<const offkey::v1::TicketKeySetInfo*> sets;
      for (const auto& set : response.ticket_key_sets()) sets.push_back(&set);
      PrintTicketKeySetTable(sets, absl::Now(), ctx.out());
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status ShowTicketKeySet(Context& ctx, const std::string& name) {
  offkey::v1::GetTicketKeySetRequest request;
  request.set_name(name);
  offkey::v1::GetTicketKeySetResponse response;
  OFFKEY_RETURN_IF_ERROR(AdminCall(ctx, absl::StrCat("show ticket-key set '", name, "'"),
                                   &offkey::v1::KeyAdmin::Stub::GetTicketKeySet, request,
                                   &response));
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(response);
  } else if (ctx.format() == OutputFormat::kName) {
    ctx.out() << response.ticket_key_set().name() << "\n";
  } else {
    PrintTicketKeySetDetails(response.ticket_key_set(), absl::Now(), ctx.out());
  }
  return absl::OkStatus();
}

absl::Status DestroyTicketKeySet(Context& ctx, const TicketKeySetDestroyArgs& args) {
  if (!args.force) {
    return UsageError(
        absl::StrCat("destroying ticket-key set '", args.name,
                     "' is immediate and cannot be undone: pass --force to mean it"));
  }
  OFFKEY_RETURN_IF_ERROR(ctx.Confirm(
      absl::StrCat("destroy ticket-key set '", args.name, "' now"),
      "Its root secret is deleted from the HSM: no session ticket it issued resumes "
      "again, and terminators' ticket-key writers for it are refused.",
      args.name, "set name"));
  offkey::v1::DestroyTicketKeySetRequest request;
  request.set_name(args.name);
  request.set_force(true);
  offkey::v1::DestroyTicketKeySetResponse response;
  OFFKEY_RETURN_IF_ERROR(
      AdminCall(ctx, absl::StrCat("destroy ticket-key set '", args.name, "'"),
                &offkey::v1::KeyAdmin::Stub::DestroyTicketKeySet, request, &response));
  if (ctx.format() == OutputFormat::kJson) {
    ctx.out() << Json(response);
  } else {
    ctx.out() << "destroyed ticket-key set '" << response.name() << "'\n";
  }
  return absl::OkStatus();
}

}  // namespace offkey::client::cli
