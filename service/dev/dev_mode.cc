#include "service/dev/dev_mode.h"

#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/openssl_util.h"
#include "base/status_macros.h"
#include "google/protobuf/text_format.h"
#include "hsm/pkcs11/token_init.h"
#include "offkey/v1/metadata.pb.h"
#include "service/dev/dev_pki.h"

namespace offkey::service::dev {
namespace {

constexpr char kTokenLabel[] = "offkey-dev";

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

absl::Status WriteFile(const std::string& path, absl::string_view data, bool secret) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  chmod(tmp.c_str(), secret ? 0600 : 0644);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

SecretBytes RandomPin() {
  unsigned char raw[16];
  RAND_bytes(raw, sizeof(raw));
  SecretBytes pin(absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(raw), sizeof(raw))));
  OPENSSL_cleanse(raw, sizeof(raw));
  return pin;
}

absl::Status WriteIssued(const DevState& state, const std::string& name,
                         const IssuedCert& cert) {
  OFFKEY_RETURN_IF_ERROR(
      WriteFile(state.dir + "/" + name + ".pem", cert.cert_pem, false));
  return WriteFile(state.dir + "/" + name + ".key", cert.key_pem.view(), true);
}

absl::StatusOr<IssuedCert> ReadCa(const DevState& state) {
  IssuedCert ca;
  OFFKEY_ASSIGN_OR_RETURN(ca.cert_pem, ReadFile(state.dir + "/ca.pem"));
  OFFKEY_ASSIGN_OR_RETURN(std::string key, ReadFile(state.dir + "/ca.key"));
  ca.key_pem = SecretBytes(key);
  WipeString(&key);
  return ca;
}

absl::Status MakePki(const DevState& state) {
  OFFKEY_ASSIGN_OR_RETURN(IssuedCert ca, MakeCa("offkey development CA"));
  OFFKEY_RETURN_IF_ERROR(WriteIssued(state, "ca", ca));
  CertSpec server;
  server.common_name = "offkeyd";
  server.dns_names = {"localhost"};
  server.ip_addresses = {"127.0.0.1"};
  server.server_auth = true;
  OFFKEY_ASSIGN_OR_RETURN(IssuedCert server_cert, Issue(ca, server));
  OFFKEY_RETURN_IF_ERROR(WriteIssued(state, "server", server_cert));
  for (const auto& [name, identity] :
       {std::pair<std::string, std::string>{"terminator", kTerminatorIdentity},
        std::pair<std::string, std::string>{"admin", kAdminIdentity}}) {
    CertSpec client;
    client.common_name = name;
    client.uris = {identity};
    client.client_auth = true;
    OFFKEY_ASSIGN_OR_RETURN(IssuedCert client_cert, Issue(ca, client));
    OFFKEY_RETURN_IF_ERROR(WriteIssued(state, name, client_cert));
  }
  return absl::OkStatus();
}

offkey::v1::ServerConfig DefaultConfig(const DevState& state,
                                       const std::string& softhsm_module) {
  offkey::v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:8443");
  config.set_admin_listen_address("127.0.0.1:8444");
  config.set_dev_state_dir(state.dir);
  config.mutable_tls()->set_cert_file(state.dir + "/server.pem");
  config.mutable_tls()->set_key_file(state.dir + "/server.key");
  config.mutable_tls()->set_client_ca_file(state.dir + "/ca.pem");
  config.mutable_hsm()->set_module_path(softhsm_module);
  config.mutable_hsm()->set_token_uri(absl::StrCat("pkcs11:token=", kTokenLabel));
  config.mutable_hsm()->set_pin_file(state.dir + "/user.pin");
  config.mutable_hsm()->set_max_sessions(4);
  offkey::v1::Grant* grant = config.mutable_policy()->add_grants();
  grant->add_identities(kTerminatorIdentity);
  for (offkey::v1::Operation op :
       {offkey::v1::SIGN, offkey::v1::DECRYPT_PREMASTER, offkey::v1::DERIVE_MASTER_SECRET,
        offkey::v1::VERIFY_CLIENT, offkey::v1::GET_CERTIFICATE, offkey::v1::LIST_KEYS}) {
    grant->add_operations(op);
  }
  grant->mutable_keys()->set_all_keys(true);
  // Session tickets of the ticket-key set "dev" (made on first start, below).
  offkey::v1::Grant* tickets = config.mutable_policy()->add_grants();
  tickets->add_identities(kTerminatorIdentity);
  for (offkey::v1::Operation op : {offkey::v1::GET_TICKET_KEYS, offkey::v1::SEAL_TICKET,
                                   offkey::v1::UNSEAL_TICKET}) {
    tickets->add_operations(op);
  }
  tickets->add_ticket_key_sets(kDevTicketKeySet);
  config.add_admin_identities(kAdminIdentity);
  // Clients with certificates from the development CA verify against bundle "dev".
  offkey::v1::TrustBundle* bundle = config.add_trust_bundles();
  bundle->set_name("dev");
  bundle->set_ca_file(state.dir + "/ca.pem");
  return config;
}

}  // namespace

