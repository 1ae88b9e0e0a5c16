// liboffkey against real offkeyd servers on loopback over a real SoftHSM2 token: every
// operation synchronously and asynchronously, errors, retries, round-robin over a DNS
// name served by a real DNS server (dnsmasq), keepalive against a hung replica,
// reconnection after a restart, TLS checks.
#include "client/offkey_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/blocking_counter.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"
#include "gtest/gtest.h"
#include "hsm/testing/forwarding_store.h"
#include "hsm/testing/verify.h"
#include "service/config/config_loader.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {

using ::offkey::testing::RecordSecret;
namespace {

using ::offkey::hsm::testing::ForwardingStore;

namespace v1 = offkey::v1;
using client::CallOptions;
using client::Client;
using client::ClientOptions;

// Answers UNAVAILABLE to the next `failures` Sign calls, as a replica that lost its HSM
// does, and counts the Sign calls that reach the real store.
class FlakyStore : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  absl::StatusOr<std::string> Sign(absl::string_view id, hsm::SignAlgorithm a,
                                   absl::string_view m,
                                   const hsm::CallOptions& o) override {
    if (failures.load() > 0) {
      failures.fetch_sub(1);
      return absl::UnavailableError("test: HSM unreachable");
    }
    if (delay_ms.load() > 0) absl::SleepFor(absl::Milliseconds(delay_ms.load()));
    signs.fetch_add(1);
    return ForwardingStore::Sign(id, a, m, o);
  }
  std::atomic<int> failures{0};
  std::atomic<int> signs{0};
  std::atomic<int> delay_ms{0};  // A slow HSM.
};

void Write(const std::string& path, absl::string_view text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A TCP relay from `listen_ip`:`port` to `target_ip`:`target_port` that can be frozen: it
// then moves no more bytes and accepts but never answers new connections, yet closes
// nothing, which is how a hung replica (a stopped process, a partition) looks to its
// clients. It counts the connections its clients close while it is frozen. One thread;
// test traffic only.
class FreezableRelay {
 public:
  // Listens on 127.0.0.1 on a port of its own (port()) and relays to target_port there.
  explicit FreezableRelay(int target_port) : target_port_(target_port) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Address(0);
    socklen_t len = sizeof(addr);
    ok_ = bind(listener_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 &&
          listen(listener_, 16) == 0 &&
          getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    if (ok_) {
      port_ = ntohs(addr.sin_port);
      thread_ = std::thread([this] { Run(); });
    }
  }
  ~FreezableRelay() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (const Pair& p : pairs_) {
      close(p.client);
      if (p.upstream >= 0) close(p.upstream);
    }
    close(listener_);
  }
  FreezableRelay(const FreezableRelay&) = delete;
  FreezableRelay& operator=(const FreezableRelay&) = delete;

  bool ok() const { return ok_; }
  int port() const { return port_; }
  void Freeze() { frozen_ = true; }
  int closed_while_frozen() const { return closed_while_frozen_.load(); }

 private:
  struct Pair {
    int client;
    int upstream;  // -1: accepted while frozen, never connected.
    bool closed = false;
  };

  static sockaddr_in Address(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  // Moves what `from` has to `to`; false once `from` is closed or fails.
  static bool Move(int from, int to) {
    char buffer[16384];
    const ssize_t n = read(from, buffer, sizeof(buffer));
    if (n <= 0) return false;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = write(to, buffer + done, static_cast<size_t>(n - done));
      if (w <= 0) return false;
      done += w;
    }
    return true;
  }

  void Run() {
    while (!stop_) {
      const bool frozen = frozen_.load();
      std::vector<pollfd> fds = {{listener_, POLLIN, 0}};
      for (const Pair& p : pairs_) {
        if (p.closed) continue;
        // Frozen, only a client's hang-up is watched: nothing is read.
        fds.push_back({p.client, static_cast<short>(frozen ? POLLRDHUP : POLLIN), 0});
        if (!frozen && p.upstream >= 0) fds.push_back({p.upstream, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 50) <= 0) continue;
      if ((fds[0].revents & POLLIN) != 0) Accept(frozen);
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        for (Pair& p : pairs_) {
          if (p.closed || (fds[i].fd != p.client && fds[i].fd != p.upstream)) continue;
          if (frozen) {
            p.closed = true;
            closed_while_frozen_.fetch_add(1);
          } else if (!Move(fds[i].fd, fds[i].fd == p.client ? p.upstream : p.client)) {
            p.closed = true;
            shutdown(p.client, SHUT_RDWR);
            shutdown(p.upstream, SHUT_RDWR);
          }
          break;
        }
      }
    }
  }

  void Accept(bool frozen) {
    const int client = accept(listener_, nullptr, nullptr);
    if (client < 0) return;
    int upstream = -1;
    if (!frozen) {
      upstream = socket(AF_INET, SOCK_STREAM, 0);
      const sockaddr_in addr = Address(target_port_);
      if (connect(upstream, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) !=
          0) {
        close(upstream);
        close(client);
        return;
      }
    }
    pairs_.push_back({client, upstream});
  }

  const int target_port_;
  int port_ = 0;
  int listener_ = -1;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> frozen_{false};
  std::atomic<int> closed_while_frozen_{0};
  std::vector<Pair> pairs_;  // Owned by the relay's thread.
  std::thread thread_;
};

