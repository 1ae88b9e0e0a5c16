// offkey-bench: offkeyd's throughput and latency against bare PKCS#11, in one run.
//
// It makes a SoftHSM2 token and a key, starts offkeyd (the server library) on
// 127.0.0.1 with mutual TLS, and measures one operation two ways on the same token:
//   bare      each thread owns a PKCS#11 session and calls C_SignInit/C_Sign (or
//             C_DecryptInit/C_Decrypt) directly, with the same local work offkeyd does;
//   offkeyd   each client thread calls the RPC over mTLS (client, server and HSM share
//             this machine's cores, as they would on a 2-core edge box).
// Phase 1 saturates both with --concurrency closed-loop threads and reports ops/s and
// latency percentiles with the ratio; it then saturates the RPC path with no HSM work
// (GetCertificate) and gRPC's own health check over the same mTLS, and prints the
// ceiling each puts on the ratio: when client, server and HSM share the cores, an
// operation through offkeyd costs at least the bare operation plus one RPC, so
// offkeyd/bare <= rpc / (rpc + bare) in ops/s. Phase 2 offers half of offkeyd's saturated
// rate open-loop (latency counted from each request's scheduled time, so queueing shows)
// and compares the p99s.
//
//   bazel run -c opt //tests/bench:offkey-bench -- --op=sign --key=rsa2048 --duration=5
#include <openssl/rand.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "hsm/pkcs11/key_encoding.h"
#include "hsm/pkcs11/object_io.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "hsm/pkcs11/testing/softhsm.h"
#include "hsm/testing/verify.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "offkey/v1/metadata.pb.h"
#include "service/config/config_loader.h"
#include "service/dev/dev_pki.h"
#include "service/server.h"

ABSL_FLAG(std::string, op, "sign", "Operation: sign or decrypt (TLS 1.2 premaster).");
ABSL_FLAG(std::string, key, "rsa2048", "Key type: rsa2048, p256, p384 or ed25519.");
ABSL_FLAG(int, concurrency, 4, "Threads in flight, for both paths.");
ABSL_FLAG(double, duration, 5, "Seconds per measurement.");
ABSL_FLAG(
    int, sessions, 0,
    "HSM sessions (and worker threads) of offkeyd; 0: --concurrency, the number "
    "of sessions the bare PKCS#11 path uses, so both get the same HSM parallelism.");
ABSL_FLAG(int, streams, 2,
          "Pipeline streams for the stream measurement (0: skip it); each keeps "
          "--window items in flight.");
ABSL_FLAG(int, window, 16, "Items in flight per Pipeline stream.");
ABSL_FLAG(bool, cpu_per_op, false,
          "Only run offkeyd closed loop and print the CPU time its threads spent per "
          "operation, by thread name (from /proc/self/task), then exit: for profiling "
          "offkeyd with perf without the other phases mixed in.");

namespace offkey::tests::bench {
namespace {

using Op = std::function<bool(int thread)>;

struct Result {
  double ops_per_second = 0;
  std::vector<double> latencies_us;  // Sorted.
  long failures = 0;                 // NOLINT(runtime/int)
  double Percentile(double p) const {
    if (latencies_us.empty()) return 0;
    size_t i = static_cast<size_t>(std::lround(p / 100 * (latencies_us.size() - 1)));
    return latencies_us[std::min(i, latencies_us.size() - 1)];
  }
};

// CPU time (user + system) of this process's threads, summed by thread name, in
// seconds. Threads that ended since are not counted.
std::map<std::string, double> CpuByThreadName() {
  std::map<std::string, double> cpu;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  std::error_code ignored;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/self/task", ignored)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    // pid (comm) state ...: comm may hold spaces, so split around its parentheses.
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string name = stat.substr(open + 1, close - open - 1);
    std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
    // After comm: state is field 3 of stat(5), utime 14 and stime 15.
    if (fields.size() < 13) continue;
    cpu[name] += (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
  }
  return cpu;
}

// Names the calling thread (for top and perf).
void NameThread(const char* name) { pthread_setname_np(pthread_self(), name); }

// Closed loop: `threads` threads call `op` back to back for `seconds`.
Result Saturate(const Op& op, int threads, double seconds) {
  std::vector<std::vector<double>> per_thread(threads);
  std::atomic<bool> stop{false};
  std::atomic<long> failures{0};  // NOLINT(runtime/int)
  std::vector<std::thread> workers;
  const absl::Time start = absl::Now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      NameThread("bench-closed");
      while (!stop.load(std::memory_order_relaxed)) {
        absl::Time begin = absl::Now();
        if (!op(t)) ++failures;
        per_thread[t].push_back(absl::ToDoubleMicroseconds(absl::Now() - begin));
      }
    });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (auto& w : workers) w.join();
  Result result;
  for (auto& v : per_thread) {
    result.latencies_us.insert(result.latencies_us.end(), v.begin(), v.end());
  }
  std::sort(result.latencies_us.begin(), result.latencies_us.end());
  result.ops_per_second =
      result.latencies_us.size() / absl::ToDoubleSeconds(absl::Now() - start);
  result.failures = failures;
  return result;
}

