#include "tests/tls12/keyless_server.h"

#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>  // NOLINT(build/c++11): gRPC deadlines.
#include <iterator>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "tests/tls12/tls12.h"

namespace offkey::tests::tls12 {
namespace {

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
  std::string session_id;
  bool session_ticket = false;  // The extension, empty or not.
  std::string ticket;
  bool offers_suite = false;
  bool extended_master_secret = false;
  bool secure_renegotiation = false;
};

absl::StatusOr<ClientHello> ParseClientHello(absl::string_view message) {
  if (message.empty() || static_cast<uint8_t>(message[0]) != kClientHello) {
    return absl::InvalidArgumentError("expected a ClientHello");
  }
  Reader r(absl::string_view(message).substr(4));
  ClientHello hello;
  size_t version = 0;
  absl::string_view random, session, suites, compression, extensions;
  if (!r.Number(2, &version) || !r.Bytes(32, &random) || !r.Vector(1, &session) ||
      !r.Vector(2, &suites) || !r.Vector(1, &compression)) {
    return absl::InvalidArgumentError("malformed ClientHello");
  }
  hello.version = static_cast<uint16_t>(version);
  hello.random = std::string(random);
  hello.session_id = std::string(session);
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
      if (type == kSessionTicket) {
        hello.session_ticket = true;
        hello.ticket = std::string(body);
      }
    }
  }
  return hello;
}

// The client's certificates (DER, leaf first) from its Certificate message.
absl::StatusOr<std::vector<std::string>> ParseCertificate(const std::string& message) {
  if (message.empty() || static_cast<uint8_t>(message[0]) != kCertificate) {
    return absl::InvalidArgumentError("expected the client's Certificate");
  }
  Reader r(absl::string_view(message).substr(4));
  absl::string_view list;
  if (!r.Vector(3, &list) || !r.empty()) {
    return absl::InvalidArgumentError("malformed Certificate");
  }
  std::vector<std::string> chain;
  Reader l(list);
  absl::string_view der;
  while (!l.empty()) {
    if (!l.Vector(3, &der)) return absl::InvalidArgumentError("malformed Certificate");
    chain.emplace_back(der);
  }
  return chain;
}

// The scheme and signature of a CertificateVerify message.
absl::Status ParseCertificateVerify(absl::string_view message, size_t* scheme,
                                    absl::string_view* signature) {
  Reader r(message.substr(std::min<size_t>(4, message.size())));
  if (message.empty() || static_cast<uint8_t>(message[0]) != kCertificateVerify ||
      !r.Number(2, scheme) || !r.Vector(2, signature) || !r.empty()) {
    return absl::InvalidArgumentError("expected a well-formed CertificateVerify");
  }
  return absl::OkStatus();
}

// The alert a stock OpenSSL server sends for the X.509 error behind each refusal
// (ssl_x509err2alert), or for a bad CertificateVerify; an unknown result gets
// certificate_unknown, OpenSSL's answer to verification errors it has no entry for.
uint8_t AlertFor(v1::VerifyResult result) {
  switch (result) {
    case v1::EXPIRED:
      return kCertificateExpired;
    case v1::NOT_YET_VALID:
      return kBadCertificate;
    case v1::UNTRUSTED_ISSUER:
      return kUnknownCa;
    case v1::WRONG_PURPOSE:
      return kUnsupportedCertificate;
    case v1::REVOKED:
      return kCertificateRevoked;
    case v1::BAD_SIGNATURE:
      return kDecryptError;
    case v1::SCHEME_NOT_ALLOWED:
      return kIllegalParameter;
    case v1::MALFORMED_CHAIN:
      return kDecodeError;
    default:
      return kCertificateUnknown;
  }
}

// A CertificateRequest for `auth` (RFC 5246 section 7.4.4).
std::string CertificateRequest(const ClientAuth& auth) {
  std::string schemes;
  for (uint16_t scheme : kClientSignatureSchemes) schemes += Uint(scheme, 2);
  std::string names;
  for (const std::string& name : auth.certificate_authorities) {
    absl::StrAppend(&names, Uint(name.size(), 2), name);
  }
  constexpr uint8_t kRsaSign = 1;
  constexpr uint8_t kEcdsaSign = 64;
  return HandshakeMessage(
      kCertificateRequest,
      absl::StrCat(Uint(2, 1), Uint(kRsaSign, 1), Uint(kEcdsaSign, 1),
                   Uint(schemes.size(), 2), schemes, Uint(names.size(), 2), names));
}

