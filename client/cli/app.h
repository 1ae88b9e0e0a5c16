// offkeyctl's command line: every subcommand, its flags and help, and the dispatch.
#ifndef OFFKEY_CLIENT_CLI_APP_H_
#define OFFKEY_CLIENT_CLI_APP_H_

#include <istream>
#include <ostream>

#include "client/cli/connection.h"

namespace offkey::client::cli {

// Runs offkeyctl with `argv`. Returns the exit status: 0 success, 1 failure (offkeyd
// refused or could not be reached), 2 usage (bad command line; nothing was sent).
// `interactive` says whether `in` is a terminal that can answer confirmations.
int RunOffkeyctl(int argc, const char* const* argv, std::istream& in, std::ostream& out,
                 std::ostream& err, bool interactive, const GetEnv& env);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_APP_H_