// Open loop: requests scheduled at `rate` per second for `seconds`; latency from the
// scheduled time. `threads` must be enough to keep up (more than rate x latency).
Result OpenLoop(const Op& op, int threads, double rate, double seconds) {
  const long total = static_cast<long>(rate * seconds);  // NOLINT(runtime/int)
  std::vector<double> latencies(total);
  std::atomic<long> next{0}, failures{0};  // NOLINT(runtime/int)
  const absl::Time start = absl::Now() + absl::Milliseconds(20);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      NameThread("bench-open");
      for (long i = next++; i < total; i = next++) {  // NOLINT(runtime/int)
        absl::Time scheduled = start + absl::Seconds(i / rate);
        absl::SleepFor(scheduled - absl::Now());
        if (!op(t)) ++failures;
        latencies[i] = absl::ToDoubleMicroseconds(absl::Now() - scheduled);
      }
    });
  }
  for (auto& w : workers) w.join();
  Result result;
  result.latencies_us = std::move(latencies);
  std::sort(result.latencies_us.begin(), result.latencies_us.end());
  result.ops_per_second = total / absl::ToDoubleSeconds(absl::Now() - start);
  result.failures = failures;
  return result;
}

// One Pipeline stream driven by one thread through the async API, the way a terminator
// would run it: keeps `window` items in flight until `stop`, then drains. Reads and
// writes share the thread, so an answer can be followed by the next item's write with
// no hand-off between threads.
class StreamDriver {
 public:
  using Make = std::function<offkey::v1::PipelineRequest(uint64_t)>;
  using Check = std::function<bool(const offkey::v1::PipelineResponse&)>;

  StreamDriver(offkey::v1::KeyService::Stub* stub, int window, const Make& make,
               const Check& check)
      : window_(window), make_(make), check_(check) {
    stream_ = stub->AsyncPipeline(&context_, &queue_, Tag(kStarted));
  }

  // Runs until `stop` is set and every item sent has been answered (or the stream
  // broke, counted as a failure), then drains the completion queue.
  void Run(const std::atomic<bool>& stop) {
    void* tag = nullptr;
    bool ok = false;
    bool reading = false, ended = false, writes_done = false, writes_done_pending = false,
         finishing = false, finished = false;
    while (!(finished && !writes_done_pending) && queue_.Next(&tag, &ok)) {
      switch (static_cast<Event>(static_cast<char*>(tag) - tags_)) {
        case kStarted:
          if (!ok) {
            ended = true;
            break;
          }
          reading = true;
          stream_->Read(&response_, Tag(kRead));
          break;
        case kRead:
          reading = false;
          if (!ok) {  // The server ended the stream.
            ended = true;
            break;
          }
          Answered();
          reading = true;
          stream_->Read(&response_, Tag(kRead));
          break;
        case kWrite:
          writing_ = false;
          if (!ok) ended = true;  // The stream broke; the read will fail too.
          break;
        case kWritesDone:
          writes_done_pending = false;
          break;
        case kFinish:
          finished = true;
          if (!status_.ok() || in_flight_ != 0) ++failures_;
          break;
        case kEvents:
          break;
      }
      const bool stopping = stop.load(std::memory_order_relaxed);
      if (!stopping && !ended && !writing_ && in_flight_ < window_) Write();
      if (stopping && !ended && !writing_ && !writes_done && in_flight_ == 0) {
        writes_done = writes_done_pending = true;
        stream_->WritesDone(Tag(kWritesDone));
      }
      if ((writes_done || ended) && !reading && !writing_ && !finishing) {
        finishing = true;
        stream_->Finish(&status_, Tag(kFinish));
      }
    }
    queue_.Shutdown();
    while (queue_.Next(&tag, &ok)) {
    }
  }