// Ends the connection after an alert without resetting it: the client may still be
// sending its flight, and closing with unread data would send a TCP reset that can
// destroy the alert before the client reads it. Reads (discarding) until the client
// closes, for at most 2 s.
void LingeringClose(int fd) {
  shutdown(fd, SHUT_WR);
  const absl::Time until = absl::Now() + absl::Seconds(2);
  char buffer[4096];
  while (absl::Now() < until) {
    pollfd p = {fd, POLLIN, 0};
    const int wait = static_cast<int>(absl::ToInt64Milliseconds(until - absl::Now()));
    if (poll(&p, 1, std::max(wait, 1)) <= 0) return;
    if (recv(fd, buffer, sizeof(buffer), 0) <= 0) return;
  }
}

// Sends a fatal alert and ends the connection; returns `why`.
absl::Status Refuse(Connection& c, uint8_t alert, absl::Status why) {
  if (c.Send(kAlert, absl::StrCat(Uint(2, 1), Uint(alert, 1))).ok()) {
    LingeringClose(c.fd());
  }
  return why;
}

// The session state a ticket carries, in a fixed layout (integers big-endian):
//   format 1 (1 byte) | cipher suite (2) | extended master secret (1: 0 or 1) |
//   master secret (48) | client identity length (2) | client identity (what
//   VerifyClient named the client, ClientIdentity.identity; empty without client
//   authentication).
struct SessionState {
  uint16_t suite = 0;
  bool extended_master_secret = false;
  SecretBytes master;
  std::string identity;
};
constexpr uint8_t kSessionStateFormat = 1;
constexpr size_t kMasterSecretSize = 48;
constexpr size_t kSessionStateFixedSize = 1 + 2 + 1 + kMasterSecretSize + 2;

SecretBytes EncodeSessionState(const SessionState& state) {
  const std::string head =
      absl::StrCat(Uint(kSessionStateFormat, 1), Uint(state.suite, 2),
                   Uint(state.extended_master_secret ? 1 : 0, 1));
  const std::string tail = absl::StrCat(Uint(state.identity.size(), 2), state.identity);
  SecretBytes out(head.size() + state.master.size() + tail.size());
  std::copy(head.begin(), head.end(), out.data());
  std::copy(state.master.data(), state.master.data() + state.master.size(),
            out.data() + head.size());
  std::copy(tail.begin(), tail.end(), out.data() + head.size() + state.master.size());
  return out;
}

absl::StatusOr<SessionState> DecodeSessionState(const SecretBytes& plain) {
  if (plain.size() < kSessionStateFixedSize || plain[0] != kSessionStateFormat ||
      plain[3] > 1) {
    return absl::InvalidArgumentError("not a session state of this server");
  }
  const size_t identity_size = (static_cast<size_t>(plain[4 + kMasterSecretSize]) << 8) |
                               plain[5 + kMasterSecretSize];
  if (plain.size() != kSessionStateFixedSize + identity_size) {
    return absl::InvalidArgumentError("session state of the wrong length");
  }
  SessionState state;
  state.suite = static_cast<uint16_t>((plain[1] << 8) | plain[2]);
  state.extended_master_secret = plain[3] == 1;
  state.master = SecretBytes(plain.data() + 4, kMasterSecretSize);
  state.identity = std::string(plain.view().substr(kSessionStateFixedSize));
  return state;
}

std::unique_ptr<grpc::ClientContext> TicketCallContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return context;
}

// A NewSessionTicket message whose ticket is SealTicket of `state`; when sealing fails,
// a zero-length ticket (RFC 5077 section 3.3: the server changed its mind), and the
// client simply has nothing to resume with.
std::string NewSessionTicket(const Tickets& tickets, const SessionState& state) {
  // Advisory (RFC 5077 section 3.3); offkeyd's set decides how long tickets open.
  constexpr uint32_t kLifetimeHintSeconds = 300;
  v1::SealTicketRequest request;
  request.set_ticket_key_set(tickets.ticket_key_set);
  request.mutable_context()->set_version(v1::TLS_1_2);
  SecretBytes plain = EncodeSessionState(state);
  request.set_plaintext(std::string(plain.view()));
  v1::SealTicketResponse response;
  const grpc::Status sealed =
      tickets.stub->SealTicket(TicketCallContext().get(), request, &response);
  WipeString(request.mutable_plaintext());
  const std::string ticket = sealed.ok() ? response.sealed() : "";
  return HandshakeMessage(
      kNewSessionTicket,
      absl::StrCat(Uint(kLifetimeHintSeconds, 4), Uint(ticket.size(), 2), ticket));
}

