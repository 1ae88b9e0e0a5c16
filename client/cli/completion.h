// Shell completion generated from the command line definition, so it never drifts.
#ifndef OFFKEY_CLIENT_CLI_COMPLETION_H_
#define OFFKEY_CLIENT_CLI_COMPLETION_H_

#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace offkey::client::cli {

// A bash script defining `_offkeyctl` and registering it with `complete`. It completes
// subcommands and flags, the values of --algorithm, --usage, --state, --output and
// --scheme and --format, file names for file flags, the verbs of command groups
// (ticket-key-set), KEY arguments with the names of the keys on offkeyd (running
// `offkeyctl list -o name` with the connection flags already typed) and SET arguments
// with the names of the ticket-key sets (`offkeyctl ticket-key-set list -o name`).
std::string BashCompletion(const CLI::App& app);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_COMPLETION_H_
