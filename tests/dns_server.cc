#include "tests/dns_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"

namespace offkey::tests {
namespace {

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kClassIn = 1;

void Put16(std::string* out, uint16_t value) {
  out->push_back(static_cast<char>(value >> 8));
  out->push_back(static_cast<char>(value & 0xff));
}

uint16_t Get16(const std::string& in, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(in[at]) << 8) |
                               static_cast<uint8_t>(in[at + 1]));
}

// Moves `*at` past an encoded name (labels, ending in a zero byte or a pointer).
bool SkipName(const std::string& in, size_t* at) {
  while (*at < in.size()) {
    const auto length = static_cast<uint8_t>(in[*at]);
    if (length == 0) {
      *at += 1;
      return true;
    }
    if ((length & 0xc0) == 0xc0) {
      *at += 2;
      return *at <= in.size();
    }
    *at += 1 + length;
  }
  return false;
}

// The IPv4 addresses of the A records in the answer section of `reply` to query `id`.
std::vector<std::string> AnswerAddresses(const std::string& reply, uint16_t id) {
  std::vector<std::string> addresses;
  if (reply.size() < 12 || Get16(reply, 0) != id) return addresses;
  const uint16_t flags = Get16(reply, 2);
  if ((flags & 0x8000) == 0 || (flags & 0x000f) != 0) return addresses;  // QR, RCODE.
  size_t at = 12;
  for (uint16_t q = Get16(reply, 4); q > 0; --q) {
    if (!SkipName(reply, &at)) return {};
    at += 4;  // Type and class.
  }
  for (uint16_t a = Get16(reply, 6); a > 0; --a) {
    if (!SkipName(reply, &at) || at + 10 > reply.size()) return {};
    const uint16_t type = Get16(reply, at);
    const uint16_t length = Get16(reply, at + 8);
    at += 10;
    if (at + length > reply.size()) return {};
    if (type == kTypeA && length == 4) {
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, reply.data() + at, text, sizeof(text));
      addresses.emplace_back(text);
    }
    at += length;
  }
  return addresses;
}

// A base name for this server's files, unique in the test binary's run.
std::string FileBase() {
  static std::atomic<int> started{0};
  const ::testing::TestInfo* test =
      ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string which =
      test == nullptr ? ""
                      : absl::StrCat(test->test_suite_name(), ".", test->name(), "-");
  return absl::StrCat("dnsmasq-", absl::StrReplaceAll(which, {{"/", "_"}}), ++started);
}

}  // namespace

std::vector<std::string> QueryA(int port, const std::string& name, int timeout_ms) {
  static std::atomic<uint16_t> next_id{
      static_cast<uint16_t>(std::random_device()() & 0xffff)};
  const uint16_t id = next_id++;
  std::string query;
  Put16(&query, id);
  Put16(&query, 0x0100);  // A standard query, recursion desired.
  Put16(&query, 1);       // One question.
  query.append(6, '\0');  // No answer, authority or additional records.
  for (absl::string_view label : absl::StrSplit(name, '.', absl::SkipEmpty())) {
    query.push_back(static_cast<char>(label.size()));
    query.append(label.data(), label.size());
  }
  query.push_back('\0');
  Put16(&query, kTypeA);
  Put16(&query, kClassIn);

  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return {};
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(static_cast<uint16_t>(port));
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<std::string> addresses;
  if (sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&server),
             sizeof(server)) == static_cast<ssize_t>(query.size())) {
    pollfd wait{fd, POLLIN, 0};
    if (poll(&wait, 1, timeout_ms) == 1) {
      std::string reply(512, '\0');
      const ssize_t got = recv(fd, reply.data(), reply.size(), 0);
      if (got > 0) {
        reply.resize(static_cast<size_t>(got));
        addresses = AnswerAddresses(reply, id);
      }
    }
  }
  close(fd);
  return addresses;
}

bool DnsServer::Start(const std::string& name, const std::vector<std::string>& addresses,
                      std::string* why) {
  name_ = name;
  const char* tmp = getenv("TEST_TMPDIR");
  const std::string base = FileBase();
  hosts_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", base, ".hosts");
  log_ = offkey::testing::OutputPath(base + ".log");
  std::ofstream hosts(hosts_);
  for (const std::string& address : addresses) hosts << address << " " << name << "\n";
  hosts.close();
  // The port is free when picked but may be taken before dnsmasq binds it; dnsmasq
  // then exits at once, and another port is tried.
  std::vector<std::string> answered;
  bool started = false;
  for (int attempt = 0; attempt < 5 && !started; ++attempt) {
    started = TryStart(&answered, why);
  }
  if (!started) return false;
  std::vector<std::string> expected = addresses;
  std::sort(expected.begin(), expected.end());
  std::sort(answered.begin(), answered.end());
  if (answered != expected) {
    *why =
        absl::StrCat("dnsmasq answered ", name_, " with [", absl::StrJoin(answered, ", "),
                     "], not [", absl::StrJoin(expected, ", "), "]");
    Stop();
    return false;
  }
  queries_at_start_ = 0;
  queries_at_start_ = Queries();
  return true;
}

bool DnsServer::TryStart(std::vector<std::string>* answered, std::string* why) {
  port_ = UnusedPort(SOCK_DGRAM);
  if (port_ < 0) {
    *why = "no free UDP port on 127.0.0.1";
    return false;
  }
  unlink(log_.c_str());
  // --no-daemon also copies the log to standard error, which goes to hosts_ + ".out".
  return daemon_.StartUntil(
      {"/usr/sbin/dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
       "--no-hosts", "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1",
       absl::StrCat("--port=", port_), "--addn-hosts=" + hosts_, "--log-queries",
       "--log-facility=" + log_},
      {}, hosts_ + ".out",
      [&] {
        *answered = QueryA(port_, name_, 200);
        return !answered->empty();
      },
      why, absl::Seconds(30));
}

int DnsServer::Stop() { return daemon_.Stop(); }

std::string DnsServer::Target(int port) const {
  return absl::StrCat("dns://127.0.0.1:", port_, "/", name_, ":", port);
}

int DnsServer::Queries() const {
  const std::string needle = absl::StrCat(" query[A] ", name_, " from ");
  int queries = 0;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(log_), '\n')) {
    if (absl::StrContains(line, needle)) ++queries;
  }
  return queries - queries_at_start_;
}

}  // namespace offkey::tests
