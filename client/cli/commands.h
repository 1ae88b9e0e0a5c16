// offkeyctl's subcommands, each a function of its parsed arguments.
//
// Every command returns OK, a usage error (UsageError(), exit status 2: the command line
// is wrong and nothing was sent), or another error (exit status 1: offkeyd refused or
// could not be reached; the message says what to fix).
#ifndef OFFKEY_CLIENT_CLI_COMMANDS_H_
#define OFFKEY_CLIENT_CLI_COMMANDS_H_

#include <cstdint>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/cli/connection.h"
#include "client/cli/output.h"
#include "offkey/v1/key_admin.grpc.pb.h"
#include "offkey/v1/key_service.grpc.pb.h"

namespace offkey::client::cli {

absl::Status UsageError(absl::string_view message);
bool IsUsageError(const absl::Status& status);

// What every command works with.
class Context {
 public:
  Context(Connection connection, OutputFormat format, bool assume_yes, bool interactive,
          std::istream& in, std::ostream& out, std::ostream& err)
      : connection_(std::move(connection)),
        format_(format),
        assume_yes_(assume_yes),
        interactive_(interactive),
        in_(in),
        out_(out),
        err_(err) {}

  const Connection& connection() const { return connection_; }
  OutputFormat format() const { return format_; }
  bool interactive() const { return interactive_; }
  std::istream& in() { return in_; }
  std::ostream& out() { return out_; }
  std::ostream& err() { return err_; }

  // Stubs on channels opened on first use (see OpenChannel for the errors).
  absl::StatusOr<offkey::v1::KeyAdmin::Stub*> Admin();
  absl::StatusOr<offkey::v1::KeyService::Stub*> Data();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(const Endpoint& endpoint);

  // A client context whose deadline is the configured timeout from now.
  std::unique_ptr<grpc::ClientContext> CallContext() const;

  // The error for a failed call (see ExplainFailure).
  absl::Status Failed(const grpc::Status& status, const Endpoint& endpoint,
                      const std::string& what) const;

  // Asks before `action` ("destroy key 'web'"), stating `consequence`, unless --yes was
  // given. With `typed` non-empty the user must type it (the prompt calls it
  // `typed_what`) to agree, else "y"/"yes". A usage error when standard input is not a
  // terminal; ABORTED when the user declines.
  absl::Status Confirm(const std::string& action, const std::string& consequence,
                       const std::string& typed = "",
                       const std::string& typed_what = "key name");

 private:
  Connection connection_;
  OutputFormat format_;
  bool assume_yes_;
  bool interactive_;
  std::istream& in_;
  std::ostream& out_;
  std::ostream& err_;
  std::shared_ptr<grpc::Channel> admin_channel_, data_channel_;
  std::unique_ptr<offkey::v1::KeyAdmin::Stub> admin_;
  std::unique_ptr<offkey::v1::KeyService::Stub> data_;
};

struct CreateArgs {
  std::string name;
  std::string algorithm;
  std::string usage;
  std::vector<std::string> labels;
};
struct ImportArgs {
  std::string name;
  std::string file;
  std::string passphrase_file;
  std::string passphrase_env;
  std::string usage;
  std::vector<std::string> labels;
};
struct ListArgs {
  std::vector<std::string> labels;
  std::string state;
  std::string algorithm;
};
struct UpdateArgs {
  std::string key;
  std::vector<std::string> labels;
  std::vector<std::string> remove_labels;
  bool replace_labels = false;
  std::string usage;
};
struct ScheduleArgs {
  std::string key;
  std::string window;
  bool force = false;  // Allows a window shorter than 24 hours.
};
struct DestroyArgs {
  std::string key;
  bool force = false;
};
struct CsrArgs {
  std::string key;
  std::string subject;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  std::vector<std::string> uris;
  std::string scheme;
  std::string out;
  bool overwrite = false;
};
struct AttachArgs {
  std::string key;
  std::string chain_file;
  bool force = false;
};
struct SignArgs {
  std::string key;
  std::string scheme;
  std::string in;
  std::string tls13_transcript_hash;
  std::string tls_version;
  std::string out;
  bool overwrite = false;
};
struct RefArgs {
  std::string key;
  std::string service;
  std::string out;
  std::string chain_out;  // The certificate chain as PEM, for the server's config.
  bool uri = false;       // The offkey: URI form instead of PEM.
  bool overwrite = false;
};

struct TicketKeySetCreateArgs {
  std::string name;
  std::string rotation_period;  // Empty: the service's default (1h).
};
struct TicketKeySetDestroyArgs {
  std::string name;
  bool force = false;
};
// The ticket-key writer (ticket_key_writer.cc).
struct TicketKeysArgs {
  std::string set;
  std::string format;  // "nginx" or "haproxy".
  std::string out_dir;
  bool watch = false;
  std::string reload_command;    // Run with /bin/sh -c after the files change.
  std::string haproxy_socket;    // haproxy's admin socket, for `set ssl tls-key`.
  std::string haproxy_keys_ref;  // The file as haproxy names it; default the written one.
};

absl::Status Health(Context& ctx);
absl::Status CreateKey(Context& ctx, const CreateArgs& args);
absl::Status ImportKey(Context& ctx, const ImportArgs& args);
absl::Status ListKeys(Context& ctx, const ListArgs& args);
absl::Status ShowKey(Context& ctx, const std::string& key);
absl::Status UpdateKey(Context& ctx, const UpdateArgs& args);
absl::Status EnableKey(Context& ctx, const std::string& key);
absl::Status DisableKey(Context& ctx, const std::string& key);
absl::Status ScheduleDestruction(Context& ctx, const ScheduleArgs& args);
absl::Status CancelDestruction(Context& ctx, const std::string& key);
absl::Status DestroyKey(Context& ctx, const DestroyArgs& args);
absl::Status CreateCsr(Context& ctx, const CsrArgs& args);
absl::Status AttachCertificate(Context& ctx, const AttachArgs& args);
absl::Status Sign(Context& ctx, const SignArgs& args);
absl::Status WriteReference(Context& ctx, const RefArgs& args);

absl::Status CreateTicketKeySet(Context& ctx, const TicketKeySetCreateArgs& args);
absl::Status ListTicketKeySets(Context& ctx);
absl::Status ShowTicketKeySet(Context& ctx, const std::string& name);
absl::Status DestroyTicketKeySet(Context& ctx, const TicketKeySetDestroyArgs& args);

// Writes the session-ticket keys of a set as nginx or haproxy read them (see
// ticket_key_files.h), once, or with `watch` until SIGTERM or SIGINT, rewriting them
// after each rotation, running the reload command and feeding haproxy's admin socket.
// Transient failures (offkeyd unreachable) are retried while watching; a refusal
// (PERMISSION_DENIED: no GET_TICKET_KEYS grant on the set) ends it. Never prints key
// bytes. In watch mode SIGTERM and SIGINT are blocked in the whole process.
absl::Status WriteTicketKeys(Context& ctx, const TicketKeysArgs& args);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_COMMANDS_H_
