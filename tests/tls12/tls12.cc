#include "tests/tls12/tls12.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "service/crypto/tls_prf.h"

namespace offkey::tests::tls12 {
namespace {

constexpr size_t kTagSize = 16;
constexpr size_t kExplicitNonceSize = 8;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

absl::StatusOr<SecretBytes> Prf(const SecretBytes& secret, absl::string_view label,
                                absl::string_view seed, size_t size) {
  return service::crypto::Tls12Prf(hsm::HashAlgorithm::kSha256, secret, label, seed,
                                   size);
}

std::string Nonce(const DirectionKeys& keys, absl::string_view explicit_part) {
  return absl::StrCat(keys.salt, explicit_part);
}

std::string AdditionalData(uint64_t seq, uint8_t type, size_t length) {
  return absl::StrCat(Uint(seq, 8), Uint(type, 1), Uint(kVersion, 2), Uint(length, 2));
}

}  // namespace

std::string Uint(uint64_t value, int bytes) {
  std::string out(bytes, '\0');
  for (int i = bytes - 1; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return out;
}

std::string HandshakeMessage(HandshakeType type, absl::string_view body) {
  return absl::StrCat(Uint(type, 1), Uint(body.size(), 3), body);
}

std::string Sha256(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

absl::StatusOr<KeyBlock> ExpandKeys(const SecretBytes& master,
                                    absl::string_view client_random,
                                    absl::string_view server_random) {
  OFFKEY_ASSIGN_OR_RETURN(
      SecretBytes block,
      Prf(master, "key expansion", absl::StrCat(server_random, client_random), 40));
  KeyBlock keys;
  keys.client.key = SecretBytes(block.data(), 16);
  keys.server.key = SecretBytes(block.data() + 16, 16);
  keys.client.salt = std::string(block.view().substr(32, 4));
  keys.server.salt = std::string(block.view().substr(36, 4));
  return keys;
}

absl::StatusOr<std::string> VerifyData(const SecretBytes& master, absl::string_view label,
                                       absl::string_view transcript) {
  OFFKEY_ASSIGN_OR_RETURN(SecretBytes data, Prf(master, label, Sha256(transcript), 12));
  return std::string(data.view());
}

Connection::~Connection() { close(fd_); }

void Connection::ProtectWrites(DirectionKeys keys) {
  write_ = std::move(keys);
  write_protected_ = true;
  write_seq_ = 0;
}

void Connection::ProtectReads(DirectionKeys keys) {
  read_ = std::move(keys);
  read_protected_ = true;
  read_seq_ = 0;
}

absl::Status Connection::Send(uint8_t type, absl::string_view body) {
  std::string payload(body);
  if (write_protected_) {
    const std::string explicit_nonce = Uint(write_seq_, 8);
    const std::string nonce = Nonce(write_, explicit_nonce);
    const std::string aad = AdditionalData(write_seq_, type, body.size());
    ++write_seq_;
    CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
    std::string out(body.size() + kTagSize, '\0');
    int len = 0;
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, write_.key.data(),
                           reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                          reinterpret_cast<const unsigned char*>(aad.data()),
                          static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), o, &len,
                          reinterpret_cast<const unsigned char*>(body.data()),
                          static_cast<int>(body.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), o + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, o + body.size()) !=
            1) {
      return absl::InternalError("AES-GCM encryption failed");
    }
    payload = absl::StrCat(explicit_nonce, out);
  }
  const std::string record =
      absl::StrCat(Uint(type, 1), Uint(kVersion, 2), Uint(payload.size(), 2), payload);
  size_t sent = 0;
  while (sent < record.size()) {
    ssize_t n = send(fd_, record.data() + sent, record.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Connection::ReadExactly(size_t n, absl::Time deadline) {
  std::string out;
  while (out.size() < n) {
    pollfd p = {fd_, POLLIN, 0};
    const int wait = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
    if (poll(&p, 1, wait) <= 0) return absl::DeadlineExceededError("no data in time");
    char buffer[4096];
    ssize_t got = recv(fd_, buffer, std::min(sizeof(buffer), n - out.size()), 0);
    if (got <= 0) return absl::UnavailableError("connection closed");
    out.append(buffer, static_cast<size_t>(got));
  }
  return out;
}

absl::StatusOr<Record> Connection::Receive(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  OFFKEY_ASSIGN_OR_RETURN(std::string header, ReadExactly(5, deadline));
  const size_t length =
      (static_cast<uint8_t>(header[3]) << 8) | static_cast<uint8_t>(header[4]);
  OFFKEY_ASSIGN_OR_RETURN(std::string body, ReadExactly(length, deadline));
  Record record;
  record.type = static_cast<uint8_t>(header[0]);
  if (!read_protected_) {
    record.body = std::move(body);
    return record;
  }
  if (body.size() < kExplicitNonceSize + kTagSize) {
    return absl::DataLossError("short record");
  }
  const size_t plain_size = body.size() - kExplicitNonceSize - kTagSize;
  const std::string nonce = Nonce(read_, body.substr(0, kExplicitNonceSize));
  const std::string aad = AdditionalData(read_seq_, record.type, plain_size);
  ++read_seq_;
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  record.body.assign(plain_size, '\0');
  int len = 0;
  auto* o = reinterpret_cast<unsigned char*>(record.body.data());
  const auto* in =
      reinterpret_cast<const unsigned char*>(body.data()) + kExplicitNonceSize;
  std::string tag = body.substr(kExplicitNonceSize + plain_size);
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, read_.key.data(),
                         reinterpret_cast<const unsigned char*>(nonce.data())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), o, &len, in, static_cast<int>(plain_size)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), o + len, &len) != 1) {
    return absl::DataLossError("record does not decrypt (bad_record_mac)");
  }
  return record;
}