  const std::vector<double>& latencies() const { return latencies_; }
  long failures() const { return failures_; }  // NOLINT(runtime/int)

 private:
  enum Event { kStarted, kRead, kWrite, kWritesDone, kFinish, kEvents };
  // Completion-queue tags: one address per event.
  void* Tag(Event event) { return &tags_[event]; }
  char tags_[kEvents] = {};

  void Write() {
    item_ = make_(next_id_);
    sent_[next_id_++] = absl::Now();
    ++in_flight_;
    writing_ = true;
    // Another write follows at once while the window has room: let gRPC send them
    // together. The write that fills the window goes out immediately.
    grpc::WriteOptions options;
    if (in_flight_ < window_) options.set_buffer_hint();
    stream_->Write(item_, options, Tag(kWrite));
  }

  void Answered() {
    auto it = sent_.find(response_.id());
    if (it == sent_.end()) {
      ++failures_;
      return;
    }
    latencies_.push_back(absl::ToDoubleMicroseconds(absl::Now() - it->second));
    sent_.erase(it);
    --in_flight_;
    if (!check_(response_)) ++failures_;
  }

  const int window_;
  const Make& make_;
  const Check& check_;
  grpc::ClientContext context_;
  grpc::CompletionQueue queue_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<offkey::v1::PipelineRequest,
                                                offkey::v1::PipelineResponse>>
      stream_;
  offkey::v1::PipelineRequest item_;  // The outstanding write's buffer.
  offkey::v1::PipelineResponse response_;
  grpc::Status status_;
  std::map<uint64_t, absl::Time> sent_;
  uint64_t next_id_ = 0;
  int in_flight_ = 0;
  bool writing_ = false;
  std::vector<double> latencies_;
  long failures_ = 0;  // NOLINT(runtime/int)
};

// The Pipeline stream, closed loop: one StreamDriver per stub (one connection each)
// for `seconds`; latency from each item's write to its answer.
Result StreamSaturate(const std::vector<offkey::v1::KeyService::Stub*>& stubs, int window,
                      double seconds, const StreamDriver::Make& make,
                      const StreamDriver::Check& check) {
  std::vector<std::unique_ptr<StreamDriver>> drivers;
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false};
  const absl::Time start = absl::Now();
  for (offkey::v1::KeyService::Stub* stub : stubs) {
    drivers.push_back(std::make_unique<StreamDriver>(stub, window, make, check));
    threads.emplace_back([d = drivers.back().get(), &stop] {
      NameThread("bench-stream");
      d->Run(stop);
    });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  Result result;
  for (auto& d : drivers) {
    result.latencies_us.insert(result.latencies_us.end(), d->latencies().begin(),
                               d->latencies().end());
    result.failures += d->failures();
  }
  std::sort(result.latencies_us.begin(), result.latencies_us.end());
  // Items answered while the windows drain count, over the whole span including the
  // drain, so the rate is not inflated.
  result.ops_per_second =
      result.latencies_us.size() / absl::ToDoubleSeconds(absl::Now() - start);
  return result;
}

void Print(const char* name, const Result& r) {
  printf("  %-22s %10.0f %9.0f %9.0f %9.0f %9.0f %9ld\n", name, r.ops_per_second,
         r.Percentile(50), r.Percentile(90), r.Percentile(99), r.Percentile(99.9),
         r.failures);
}

void Header() {
  printf("  %-22s %10s %9s %9s %9s %9s %9s\n", "path", "ops/s", "p50 us", "p90 us",
         "p99 us", "p99.9 us", "failures");
}