class ClientTest : public OffkeydTest {
 protected:
  hsm::KeyStore* ServedStore(hsm::KeyStore* real) override {
    flaky_ = std::make_unique<FlakyStore>(real);
    return flaky_.get();
  }

  void SetUp() override {
    OffkeydTest::SetUp();
    if (HasFatalFailure()) return;
    ec_ = AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
    rsa_ = AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
  }

  ClientOptions Files(const std::string& identity = kTerminator) {
    return ClientFiles(identity);
  }

  std::unique_ptr<Client> Make(ClientOptions options) {
    auto made = Client::Create(std::move(options));
    EXPECT_TRUE(made.ok()) << made.status();
    return made.ok() ? *std::move(made) : nullptr;
  }

  v1::SignRequest SignEc() const {
    v1::SignRequest r;
    r.mutable_key()->set_name("web-ec");
    r.mutable_context()->set_version(v1::TLS_1_3);
    r.set_scheme(v1::ECDSA_SECP256R1_SHA256);
    r.set_message(Tls13Input());
    return r;
  }

  // A second server process-alike on the same token (its own listener and store view).
  std::unique_ptr<service::OffkeyServer> StartServer(const std::string& listen,
                                                     hsm::KeyStore* store,
                                                     const std::string& cert_base) {
    v1::ServerConfig config = config_;
    config.set_listen_address(listen);
    config.clear_admin_listen_address();
    if (!cert_base.empty()) {
      config.mutable_tls()->set_cert_file(cert_base + ".pem");
      config.mutable_tls()->set_key_file(cert_base + ".key");
    }
    auto started = service::OffkeyServer::Start(config, store);
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? *std::move(started) : nullptr;
  }

  // Writes a server certificate for offkeyd.test; returns the files' path without
  // the .pem or .key extension.
  std::string ReplicaCert() {
    const service::dev::IssuedCert cert = ServerCert(ca_, {"offkeyd.test"});
    std::string base = dir_ + "/replica";
    Write(base + ".pem", cert.cert_pem);
    Write(base + ".key", cert.key_pem.view());
    return base;
  }

  // Points `options` at both replicas through one target, as a name with two addresses
  // would (round_robin over every address; the replicas' certificates name
  // offkeyd.test). Both listen on 127.0.0.1, on their own ports.
  static void TargetBoth(int port_a, int port_b, ClientOptions* options) {
    options->target = absl::StrCat("ipv4:127.0.0.1:", port_a, ",127.0.0.1:", port_b);
    options->server_name = "offkeyd.test";
  }

  // round_robin waits for no replica: the first calls go to whichever connected first.
  // Calls until both replicas have answered, after which calls alternate.
  void UseBoth(Client& client, const FlakyStore& a, const FlakyStore& b) {
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while ((a.signs.load() == 0 || b.signs.load() == 0) && absl::Now() < give_up) {
      absl::StatusOr<v1::SignResponse> signature = client.Sign(SignEc());
      ASSERT_TRUE(signature.ok()) << signature.status();
    }
    ASSERT_GT(a.signs.load(), 0);
    ASSERT_GT(b.signs.load(), 0);
  }

  std::unique_ptr<FlakyStore> flaky_;
  hsm::KeyInfo ec_;
  hsm::KeyInfo rsa_;
};

