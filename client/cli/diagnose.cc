#include "client/cli/diagnose.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/openssl_util.h"

namespace offkey::client::cli {
namespace {

struct SslCtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};

// A connected socket, closed on destruction.
class Socket {
 public:
  Socket() = default;
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// host and port of a gRPC target: "h:p", "[v6]:p", "dns:///h:p", "ipv4:h:p",
// "ipv6:[a]:p".
bool SplitTarget(absl::string_view target, std::string* host, std::string* port) {
  for (absl::string_view scheme : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&target, scheme)) break;
  }
  if (absl::StartsWith(target, "unix:")) return false;
  if (absl::ConsumePrefix(&target, "[")) {
    const size_t close = target.find("]:");
    if (close == absl::string_view::npos) return false;
    *host = std::string(target.substr(0, close));
    *port = std::string(target.substr(close + 2));
  } else {
    const size_t colon = target.rfind(':');
    if (colon == absl::string_view::npos) return false;
    *host = std::string(target.substr(0, colon));
    *port = std::string(target.substr(colon + 1));
  }
  int number = 0;
  return !host->empty() && absl::SimpleAtoi(*port, &number);
}

// Waits for `events` on fd until `deadline`. False on timeout.
bool WaitFor(int fd, short events, absl::Time deadline) {
  for (;;) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(ms));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// Connects to any address of host:port. "" or the reason it failed.
std::string ConnectTcp(const std::string& host, const std::string& port,
                       absl::Time deadline, Socket* socket_out) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc));
  }
  std::string error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    socket_out->reset(fd);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      error.clear();
      break;
    }
    if (errno != EINPROGRESS) {
      error = strerror(errno);
      continue;
    }
    if (!WaitFor(fd, POLLOUT, deadline)) {
      error = "no answer (timed out)";
      continue;
    }
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
    if (so_error == 0) {
      error.clear();
      break;
    }
    error = strerror(so_error);
  }
  freeaddrinfo(found);
  return error;
}

// Drives a non-blocking SSL call to completion. Returns its final result.
template <typename Op>
int Drive(SSL* ssl, int fd, absl::Time deadline, Op op) {
  for (;;) {
    const int rc = op();
    if (rc > 0) return rc;
    const int error = SSL_get_error(ssl, rc);
    if (error == SSL_ERROR_WANT_READ) {
      if (!WaitFor(fd, POLLIN, deadline)) return 0;
    } else if (error == SSL_ERROR_WANT_WRITE) {
      if (!WaitFor(fd, POLLOUT, deadline)) return 0;
    } else {
      return rc;
    }
  }
}

// The reason text of the first queued OpenSSL error, e.g. "tlsv1 alert unknown ca".
std::string FirstSslReason() {
  const unsigned long e = ERR_peek_error();
  const char* reason = e == 0 ? nullptr : ERR_reason_error_string(e);
  std::string out = reason == nullptr ? "" : reason;
  DrainOpenSslErrors();
  return out;
}

std::string Describe(const Setting& s) {
  return absl::StrCat("'", s.value, "' (", s.origin, ")");
}

}  // namespace