// The answer to a ClientHello's ServerHello extensions: the extended master secret,
// secure renegotiation when the client signalled it, and the session_ticket extension
// when a NewSessionTicket follows.
std::string ServerHelloExtensions(const ClientHello& hello, bool ticket_follows) {
  std::string extensions = absl::StrCat(Uint(kExtendedMasterSecret, 2), Uint(0, 2));
  if (hello.secure_renegotiation) {
    absl::StrAppend(&extensions, Uint(kRenegotiationInfo, 2), Uint(1, 2), Uint(0, 1));
  }
  if (ticket_follows) absl::StrAppend(&extensions, Uint(kSessionTicket, 2), Uint(0, 2));
  return extensions;
}

// The abbreviated handshake (RFC 5077 section 3.1, RFC 5246 section 7.3) from a session
// `state` a ticket carried: ServerHello echoing the client's session id, a fresh
// ticket when `renew` is set, ChangeCipherSpec and Finished, then the client's.
absl::Status Resume(Connection& c, const ClientHello& hello, std::string transcript,
                    const SessionState& state, const Tickets* renew,
                    absl::string_view server_random) {
  const std::string extensions = ServerHelloExtensions(hello, renew != nullptr);
  std::string flight = HandshakeMessage(
      kServerHello,
      absl::StrCat(Uint(kVersion, 2), server_random, Uint(hello.session_id.size(), 1),
                   hello.session_id, Uint(kRsaAes128GcmSha256, 2), Uint(0, 1),
                   Uint(extensions.size(), 2), extensions));
  if (renew != nullptr) flight += NewSessionTicket(*renew, state);
  transcript += flight;
  OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, flight));
  OFFKEY_ASSIGN_OR_RETURN(KeyBlock keys,
                          ExpandKeys(state.master, hello.random, server_random));
  OFFKEY_RETURN_IF_ERROR(c.Send(kChangeCipherSpec, std::string(1, '\x01')));
  c.ProtectWrites(std::move(keys.server));
  OFFKEY_ASSIGN_OR_RETURN(std::string verify,
                          VerifyData(state.master, "server finished", transcript));
  const std::string finished = HandshakeMessage(kFinished, verify);
  OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, finished));
  transcript += finished;

  OFFKEY_ASSIGN_OR_RETURN(Record change, c.Receive());
  if (change.type != kChangeCipherSpec) {
    return Refuse(c, kHandshakeFailure,
                  absl::InvalidArgumentError("expected ChangeCipherSpec"));
  }
  c.ProtectReads(std::move(keys.client));
  absl::StatusOr<std::string> client_finished = c.ReceiveHandshake();
  OFFKEY_ASSIGN_OR_RETURN(std::string expected,
                          VerifyData(state.master, "client finished", transcript));
  if (!client_finished.ok() || client_finished->substr(4) != expected) {
    return Refuse(c, kDecryptError,
                  absl::PermissionDeniedError("client Finished is wrong (resumption)"));
  }
  return absl::OkStatus();
}