int Fail(const std::string& what) {
  fprintf(stderr, "offkey-bench: %s\n", what.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "offkeyd throughput and latency against bare PKCS#11 on the same SoftHSM2 "
      "token.\n\n"
      "  offkey-bench --op=sign --key=rsa2048 --concurrency=4 --duration=5\n"
      "  offkey-bench --op=sign --key=p256 --streams=2 --window=16");
  // The binary is offkey-bench, its source offkey_bench.cc: show its flags on --help.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "offkey_bench");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built with mutex deadlock detection on (a debugging aid that
  // records every lock order, measurable on the handshake path); production builds of
  // Abseil have it off.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string op_name = absl::GetFlag(FLAGS_op);
  const std::string key_name = absl::GetFlag(FLAGS_key);
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const double seconds = absl::GetFlag(FLAGS_duration);
  struct KeyType {
    const char* name;
    hsm::KeyAlgorithm algorithm;
    offkey::v1::SignatureScheme scheme;
    hsm::SignAlgorithm sign;
  };
  const KeyType types[] = {
      {"rsa2048",
       hsm::KeyAlgorithm::kRsa2048,
       offkey::v1::RSA_PSS_RSAE_SHA256,
       {hsm::SignatureKind::kRsaPss, hsm::HashAlgorithm::kSha256}},
      {"p256",
       hsm::KeyAlgorithm::kEcP256,
       offkey::v1::ECDSA_SECP256R1_SHA256,
       {hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha256}},
      {"p384",
       hsm::KeyAlgorithm::kEcP384,
       offkey::v1::ECDSA_SECP384R1_SHA384,
       {hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha384}},
      {"ed25519",
       hsm::KeyAlgorithm::kEd25519,
       offkey::v1::ED25519,
       {hsm::SignatureKind::kEdDsa, hsm::HashAlgorithm::kNone}},
  };
  const KeyType* type = nullptr;
  for (const KeyType& t : types) {
    if (key_name == t.name) type = &t;
  }
  if (type == nullptr) return Fail("--key must be rsa2048, p256, p384 or ed25519");
  if (op_name != "sign" && op_name != "decrypt") {
    return Fail("--op must be sign or decrypt");
  }
  if (op_name == "decrypt" && type->algorithm != hsm::KeyAlgorithm::kRsa2048) {
    return Fail("--op=decrypt needs --key=rsa2048");
  }
  if (concurrency < 1 || seconds <= 0) {
    return Fail("--concurrency must be at least 1 and --duration positive");
  }
  const int sessions =
      absl::GetFlag(FLAGS_sessions) > 0 ? absl::GetFlag(FLAGS_sessions) : concurrency;

  // The token, the key and a server over it.
  auto token = hsm::pkcs11::testing::SoftHsmToken::Create("bench");
  if (!token.ok()) return Fail(token.status().ToString());
  auto store = hsm::pkcs11::Pkcs11KeyStore::Create(token->Options(sessions));
  if (!store.ok()) return Fail(store.status().ToString());
  auto key = (*store)->GenerateKey("bench", type->algorithm);
  if (!key.ok()) return Fail(key.status().ToString());
  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_usage(offkey::v1::TLS_SERVER);
  metadata.set_state(offkey::v1::ENABLED);
  (*store)->PutMetadata(key->key_id, metadata.SerializeAsString()).IgnoreError();

  const std::string dir = token->directory + "/" + token->label;
  std::filesystem::create_directories(dir);
  auto ca = service::dev::MakeCa("bench CA");
  service::dev::CertSpec server_spec;
  server_spec.common_name = "offkeyd";
  server_spec.ip_addresses = {"127.0.0.1"};
  server_spec.server_auth = true;
  auto server_cert = service::dev::Issue(*ca, server_spec);
  service::dev::CertSpec client_spec;
  client_spec.common_name = "bench";
  client_spec.uris = {"spiffe://bench/terminator"};
  client_spec.client_auth = true;
  auto client_cert = service::dev::Issue(*ca, client_spec);
  for (const absl::Status& made :
       {ca.status(), server_cert.status(), client_cert.status()}) {
    if (!made.ok()) return Fail("making the test PKI: " + made.ToString());
  }
  std::ofstream(dir + "/ca.pem") << ca->cert_pem;
  std::ofstream(dir + "/server.pem") << server_cert->cert_pem;
  std::ofstream(dir + "/server.key") << server_cert->key_pem.view();

  offkey::v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:0");
  config.set_metrics_address("127.0.0.1:0");
  config.mutable_tls()->set_cert_file(dir + "/server.pem");
  config.mutable_tls()->set_key_file(dir + "/server.key");
  config.mutable_tls()->set_client_ca_file(dir + "/ca.pem");
  config.mutable_hsm()->set_module_path(token->Options().module_path);
  config.mutable_hsm()->set_token_uri(token->Uri());
  config.mutable_hsm()->set_pin_file(token->pin_file);
  config.mutable_hsm()->set_max_sessions(sessions);
  offkey::v1::Grant* grant = config.mutable_policy()->add_grants();
  grant->add_identities("spiffe://bench/terminator");
  grant->add_operations(offkey::v1::SIGN);
  grant->add_operations(offkey::v1::DECRYPT_PREMASTER);
  grant->add_operations(offkey::v1::GET_CERTIFICATE);
  grant->mutable_keys()->set_all_keys(true);
  // Audit lines go to a file, as in production (and not into the report on stdout).
  config.mutable_audit()->set_path(dir + "/audit.log");
  service::config::ApplyDefaults(&config);
  auto server = service::OffkeyServer::Start(config, store->get());
  if (!server.ok()) return Fail(server.status().ToString());

  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ca->cert_pem;
  tls.pem_cert_chain = client_cert->cert_pem;
  tls.pem_private_key = std::string(client_cert->key_pem.view());
  const std::string target = absl::StrCat("127.0.0.1:", (*server)->port());
  // One channel per client thread: each its own HTTP/2 connection, as separate
  // terminator workers would have.
  std::vector<std::unique_ptr<offkey::v1::KeyService::Stub>> stubs;
  const int max_threads = std::max(concurrency, 16);
  for (int i = 0; i < max_threads; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // Distinct channels, not one shared subchannel.
    stubs.push_back(offkey::v1::KeyService::NewStub(
        grpc::CreateCustomChannel(target, grpc::SslCredentials(tls), args)));
  }

  // Inputs: a TLS 1.3 CertificateVerify input; a premaster for the key.
  const std::string message = std::string(64, ' ') + "TLS 1.3, server CertificateVerify" +
                              std::string(1, '\0') + std::string(32, 'h');
  std::string premaster = std::string("\x03\x03", 2) + std::string(46, 'p');
  const std::string ciphertext =
      type->algorithm == hsm::KeyAlgorithm::kRsa2048
          ? hsm::testing::RsaEncryptPkcs1(key->public_key_spki, premaster)
          : std::string();

  Op rpc = [&](int t) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    if (op_name == "sign") {
      offkey::v1::SignRequest request;
      request.mutable_key()->set_key_id(key->key_id);
      request.mutable_context()->set_version(offkey::v1::TLS_1_3);
      request.set_scheme(type->scheme);
      request.set_message(message);
      offkey::v1::SignResponse response;
      return stubs[t]->Sign(&context, request, &response).ok();
    }
    offkey::v1::DecryptPremasterRequest request;
    request.mutable_key()->set_key_id(key->key_id);
    request.mutable_context()->set_version(offkey::v1::TLS_1_2);
    request.set_ciphertext(ciphertext);
    request.set_client_version(0x0303);
    offkey::v1::DecryptPremasterResponse response;
    return stubs[t]->DecryptPremaster(&context, request, &response).ok() &&
           response.premaster() == premaster;
  };

  // The RPC path alone: GetCertificate takes the same route as Sign (mTLS, poller, worker
  // pool, policy, audit line, metrics) but does no HSM work.
  Op rpc_floor = [&](int t) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    offkey::v1::GetCertificateRequest request;
    request.mutable_key()->set_key_id(key->key_id);
    offkey::v1::GetCertificateResponse response;
    return stubs[t]->GetCertificate(&context, request, &response).ok();
  };

  // gRPC and mTLS alone: the health check gRPC itself serves, with no offkey code.
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health_stubs;
  for (int i = 0; i < max_threads; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);
    health_stubs.push_back(grpc::health::v1::Health::NewStub(
        grpc::CreateCustomChannel(target, grpc::SslCredentials(tls), args)));
  }
  Op grpc_floor = [&](int t) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    return health_stubs[t]->Check(&context, request, &response).ok();
  };

  // Bare PKCS#11: own sessions on the same token (the store's login covers them).
  const CK_FUNCTION_LIST* fn = (*store)->TokenForTest().fn();
  const CK_SLOT_ID slot = (*store)->TokenForTest().slot();
  struct Bare {
    CK_SESSION_HANDLE session;
    CK_OBJECT_HANDLE key;
  };
  std::vector<Bare> bare(max_threads);
  for (Bare& b : bare) {
    if (fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                          &b.session) != CKR_OK) {
      return Fail("C_OpenSession");
    }
    hsm::pkcs11::Template find;
    find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, key->key_id);
    std::vector<CK_OBJECT_HANDLE> found;
    if (hsm::pkcs11::FindObjects(fn, b.session, find, &found, 1) != CKR_OK ||
        found.empty()) {
      return Fail("bare key lookup");
    }
    b.key = found[0];
  }
  Op direct = [&](int t) {
    if (op_name == "decrypt") {
      CK_MECHANISM mech = {CKM_RSA_X_509, nullptr, 0};
      unsigned char out[512];
      CK_ULONG len = sizeof(out);
      return fn->C_DecryptInit(bare[t].session, &mech, bare[t].key) == CKR_OK &&
             fn->C_Decrypt(
                 bare[t].session,
                 reinterpret_cast<CK_BYTE*>(const_cast<char*>(ciphertext.data())),
                 ciphertext.size(), out, &len) == CKR_OK;
    }
    std::string input = message;
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM mech = {CKM_EDDSA, nullptr, 0};
    if (type->sign.kind != hsm::SignatureKind::kEdDsa) {
      input = *hsm::pkcs11::Digest(type->sign.hash, message);
      mech = type->sign.kind == hsm::SignatureKind::kRsaPss
                 ? CK_MECHANISM{CKM_RSA_PKCS_PSS, &pss, sizeof(pss)}
                 : CK_MECHANISM{CKM_ECDSA, nullptr, 0};
    }
    unsigned char sig[512];
    CK_ULONG len = sizeof(sig);
    return fn->C_SignInit(bare[t].session, &mech, bare[t].key) == CKR_OK &&
           fn->C_Sign(bare[t].session, reinterpret_cast<CK_BYTE*>(input.data()),
                      input.size(), sig, &len) == CKR_OK;
  };

  // Warm up both paths on every thread's channel and session (TLS handshakes, caches),
  // or the first open-loop requests queue behind connection setup.
  Saturate(rpc, max_threads, 0.5);
  Saturate(grpc_floor, max_threads, 0.3);
  Saturate(direct, max_threads, 0.2);

  printf("offkey-bench: op=%s key=%s concurrency=%d duration=%.1fs sessions=%d\n",
         op_name.c_str(), key_name.c_str(), concurrency, seconds, sessions);
  if (absl::GetFlag(FLAGS_cpu_per_op)) {
    // offkeyd's own threads are named (offkey-worker, offkey-rpc); the client's are
    // bench-*; gRPC's internal threads serve both sides and are shown as they are.
    const std::map<std::string, double> before = CpuByThreadName();
    Result sat = Saturate(rpc, concurrency, seconds);
    const std::map<std::string, double> after = CpuByThreadName();
    const double ops = static_cast<double>(sat.latencies_us.size());
    printf("  %.0f ops, %.0f ops/s, %ld failures; CPU per operation by thread name:\n",
           ops, sat.ops_per_second, sat.failures);
    for (const auto& [name, cpu] : after) {
      auto it = before.find(name);
      const double spent = cpu - (it == before.end() ? 0 : it->second);
      printf("  %-18s %8.1f us\n", name.c_str(), spent / ops * 1e6);
    }
    for (Bare& b : bare) fn->C_CloseSession(b.session);
    (*server)->Shutdown(absl::Seconds(1));
    server->reset();
    std::error_code ignored;
    std::filesystem::remove_all(token->directory, ignored);
    return sat.failures > 0 ? 1 : 0;
  }
  printf("saturation (closed loop, %d threads):\n", concurrency);
  Header();
  Result bare_sat = Saturate(direct, concurrency, seconds);
  Print("bare PKCS#11", bare_sat);
  Result rpc_sat = Saturate(rpc, concurrency, seconds);
  Print("offkeyd (gRPC, mTLS)", rpc_sat);
  printf("  throughput ratio offkeyd/bare: %.3f\n",
         rpc_sat.ops_per_second / bare_sat.ops_per_second);
  // When both saturate the same cores, an operation through offkeyd costs the bare
  // operation plus one RPC, so offkeyd/bare cannot exceed floor / (floor + bare).
  Result floor_sat = Saturate(rpc_floor, concurrency, seconds);
  Print("RPC alone (GetCertificate)", floor_sat);
  printf("  ceiling on offkeyd/bare from the RPC cost: %.3f\n",
         floor_sat.ops_per_second / (floor_sat.ops_per_second + bare_sat.ops_per_second));
  Result grpc_sat = Saturate(grpc_floor, concurrency, seconds);
  Print("gRPC alone (health Check)", grpc_sat);
  printf("  ceiling from gRPC and mTLS alone: %.3f\n",
         grpc_sat.ops_per_second / (grpc_sat.ops_per_second + bare_sat.ops_per_second));
  Result stream_sat;
  const int stream_count = absl::GetFlag(FLAGS_streams);
  if (stream_count > 0) {
    std::vector<offkey::v1::KeyService::Stub*> stream_stubs;
    for (int i = 0; i < stream_count; ++i) {
      stream_stubs.push_back(stubs[i % stubs.size()].get());
    }
    auto make = [&](uint64_t id) {
      offkey::v1::PipelineRequest item;
      item.set_id(id);
      if (op_name == "sign") {
        auto* sign = item.mutable_sign();
        sign->mutable_key()->set_key_id(key->key_id);
        sign->mutable_context()->set_version(offkey::v1::TLS_1_3);
        sign->set_scheme(type->scheme);
        sign->set_message(message);
      } else {
        auto* decrypt = item.mutable_decrypt_premaster();
        decrypt->mutable_key()->set_key_id(key->key_id);
        decrypt->mutable_context()->set_version(offkey::v1::TLS_1_2);
        decrypt->set_ciphertext(ciphertext);
        decrypt->set_client_version(0x0303);
      }
      return item;
    };
    auto check = [&](const offkey::v1::PipelineResponse& response) {
      if (response.status().code() != 0) return false;
      return op_name == "sign" ? !response.sign().signature().empty()
                               : response.decrypt_premaster().premaster() == premaster;
    };
    const int window = absl::GetFlag(FLAGS_window);
    StreamSaturate(stream_stubs, window, 0.3, make, check);  // Warm-up.
    stream_sat = StreamSaturate(stream_stubs, window, seconds, make, check);
    Print(absl::StrCat("offkeyd stream ", stream_count, "x", window).c_str(), stream_sat);
    printf("  throughput ratio stream/bare: %.3f\n",
           stream_sat.ops_per_second / bare_sat.ops_per_second);
  }

  // Half load: half of what offkeyd itself sustains, offered to both paths.
  const double rate = std::min(rpc_sat.ops_per_second, bare_sat.ops_per_second) / 2;
  printf("half load (open loop, %.0f ops/s offered):\n", rate);
  Header();
  Result bare_half = OpenLoop(direct, max_threads, rate, seconds);
  Print("bare PKCS#11", bare_half);
  Result rpc_half = OpenLoop(rpc, max_threads, rate, seconds);
  Print("offkeyd (gRPC, mTLS)", rpc_half);
  printf("  p99 offkeyd - bare: %+.0f us\n",
         rpc_half.Percentile(99) - bare_half.Percentile(99));

  for (Bare& b : bare) fn->C_CloseSession(b.session);
  (*server)->Shutdown(absl::Seconds(1));
  server->reset();
  std::error_code ignored;
  std::filesystem::remove_all(token->directory, ignored);
  return bare_sat.failures + rpc_sat.failures + floor_sat.failures + grpc_sat.failures +
                     stream_sat.failures + bare_half.failures + rpc_half.failures >
                 0
             ? 1
             : 0;
}

}  // namespace
}  // namespace offkey::tests::bench

int main(int argc, char** argv) { return offkey::tests::bench::Main(argc, argv); }