// The tests below run twice: synchronous calls as unary RPCs, and on Pipeline streams.
class TransportTest : public ClientTest, public ::testing::WithParamInterface<bool> {
 protected:
  ClientOptions Files(const std::string& identity = kTerminator) {
    ClientOptions options = ClientFiles(identity);
    options.pipeline = GetParam();
    return options;
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, TransportTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Pipeline" : "Unary";
                         });

TEST_P(TransportTest, EveryOperationSynchronouslyAndAsynchronously) {
  std::unique_ptr<Client> client = Make(Files());
  ASSERT_NE(client, nullptr);

  absl::StatusOr<v1::ListKeysResponse> keys = client->ListKeys({});
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->keys_size(), 2);

  v1::GetCertificateRequest get;
  get.mutable_key()->set_name("web-rsa");
  absl::StatusOr<v1::GetCertificateResponse> chain = client->GetCertificate(get);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(chain->certificate_chain_size(), 2);
  EXPECT_EQ(chain->key_id(), rsa_.key_id);

  const v1::SignRequest sign = SignEc();
  absl::StatusOr<v1::SignResponse> signature = client->Sign(sign);
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(hsm::testing::VerifyWithOpenSsl(
                  ec_.public_key_spki,
                  {hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha256},
                  sign.message(), signature->signature())
                  .ok());

  const std::string premaster = std::string("\x03\x03", 2) + Random(46);
  RecordSecret("premaster", premaster);
  v1::DecryptPremasterRequest decrypt;
  decrypt.mutable_key()->set_name("web-rsa");
  decrypt.mutable_context()->set_version(v1::TLS_1_2);
  decrypt.set_ciphertext(hsm::testing::RsaEncryptPkcs1(rsa_.public_key_spki, premaster));
  decrypt.set_client_version(0x0303);
  absl::StatusOr<v1::DecryptPremasterResponse> decrypted =
      client->DecryptPremaster(decrypt);
  ASSERT_TRUE(decrypted.ok()) << decrypted.status();
  EXPECT_TRUE(decrypted->premaster() == premaster);  // Not printed on failure.

  v1::DeriveMasterSecretRequest derive;
  derive.mutable_key()->set_name("web-rsa");
  derive.mutable_context()->set_version(v1::TLS_1_2);
  derive.set_ciphertext(decrypt.ciphertext());
  derive.set_client_version(0x0303);
  derive.set_prf_hash(v1::PRF_SHA256);
  derive.set_session_hash(Random(32));
  absl::StatusOr<v1::DeriveMasterSecretResponse> master =
      client->DeriveMasterSecret(derive);
  ASSERT_TRUE(master.ok()) << master.status();
  RecordSecret("master secret", master->master_secret());
  EXPECT_EQ(master->master_secret().size(), 48u);

  // No trust bundle is granted: offkeyd's own refusal comes back as it is.
  v1::VerifyClientRequest verify;
  verify.set_trust_bundle("clients");
  absl::StatusOr<v1::VerifyClientResponse> verified = client->VerifyClient(verify);
  EXPECT_FALSE(verified.ok());
  EXPECT_NE(verified.status().code(), absl::StatusCode::kUnavailable);

  // The same six asynchronously, all in flight at once; each answer equals the
  // synchronous one where the operation is deterministic.
  absl::BlockingCounter pending(6);
  offkey::Mutex mu;
  std::vector<std::string> failures;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) {
      offkey::MutexLock lock(&mu);
      failures.push_back(what);
    }
    pending.DecrementCount();
  };
  client->ListKeysAsync({}, {}, [&](absl::StatusOr<v1::ListKeysResponse> r) {
    expect(r.ok() && r->keys_size() == 2, "ListKeysAsync");
  });
  client->GetCertificateAsync(get, {}, [&](absl::StatusOr<v1::GetCertificateResponse> r) {
    expect(r.ok() && r->certificate_chain_size() == 2, "GetCertificateAsync");
  });
  client->SignAsync(sign, {}, [&](absl::StatusOr<v1::SignResponse> r) {
    expect(r.ok() && hsm::testing::VerifyWithOpenSsl(
                         ec_.public_key_spki,
                         {hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha256},
                         sign.message(), r->signature())
                         .ok(),
           "SignAsync");
  });
  client->DecryptPremasterAsync(
      decrypt, {}, [&](absl::StatusOr<v1::DecryptPremasterResponse> r) {
        expect(r.ok() && r->premaster() == premaster, "DecryptPremasterAsync");
      });
  client->DeriveMasterSecretAsync(
      derive, {}, [&](absl::StatusOr<v1::DeriveMasterSecretResponse> r) {
        expect(r.ok() && r->master_secret() == master->master_secret(),
               "DeriveMasterSecretAsync");
      });
  client->VerifyClientAsync(
      verify, {}, [&](const absl::StatusOr<v1::VerifyClientResponse>& r) {
        expect(r.status().code() == verified.status().code(), "VerifyClientAsync");
      });
  pending.Wait();
  EXPECT_TRUE(failures.empty()) << absl::StrJoin(failures, ", ");
  EXPECT_EQ(client->stats().calls, 12);
  EXPECT_EQ(client->stats().attempts, 12);
  // One thread's synchronous calls share one stream.
  EXPECT_EQ(client->stats().streams, GetParam() ? 1 : 0);
}

