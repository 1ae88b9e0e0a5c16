// Which settings of a new offkeyd configuration a reload cannot apply.
#ifndef OFFKEY_SERVICE_CONFIG_DIFF_H_
#define OFFKEY_SERVICE_CONFIG_DIFF_H_

#include <string>
#include <vector>

#include "offkey/v1/config.pb.h"

namespace offkey::service {

// `config` without the fields a reload applies (policy, admin_identities, trust_bundles,
// handshake: see OffkeyServer::ReloadNow): what only a restart changes.
offkey::v1::ServerConfig RestartOnlyPart(offkey::v1::ServerConfig config);

// The fields that differ between the RestartOnlyPart of `running` and of `next`, as
// field paths in declaration order: "listen_address", "hsm.token_uri", "tls.cert_file".
// Singular message fields are followed down to their own fields; a repeated field that
// differs is named whole. Empty when a reload applies every change.
std::vector<std::string> RestartOnlyChanges(const offkey::v1::ServerConfig& running,
                                            const offkey::v1::ServerConfig& next);

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_CONFIG_DIFF_H_
