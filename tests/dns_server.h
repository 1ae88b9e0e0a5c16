// A real DNS server for tests: Debian's dnsmasq on a UDP port of 127.0.0.1, answering A
// queries for one name with the addresses it is given, and nothing else (no upstream
// server, no /etc/hosts). It logs every query, so a test can count how often its clients
// resolved the name.
//
// gRPC clients reach it through a target with an authority,
// dns://127.0.0.1:PORT/NAME:PORT (Target()). That needs gRPC's c-ares resolver, the
// default of Debian's gRPC 1.51; the native resolver (GRPC_DNS_RESOLVER=native) refuses a
// target with an authority.
#ifndef OFFKEY_TESTS_DNS_SERVER_H_
#define OFFKEY_TESTS_DNS_SERVER_H_

#include <string>
#include <vector>

#include "tests/process.h"

namespace offkey::tests {

class DnsServer {
 public:
  DnsServer() = default;
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  // Starts dnsmasq serving `name` with `addresses` (IPv4, in any order) and waits until
  // it answers a query for the name with exactly those. Its hosts file goes under
  // $TEST_TMPDIR, its query log among the test's outputs. False, with the reason and
  // dnsmasq's output in `*why`, if it cannot start.
  bool Start(const std::string& name, const std::vector<std::string>& addresses,
             std::string* why);
  // SIGTERM, then waits; dnsmasq's exit status (0 when it stopped cleanly).
  int Stop();

  // The gRPC target that resolves the name through this server: every address of it,
  // on `port`.
  std::string Target(int port) const;
  // A queries for the name it has logged since it became ready (its readiness query
  // not counted): how many times clients resolved the name.
  int Queries() const;
  int port() const { return port_; }
  const std::string& log() const { return log_; }

 private:
  // Starts dnsmasq on a port picked now; true once it answered the name (with
  // `*answered`).
  bool TryStart(std::vector<std::string>* answered, std::string* why);

  Daemon daemon_;
  std::string name_, hosts_, log_;
  int port_ = 0;
  int queries_at_start_ = 0;
};

// Asks the DNS server on 127.0.0.1:`port` for the A records of `name`; the addresses of
// its answer, or none if it gave no answer within `timeout_ms`.
std::vector<std::string> QueryA(int port, const std::string& name, int timeout_ms);

}  // namespace offkey::tests

#endif  // OFFKEY_TESTS_DNS_SERVER_H_