absl::StatusOr<std::string> Connection::ReceiveHandshake(absl::Duration timeout) {
  for (;;) {
    if (handshake_buffer_.size() >= 4) {
      const size_t length = (static_cast<uint8_t>(handshake_buffer_[1]) << 16) |
                            (static_cast<uint8_t>(handshake_buffer_[2]) << 8) |
                            static_cast<uint8_t>(handshake_buffer_[3]);
      if (handshake_buffer_.size() >= 4 + length) {
        std::string message = handshake_buffer_.substr(0, 4 + length);
        handshake_buffer_.erase(0, 4 + length);
        return message;
      }
    }
    OFFKEY_ASSIGN_OR_RETURN(Record record, Receive(timeout));
    if (record.type == kAlert && record.body.size() == 2) {
      return absl::AbortedError(
          absl::StrCat("alert ", static_cast<int>(static_cast<uint8_t>(record.body[1]))));
    }
    if (record.type != kHandshake) {
      return absl::FailedPreconditionError(
          absl::StrCat("expected a handshake record, got type ", record.type));
    }
    handshake_buffer_ += record.body;
  }
}

std::string FinishClientHandshake(Connection& c, const SecretBytes& master,
                                  absl::string_view client_random,
                                  absl::string_view server_random,
                                  std::string transcript) {
  absl::StatusOr<KeyBlock> keys = ExpandKeys(master, client_random, server_random);
  absl::StatusOr<std::string> verify = VerifyData(master, "client finished", transcript);
  if (!keys.ok() || !verify.ok()) return "key schedule failed";
  const std::string finished = HandshakeMessage(kFinished, *verify);
  transcript += finished;
  if (!c.Send(kChangeCipherSpec, std::string(1, '\x01')).ok()) return "send failed";
  c.ProtectWrites(std::move(keys->client));
  if (!c.Send(kHandshake, finished).ok()) return "send failed";

  absl::StatusOr<Record> answer = c.Receive();
  if (!answer.ok()) return "closed";
  if (answer->type == kAlert && answer->body.size() == 2) {
    return absl::StrCat("alert ",
                        static_cast<int>(static_cast<uint8_t>(answer->body[1])));
  }
  if (answer->type != kChangeCipherSpec) return "unexpected record";
  c.ProtectReads(std::move(keys->server));
  absl::StatusOr<std::string> server_finished = c.ReceiveHandshake();
  absl::StatusOr<std::string> expected =
      VerifyData(master, "server finished", transcript);
  if (!server_finished.ok() || !expected.ok()) return "no server Finished";
  return server_finished->substr(4) == *expected ? "finished" : "wrong server Finished";
}

absl::StatusOr<int> ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect: ", strerror(error)));
  }
  return fd;
}

}  // namespace offkey::tests::tls12
