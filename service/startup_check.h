// What offkeyd needs at start-up beyond a configuration that validates: the files it
// names and the policy and trust bundles built from it. For `offkeyd --check_config`,
// which must answer without opening the HSM or binding a port.
#ifndef OFFKEY_SERVICE_STARTUP_CHECK_H_
#define OFFKEY_SERVICE_STARTUP_CHECK_H_

#include <string>
#include <vector>

#include "offkey/v1/config.pb.h"

namespace offkey::service {

// Checks `config` (loaded, flags applied, validated) as start-up would use it:
//   - the policy and trust bundles build (as the server builds them);
//   - unless insecure_plaintext_for_development: tls.cert_file holds certificates,
//     tls.key_file one private key that matches the first of them, tls.client_ca_file
//     at least one certificate;
//   - hsm.module_path is a readable file (not loaded: loading initializes the module);
//   - the PIN source is present and not empty (a file's contents are not read, so the
//     PIN is never in this process's memory; a variable is not unset);
//   - audit.path, when a file, can be appended to (or made in its directory).
// Returns every problem found, each "FIELD: problem"; empty when all is well.
std::vector<std::string> CheckStartupResources(const offkey::v1::ServerConfig& config);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_STARTUP_CHECK_H_
