// Just enough TLS 1.2 for tests that must control the wire: RSA key exchange with
// TLS_RSA_WITH_AES_128_GCM_SHA256 (RFC 5246, RFC 5288), with or without the extended
// master secret (RFC 7627), client certificates and session tickets (RFC 5077). Used by a
// raw client that sends crafted ClientKeyExchange messages and by a minimal server that
// never sees the premaster. Not a TLS library: one suite, no renegotiation, resumption
// by session ticket only, blocking sockets.
#ifndef OFFKEY_TESTS_TLS12_TLS12_H_
#define OFFKEY_TESTS_TLS12_TLS12_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"

namespace offkey::tests::tls12 {

inline constexpr uint16_t kVersion = 0x0303;
inline constexpr uint16_t kRsaAes128GcmSha256 = 0x009c;
inline constexpr uint16_t kExtendedMasterSecret = 0x0017;
inline constexpr uint16_t kRenegotiationInfo = 0xff01;
inline constexpr uint16_t kSessionTicket = 0x0023;

enum ContentType : uint8_t {
  kChangeCipherSpec = 20,
  kAlert = 21,
  kHandshake = 22,
  kApplicationData = 23,
};
enum HandshakeType : uint8_t {
  kClientHello = 1,
  kServerHello = 2,
  kNewSessionTicket = 4,
  kCertificate = 11,
  kCertificateRequest = 13,
  kServerHelloDone = 14,
  kCertificateVerify = 15,
  kClientKeyExchange = 16,
  kFinished = 20,
};

// Alert descriptions (RFC 5246 section 7.2; certificate_required from RFC 8446).
enum AlertDescription : uint8_t {
  kHandshakeFailure = 40,
  kBadCertificate = 42,
  kUnsupportedCertificate = 43,
  kCertificateRevoked = 44,
  kCertificateExpired = 45,
  kCertificateUnknown = 46,
  kIllegalParameter = 47,
  kUnknownCa = 48,
  kDecodeError = 50,
  kDecryptError = 51,
  kInternalError = 80,
};

// Big-endian integer of `bytes` bytes.
std::string Uint(uint64_t value, int bytes);
// A handshake message: type, 24-bit length, body.
std::string HandshakeMessage(HandshakeType type, absl::string_view body);

struct Record {
  uint8_t type = 0;
  std::string body;
};

// The keys of one direction.
struct DirectionKeys {
  SecretBytes key;   // 16 bytes.
  std::string salt;  // 4 bytes (the implicit part of the GCM nonce).
};
struct KeyBlock {
  DirectionKeys client;
  DirectionKeys server;
};
// key_block = PRF(master, "key expansion", server_random + client_random).
absl::StatusOr<KeyBlock> ExpandKeys(const SecretBytes& master,
                                    absl::string_view client_random,
                                    absl::string_view server_random);
// verify_data = PRF(master, label, SHA-256(transcript))[0..11].
absl::StatusOr<std::string> VerifyData(const SecretBytes& master, absl::string_view label,
                                       absl::string_view transcript);
std::string Sha256(absl::string_view data);

// A record layer on a connected socket (owned; closed on destruction). Records are
// protected with AES-128-GCM once the direction's keys are set.
class Connection {
 public:
  explicit Connection(int fd) : fd_(fd) {}
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  absl::Status Send(uint8_t type, absl::string_view body);
  // The next record; UNAVAILABLE on end of stream, DATA_LOSS if it does not decrypt.
  absl::StatusOr<Record> Receive(absl::Duration timeout = absl::Seconds(10));
  // The next handshake message (whole, header included), across records; a record of
  // another type is an error that names it (an alert: "alert <description>").
  absl::StatusOr<std::string> ReceiveHandshake(
      absl::Duration timeout = absl::Seconds(10));

  void ProtectWrites(DirectionKeys keys);
  void ProtectReads(DirectionKeys keys);
  int fd() const { return fd_; }

 private:
  absl::StatusOr<std::string> ReadExactly(size_t n, absl::Time deadline);

  const int fd_;
  bool write_protected_ = false;
  bool read_protected_ = false;
  DirectionKeys write_;
  DirectionKeys read_;
  uint64_t write_seq_ = 0;
  uint64_t read_seq_ = 0;
  std::string handshake_buffer_;
};

// A client's end of a full handshake once its last flight before ChangeCipherSpec is
// sent and in `transcript`: ChangeCipherSpec and Finished under `master`, then the
// server's answer. Returns "finished" when the server's ChangeCipherSpec and a correct
// Finished arrive, "alert N" for an alert it sent instead, else what went wrong.
std::string FinishClientHandshake(Connection& c, const SecretBytes& master,
                                  absl::string_view client_random,
                                  absl::string_view server_random,
                                  std::string transcript);

// Connects to 127.0.0.1:port.
absl::StatusOr<int> ConnectLoopback(int port);

}  // namespace offkey::tests::tls12

#endif  // OFFKEY_TESTS_TLS12_TLS12_H_