// Streams are pooled: concurrent callers each borrow one, and a stream older than
// stream_max_age is replaced, so that new replicas get their share over time.
TEST_F(ClientTest, PipelineStreamsArePooledAndReplacedWithAge) {
  ClientOptions options = Files();
  options.pipeline = true;
  options.stream_max_age = absl::Seconds(1);
  std::unique_ptr<Client> client = Make(options);
  ASSERT_NE(client, nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        if (!client->Sign(SignEc()).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  const int64_t opened = client->stats().streams;
  EXPECT_GE(opened, 1);
  EXPECT_LE(opened, 3);  // Never more than the callers at once.
  EXPECT_EQ(flaky_->signs.load(), 30);
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(client->Sign(SignEc()).ok());  // The idle streams are too old: a new one.
  ASSERT_TRUE(client->Sign(SignEc()).ok());  // Which is reused.
  EXPECT_EQ(client->stats().streams, opened + 1);
}

TEST_P(TransportTest, OffkeydRefusalsComeBackUnchangedAndAreNotRetried) {
  std::unique_ptr<Client> stranger = Make(Files(kStranger));
  ASSERT_NE(stranger, nullptr);
  absl::StatusOr<v1::SignResponse> denied = stranger->Sign(SignEc());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);

  std::unique_ptr<Client> client = Make(Files());
  v1::SignRequest bad = SignEc();
  bad.set_message("");
  absl::StatusOr<v1::SignResponse> invalid = client->Sign(bad);
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(invalid.status().message().find("message"), std::string::npos)
      << invalid.status();
  EXPECT_EQ(stranger->stats().attempts, 1);
  EXPECT_EQ(client->stats().attempts, 1);
}

TEST_P(TransportTest, UnavailableIsRetriedWithBackoffUntilItSucceeds) {
  ClientOptions options = Files();
  options.max_attempts = 4;
  options.initial_backoff = absl::Milliseconds(50);
  std::unique_ptr<Client> client = Make(options);
  ASSERT_NE(client, nullptr);
  flaky_->failures = 3;
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::SignResponse> signature = client->Sign(SignEc());
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_EQ(client->stats().attempts, 4);
  EXPECT_EQ(flaky_->signs.load(), 1);
  // Backoffs of at least 25 + 50 + 100 ms (each drawn from [b/2, b]).
  EXPECT_GE(took, absl::Milliseconds(175));

  // One failure more than the attempts: the last UNAVAILABLE comes back, saying where.
  flaky_->failures = 4;
  absl::StatusOr<v1::SignResponse> failed = client->Sign(SignEc());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(failed.status().message().find("4 attempts"), std::string::npos)
      << failed.status();
  EXPECT_NE(failed.status().message().find(options.target), std::string::npos);
  EXPECT_EQ(client->stats().attempts, 8);
}

TEST_P(TransportTest, RetriesStopAtTheDeadline) {
  ClientOptions options = Files();
  options.max_attempts = 1000;
  options.initial_backoff = absl::Milliseconds(20);
  options.max_backoff = absl::Milliseconds(100);
  std::unique_ptr<Client> client = Make(options);
  ASSERT_NE(client, nullptr);
  flaky_->failures = 1000000;
  CallOptions call;
  call.timeout = absl::Milliseconds(600);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::SignResponse> failed = client->Sign(SignEc(), call);
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(failed.status().code() == absl::StatusCode::kUnavailable ||
              failed.status().code() == absl::StatusCode::kDeadlineExceeded)
      << failed.status();
  EXPECT_LT(took, absl::Milliseconds(600 + 500));
  // Backoff grows to 100 ms: far fewer attempts than 600 ms / 20 ms would allow.
  EXPECT_GE(client->stats().attempts, 4);
  EXPECT_LE(client->stats().attempts, 20);
  flaky_->failures = 0;
}

// Resolving a DNS name to several addresses is scale_out_test's (a real DNS server); here
// the target lists the addresses itself, which reaches the same round_robin policy.
TEST_F(ClientTest, RoundRobinOverEveryAddressOfTheTarget) {
  // Two more replicas on the same token.
  const std::string cert_base = ReplicaCert();
  FlakyStore a(store_.get());
  FlakyStore b(store_.get());
  std::unique_ptr<service::OffkeyServer> replica_a =
      StartServer("127.0.0.1:0", &a, cert_base);
  ASSERT_NE(replica_a, nullptr);
  std::unique_ptr<service::OffkeyServer> replica_b =
      StartServer("127.0.0.1:0", &b, cert_base);
  ASSERT_NE(replica_b, nullptr);

  ClientOptions options = Files();
  TargetBoth(replica_a->port(), replica_b->port(), &options);
  std::unique_ptr<Client> client = Make(options);
  ASSERT_NE(client, nullptr);
  ASSERT_NO_FATAL_FAILURE(UseBoth(*client, a, b));
  const int a_before = a.signs.load();
  const int b_before = b.signs.load();
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<v1::SignResponse> signature = client->Sign(SignEc());
    ASSERT_TRUE(signature.ok()) << signature.status();
  }
  EXPECT_GE(a.signs.load() - a_before, 8) << "replica a";
  EXPECT_GE(b.signs.load() - b_before, 8) << "replica b";
  EXPECT_EQ(a.signs.load() - a_before + b.signs.load() - b_before, 20);
  EXPECT_EQ(flaky_->signs.load(), 0);  // The fixture's server is not in the target.

  // One replica down: every call still succeeds on the other.
  replica_a->Shutdown(absl::Seconds(1));
  replica_a.reset();
  const int b_alone = b.signs.load();
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<v1::SignResponse> signature = client->Sign(SignEc());
    ASSERT_TRUE(signature.ok()) << i << ": " << signature.status();
  }
  EXPECT_EQ(b.signs.load() - b_alone, 10);
}