absl::StatusOr<DevState> PrepareDevState(const std::string& dir,
                                         const std::string& softhsm_module) {
  DevState state;
  std::error_code ec;
  std::filesystem::create_directories(dir + "/tokens", ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot create the development state directory ", dir, ": ", ec.message()));
  }
  state.dir = std::filesystem::absolute(dir).lexically_normal().string();
  if (!state.dir.empty() && state.dir.back() == '/') state.dir.pop_back();
  chmod(state.dir.c_str(), 0700);
  state.config_file = state.dir + "/config.textproto";
  state.ca_file = state.dir + "/ca.pem";
  state.client_cert_file = state.dir + "/terminator.pem";
  state.client_key_file = state.dir + "/terminator.key";

  const std::string conf = state.dir + "/softhsm2.conf";
  OFFKEY_RETURN_IF_ERROR(
      WriteFile(conf,
                absl::StrCat("directories.tokendir = ", state.dir,
                             "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n"),
                false));
  setenv("SOFTHSM2_CONF", conf.c_str(), 1);

  const std::string pin_file = state.dir + "/user.pin";
  if (!Exists(pin_file)) {
    SecretBytes so_pin = RandomPin();
    SecretBytes pin = RandomPin();
    OFFKEY_RETURN_IF_ERROR(
        hsm::pkcs11::InitializeToken(softhsm_module, kTokenLabel, so_pin, pin));
    OFFKEY_RETURN_IF_ERROR(WriteFile(state.dir + "/so.pin", so_pin.view(), true));
    OFFKEY_RETURN_IF_ERROR(WriteFile(pin_file, pin.view(), true));
  }
  if (!Exists(state.ca_file)) OFFKEY_RETURN_IF_ERROR(MakePki(state));
  if (!Exists(state.config_file)) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(DefaultConfig(state, softhsm_module),
                                                &text);
    OFFKEY_RETURN_IF_ERROR(WriteFile(
        state.config_file,
        absl::StrCat("# offkeyd development configuration (protobuf text format,\n"
                     "# schema offkey.v1.ServerConfig in proto/offkey/v1/config.proto).\n"
                     "# Made by `offkeyd --dev`; edit freely, it is reused.\n",
                     text),
        false));
  }
  return state;
}

absl::StatusOr<int> EnsureDevKeys(const DevState& state, hsm::KeyStore& store) {
  OFFKEY_ASSIGN_OR_RETURN(std::vector<hsm::KeyInfo> existing, store.ListKeys());
  if (!existing.empty()) return 0;
  OFFKEY_ASSIGN_OR_RETURN(IssuedCert ca, ReadCa(state));
  const std::pair<const char*, hsm::KeyAlgorithm> keys[] = {
      {"dev-rsa2048", hsm::KeyAlgorithm::kRsa2048},
      {"dev-p256", hsm::KeyAlgorithm::kEcP256},
      {"dev-ed25519", hsm::KeyAlgorithm::kEd25519},
  };
  int made = 0;
  for (const auto& [name, algorithm] : keys) {
    OFFKEY_ASSIGN_OR_RETURN(hsm::KeyInfo key, store.GenerateKey(name, algorithm));
    offkey::v1::KeyMetadata metadata;
    metadata.set_format_version(1);
    metadata.set_usage(offkey::v1::TLS_SERVER);
    metadata.set_state(offkey::v1::ENABLED);
    (*metadata.mutable_labels())["env"] = "dev";
    metadata.set_create_time(absl::ToUnixSeconds(absl::Now()));
    OFFKEY_RETURN_IF_ERROR(store.PutMetadata(key.key_id, metadata.SerializeAsString()));
    CertSpec spec;
    spec.common_name = "localhost";
    spec.dns_names = {"localhost"};
    spec.ip_addresses = {"127.0.0.1"};
    spec.server_auth = true;
    spec.public_key_spki = key.public_key_spki;
    OFFKEY_ASSIGN_OR_RETURN(IssuedCert cert, Issue(ca, spec));
    OFFKEY_ASSIGN_OR_RETURN(std::string leaf, PemToDer(cert.cert_pem));
    OFFKEY_ASSIGN_OR_RETURN(std::string issuer, PemToDer(ca.cert_pem));
    OFFKEY_RETURN_IF_ERROR(store.PutCertificateChain(key.key_id, {leaf, issuer}));
    ++made;
  }
  return made;
}

absl::StatusOr<bool> EnsureDevTicketKeySet(hsm::KeyStore& store) {
  absl::StatusOr<hsm::TicketKeySetInfo> found = store.FindTicketKeySet(kDevTicketKeySet);
  if (found.ok()) return false;
  if (!absl::IsNotFound(found.status())) return found.status();
  OFFKEY_RETURN_IF_ERROR(
      store.CreateTicketKeySet(kDevTicketKeySet, absl::Hours(1)).status());
  return true;
}

std::string ConnectHelp(const DevState& state, int port, int admin_port) {
  std::string help = absl::StrCat(
      "offkeyd (development mode) is serving on 127.0.0.1:", port,
      " with mutual TLS.\n"
      "  CA certificate:       ",
      state.ca_file, "\n", "  client certificate:   ", state.client_cert_file, "  (",
      kTerminatorIdentity, ")\n", "  client key:           ", state.client_key_file, "\n",
      "  configuration/policy: ", state.config_file, "\n",
      "Connect a gRPC client to localhost:", port,
      " with those files (the server certificate names localhost and 127.0.0.1).\n");
  if (admin_port != 0) {
    // --dev finds .offkey/dev from the working directory up; other places need naming.
    const std::string dev_flag =
        absl::EndsWith(state.dir, ".offkey/dev") ? "--dev" : "--dev-dir=" + state.dir;
    absl::StrAppend(&help, "Admin plane on 127.0.0.1:", admin_port, " for ",
                    kAdminIdentity, ": try `offkeyctl ", dev_flag, " list`.\n");
  }
  return help;
}

}  // namespace offkey::service::dev