// Application data: one line in, one line out, then close_notify.
absl::Status Exchange(Connection& c) {
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

std::string Random32() {
  std::string out(32, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), 32);
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> CertificateChain(client::Client* client,
                                                          const std::string& key_name) {
  v1::GetCertificateRequest get;
  get.mutable_key()->set_name(key_name);
  OFFKEY_ASSIGN_OR_RETURN(v1::GetCertificateResponse chain, client->GetCertificate(get));
  return std::vector<std::string>(chain.certificate_chain().begin(),
                                  chain.certificate_chain().end());
}

absl::StatusOr<std::unique_ptr<KeylessServer>> KeylessServer::Start(
    client::Client* client, std::string key_name, std::vector<std::string> chain,
    ServerOptions options) {
  std::unique_ptr<KeylessServer> server(new KeylessServer());
  server->client_ = client;
  server->key_name_ = std::move(key_name);
  server->chain_ = std::move(chain);
  server->options_ = std::move(options);
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

std::vector<std::string> KeylessServer::WaitForOutcomes(size_t n,
                                                        absl::Duration timeout) const {
  offkey::MutexLock lock(&mu_);
  auto enough = [this, n]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return outcomes_.size() >= n; };
  mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  return outcomes_;
}

std::vector<std::string> KeylessServer::master_secrets_hex() const {
  offkey::MutexLock lock(&mu_);
  return masters_;
}

std::vector<v1::ClientIdentity> KeylessServer::client_identities() const {
  offkey::MutexLock lock(&mu_);
  return identities_;
}

std::vector<std::string> KeylessServer::ticket_results() const {
  offkey::MutexLock lock(&mu_);
  return ticket_results_;
}

void KeylessServer::Serve() {
  while (!stop_) {
    pollfd p = {listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    bool resumed = false;
    absl::Status handled = Handle(fd, &resumed);
    offkey::MutexLock lock(&mu_);
    outcomes_.push_back(handled.ok() ? (resumed ? "ok resumed" : "ok")
                                     : handled.ToString());
  }
}

absl::Status KeylessServer::Handle(int fd, bool* resumed) {
  Connection c(fd);
  auto fail = [&c](uint8_t alert, absl::Status why) {
    return Refuse(c, alert, std::move(why));
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

  const std::optional<Tickets>& tickets = options_.tickets;
  const bool issue_ticket = tickets.has_value() && hello->session_ticket;
  if (issue_ticket && !hello->ticket.empty()) {
    std::optional<SessionState> state;
    bool renew = false;
    std::string result;
    v1::UnsealTicketRequest request;
    request.set_ticket_key_set(tickets->ticket_key_set);
    request.set_sealed(hello->ticket);
    request.mutable_context()->set_version(v1::TLS_1_2);
    v1::UnsealTicketResponse opened;
    const grpc::Status unsealed =
        tickets->stub->UnsealTicket(TicketCallContext().get(), request, &opened);
    if (!unsealed.ok()) {
      result = absl::StrCat("UnsealTicket failed: ", unsealed.error_message());
    } else {
      result = v1::UnsealTicketResponse::Result_Name(opened.result());
      renew = opened.renew();
      if (renew) result += " renew";
      SecretBytes plain(opened.plaintext());
      WipeString(opened.mutable_plaintext());
      if (opened.result() == v1::UnsealTicketResponse::OPENED) {
        absl::StatusOr<SessionState> decoded = DecodeSessionState(plain);
        if (!decoded.ok()) {
          absl::StrAppend(&result, ", not used: ", decoded.status().message());
        } else if (decoded->suite != kRsaAes128GcmSha256 ||
                   !decoded->extended_master_secret) {
          result += ", not used: another suite or no extended master secret";
        } else if (options_.client_auth.has_value() && decoded->identity.empty()) {
          result += ", not used: no client identity and this server requires one";
        } else {
          state = *std::move(decoded);
        }
      }
    }
    {
      offkey::MutexLock lock(&mu_);
      ticket_results_.push_back(result);
    }
    if (state.has_value()) {
      OFFKEY_RETURN_IF_ERROR(Resume(c, *hello, transcript, *state,
                                    renew ? &*tickets : nullptr, server_random));
      if (!state->identity.empty()) {
        v1::ClientIdentity identity;
        identity.set_identity(state->identity);
        offkey::MutexLock lock(&mu_);
        identities_.push_back(std::move(identity));
      }
      *resumed = true;
      return Exchange(c);
    }
    // Any other ticket: a full handshake, as if there had been none.
  }

  const std::string extensions = ServerHelloExtensions(*hello, issue_ticket);
  std::string certificates;
  for (const std::string& der : chain_) {
    absl::StrAppend(&certificates, Uint(der.size(), 3), der);
  }
  const std::optional<ClientAuth>& auth = options_.client_auth;
  const std::string flight = absl::StrCat(
      HandshakeMessage(kServerHello,
                       absl::StrCat(Uint(kVersion, 2), server_random, Uint(0, 1),
                                    Uint(kRsaAes128GcmSha256, 2), Uint(0, 1),
                                    Uint(extensions.size(), 2), extensions)),
      HandshakeMessage(kCertificate,
                       absl::StrCat(Uint(certificates.size(), 3), certificates)),
      auth.has_value() ? CertificateRequest(*auth) : "",
      HandshakeMessage(kServerHelloDone, ""));
  transcript += flight;
  OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, flight));

  std::vector<std::string> client_chain;
  std::string client_identity;
  if (auth.has_value()) {
    OFFKEY_ASSIGN_OR_RETURN(std::string certificate, c.ReceiveHandshake());
    absl::StatusOr<std::vector<std::string>> parsed = ParseCertificate(certificate);
    if (!parsed.ok()) return fail(kDecodeError, parsed.status());
    // As OpenSSL does for TLS 1.2 when a certificate is required (certificate_required
    // exists only from TLS 1.3 on).
    if (parsed->empty()) {
      return fail(kHandshakeFailure,
                  absl::PermissionDeniedError(
                      "the client sent no certificate; this server requires one"));
    }
    client_chain = *std::move(parsed);
    transcript += certificate;
  }

  OFFKEY_ASSIGN_OR_RETURN(std::string key_exchange, c.ReceiveHandshake());
  absl::string_view ciphertext;
  Reader r(absl::string_view(key_exchange).substr(4));
  if (static_cast<uint8_t>(key_exchange[0]) != kClientKeyExchange ||
      !r.Vector(2, &ciphertext)) {
    return fail(kHandshakeFailure, absl::InvalidArgumentError("bad ClientKeyExchange"));
  }
  transcript += key_exchange;
  // The extended master secret covers the handshake up to ClientKeyExchange.
  const std::string session_hash = Sha256(transcript);

  if (auth.has_value()) {
    // The client signed every handshake message before its CertificateVerify.
    OFFKEY_ASSIGN_OR_RETURN(std::string certificate_verify, c.ReceiveHandshake());
    size_t scheme = 0;
    absl::string_view signature;
    absl::Status parsed = ParseCertificateVerify(certificate_verify, &scheme, &signature);
    if (!parsed.ok()) return fail(kDecodeError, parsed);
    if (std::find(std::begin(kClientSignatureSchemes), std::end(kClientSignatureSchemes),
                  scheme) == std::end(kClientSignatureSchemes)) {
      return fail(
          kIllegalParameter,
          absl::InvalidArgumentError(absl::StrCat(
              "the client signed with scheme 0x", absl::Hex(scheme, absl::kZeroPad4),
              ", which the CertificateRequest did not offer")));
    }
    v1::VerifyClientRequest verify;
    verify.mutable_context()->set_version(v1::TLS_1_2);
    for (std::string& der : client_chain) verify.add_certificate_chain(std::move(der));
    verify.set_trust_bundle(auth->trust_bundle);
    verify.set_scheme(static_cast<v1::SignatureScheme>(scheme));
    verify.set_signed_content(transcript);
    verify.set_signature(std::string(signature));
    absl::StatusOr<v1::VerifyClientResponse> verified = client_->VerifyClient(verify);
    if (!verified.ok()) return fail(kInternalError, verified.status());
    if (verified->result() != v1::VERIFIED) {
      return fail(AlertFor(verified->result()),
                  absl::PermissionDeniedError(absl::StrCat(
                      "client refused: ", v1::VerifyResult_Name(verified->result()), ": ",
                      verified->detail())));
    }
    client_identity = verified->identity().identity();
    {
      offkey::MutexLock lock(&mu_);
      identities_.push_back(verified->identity());
    }
    transcript += certificate_verify;
  }

  // The only secret this server learns is the master secret.
  v1::DeriveMasterSecretRequest derive;
  derive.mutable_key()->set_name(key_name_);
  derive.mutable_context()->set_version(v1::TLS_1_2);
  derive.set_ciphertext(std::string(ciphertext));
  derive.set_client_version(hello->version);
  derive.set_prf_hash(v1::PRF_SHA256);
  derive.set_session_hash(session_hash);
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

  if (issue_ticket) {
    SessionState state;
    state.suite = kRsaAes128GcmSha256;
    state.extended_master_secret = true;
    state.master = master.Copy();
    state.identity = client_identity;
    const std::string ticket = NewSessionTicket(*tickets, state);
    transcript += ticket;
    OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, ticket));
  }
  OFFKEY_RETURN_IF_ERROR(c.Send(kChangeCipherSpec, std::string(1, '\x01')));
  c.ProtectWrites(std::move(keys.server));
  OFFKEY_ASSIGN_OR_RETURN(std::string verify,
                          VerifyData(master, "server finished", transcript));
  OFFKEY_RETURN_IF_ERROR(c.Send(kHandshake, HandshakeMessage(kFinished, verify)));
  return Exchange(c);
}

}  // namespace offkey::tests::tls12