// Keepalive pings find a replica that hangs without closing its connections: the client
// drops that connection, and calls go to the live replica instead of waiting out their
// deadlines on the hung one.
TEST_F(ClientTest, KeepaliveNoticesAHungReplica) {
  const std::string cert_base = ReplicaCert();
  FlakyStore a(store_.get());
  FlakyStore b(store_.get());
  std::unique_ptr<service::OffkeyServer> replica_b =
      StartServer("127.0.0.1:0", &b, cert_base);
  ASSERT_NE(replica_b, nullptr);
  // Replica a is reached through the relay, which the target names instead.
  std::unique_ptr<service::OffkeyServer> replica_a =
      StartServer("127.0.0.1:0", &a, cert_base);
  ASSERT_NE(replica_a, nullptr);
  FreezableRelay relay(replica_a->port());
  ASSERT_TRUE(relay.ok());

  ClientOptions options = Files();
  options.keepalive_time = absl::Seconds(10);  // The least ClientOptions allows.
  options.keepalive_timeout = absl::Seconds(1);
  TargetBoth(relay.port(), replica_b->port(), &options);
  std::unique_ptr<Client> client = Make(options);
  ASSERT_NE(client, nullptr);
  ASSERT_NO_FATAL_FAILURE(UseBoth(*client, a, b));

  relay.Freeze();
  const absl::Time frozen = absl::Now();
  while (relay.closed_while_frozen() == 0 && absl::Now() - frozen < absl::Seconds(30)) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(relay.closed_while_frozen(), 1) << "keepalive did not drop the hung replica";
  // The next ping is due 10 s after the last call; its answer 1 s later.
  EXPECT_LT(absl::Now() - frozen, absl::Seconds(13));

  const int a_before = a.signs.load();
  const int b_before = b.signs.load();
  CallOptions quick;
  quick.timeout = absl::Seconds(1);
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<v1::SignResponse> signature = client->Sign(SignEc(), quick);
    ASSERT_TRUE(signature.ok()) << i << ": " << signature.status();
  }
  EXPECT_EQ(b.signs.load() - b_before, 10);
  EXPECT_EQ(a.signs.load(), a_before);
}

