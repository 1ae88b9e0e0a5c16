// Which settings of a new offkeyd configuration a reload cannot apply.
#ifndef OFFKEY_SERVICE_CONFIG_DIFF_H_
#define OFFKEY_SERVICE_CONFIG_DIFF_H_

#include <string>
#include <vector>

#include "offkey/v1/config.pb.h"

namespace offkey::service {

// The fields that differ between `running` and `next`, other than those a reload applies
// (policy, admin_identities, trust_bundles, handshake: see OffkeyServer::ReloadNow), as
// field paths in declaration order: "listen_address", "hsm.token_uri", "tls.cert_file".
// Singular message fields are followed down to their own fields; a repeated field that
// differs is named whole. Empty when a reload applies every change.
std::vector<std::string> RestartOnlyChanges(const offkey::v1::ServerConfig& running,
                                            const offkey::v1::ServerConfig& next);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_CONFIG_DIFF_H_
