// A minimal TLS 1.2 server that holds no private key and never sees a premaster: for RSA
// key exchange it sends the ClientKeyExchange to offkeyd's DeriveMasterSecret and gets
// back only the (extended) master secret. One suite (TLS_RSA_WITH_AES_128_GCM_SHA256),
// extended master secret required, one connection at a time, each answered with one
// line: "offkey keyless server: <what the client sent>". For tests.
#ifndef OFFKEY_TESTS_TLS12_KEYLESS_SERVER_H_
#define OFFKEY_TESTS_TLS12_KEYLESS_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/mutex.h"
#include "client/offkey_client.h"

namespace offkey::tests::tls12 {

class KeylessServer {
 public:
  // Listens on 127.0.0.1 (port 0: any) and serves until destroyed. `key_name` names the
  // offkeyd key; `chain` is its certificate chain (DER, leaf first). `client` must
  // outlive the server.
  static absl::StatusOr<std::unique_ptr<KeylessServer>> Start(
      client::Client* client, std::string key_name, std::vector<std::string> chain);
  ~KeylessServer();

  int port() const { return port_; }
  // What each finished connection ended with: "ok" or the error.
  std::vector<std::string> outcomes() const;
  // Master secrets derived (hex), for comparison with what the client reports.
  std::vector<std::string> master_secrets_hex() const;

 private:
  KeylessServer() = default;
  void Serve();
  absl::Status Handle(int fd);

  client::Client* client_ = nullptr;
  std::string key_name_;
  std::vector<std::string> chain_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable offkey::Mutex mu_;
  std::vector<std::string> outcomes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> masters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace offkey::tests::tls12

#endif  // OFFKEY_TESTS_TLS12_KEYLESS_SERVER_H_