// An answer later than the deadline is DEADLINE_EXCEEDED, not retried, and the next
// call goes through (on a new stream, the timed-out one having been cancelled).
TEST_P(TransportTest, ASlowAnswerMissesTheDeadlineAndTheNextCallWorks) {
  std::unique_ptr<Client> client = Make(Files());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Sign(SignEc()).ok());
  flaky_->delay_ms = 800;
  CallOptions quick;
  quick.timeout = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::SignResponse> late = client->Sign(SignEc(), quick);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(600));
  EXPECT_EQ(client->stats().attempts, 2);
  flaky_->delay_ms = 0;
  absl::StatusOr<v1::SignResponse> again = client->Sign(SignEc());
  EXPECT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(client->stats().streams, GetParam() ? 2 : 0);
}

TEST_P(TransportTest, ARestartedServerIsUsedAgainWithoutANewClient) {
  std::unique_ptr<Client> client = Make(Files());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Sign(SignEc()).ok());
  StopOffkeyd();

  CallOptions quick;
  quick.timeout = absl::Milliseconds(500);
  absl::StatusOr<v1::SignResponse> down = client->Sign(SignEc(), quick);
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_NE(down.status().message().find("offkeyd at '127.0.0.1:"), std::string::npos)
      << down.status();

  ASSERT_NO_FATAL_FAILURE(RestartOffkeyd());
  // gRPC's reconnect backoff is capped at 2 s by the client; allow a few periods.
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::SignResponse> again = client->Sign(SignEc(), quick);
  while (!again.ok() && absl::Now() - start < absl::Seconds(8)) {
    again = client->Sign(SignEc(), quick);
  }
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST_F(ClientTest, TlsChecksTheServerNameAndTheCa) {
  // The server's certificate names 127.0.0.1 only.
  ClientOptions options = Files();
  options.server_name = "elsewhere.test";
  std::unique_ptr<Client> client = Make(options);
  ASSERT_NE(client, nullptr);
  CallOptions quick;
  quick.timeout = absl::Seconds(2);
  EXPECT_EQ(client->Sign(SignEc(), quick).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(flaky_->signs.load(), 0);

  // A CA file that did not sign offkeyd's certificate.
  service::dev::IssuedCert other = TestCa("another CA");
  ClientOptions untrusting = Files();
  Write(untrusting.ca_file, other.cert_pem);
  std::unique_ptr<Client> untrusted = Make(untrusting);
  ASSERT_NE(untrusted, nullptr);
  EXPECT_EQ(untrusted->Sign(SignEc(), quick).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(flaky_->signs.load(), 0);
}

TEST_F(ClientTest, BadOptionsAreRefusedByName) {
  const ClientOptions good = Files();
  struct Case {
    std::string want;  // In the message.
    ClientOptions options;
  };
  std::vector<Case> cases;
  cases.push_back({"target", good});
  cases.back().options.target = "";
  cases.push_back({"deadline", good});
  cases.back().options.deadline = absl::ZeroDuration();
  cases.push_back({"max_attempts", good});
  cases.back().options.max_attempts = 0;
  cases.push_back({"keepalive_time", good});
  cases.back().options.keepalive_time = absl::Seconds(1);
  cases.push_back({"choose one", good});
  cases.back().options.insecure_plaintext_for_development = true;
  cases.push_back({"ca_file, cert_file and key_file", good});
  cases.back().options.key_file = "";
  cases.push_back({"(ca_file)", good});
  cases.back().options.ca_file = dir_ + "/missing.pem";
  cases.push_back({"does not belong to the key", good});
  cases.back().options.key_file = Files().key_file;  // Another client's key.
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<Client>> made = Client::Create(c.options);
    EXPECT_FALSE(made.ok()) << c.want;
    EXPECT_NE(made.status().message().find(c.want), std::string::npos)
        << c.want << ": " << made.status();
  }
}

TEST_F(ClientTest, DestroyingTheClientWaitsForCallbacksInFlight) {
  std::unique_ptr<Client> client = Make(Files());
  ASSERT_NE(client, nullptr);
  std::atomic<int> answered{0};
  for (int i = 0; i < 50; ++i) {
    client->SignAsync(SignEc(), {},
                      [&answered](const absl::StatusOr<v1::SignResponse>& r) {
                        if (r.ok()) answered.fetch_add(1);
                      });
  }
  client.reset();
  EXPECT_EQ(answered.load(), 50);
}

}  // namespace
}  // namespace offkey::tests
