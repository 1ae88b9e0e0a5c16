#include "tests/tls12/keyless_server.h"

#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tests/tls12/tls12.h"

namespace offkey::tests::tls12 {
namespace {

constexpr uint8_t kHandshakeFailure = 40;
constexpr uint8_t kDecryptError = 51;

// A cursor over a message body; every read checks the length.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool Bytes(size_t n, absl::string_view* out) {
    if (data_.size() < n) return false;
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool Number(int size, size_t* out) {
    absl::string_view b;
    if (!Bytes(static_cast<size_t>(size), &b)) return false;
    *out = 0;
    for (char c : b) *out = (*out << 8) | static_cast<uint8_t>(c);
    return true;
  }
  bool Vector(int length_size, absl::string_view* out) {
    size_t n = 0;
    return Number(length_size, &n) && Bytes(n, out);
  }
  bool empty() const { return data_.empty(); }

 private:
  absl::string_view data_;
};

struct ClientHello {
  uint16_t version = 0;
  std::string random;
  bool offers_suite = false;
  bool extended_master_secret = false;
  bool secure_renegotiation = false;
};

absl::StatusOr<ClientHello> ParseClientHello(absl::string_view message) {
  if (message.empty() || static_cast<uint8_t>(message[0]) != kClientHello) {
    return absl::InvalidArgumentError("expected a ClientHello");
  }
  Reader r(message.substr(4));
  ClientHello hello;
  size_t version = 0;
  absl::string_view random, session, suites, compression, extensions;
  if (!r.Number(2, &version) || !r.Bytes(32, &random) || !r.Vector(1, &session) ||
      !r.Vector(2, &suites) || !r.Vector(1, &compression)) {
    return absl::InvalidArgumentError("malformed ClientHello");
  }
  hello.version = static_cast<uint16_t>(version);
  hello.random = std::string(random);
  Reader s(suites);
  size_t suite = 0;
  while (s.Number(2, &suite)) {
    if (suite == kRsaAes128GcmSha256) hello.offers_suite = true;
    if (suite == 0x00ff) hello.secure_renegotiation = true;  // The SCSV.
  }
  if (!r.empty() && r.Vector(2, &extensions)) {
    Reader e(extensions);
    size_t type = 0;
    absl::string_view body;
    while (e.Number(2, &type) && e.Vector(2, &body)) {
      if (type == kExtendedMasterSecret) hello.extended_master_secret = true;
      if (type == kRenegotiationInfo) hello.secure_renegotiation = true;
    }
  }
  return hello;
}

std::string Random32() {
  std::string out(32, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), 32);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KeylessServer>> KeylessServer::Start(
    client::Client* client, std::string key_name, std::vector<std::string> chain) {
  std::unique_ptr<KeylessServer> server(new KeylessServer());
  server->client_ = client;
  server->key_name_ = std::move(key_name);
  server->chain_ = std::move(chain);
  server->listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(server->listen_fd_, 8) != 0 ||
      getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return absl::UnavailableError("cannot listen on 127.0.0.1");
  }
  server->port_ = ntohs(addr.sin_port);
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

KeylessServer::~KeylessServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
}

std::vector<std::string> KeylessServer::outcomes() const {
  offkey::MutexLock lock(&mu_);
  return outcomes_;
}

std::vector<std::string> KeylessServer::master_secrets_hex() const {
  offkey::MutexLock lock(&mu_);
  return masters_;
}

