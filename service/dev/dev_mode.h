// Development mode: everything offkeyd needs, made on first start under a state
// directory and reused afterwards. Never for production: keys and PINs sit in files.
#ifndef OFFKEY_SERVICE_DEV_DEV_MODE_H_
#define OFFKEY_SERVICE_DEV_DEV_MODE_H_

#include <string>

#include "absl/status/statusor.h"
#include "hsm/key_store.h"
#include "offkey/v1/config.pb.h"

namespace offkey::service::dev {

// Identities the development certificates carry (and the policy grants).
inline constexpr char kTerminatorIdentity[] = "spiffe://offkey.dev/terminator";
inline constexpr char kAdminIdentity[] = "spiffe://offkey.dev/admin";
// The ticket-key set the development policy grants the terminator.
inline constexpr char kDevTicketKeySet[] = "dev";

struct DevState {
  std::string dir;
  std::string config_file;  // dir/config.textproto: edit it to change the policy.
  // Client credentials for the terminator identity (what a demo or terminator uses).
  std::string ca_file, client_cert_file, client_key_file;
};

// Creates (first run) or reuses under `dir`: a SoftHSM2 configuration and token
// ("offkey-dev", PINs in 0600 files), a development CA, a server certificate for
// localhost/127.0.0.1, client certificates for kTerminatorIdentity and kAdminIdentity,
// and config.textproto granting the terminator every data-plane operation on every key
// and the ticket operations on the ticket-key set kDevTicketKeySet.
// Sets SOFTHSM2_CONF for this process, so call it before any PKCS#11 module is loaded.
absl::StatusOr<DevState> PrepareDevState(const std::string& dir,
                                         const std::string& softhsm_module);

// Makes demo keys (RSA-2048, P-256, Ed25519) with certificates from the development CA
// when the token has no keys yet. Returns how many it made.
absl::StatusOr<int> EnsureDevKeys(const DevState& state, hsm::KeyStore& store);

// Makes the ticket-key set kDevTicketKeySet (hourly rotation) when the token has none
// of that name. Returns whether it made it.
absl::StatusOr<bool> EnsureDevTicketKeySet(hsm::KeyStore& store);

// Lines telling a user how to connect to a development offkeyd on `port` (and, unless
// `admin_port` is 0, how to reach its admin plane with offkeyctl).
std::string ConnectHelp(const DevState& state, int port, int admin_port);

}  // namespace offkey::service::dev

#endif  // OFFKEY_SERVICE_DEV_DEV_MODE_H_
