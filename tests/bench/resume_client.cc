// A TLS client for benchmarks that controls how many of its handshakes resume: each of
// --clients threads connects to --connect over and over for --seconds, fetching "/" each
// time (so it reads TLS 1.3 NewSessionTicket messages), and offers the last session it
// received in --resume percent of its handshakes, spread evenly. Prints one line:
//   handshakes N resumed R seconds T
// where R counts the handshakes the server actually resumed. Certificates are not
// verified: it measures servers the benchmark started itself on 127.0.0.1.
//
//   resume_client --connect 127.0.0.1:PORT [--seconds 5] [--clients 4] [--resume 50]
//                 [--tls1_2 [--cipher AES128-GCM-SHA256] | --tls1_3]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  double seconds = 5;
  int clients = 4;
  int resume_percent = 0;
  int version = 0;  // 0: any; TLS1_2_VERSION or TLS1_3_VERSION.
  std::string cipher;
};

struct Counts {
  long handshakes = 0;
  long resumed = 0;
  long failures = 0;
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(
      stderr,
      "resume_client: %s\nusage: resume_client --connect HOST:PORT [--seconds S] "
      "[--clients N] [--resume PERCENT] [--tls1_2 [--cipher LIST] | --tls1_3]\n",
      why);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--connect") {
      const std::string v = value();
      const size_t colon = v.rfind(':');
      if (colon == std::string::npos) Usage("--connect takes HOST:PORT");
      o.host = v.substr(0, colon);
      o.port = std::atoi(v.c_str() + colon + 1);
    } else if (arg == "--seconds") {
      o.seconds = std::atof(value().c_str());
    } else if (arg == "--clients") {
      o.clients = std::atoi(value().c_str());
    } else if (arg == "--resume") {
      o.resume_percent = std::atoi(value().c_str());
    } else if (arg == "--tls1_2") {
      o.version = TLS1_2_VERSION;
    } else if (arg == "--tls1_3") {
      o.version = TLS1_3_VERSION;
    } else if (arg == "--cipher") {
      o.cipher = value();
    } else {
      Usage(("unknown argument " + arg).c_str());
    }
  }
  if (o.port <= 0 || o.port > 65535) Usage("--connect needs a port");
  if (o.seconds <= 0 || o.clients <= 0) Usage("--seconds and --clients must be positive");
  if (o.resume_percent < 0 || o.resume_percent > 100) Usage("--resume is 0..100");
  return o;
}

int Dial(const Options& o) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(o.port));
  if (inet_pton(AF_INET, o.host.c_str(), &address.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// Keeps each session the server sends (a TLS 1.2 handshake's, each TLS 1.3
// NewSessionTicket's), serialized, in the std::string that is the connection's app data.
// Each offer parses a fresh copy (as `openssl s_client -sess_in` does): OpenSSL's client
// changes a TLS 1.3 session object it resumed, and haproxy sends no new ticket after a
// resumed handshake, so the object itself could not be offered again.
int KeepNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<std::string*>(SSL_get_app_data(ssl));
  const int length = i2d_SSL_SESSION(session, nullptr);
  if (length <= 0) return 0;
  slot->resize(static_cast<size_t>(length));
  auto* out = reinterpret_cast<unsigned char*>(slot->data());
  i2d_SSL_SESSION(session, &out);
  return 0;  // OpenSSL keeps its reference.
}

// One connection: handshake (offering `*session` when `resume`), fetch "/", read to the
// end; `*session` becomes the newest session the server sent. False on any failure.
bool OneConnection(SSL_CTX* ctx, const Options& o, bool resume, std::string* session,
                   bool* reused) {
  const int fd = Dial(o);
  if (fd < 0) return false;
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  SSL_set_app_data(ssl.get(), session);
  if (resume && !session->empty()) {
    const auto* in = reinterpret_cast<const unsigned char*>(session->data());
    SSL_SESSION* offered =
        d2i_SSL_SESSION(nullptr, &in, static_cast<long>(session->size()));  // NOLINT
    if (offered != nullptr) SSL_set_session(ssl.get(), offered);
    SSL_SESSION_free(offered);
  }
  bool ok = SSL_connect(ssl.get()) == 1;
  if (ok) {
    *reused = SSL_session_reused(ssl.get()) == 1;
    static constexpr char kRequest[] = "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n";
    ok = SSL_write(ssl.get(), kRequest, sizeof(kRequest) - 1) > 0;
    char buffer[4096];
    bool got_answer = false;
    while (ok) {
      const int n = SSL_read(ssl.get(), buffer, sizeof(buffer));
      if (n > 0) {
        got_answer = true;
        continue;
      }
      const int error = SSL_get_error(ssl.get(), n);
      ok = error == SSL_ERROR_ZERO_RETURN || (error == SSL_ERROR_SYSCALL && got_answer);
      break;
    }
    ok = ok && got_answer;
    SSL_shutdown(ssl.get());
  }
  ERR_clear_error();
  close(fd);
  return ok;
}

void Client(const Options& o, std::chrono::steady_clock::time_point end, Counts* counts) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_session_cache_mode(
      ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx.get(), KeepNewSession);
  if (o.version != 0) {
    SSL_CTX_set_min_proto_version(ctx.get(), o.version);
    SSL_CTX_set_max_proto_version(ctx.get(), o.version);
  }
  if (!o.cipher.empty() && SSL_CTX_set_cipher_list(ctx.get(), o.cipher.c_str()) != 1) {
    Usage("--cipher names no cipher this OpenSSL has");
  }
  std::string session;  // Serialized.
  long offered = 0;     // Handshakes that offered a session.
  for (long i = 0; std::chrono::steady_clock::now() < end; ++i) {
    // Offer a session when that keeps the share of offers at or below the target.
    const bool resume = (offered + 1) * 100 <= (i + 1) * o.resume_percent;
    if (resume) ++offered;
    bool reused = false;
    if (OneConnection(ctx.get(), o, resume, &session, &reused)) {
      ++counts->handshakes;
      if (reused) ++counts->resumed;
    } else {
      ++counts->failures;
    }
  }
  OPENSSL_cleanse(session.data(), session.size());
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  const auto start = std::chrono::steady_clock::now();
  const auto end =
      start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(o.seconds));
  std::vector<Counts> counts(static_cast<size_t>(o.clients));
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back(Client, std::cref(o), end, &counts[static_cast<size_t>(c)]);
  }
  for (std::thread& t : threads) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Counts total;
  for (const Counts& c : counts) {
    total.handshakes += c.handshakes;
    total.resumed += c.resumed;
    total.failures += c.failures;
  }
  std::printf("handshakes %ld resumed %ld seconds %.3f failures %ld\n", total.handshakes,
              total.resumed, elapsed, total.failures);
  return total.handshakes > 0 ? 0 : 1;
}
