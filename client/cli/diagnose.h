// Turns a failed call into a message that says what to fix.
//
// gRPC reports every connection problem as UNAVAILABLE with text meant for its own
// developers. When a call fails that way, offkeyctl repeats the connection itself with
// OpenSSL (TCP, then an mTLS handshake with the same files) to find out which step
// failed: the name, the address, offkeyd's server certificate, or offkeyd's verdict on
// ours.
#ifndef OFFKEY_CLIENT_CLI_DIAGNOSE_H_
#define OFFKEY_CLIENT_CLI_DIAGNOSE_H_

#include <string>

#include "absl/time/time.h"
#include "client/cli/connection.h"
#include "grpcpp/grpcpp.h"

namespace offkey::client::cli {

// Tries to connect to `endpoint` as gRPC would, within `timeout`. Returns "" when TCP and
// the mTLS handshake both succeed, else one sentence naming the failed step and the
// setting to fix. Sends nothing beyond the handshake.
std::string ProbeConnection(const Endpoint& endpoint, absl::Duration timeout);

// The message for a failed call: `what` is the attempted action ("create key 'web'").
// Connection failures are probed (see above); PERMISSION_DENIED adds the identity
// offkeyctl presented (offkeyd's message names the role or grant it lacks).
std::string ExplainFailure(const grpc::Status& status, const Endpoint& endpoint,
                           const std::string& what, absl::Duration timeout);

}  // namespace offkey::client::cli

#endif  // OFFKEY_CLIENT_CLI_DIAGNOSE_H_
