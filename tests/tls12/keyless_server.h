// A minimal TLS 1.2 server that holds no private key and never sees a premaster: for RSA
// key exchange it sends the ClientKeyExchange to offkeyd's DeriveMasterSecret and gets
// back only the (extended) master secret. One suite (TLS_RSA_WITH_AES_128_GCM_SHA256),
// extended master secret required, one connection at a time, each answered with one
// line: "offkey keyless server: <what the client sent>". Optionally it requires a client
// certificate and leaves its verification, chain and CertificateVerify signature, to
// offkeyd's VerifyClient, refusing with the alert a stock OpenSSL server would send;
// and optionally it issues session tickets (RFC 5077) that offkeyd seals and opens, and
// resumes sessions from them without asking for a master secret. For tests.
#ifndef OFFKEY_TESTS_TLS12_KEYLESS_SERVER_H_
#define OFFKEY_TESTS_TLS12_KEYLESS_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "client/offkey_client.h"
#include "offkey/v1/key_service.grpc.pb.h"

namespace offkey::tests::tls12 {

// Client authentication: the server sends a CertificateRequest (rsa_sign and
// ecdsa_sign, the schemes in kClientSignatureSchemes, `certificate_authorities`),
// requires a certificate, and accepts the client only when VerifyClient answers VERIFIED.
struct ClientAuth {
  // The offkeyd trust bundle VerifyClient checks the chain against.
  std::string trust_bundle;
  // DER distinguished names for the CertificateRequest; may be empty.
  std::vector<std::string> certificate_authorities;
};

// Session tickets: the server sends the session_ticket extension and a NewSessionTicket
// whose ticket is SealTicket of the session state (master secret, cipher suite,
// extended master secret, client identity), and resumes a session whose ticket
// UnsealTicket opens; any other ticket gets a full handshake.
struct Tickets {
  // The offkeyd ticket-key set.
  std::string ticket_key_set;
  // A stub whose identity has SEAL_TICKET and UNSEAL_TICKET grants on the set; must
  // outlive the server.
  v1::KeyService::Stub* stub = nullptr;
};

struct ServerOptions {
  std::optional<ClientAuth> client_auth;
  std::optional<Tickets> tickets;
};

// The CertificateVerify schemes the server offers clients (wire values), in order: those
// VerifyClient takes in TLS 1.2 for RSA and ECDSA keys.
inline constexpr uint16_t kClientSignatureSchemes[] = {
    0x0403,  // ecdsa_secp256r1_sha256
    0x0503,  // ecdsa_secp384r1_sha384
    0x0603,  // ecdsa_secp521r1_sha512
    0x0804,  // rsa_pss_rsae_sha256
    0x0805,  // rsa_pss_rsae_sha384
    0x0806,  // rsa_pss_rsae_sha512
    0x0401,  // rsa_pkcs1_sha256
    0x0501,  // rsa_pkcs1_sha384
    0x0601,  // rsa_pkcs1_sha512
};

// The certificate chain (DER, leaf first) offkeyd holds for `key_name`, for Start.
absl::StatusOr<std::vector<std::string>> CertificateChain(client::Client* client,
                                                          const std::string& key_name);

class KeylessServer {
 public:
  // Listens on 127.0.0.1 (port 0: any) and serves until destroyed. `key_name` names the
  // offkeyd key; `chain` is its certificate chain (DER, leaf first). `client` must
  // outlive the server; with client authentication it needs the VERIFY_CLIENT grant.
  static absl::StatusOr<std::unique_ptr<KeylessServer>> Start(
      client::Client* client, std::string key_name, std::vector<std::string> chain,
      ServerOptions options = {});
  ~KeylessServer();

  int port() const { return port_; }
  // What each finished connection ended with: "ok", "ok resumed" (an abbreviated
  // handshake from a ticket) or the error.
  std::vector<std::string> outcomes() const;
  // outcomes() once there are `n`, or after `timeout` with fewer. The server records an
  // outcome after its last word to the client, so the client may finish first.
  std::vector<std::string> WaitForOutcomes(
      size_t n, absl::Duration timeout = absl::Seconds(10)) const;
  // Master secrets derived (hex), for comparison with what the client reports.
  std::vector<std::string> master_secrets_hex() const;
  // The clients VerifyClient accepted, in order (client authentication only); for a
  // session resumed from a ticket, only identity is set (from the ticket).
  std::vector<v1::ClientIdentity> client_identities() const;
  // For each ticket a client presented: UnsealTicket's result ("OPENED", "EXPIRED",
  // "INVALID"), " renew" when offkeyd asked for a fresh ticket, and why an opened ticket
  // was not used, if it was not; or the RPC error.
  std::vector<std::string> ticket_results() const;

 private:
  KeylessServer() = default;
  void Serve();
  absl::Status Handle(int fd, bool* resumed);

  client::Client* client_ = nullptr;
  std::string key_name_;
  std::vector<std::string> chain_;
  ServerOptions options_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable offkey::Mutex mu_;
  std::vector<std::string> outcomes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> masters_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ClientIdentity> identities_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> ticket_results_ ABSL_GUARDED_BY(mu_);
};

}  // namespace offkey::tests::tls12

#endif  // OFFKEY_TESTS_TLS12_KEYLESS_SERVER_H_