void KeylessServer::Serve() {
  while (!stop_) {
    pollfd p = {listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    absl::Status handled = Handle(fd);
    offkey::MutexLock lock(&mu_);
    outcomes_.push_back(handled.ok() ? "ok" : handled.ToString());
  }
}

absl::Status KeylessServer::Handle(int fd) {
  Connection c(fd);
  auto fail = [&c](uint8_t alert, absl::Status why) {
    c.Send(kAlert, absl::StrCat(Uint(2, 1), Uint(alert, 1))).IgnoreError();
    return why;
  };

  OFFKEY_ASSIGN_OR_RETURN(std::string hello_message, c.ReceiveHandshake());
  absl::StatusOr<ClientHello> hello = ParseClientHello(hello_message);
  if (!hello.ok()) return fail(kHandshakeFailure, hello.status());
  if (!hello->offers_suite || !hello->extended_master_secret) {
    return fail(kHandshakeFailure,
                absl::FailedPreconditionError(
                    "the client must offer TLS_RSA_WITH_AES_128_GCM_SHA256 and the "
                    "extended master secret"));
  }
  std::string transcript = hello_message;

  const std::string server_random = Random32();
  std::string extensions = absl::StrCat(Uint(kExtendedMasterSecret, 2), Uint(0, 2));
  if (hello->secure_renegotiation) {
    absl::StrAppend(&extensions, Uint(kRenegotiationInfo, 2), Uint(1, 2), Uint(0, 1));
  }
  std::string certificates;
  for (const std::string& der : chain_) {
    absl::StrAppend(&certificates, Uint(der.size(), 3), der);
  }
  const std::string flight = absl::StrCat(
      HandshakeMessage(kServerHello,
                       absl::StrCat(Uint(kVersion, 2), server_random, Uint(0, 1),
                                    Uint(kRsaAes128GcmSha256, 2), Uint(0, 1),
                                    Uint(extensions.size(), 2), extensions)),
      HandshakeMessage(kCertificate,
                       absl::StrCat(Uint(certificates.size(), 3), certificates)),
      HandshakeMessage(kServerHelloDone, ""));
  transcript += flight;
  OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, flight));

  OFFKEY_ASSIGN_OR_RETURN(std::string key_exchange, c.ReceiveHandshake());
  absl::string_view ciphertext;
  Reader r(absl::string_view(key_exchange).substr(4));
  if (static_cast<uint8_t>(key_exchange[0]) != kClientKeyExchange ||
      !r.Vector(2, &ciphertext)) {
    return fail(kHandshakeFailure, absl::InvalidArgumentError("bad ClientKeyExchange"));
  }
  transcript += key_exchange;

  // The only secret this server learns is the master secret.
  v1::DeriveMasterSecretRequest derive;
  derive.mutable_key()->set_name(key_name_);
  derive.mutable_context()->set_version(v1::TLS_1_2);
  derive.set_ciphertext(std::string(ciphertext));
  derive.set_client_version(hello->version);
  derive.set_prf_hash(v1::PRF_SHA256);
  derive.set_session_hash(Sha256(transcript));
  absl::StatusOr<v1::DeriveMasterSecretResponse> derived =
      client_->DeriveMasterSecret(derive);
  if (!derived.ok()) return fail(kHandshakeFailure, derived.status());
  SecretBytes master(derived->master_secret());
  WipeString(derived->mutable_master_secret());
  {
    offkey::MutexLock lock(&mu_);
    masters_.push_back(absl::BytesToHexString(master.view()));
  }
  OFFKEY_ASSIGN_OR_RETURN(KeyBlock keys,
                          ExpandKeys(master, hello->random, server_random));

  OFFKEY_ASSIGN_OR_RETURN(Record change, c.Receive());
  if (change.type != kChangeCipherSpec) {
    return fail(kHandshakeFailure,
                absl::InvalidArgumentError("expected ChangeCipherSpec"));
  }
  c.ProtectReads(std::move(keys.client));
  absl::StatusOr<std::string> finished = c.ReceiveHandshake();
  OFFKEY_ASSIGN_OR_RETURN(std::string expected,
                          VerifyData(master, "client finished", transcript));
  if (!finished.ok() || finished->substr(4) != expected) {
    return fail(kDecryptError, absl::PermissionDeniedError("client Finished is wrong"));
  }
  transcript += *finished;

  OFFKEY_RETURN_IF_ERROR(c.Send(kChangeCipherSpec, std::string(1, '\x01')));
  c.ProtectWrites(std::move(keys.server));
  OFFKEY_ASSIGN_OR_RETURN(std::string verify,
                          VerifyData(master, "server finished", transcript));
  OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, HandshakeMessage(kFinished, verify)));

  // Application data: one line in, one line out, then close_notify.
  std::string line;
  while (line.find('\n') == std::string::npos) {
    OFFKEY_ASSIGN_OR_RETURN(Record data, c.Receive());
    if (data.type == kAlert) return absl::AbortedError("client closed before sending");
    if (data.type == kApplicationData) line += data.body;
  }
  OFFKEY_RETURN_IF_ERROR(c.Send(
      kApplicationData,
      absl::StrCat("offkey keyless server: ", line.substr(0, line.find('\n') + 1))));
  return c.Send(kAlert, absl::StrCat(Uint(1, 1), Uint(0, 1)));  // close_notify.
}

}  // namespace offkey::tests::tls12
