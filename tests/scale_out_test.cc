// Scale-out and drain with real offkeyd processes behind one DNS name. A real DNS
// server (dnsmasq) serves offkeyd.test, and liboffkey clients are given only that name
// (dns://DNS_SERVER/offkeyd.test:PORT), as a terminator is given a headless Service
// name. Replicas share the development token and listen on the same 127.0.0.1 port
// (gRPC sets SO_REUSEPORT, so the kernel spreads new connections over them): the test
// serves on 127.0.0.1 only, so the name has that one address, where in a cluster each
// replica adds its own. Clients keep their connections until offkeyd's maximum
// connection age sends them away; they then resolve the name again and reconnect. So a
// replica added later gets calls only because connections age out, the DNS server sees
// every client resolve again, and a replica drained by SIGTERM loses no call because
// its clients move to the one that stays.
#include <atomic>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"
#include "client/offkey_client.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/dns_server.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"
#include "tests/process.h"

namespace offkey::tests {
namespace {

using ::offkey::testing::OutputPath;
using ::offkey::testing::RecordPrivateKeyPem;
using ::offkey::testing::RecordSecret;

// Short timers, so the test sees several connection lifetimes in a few seconds.
constexpr int kMaxAgeMs = 2000;
constexpr int kGraceMs = 2000;
constexpr int kClients = 16;  // Each its own connection (see MakeClients).
// The name clients resolve, and the name in the development server certificate.
constexpr char kName[] = "offkeyd.test";
constexpr char kCertificateName[] = "localhost";

int ReadPort(const std::string& path) {
  int port = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFileOrEmpty(path)), &port) ? port
                                                                                    : 0;
}

// One offkeyd process of the development state `state`, with `config`.
class Replica {
 public:
  Replica(std::string name, std::string dir)
      : name_(std::move(name)), dir_(std::move(dir)) {}

  // Starts it listening on 127.0.0.1:`port` (0: any) and waits until it serves.
  void Start(const std::string& state, const std::string& config, int port) {
    const std::string port_file = dir_ + "/" + name_ + ".port";
    const std::string metrics_file = dir_ + "/" + name_ + ".metrics";
    std::string why;
    ASSERT_TRUE(
        daemon_.Start({absl::StrCat(getenv("TEST_SRCDIR"), "/offkey/service/offkeyd"),
                       "--dev", "--dev_state_dir=" + state, "--config=" + config,
                       absl::StrCat("--listen=127.0.0.1:", port),
                       "--metrics_address=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
                       "--port_file=" + port_file, "--metrics_port_file=" + metrics_file},
                      FastUnwindEnvironment(), OutputPath(name_ + ".log"),
                      {port_file, metrics_file}, &why))
        << why;
    port_ = ReadPort(port_file);
    metrics_port_ = ReadPort(metrics_file);
  }

  // Signatures this replica made, from its metrics; -1 if it cannot be asked.
  int Signs() const {
    httplib::Client http("127.0.0.1", metrics_port_);
    http.set_connection_timeout(2);
    http.set_read_timeout(2);
    httplib::Result result = http.Get("/metrics");
    if (!result || result->status != 200) return -1;
    return OperationCountIn(result->body, "sign");
  }

  Daemon& daemon() { return daemon_; }
  int port() const { return port_; }

 private:
  const std::string name_, dir_;
  Daemon daemon_;
  int port_ = 0, metrics_port_ = 0;
};

class ScaleOutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = getenv("TEST_TMPDIR");
    state_ = dir_ + "/dev";
    config_ = dir_ + "/offkeyd.textproto";
    // The development configuration (what `offkeyd --dev` writes), with short
    // connection timers. --dev makes the token, the PKI and the keys on first start.
    std::ofstream(config_) << "tls {\n"
                           << "  cert_file: \"" << state_ << "/server.pem\"\n"
                           << "  key_file: \"" << state_ << "/server.key\"\n"
                           << "  client_ca_file: \"" << state_ << "/ca.pem\"\n"
                           << "}\n"
                           << "hsm {\n"
                           << "  module_path: \"/usr/lib/softhsm/libsofthsm2.so\"\n"
                           << "  token_uri: \"pkcs11:token=offkey-dev\"\n"
                           << "  pin_file: \"" << state_ << "/user.pin\"\n"
                           << "}\n"
                           << "policy {\n  grants {\n"
                           << "    identities: \"spiffe://offkey.dev/terminator\"\n"
                           << "    operations: SIGN\n    keys { all_keys: true }\n"
                           << "  }\n}\n"
                           << "dev_state_dir: \"" << state_ << "\"\n"
                           << "connections {\n  max_age_ms: " << kMaxAgeMs
                           << "\n  max_age_grace_ms: " << kGraceMs << "\n}\n";
    first_ = std::make_unique<Replica>("first", dir_);
    first_->Start(state_, config_, 0);
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_GT(first_->port(), 0);
    std::string why;
    ASSERT_TRUE(dns_.Start(kName, {"127.0.0.1"}, &why)) << why;
    for (const char* pin : {"user.pin", "so.pin"}) {
      RecordSecret(pin, absl::StripAsciiWhitespace(ReadFileOrEmpty(state_ + "/" + pin)));
    }
    for (const char* key : {"ca.key", "server.key", "terminator.key", "admin.key"}) {
      RecordPrivateKeyPem(key, ReadFileOrEmpty(state_ + "/" + key));
    }
  }

  // kClients liboffkey clients of the name, half of them on Pipeline streams.
  // gRPC shares a connection between channels with equal arguments, and a terminator
  // fleet has one client per process: a keepalive differing by a millisecond gives each
  // client a connection of its own, as separate processes would have.
  std::vector<std::unique_ptr<client::Client>> MakeClients() {
    std::vector<std::unique_ptr<client::Client>> clients;
    for (int i = 0; i < kClients; ++i) {
      client::ClientOptions options;
      options.target = dns_.Target(first_->port());
      options.server_name = kCertificateName;
      options.ca_file = state_ + "/ca.pem";
      options.cert_file = state_ + "/terminator.pem";
      options.key_file = state_ + "/terminator.key";
      options.keepalive_time = absl::Seconds(20) + absl::Milliseconds(i);
      options.pipeline = i % 2 == 1;
      options.stream_max_age = absl::Seconds(1);
      options.deadline *= SanitizerSlowdown();
      absl::StatusOr<std::unique_ptr<client::Client>> made =
          client::Client::Create(options);
      EXPECT_TRUE(made.ok()) << made.status();
      if (made.ok()) clients.push_back(*std::move(made));
    }
    return clients;
  }

  // Runs one thread per client signing in a loop until `stop`; counts calls and
  // failures (with the first failure's message).
  struct Load {
    std::atomic<bool> stop{false};
    std::atomic<int> calls{0}, failures{0};
    offkey::Mutex mu;
    std::string first_failure;
    std::vector<std::thread> threads;

    void Start(const std::vector<std::unique_ptr<client::Client>>& clients) {
      for (const auto& client : clients) {
        threads.emplace_back([this, c = client.get()] {
          v1::SignRequest request;
          request.mutable_key()->set_name("dev-p256");
          request.mutable_context()->set_version(v1::TLS_1_3);
          request.set_scheme(v1::ECDSA_SECP256R1_SHA256);
          request.set_message(Tls13Input());
          while (!stop.load()) {
            absl::StatusOr<v1::SignResponse> answer = c->Sign(request);
            ++calls;
            if (!answer.ok()) {
              ++failures;
              offkey::MutexLock lock(&mu);
              if (first_failure.empty()) first_failure = answer.status().ToString();
            }
          }
        });
      }
    }
    void Finish() {
      stop = true;
      for (std::thread& t : threads) t.join();
      threads.clear();
    }
  };

  std::string dir_, state_, config_;
  std::unique_ptr<Replica> first_;
  DnsServer dns_;
};

