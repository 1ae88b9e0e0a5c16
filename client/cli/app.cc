#include "client/cli/app.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/build_info.h"
#include "client/cli/commands.h"
#include "client/cli/completion.h"
#include "client/cli/names.h"

namespace offkey::client::cli {
namespace {

constexpr char kDescription[] =
    "offkeyctl: manage the keys behind offkeyd (the offkey key service).\n"
    "Keys live in offkeyd's HSM; offkeyctl talks to offkeyd's admin listener over mutual "
    "TLS and never needs the HSM PIN.";

constexpr char kFooter[] =
    R"(KEY arguments: a key NAME, or id:HEX (key id), ski:HEX, sha256:HEX (of its certificate).

Connection settings, strongest first: flags; environment ($OFFKEY_ADMIN_ENDPOINT,
$OFFKEY_ENDPOINT, $OFFKEY_TLS_CA, $OFFKEY_TLS_CERT, $OFFKEY_TLS_KEY, $OFFKEY_DATA_TLS_CERT,
$OFFKEY_DATA_TLS_KEY, $OFFKEY_SERVER_NAME, $OFFKEY_DEV_DIR); --dev (the state directory of
`offkeyd --dev`: its admin and terminator identities); the configuration file (--config,
$OFFKEY_CONFIG, or ~/.config/offkey/offkeyctl.textproto; schema offkey.v1.OffkeyctlConfig).

A key's life:
  offkeyctl --dev create web --algorithm ec-p256 --label env=prod
  offkeyctl --dev csr web --subject CN=www.example.com --dns www.example.com --out web.csr
  offkeyctl --dev attach-cert web --chain web-chain.pem
  offkeyctl --dev ref web --out web.offkey.pem      # what nginx loads instead of a key
  offkeyctl --dev disable web
  offkeyctl --dev schedule-destroy web --window 7d

Session tickets shared by every terminator (nginx, haproxy), keys rotating in the HSM:
  offkeyctl --dev ticket-key-set create web-tickets --rotation-period 1h
  offkeyctl --dev ticket-keys dev --format nginx --out /dev/shm/tickets --watch

Exit status: 0 success, 1 failure (offkeyd refused or was unreachable), 2 usage error.
Shell completion: source <(offkeyctl completion bash))";

constexpr char kCommandFooter[] =
    "KEY: a key NAME, or id:HEX, ski:HEX, sha256:HEX. Connection flags (offkeyctl "
    "--help) "
    "go before or after the subcommand.\nExit status: 0 success, 1 failure, 2 usage "
    "error.";

constexpr char kTicketFooter[] =
    "SET: a ticket-key set's name. Sets live in offkeyd's HSM beside the keys; each "
    "epoch's ticket key is derived there, the same on every replica.\n"
    "Terminators fetch them with `offkeyctl ticket-keys SET` under a GET_TICKET_KEYS "
    "grant naming the set.\nExit status: 0 success, 1 failure, 2 usage error.";

constexpr char kTicketKeysFooter[] =
    R"(Uses the data plane (--endpoint) with the terminator's identity (--data-tls-cert,
--data-tls-key), which needs a grant with GET_TICKET_KEYS and ticket_key_sets naming SET.
Files hold the previous, current and next epochs' keys; the current one encrypts.
  offkeyctl ticket-keys web-tickets --format nginx --out /run/tickets --watch \
      --reload-command "nginx -s reload"
  offkeyctl ticket-keys web-tickets --format haproxy --out /run/tickets --watch \
      --haproxy-socket /run/haproxy/admin.sock
Never prints key bytes. Exit status: 0 success (or stopped by SIGTERM/SIGINT), 1
failure (refused, or offkeyd unreachable without --watch), 2 usage error.)";

// One value per occurrence: "--label a=b --label c=d", never "--label a=b c=d".
CLI::Option* Repeated(CLI::App* app, const std::string& name,
                      std::vector<std::string>* out, const std::string& help) {
  return app->add_option(name, *out, help)->allow_extra_args(false)->type_name("VALUE");
}

CLI::Option* KeyPositional(CLI::App* app, std::string* out) {
  return app->add_option("KEY", *out, "The key: NAME, id:HEX, ski:HEX or sha256:HEX")
      ->required();
}

}  // namespace