std::string ProbeConnection(const Endpoint& endpoint, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + std::min(timeout, absl::Seconds(10));
  const std::string where = absl::StrCat("offkeyd's ", endpoint.plane, " listener at ",
                                         Describe(endpoint.target));
  auto refused = [&](const std::string& reason) {
    return absl::StrCat(where, " refused the client certificate ",
                        Describe(endpoint.cert_file), " (", reason,
                        "): it must be signed by a CA in offkeyd's tls.client_ca_file");
  };
  std::string host, port;
  if (!SplitTarget(endpoint.target.value, &host, &port)) return "";  // Cannot probe.
  Socket socket;
  if (std::string error = ConnectTcp(host, port, deadline, &socket); !error.empty()) {
    return absl::StrCat("cannot reach ", where, ": ", error, ". Is offkeyd running there",
                        endpoint.plane == "admin"
                            ? " with an admin listener (admin_listen_address)?"
                            : "?");
  }

  std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr ||
      SSL_CTX_load_verify_locations(ctx.get(), endpoint.ca_file.value.c_str(), nullptr) !=
          1 ||
      SSL_CTX_use_certificate_chain_file(ctx.get(), endpoint.cert_file.value.c_str()) !=
          1 ||
      SSL_CTX_use_PrivateKey_file(ctx.get(), endpoint.key_file.value.c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    DrainOpenSslErrors();
    return "";  // OpenChannel already vetted the files; nothing more to say.
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>("\x02h2"), 3);
  std::unique_ptr<SSL, SslDeleter> ssl(SSL_new(ctx.get()));
  const std::string name = endpoint.server_name.empty() ? host : endpoint.server_name;
  unsigned char ip[16];
  const bool is_ip = inet_pton(AF_INET, name.c_str(), ip) == 1 ||
                     inet_pton(AF_INET6, name.c_str(), ip) == 1;
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
  if (is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl.get(), name.c_str());
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  }
  SSL_set_fd(ssl.get(), socket.fd());

  const int rc =
      Drive(ssl.get(), socket.fd(), deadline, [&] { return SSL_connect(ssl.get()); });
  if (rc <= 0) {
    const long verify = SSL_get_verify_result(ssl.get());
    const std::string reason = FirstSslReason();
    if (verify != X509_V_OK) {
      if (verify == X509_V_ERR_HOSTNAME_MISMATCH ||
          verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        return absl::StrCat(where, " presented a server certificate that does not name '",
                            name,
                            "'; connect by a name the certificate holds, or give "
                            "--server-name");
      }
      return absl::StrCat(where, " presented a server certificate that the CA file ",
                          Describe(endpoint.ca_file),
                          " does not vouch for: ", X509_verify_cert_error_string(verify),
                          ". Give the CA that signed offkeyd's certificate");
    }
    if (rc == 0 && reason.empty()) {
      return absl::StrCat("TLS handshake with ", where,
                          " did not finish (timed out or "
                          "closed): is that port a gRPC TLS listener?");
    }
    if (absl::StrContains(reason, "alert")) return refused(reason);
    return absl::StrCat("TLS handshake with ", where,
                        " failed: ", reason.empty() ? "unknown error" : reason);
  }
  // With TLS 1.3 the server judges our certificate after our side has finished: wait for
  // its first bytes (gRPC sends HTTP/2 SETTINGS at once) or its alert.
  char byte = 0;
  const int read = Drive(ssl.get(), socket.fd(), deadline,
                         [&] { return SSL_peek(ssl.get(), &byte, 1); });
  if (read <= 0) {
    const std::string reason = FirstSslReason();
    if (!reason.empty()) return refused(reason);
  }
  return "";
}

std::string ExplainFailure(const grpc::Status& status, const Endpoint& endpoint,
                           const std::string& what, absl::Duration timeout) {
  const std::string server_says = absl::StrCat(
      absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())), ": ",
      status.error_message());
  switch (status.error_code()) {
    case grpc::UNAVAILABLE:
    case grpc::DEADLINE_EXCEEDED:
    case grpc::UNKNOWN: {
      const std::string probe = ProbeConnection(endpoint, timeout);
      if (!probe.empty()) return absl::StrCat(what, ": ", probe);
      return absl::StrCat(what, ": offkeyd's ", endpoint.plane, " listener at ",
                          Describe(endpoint.target), " answered ", server_says);
    }
    case grpc::PERMISSION_DENIED:
      // offkeyd names the missing role or grant; say which identity it judged.
      return absl::StrCat(what, ": ", server_says, " (offkeyctl presented identity '",
                          PresentedIdentity(endpoint), "' from ",
                          Describe(endpoint.cert_file), ")");
    default:
      return absl::StrCat(what, ": ", server_says);
  }
}

}  // namespace offkey::client::cli