TEST_F(ScaleOutTest, AReplicaAddedLaterGetsCallsWithinTheMaximumConnectionAge) {
  std::vector<std::unique_ptr<client::Client>> clients = MakeClients();
  ASSERT_EQ(clients.size(), static_cast<size_t>(kClients));
  Load load;
  load.Start(clients);
  // Every client resolved the name and connected to the only replica.
  const absl::Time connected_by = absl::Now() + absl::Seconds(30);
  while (load.calls.load() < 10 * kClients && absl::Now() < connected_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const int queries_connected = dns_.Queries();
  EXPECT_GE(queries_connected, kClients) << "clients did not resolve " << kName;

  Replica second("second", dir_);
  second.Start(state_, config_, first_->port());
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(second.port(), first_->port());
  const absl::Time added = absl::Now();
  const int queries_added = dns_.Queries();

  // Every connection made before `added` ends within max age (+10 % jitter) + grace;
  // each reconnect lands on either replica.
  const absl::Duration bound = absl::Milliseconds(kMaxAgeMs) * 1.1 +
                               absl::Milliseconds(kGraceMs) + absl::Seconds(1);
  int on_second = 0;
  while (absl::Now() - added < bound + absl::Seconds(5)) {
    on_second = second.Signs();
    if (on_second > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration reached_after = absl::Now() - added;
  // Each client whose connection aged out asks the DNS server again, at most
  // client::kMinDnsResolutionIntervalMs after its previous resolution; keep the load on
  // until every one has (both replicas serve side by side meanwhile).
  const absl::Duration resolve_bound =
      bound + absl::Milliseconds(client::kMinDnsResolutionIntervalMs);
  while (dns_.Queries() - queries_added < kClients &&
         absl::Now() - added < resolve_bound + absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration resolved_after = absl::Now() - added;
  const int queries_after = dns_.Queries();
  load.Finish();

  std::cerr << "new replica: first call after " << absl::FormatDuration(reached_after)
            << " (max age " << kMaxAgeMs << " ms, grace " << kGraceMs
            << " ms); DNS queries " << queries_connected << " once connected, "
            << queries_added << " when the replica was added, " << queries_after << " "
            << absl::FormatDuration(resolved_after) << " later; calls "
            << load.calls.load() << ", failed " << load.failures.load()
            << ", first replica " << first_->Signs() << ", second replica "
            << second.Signs() << "\n";
  EXPECT_GT(on_second, 0) << "the new replica got no call";
  EXPECT_LE(reached_after, bound);
  EXPECT_GE(queries_after - queries_added, kClients)
      << "clients did not resolve " << kName << " again after their connections aged out";
  EXPECT_LE(resolved_after, resolve_bound);
  EXPECT_EQ(load.failures.load(), 0) << load.first_failure;
  EXPECT_EQ(second.daemon().Stop(), 0);
  EXPECT_EQ(dns_.Stop(), 0) << "dnsmasq, log " << dns_.log();
}

TEST_F(ScaleOutTest, SigtermDrainsAReplicaWithoutAFailedCall) {
  Replica second("second", dir_);
  second.Start(state_, config_, first_->port());
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::unique_ptr<client::Client>> clients = MakeClients();
  ASSERT_EQ(clients.size(), static_cast<size_t>(kClients));
  Load load;
  load.Start(clients);
  // Both replicas serve before one is drained.
  const absl::Time both_by = absl::Now() + absl::Seconds(30);
  while ((first_->Signs() <= 0 || second.Signs() <= 0) && absl::Now() < both_by) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_GT(first_->Signs(), 0);
  ASSERT_GT(second.Signs(), 0);

  const int calls_before = load.calls.load();
  const int queries_before = dns_.Queries();
  EXPECT_EQ(first_->daemon().Stop(), 0) << "the drained replica did not exit cleanly";
  const int calls_at_exit = load.calls.load();
  // The survivor carries the whole load for a while.
  const int second_at_exit = second.Signs();
  absl::SleepFor(absl::Seconds(2));
  load.Finish();
  const int second_after = second.Signs();
  const int queries_after = dns_.Queries();

  std::cerr << "drain: " << calls_at_exit - calls_before << " calls while draining, "
            << load.calls.load() << " in all, " << load.failures.load() << " failed; "
            << second_after - second_at_exit
            << " on the survivor after the exit; DNS queries " << queries_before
            << " before the drain, " << queries_after << " after\n";
  EXPECT_EQ(load.failures.load(), 0) << load.first_failure;
  EXPECT_GT(second_after - second_at_exit, 0);
  EXPECT_EQ(second.daemon().Stop(), 0);
  EXPECT_EQ(dns_.Stop(), 0) << "dnsmasq, log " << dns_.log();
}

}  // namespace
}  // namespace offkey::tests