int RunOffkeyctl(int argc, const char* const* argv, std::istream& in, std::ostream& out,
                 std::ostream& err, bool interactive, const GetEnv& env) {
  CLI::App app(kDescription, "offkeyctl");
  app.footer(kFooter);
  app.fallthrough();  // Global flags may follow the subcommand.
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       [] { return VersionLine("offkeyctl", GetBuildInfo()); });

  ConnectionFlags flags;
  std::string output = "table";
  bool yes = false;
  app.add_option("--config", flags.config, "offkeyctl configuration file")
      ->type_name("FILE");
  app.add_option("--admin-endpoint", flags.admin_endpoint,
                 "offkeyd's admin listener (KeyAdmin), HOST:PORT")
      ->type_name("HOST:PORT");
  app.add_option(
         "--endpoint", flags.endpoint,
         "offkeyd's data-plane listener (KeyService): sign, ref, ticket-keys, health")
      ->type_name("HOST:PORT");
  app.add_option("--tls-ca", flags.ca, "PEM CA bundle that signed offkeyd's certificate")
      ->type_name("FILE");
  app.add_option("--tls-cert", flags.cert, "PEM client certificate (your mTLS identity)")
      ->type_name("FILE");
  app.add_option("--tls-key", flags.key, "PEM private key of --tls-cert")
      ->type_name("FILE");
  app.add_option(
         "--data-tls-cert", flags.data_cert,
         "client certificate for the data plane (sign, ticket-keys), if not --tls-cert")
      ->type_name("FILE");
  app.add_option("--data-tls-key", flags.data_key, "private key of --data-tls-cert")
      ->type_name("FILE");
  app.add_option(
         "--server-name", flags.server_name,
         "TLS name to expect in offkeyd's certificate, if not the endpoint's host")
      ->type_name("NAME");
  app.add_option("--timeout", flags.timeout_seconds, "per-call deadline in seconds (30)")
      ->type_name("SECONDS")
      ->check(CLI::PositiveNumber);
  app.add_flag(
      "--dev", flags.dev,
      "use the development state of `offkeyd --dev` (.offkey/dev here or above)");
  app.add_option("--dev-dir", flags.dev_dir,
                 "the development state directory (implies --dev)")
      ->type_name("DIR");
  app.add_option("-o,--output", output, "table (default), json, or name (key names only)")
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"table", "json", "name"}));
  app.add_flag("-y,--yes", yes, "do not ask before disabling or destroying");

  // Each subcommand binds its arguments and names its action.
  std::map<const CLI::App*, std::function<absl::Status(Context&)>> actions;
  auto command = [&](const std::string& name, const std::string& help,
                     std::function<absl::Status(Context&)> action) {
    CLI::App* sub = app.add_subcommand(name, help);
    sub->footer(kCommandFooter);
    actions[sub] = std::move(action);
    return sub;
  };

  command("health", "Check that offkeyd's listeners answer and serve (HSM reachable)",
          [](Context& ctx) { return Health(ctx); });

  CreateArgs create;
  CLI::App* create_cmd = command("create", "Generate a key pair inside the HSM",
                                 [&](Context& ctx) { return CreateKey(ctx, create); });
  create_cmd->add_option("NAME", create.name, "1..64 of A-Z a-z 0-9 . _ -")->required();
  create_cmd->add_option("-a,--algorithm", create.algorithm, AlgorithmChoices())
      ->required()
      ->type_name("ALGORITHM");
  create_cmd->add_option("--usage", create.usage, UsageChoices() + " (tls-server)")
      ->type_name("USAGE");
  Repeated(create_cmd, "-l,--label", &create.labels, "KEY=VALUE (repeatable)");

  ImportArgs import;
  CLI::App* import_cmd =
      command("import", "Import an existing PKCS#8 private key into the HSM",
              [&](Context& ctx) { return ImportKey(ctx, import); });
  import_cmd->add_option("NAME", import.name, "the key's name in offkey")->required();
  import_cmd
      ->add_option("-f,--file", import.file,
                   "PKCS#8 PEM or DER, plain or encrypted ('-': standard input)")
      ->required()
      ->type_name("FILE");
  import_cmd
      ->add_option("--passphrase-file", import.passphrase_file,
                   "file holding the passphrase of an encrypted key (first line)")
      ->type_name("FILE");
  import_cmd
      ->add_option("--passphrase-env", import.passphrase_env,
                   "environment variable holding the passphrase")
      ->type_name("VARIABLE");
  import_cmd->add_option("--usage", import.usage, UsageChoices() + " (tls-server)")
      ->type_name("USAGE");
  Repeated(import_cmd, "-l,--label", &import.labels, "KEY=VALUE (repeatable)");

  ListArgs list;
  CLI::App* list_cmd = command("list", "List keys (all, or those matching every filter)",
                               [&](Context& ctx) { return ListKeys(ctx, list); });
  Repeated(list_cmd, "-l,--label", &list.labels, "only keys with this KEY=VALUE label");
  list_cmd->add_option("--state", list.state, StateChoices())->type_name("STATE");
  list_cmd->add_option("-a,--algorithm", list.algorithm, AlgorithmChoices())
      ->type_name("ALGORITHM");

  std::string show_key;
  KeyPositional(command("show",
                        "Everything about one key: ids, state, certificate, "
                        "public key",
                        [&](Context& ctx) { return ShowKey(ctx, show_key); }),
                &show_key);

  UpdateArgs update;
  CLI::App* update_cmd = command("update", "Change a key's labels or usage",
                                 [&](Context& ctx) { return UpdateKey(ctx, update); });
  KeyPositional(update_cmd, &update.key);
  Repeated(update_cmd, "-l,--label", &update.labels, "set KEY=VALUE (repeatable)");
  Repeated(update_cmd, "--remove-label", &update.remove_labels, "remove label KEY");
  update_cmd->add_flag("--replace-labels", update.replace_labels,
                       "the --label set replaces all labels (none given: clears them)");
  update_cmd->add_option("--usage", update.usage, UsageChoices())->type_name("USAGE");

  std::string enable_key, disable_key, cancel_key;
  KeyPositional(command("enable", "Put a disabled key back in service",
                        [&](Context& ctx) { return EnableKey(ctx, enable_key); }),
                &enable_key);
  KeyPositional(command("disable", "Take a key out of service (asks first)",
                        [&](Context& ctx) { return DisableKey(ctx, disable_key); }),
                &disable_key);

  ScheduleArgs schedule;
  CLI::App* schedule_cmd =
      command("schedule-destroy",
              "Destroy a key when a pending window ends (asks first); refused to "
              "terminators at once",
              [&](Context& ctx) { return ScheduleDestruction(ctx, schedule); });
  KeyPositional(schedule_cmd, &schedule.key);
  schedule_cmd
      ->add_option("-w,--window", schedule.window,
                   "how long before destruction: 7d (default), 36h ... up to 90d; at "
                   "least 24h unless --force")
      ->type_name("DURATION");
  schedule_cmd->add_flag("--force", schedule.force,
                         "allow a window shorter than 24h (down to 1s): less time to "
                         "notice a mistake and cancel");

  KeyPositional(command("cancel-destroy",
                        "Cancel a scheduled destruction (the key stays, disabled)",
                        [&](Context& ctx) { return CancelDestruction(ctx, cancel_key); }),
                &cancel_key);

  DestroyArgs destroy;
  CLI::App* destroy_cmd =
      command("destroy", "Destroy a key now, for good (needs --force; asks first)",
              [&](Context& ctx) { return DestroyKey(ctx, destroy); });
  KeyPositional(destroy_cmd, &destroy.key);
  destroy_cmd->add_flag("--force", destroy.force, "yes, immediately and irreversibly");

  CsrArgs csr;
  CLI::App* csr_cmd =
      command("csr", "Make a PKCS#10 certificate signing request, signed inside the HSM",
              [&](Context& ctx) { return CreateCsr(ctx, csr); });
  KeyPositional(csr_cmd, &csr.key);
  csr_cmd
      ->add_option("-s,--subject", csr.subject,
                   "RFC 4514 subject, e.g. \"CN=www.example.com,O=Example\"")
      ->type_name("DN");
  Repeated(csr_cmd, "--dns", &csr.dns_names, "DNS name SAN (repeatable)");
  Repeated(csr_cmd, "--ip", &csr.ip_addresses, "IP address SAN (repeatable)");
  Repeated(csr_cmd, "--uri", &csr.uris, "URI SAN, e.g. spiffe://... (repeatable)");
  csr_cmd->add_option("--scheme", csr.scheme, "signature scheme (default: the key's own)")
      ->type_name("SCHEME");
  csr_cmd->add_option("--out", csr.out, "write the PEM here instead of standard output")
      ->type_name("FILE");
  csr_cmd->add_flag("--overwrite", csr.overwrite, "replace --out if it exists");

  AttachArgs attach;
  CLI::App* attach_cmd =
      command("attach-cert", "Attach a certificate chain (leaf first) to a key",
              [&](Context& ctx) { return AttachCertificate(ctx, attach); });
  KeyPositional(attach_cmd, &attach.key);
  attach_cmd
      ->add_option("-c,--chain", attach.chain_file,
                   "PEM certificates, leaf first, or one DER certificate ('-': stdin)")
      ->required()
      ->type_name("FILE");
  attach_cmd->add_flag("--force", attach.force,
                       "attach even if a certificate is expired or not yet valid");

  SignArgs sign;
  CLI::App* sign_cmd =
      command("sign", "Sign through the data plane, as a TLS terminator does",
              [&](Context& ctx) { return Sign(ctx, sign); });
  KeyPositional(sign_cmd, &sign.key);
  sign_cmd->add_option("--in", sign.in, "the message, unhashed ('-': stdin)")
      ->type_name("FILE");
  sign_cmd
      ->add_option("--tls13-transcript-hash", sign.tls13_transcript_hash,
                   "sign the TLS 1.3 server CertificateVerify input for this hash")
      ->type_name("HEX");
  sign_cmd
      ->add_option("--scheme", sign.scheme,
                   "TLS signature scheme (default: the key's "
                   "preferred one)")
      ->type_name("SCHEME");
  sign_cmd->add_option("--tls-version", sign.tls_version, "1.2 or 1.3 (default 1.3)")
      ->type_name("VERSION");
  sign_cmd
      ->add_option("--out", sign.out,
                   "write the raw signature here (default: hex to "
                   "standard output)")
      ->type_name("FILE");
  sign_cmd->add_flag("--overwrite", sign.overwrite, "replace --out if it exists");

  RefArgs ref;
  CLI::App* ref_cmd =
      command("ref", "Write the PEM key reference that the offkey OpenSSL provider loads",
              [&](Context& ctx) { return WriteReference(ctx, ref); });
  KeyPositional(ref_cmd, &ref.key);
  ref_cmd
      ->add_option("--service", ref.service,
                   "data-plane endpoint recorded in the reference (default --endpoint)")
      ->type_name("TARGET");
  ref_cmd->add_option("--out", ref.out, "write it here instead of standard output")
      ->type_name("FILE");
  ref_cmd->add_flag(
      "--uri", ref.uri,
      "print the offkey: URI form (for key URI settings, e.g. s_server -key)");
  ref_cmd
      ->add_option("--chain-out", ref.chain_out,
                   "also write the key's certificate chain (PEM, leaf first) here, for "
                   "the server's certificate setting")
      ->type_name("FILE");
  ref_cmd->add_flag("--overwrite", ref.overwrite,
                    "replace --out/--chain-out if they exist");

  // Session-ticket keys shared by terminators: the sets (admin plane) and the writer
  // (data plane).
  CLI::App* sets_cmd = app.add_subcommand(
      "ticket-key-set",
      "Manage ticket-key sets: session-ticket keys shared by terminators");
  sets_cmd->footer(kTicketFooter);
  sets_cmd->require_subcommand(1);
  auto set_command = [&](const std::string& name, const std::string& help,
                         std::function<absl::Status(Context&)> action) {
    CLI::App* sub = sets_cmd->add_subcommand(name, help);
    sub->footer(kTicketFooter);
    actions[sub] = std::move(action);
    return sub;
  };
  TicketKeySetCreateArgs set_create;
  CLI::App* set_create_cmd = set_command(
      "create", "Create a set: a root secret generated in the HSM and a rotation period",
      [&](Context& ctx) { return CreateTicketKeySet(ctx, set_create); });
  set_create_cmd->add_option("NAME", set_create.name, "1..64 of A-Z a-z 0-9 . _ -")
      ->required();
  set_create_cmd
      ->add_option("--rotation-period", set_create.rotation_period,
                   "how long each epoch's key encrypts: 1h (default), 10s .. 7d; tickets "
                   "resume for one to two periods")
      ->type_name("DURATION");
  set_command("list", "List the ticket-key sets",
              [](Context& ctx) { return ListTicketKeySets(ctx); });
  std::string set_show;
  set_command("show", "One set: rotation period, current epoch, next rotation",
              [&](Context& ctx) { return ShowTicketKeySet(ctx, set_show); })
      ->add_option("SET", set_show, "the set's name")
      ->required();
  TicketKeySetDestroyArgs set_destroy;
  CLI::App* set_destroy_cmd =
      set_command("destroy", "Destroy a set now, for good (needs --force; asks first)",
                  [&](Context& ctx) { return DestroyTicketKeySet(ctx, set_destroy); });
  set_destroy_cmd->add_option("SET", set_destroy.name, "the set's name")->required();
  set_destroy_cmd->add_flag("--force", set_destroy.force,
                            "yes, immediately and irreversibly");

  TicketKeysArgs ticket_keys;
  CLI::App* ticket_keys_cmd =
      command("ticket-keys",
              "Write a set's session-ticket keys for nginx or haproxy (data plane); "
              "--watch keeps "
              "them current",
              [&](Context& ctx) { return WriteTicketKeys(ctx, ticket_keys); });
  ticket_keys_cmd->footer(kTicketKeysFooter);
  ticket_keys_cmd->add_option("SET", ticket_keys.set, "the ticket-key set")->required();
  ticket_keys_cmd
      ->add_option("--format", ticket_keys.format,
                   "nginx (DIR/current.key, previous.key, next.key: 80 bytes each) or "
                   "haproxy (DIR/haproxy.keys: base64 lines)")
      ->required()
      ->type_name("FORMAT")
      ->check(CLI::IsMember({"nginx", "haproxy"}));
  ticket_keys_cmd
      ->add_option("--out", ticket_keys.out_dir,
                   "directory for the key files, best a memory file system (created "
                   "0700 if missing; files 0600)")
      ->required()
      ->type_name("DIR");
  ticket_keys_cmd->add_flag("--watch", ticket_keys.watch,
                            "keep running: rewrite the files after each rotation, "
                            "retry while offkeyd is unreachable; SIGTERM/SIGINT stop");
  ticket_keys_cmd
      ->add_option("--reload-command", ticket_keys.reload_command,
                   "run with /bin/sh -c after the files change, e.g. \"nginx -s reload\"")
      ->type_name("COMMAND");
  ticket_keys_cmd
      ->add_option("--haproxy-socket", ticket_keys.haproxy_socket,
                   "haproxy's admin socket (stats socket ... level admin): new keys go "
                   "in with `set ssl tls-key`, no reload")
      ->type_name("PATH");
  ticket_keys_cmd
      ->add_option("--haproxy-keys-ref", ticket_keys.haproxy_keys_ref,
                   "the tls-ticket-keys file as haproxy's configuration names it "
                   "(default DIR/haproxy.keys), or #ID from `show tls-keys`")
      ->type_name("REF");

  std::string shell;
  CLI::App* completion_cmd =
      app.add_subcommand("completion", "Print the shell completion script (bash)");
  completion_cmd->footer("Load it with: source <(offkeyctl completion bash)");
  completion_cmd->add_option("SHELL", shell, "bash")
      ->required()
      ->check(CLI::IsMember({"bash"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    return code == 0 ? 0 : 2;
  }

  if (completion_cmd->parsed()) {
    out << BashCompletion(app);
    return 0;
  }
  const CLI::App* chosen = app.get_subcommands().front();
  if (!chosen->get_subcommands().empty()) chosen = chosen->get_subcommands().front();
  absl::StatusOr<Connection> connection = ResolveConnection(flags, env);
  if (!connection.ok()) {
    err << "offkeyctl: " << connection.status().message() << "\n";
    return 2;
  }
  const OutputFormat format = output == "json"   ? OutputFormat::kJson
                              : output == "name" ? OutputFormat::kName
                                                 : OutputFormat::kTable;
  Context ctx(*std::move(connection), format, yes, interactive, in, out, err);
  absl::Status status = actions.at(chosen)(ctx);
  out.flush();
  if (status.ok()) return 0;
  err << "offkeyctl: " << status.message() << "\n";
  return IsUsageError(status) ? 2 : 1;
}

}  // namespace offkey::client::cli
