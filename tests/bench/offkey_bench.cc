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
// With --offkeyd=PATH the server is that offkeyd binary in its own process (development
// mode on 127.0.0.1), on its development token, and every measurement also reports the
// CPU it cost per operation on each side: the server process's (and its children's)
// from /proc, and this process's (the client, or the bare path's caller) from
// getrusage. With --p11kit_client=PATH it also measures the do-it-yourself peer: the
// bare PKCS#11 path through `p11-kit server` serving the same token over a Unix socket
// (p11-kit-client.so in this process), and prints a peers summary (bare, p11kit,
// offkeyd unary and stream) with the ratios offkeyd/p11kit. tests/bench/peers.sh runs
// that for several keys and thread counts.
//
//   bazel run -c opt //tests/bench:offkey-bench -- --op=sign --key=rsa2048 --duration=5
//   offkey-bench --offkeyd=bazel-bin/service/offkeyd \
//       --p11kit_client=/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
#include "tests/process.h"

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
ABSL_FLAG(std::string, offkeyd, "",
          "Path of the offkeyd binary: measure it as a separate process (--dev on "
          "127.0.0.1, its development token) instead of the server library in this "
          "process, and report server and client CPU per operation.");
ABSL_FLAG(std::string, p11kit_client, "",
          "Path of p11-kit-client.so: also measure bare PKCS#11 through `p11-kit "
          "server` serving the same token over a Unix socket.");
ABSL_FLAG(std::string, p11kit, "/usr/bin/p11-kit",
          "The p11-kit program (runs `p11-kit server` for --p11kit_client).");
ABSL_FLAG(bool, half_load, true,
          "Run phase 2 (open loop at half of the saturated rate).");

namespace offkey::tests::bench {
namespace {

using Op = std::function<bool(int thread)>;

struct Result {
  double ops_per_second = 0;
  std::vector<double> latencies_us;  // Sorted.
  long failures = 0;                 // NOLINT(runtime/int)
  // CPU microseconds per operation of the server process (with its children) and of
  // this process; negative when not measured (no separate server process).
  double server_cpu_us = -1;
  double client_cpu_us = -1;
  double Percentile(double p) const {
    if (latencies_us.empty()) return 0;
    size_t i = static_cast<size_t>(std::lround(p / 100 * (latencies_us.size() - 1)));
    return latencies_us[std::min(i, latencies_us.size() - 1)];
  }
};

// Names the calling thread (for top and perf).
void NameThread(const char* name) { pthread_setname_np(pthread_self(), name); }

// CPU seconds this process has used (every thread, user and system).
double SelfCpuSeconds() {
  rusage usage = {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// CPU seconds used by `pid` and its live descendants (p11-kit server serves each
// connection in a child process), from /proc/PID/stat.
double TreeCpuSeconds(pid_t pid) {
  std::map<pid_t, pid_t> parent;
  std::map<pid_t, double> cpu;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string stat = tests::ReadFileOrEmpty(entry.path().string() + "/stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;  // Gone meanwhile.
    std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
    if (fields.size() < 13) continue;
    // After the command: state, ppid, ..., utime (11th), stime (12th), 0-based.
    const pid_t self = std::stoi(name);
    parent[self] = std::stoi(fields[1]);
    cpu[self] = (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
  }
  double total = 0;
  for (const auto& [p, seconds] : cpu) {
    for (pid_t a = p; a > 1; a = parent.count(a) ? parent[a] : 0) {
      if (a == pid) {
        total += seconds;
        break;
      }
    }
  }
  return total;
}

// Runs a measurement and adds the CPU it cost per operation on both sides: this
// process's, and the server process tree's when `server` is a process id (> 0).
Result WithCpu(pid_t server, const std::function<Result()>& run) {
  const double client_before = SelfCpuSeconds();
  const double server_before = server > 0 ? TreeCpuSeconds(server) : 0;
  Result result = run();
  const double ops = static_cast<double>(result.latencies_us.size());
  if (ops > 0) {
    result.client_cpu_us = (SelfCpuSeconds() - client_before) * 1e6 / ops;
    if (server > 0) {
      result.server_cpu_us = (TreeCpuSeconds(server) - server_before) * 1e6 / ops;
    }
  }
  return result;
}

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

std::string CpuColumn(double us) {
  return us < 0 ? std::string("-") : absl::StrFormat("%.1f", us);
}

void Print(const char* name, const Result& r) {
  printf("  %-26s %10.0f %9.0f %9.0f %9.0f %9.0f %9ld %17s %17s\n", name,
         r.ops_per_second, r.Percentile(50), r.Percentile(90), r.Percentile(99),
         r.Percentile(99.9), r.failures, CpuColumn(r.server_cpu_us).c_str(),
         CpuColumn(r.client_cpu_us).c_str());
}

void Header() {
  printf("  %-26s %10s %9s %9s %9s %9s %9s %17s %17s\n", "path", "ops/s", "p50 us",
         "p90 us", "p99 us", "p99.9 us", "failures", "server CPU us/op",
         "client CPU us/op");
}

// A PKCS#11 session of the bare paths' own, with the key's handle in it.
struct BareSession {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
};

// Opens `count` sessions on `slot` and finds the private key `key_id` in each (the
// token must be logged in already: login covers every session of the application).
absl::StatusOr<std::vector<BareSession>> OpenBareSessions(const CK_FUNCTION_LIST* fn,
                                                          CK_SLOT_ID slot,
                                                          const std::string& key_id,
                                                          int count) {
  std::vector<BareSession> sessions(count);
  for (BareSession& b : sessions) {
    CK_RV rv = fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr,
                                 nullptr, &b.session);
    if (rv != CKR_OK) return absl::InternalError(absl::StrCat("C_OpenSession: ", rv));
    hsm::pkcs11::Template find;
    find.Ulong(CKA_CLASS, CKO_PRIVATE_KEY).Bytes(CKA_ID, key_id);
    std::vector<CK_OBJECT_HANDLE> found;
    rv = hsm::pkcs11::FindObjects(fn, b.session, find, &found, 1);
    if (rv != CKR_OK || found.empty()) {
      return absl::NotFoundError(absl::StrCat("bare key lookup: ", rv));
    }
    b.key = found[0];
  }
  return sessions;
}

// Makes a fresh directory for this run's files (under $TEST_TMPDIR when set).
std::string MakeWorkDirectory() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/offkey-bench.XXXXXX";
  return mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
}

// Waits until `path` is a listening Unix socket's file, or `timeout` passes.
bool WaitForSocket(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::error_code ignored;
  while (!std::filesystem::is_socket(path, ignored)) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
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

  const std::string offkeyd_path = absl::GetFlag(FLAGS_offkeyd);
  const std::string p11kit_client = absl::GetFlag(FLAGS_p11kit_client);
  const std::string work = MakeWorkDirectory();
  if (work.empty()) return Fail("cannot make a work directory");

  // The token: offkeyd's development token when offkeyd runs as a process (it makes the
  // token on first start), else a fresh one of this run's.
  tests::Daemon offkeyd;
  hsm::pkcs11::TokenOptions token_options;
  std::string softhsm_conf;
  std::string dir;  // Files of the in-process server.
  if (!offkeyd_path.empty()) {
    const std::string dev = work + "/dev";
    const std::string port_file = work + "/offkeyd.port";
    std::string why;
    if (!offkeyd.Start(
            {offkeyd_path, "--dev", "--dev_state_dir=" + dev, "--listen=127.0.0.1:0",
             "--port_file=" + port_file, absl::StrCat("--max_sessions=", sessions)},
            {}, work + "/offkeyd.log", {port_file}, &why, absl::Seconds(120))) {
      return Fail("offkeyd did not start: " + why);
    }
    softhsm_conf = dev + "/softhsm2.conf";
    // Before the module loads in this process: SoftHSM2 reads it once.
    setenv("SOFTHSM2_CONF", softhsm_conf.c_str(), 1);
    token_options.module_path = hsm::pkcs11::testing::SoftHsmModulePath();
    token_options.uri = "pkcs11:token=offkey-dev";  // What --dev names its token.
    token_options.pin.file = dev + "/user.pin";
  } else {
    auto token = hsm::pkcs11::testing::SoftHsmToken::Create("bench");
    if (!token.ok()) return Fail(token.status().ToString());
    token_options = token->Options();
    const char* conf = getenv("SOFTHSM2_CONF");
    softhsm_conf = conf != nullptr ? conf : "";
    dir = token->directory + "/" + token->label;
    std::filesystem::create_directories(dir);
  }
  token_options.max_sessions = sessions;
  auto store = hsm::pkcs11::Pkcs11KeyStore::Create(token_options);
  if (!store.ok()) return Fail(store.status().ToString());
  auto key = (*store)->GenerateKey("bench", type->algorithm);
  if (!key.ok()) return Fail(key.status().ToString());
  offkey::v1::KeyMetadata metadata;
  metadata.set_format_version(1);
  metadata.set_usage(offkey::v1::TLS_SERVER);
  metadata.set_state(offkey::v1::ENABLED);
  (*store)->PutMetadata(key->key_id, metadata.SerializeAsString()).IgnoreError();

  grpc::SslCredentialsOptions tls;
  std::unique_ptr<service::OffkeyServer> in_process;
  int port = 0;
  if (!offkeyd_path.empty()) {
    const std::string dev = work + "/dev";
    tls.pem_root_certs = tests::ReadFileOrEmpty(dev + "/ca.pem");
    tls.pem_cert_chain = tests::ReadFileOrEmpty(dev + "/terminator.pem");
    tls.pem_private_key = tests::ReadFileOrEmpty(dev + "/terminator.key");
    if (!absl::SimpleAtoi(tests::ReadFileOrEmpty(work + "/offkeyd.port"), &port)) {
      return Fail("offkeyd's port file holds no port");
    }
  } else {
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
    config.mutable_hsm()->set_module_path(token_options.module_path);
    config.mutable_hsm()->set_token_uri(token_options.uri);
    config.mutable_hsm()->set_pin_file(token_options.pin.file);
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
    in_process = std::move(*server);
    port = in_process->port();
    tls.pem_root_certs = ca->cert_pem;
    tls.pem_cert_chain = client_cert->cert_pem;
    tls.pem_private_key = std::string(client_cert->key_pem.view());
  }
  // The server process whose CPU is measured (none when it runs in this process).
  const pid_t server_pid = offkeyd.pid();
  const std::string target = absl::StrCat("127.0.0.1:", port);
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

  // offkeyd learns of the key made above when a call names it: wait until it signs.
  if (!offkeyd_path.empty()) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (!rpc(0)) {
      if (absl::Now() > deadline) return Fail("offkeyd does not serve the new key");
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  // Bare PKCS#11: own sessions on the same token (the store's login covers them).
  auto bare = OpenBareSessions((*store)->TokenForTest().fn(),
                               (*store)->TokenForTest().slot(), key->key_id, max_threads);
  if (!bare.ok()) return Fail(bare.status().ToString());
  // The private-key operation offkeyd performs, with the same local work, on one of
  // `sessions` through `fn`.
  auto direct_on = [&](const CK_FUNCTION_LIST* fn, const std::vector<BareSession>& on) {
    return [&, fn, sessions = &on](int t) {
      const BareSession& b = (*sessions)[t];
      if (op_name == "decrypt") {
        CK_MECHANISM mech = {CKM_RSA_X_509, nullptr, 0};
        unsigned char out[512];
        CK_ULONG len = sizeof(out);
        return fn->C_DecryptInit(b.session, &mech, b.key) == CKR_OK &&
               fn->C_Decrypt(
                   b.session,
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
      return fn->C_SignInit(b.session, &mech, b.key) == CKR_OK &&
             fn->C_Sign(b.session, reinterpret_cast<CK_BYTE*>(input.data()), input.size(),
                        sig, &len) == CKR_OK;
    };
  };
  Op direct = direct_on((*store)->TokenForTest().fn(), *bare);

  // The do-it-yourself peer: the same token served by `p11-kit server` over a Unix
  // socket, reached through p11-kit-client.so in this process.
  tests::Daemon p11kit_server;
  std::unique_ptr<hsm::pkcs11::Pkcs11KeyStore> p11kit_store;
  std::vector<BareSession> p11kit_sessions;
  Op p11kit_direct;
  std::string p11kit_dir;
  if (!p11kit_client.empty()) {
    // A socket's path must fit sockaddr_un (108 bytes): $TEST_TMPDIR is too deep.
    std::string pattern = "/tmp/offkey-p11kit.XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) return Fail("cannot make a socket directory");
    p11kit_dir = pattern;
    const std::string& run_dir = p11kit_dir;
    const std::string socket = run_dir + "/pkcs11.sock";
    const std::string log = run_dir + "/server.log";
    std::string why;
    // Ready once it prints P11_KIT_SERVER_ADDRESS (into the log) and the socket exists.
    if (!p11kit_server.Start(
            {absl::GetFlag(FLAGS_p11kit), "server", "--foreground", "--provider",
             token_options.module_path, "--name", socket, token_options.uri},
            {"SOFTHSM2_CONF=" + softhsm_conf, "XDG_RUNTIME_DIR=" + run_dir}, log, {log},
            &why) ||
        !WaitForSocket(socket, absl::Seconds(30))) {
      return Fail("p11-kit server did not start: " + why + tests::ReadFileOrEmpty(log));
    }
    setenv("P11_KIT_SERVER_ADDRESS", ("unix:path=" + socket).c_str(), 1);
    hsm::pkcs11::TokenOptions remote = token_options;
    remote.module_path = p11kit_client;
    auto opened = hsm::pkcs11::Pkcs11KeyStore::Create(remote);
    if (!opened.ok()) return Fail("through p11-kit: " + opened.status().ToString());
    p11kit_store = std::move(*opened);
    auto remote_sessions =
        OpenBareSessions(p11kit_store->TokenForTest().fn(),
                         p11kit_store->TokenForTest().slot(), key->key_id, max_threads);
    if (!remote_sessions.ok()) {
      return Fail("through p11-kit: " + remote_sessions.status().ToString());
    }
    p11kit_sessions = std::move(*remote_sessions);
    p11kit_direct = direct_on(p11kit_store->TokenForTest().fn(), p11kit_sessions);
  }

  // Warm up both paths on every thread's channel and session (TLS handshakes, caches),
  // or the first open-loop requests queue behind connection setup.
  Saturate(rpc, max_threads, 0.5);
  Saturate(grpc_floor, max_threads, 0.3);
  Saturate(direct, max_threads, 0.2);
  if (p11kit_direct) Saturate(p11kit_direct, max_threads, 0.2);

  printf("offkey-bench: op=%s key=%s concurrency=%d duration=%.1fs sessions=%d %s\n",
         op_name.c_str(), key_name.c_str(), concurrency, seconds, sessions,
         offkeyd_path.empty() ? "offkeyd in this process (its CPU counts as client's)"
                              : "offkeyd as a separate process");
  printf("saturation (closed loop, %d threads):\n", concurrency);
  Header();
  // A closed-loop measurement with the CPU it cost on both sides.
  auto saturate = [&](const Op& op, pid_t server) {
    return WithCpu(server, [&] { return Saturate(op, concurrency, seconds); });
  };
  Result bare_sat = saturate(direct, -1);
  Print("bare PKCS#11", bare_sat);
  Result p11kit_sat;
  if (p11kit_direct) {
    p11kit_sat = saturate(p11kit_direct, p11kit_server.pid());
    Print("PKCS#11 via p11-kit server", p11kit_sat);
  }
  Result rpc_sat = saturate(rpc, server_pid);
  Print("offkeyd (gRPC, mTLS)", rpc_sat);
  printf("  throughput ratio offkeyd/bare: %.3f\n",
         rpc_sat.ops_per_second / bare_sat.ops_per_second);
  // When both saturate the same cores, an operation through offkeyd costs the bare
  // operation plus one RPC, so offkeyd/bare cannot exceed floor / (floor + bare).
  Result floor_sat = saturate(rpc_floor, server_pid);
  Print("RPC alone (GetCertificate)", floor_sat);
  printf("  ceiling on offkeyd/bare from the RPC cost: %.3f\n",
         floor_sat.ops_per_second / (floor_sat.ops_per_second + bare_sat.ops_per_second));
  Result grpc_sat = saturate(grpc_floor, server_pid);
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
    stream_sat = WithCpu(server_pid, [&] {
      return StreamSaturate(stream_stubs, window, seconds, make, check);
    });
    Print(absl::StrCat("offkeyd stream ", stream_count, "x", window).c_str(), stream_sat);
    printf("  throughput ratio stream/bare: %.3f\n",
           stream_sat.ops_per_second / bare_sat.ops_per_second);
  }

  if (p11kit_direct) {
    printf(
        "peers (closed loop, %d threads, ops/s): bare %.0f p11kit %.0f offkeyd-unary "
        "%.0f "
        "offkeyd-stream %.0f\n",
        concurrency, bare_sat.ops_per_second, p11kit_sat.ops_per_second,
        rpc_sat.ops_per_second, stream_sat.ops_per_second);
    printf("  ratio offkeyd/p11kit: unary %.3f stream %.3f\n",
           rpc_sat.ops_per_second / p11kit_sat.ops_per_second,
           stream_sat.ops_per_second / p11kit_sat.ops_per_second);
  }

  // Half load: half of what offkeyd itself sustains, offered to both paths.
  Result bare_half, rpc_half;
  if (absl::GetFlag(FLAGS_half_load)) {
    const double rate = std::min(rpc_sat.ops_per_second, bare_sat.ops_per_second) / 2;
    printf("half load (open loop, %.0f ops/s offered):\n", rate);
    Header();
    bare_half = WithCpu(-1, [&] { return OpenLoop(direct, max_threads, rate, seconds); });
    Print("bare PKCS#11", bare_half);
    rpc_half =
        WithCpu(server_pid, [&] { return OpenLoop(rpc, max_threads, rate, seconds); });
    Print("offkeyd (gRPC, mTLS)", rpc_half);
    printf("  p99 offkeyd - bare: %+.0f us\n",
           rpc_half.Percentile(99) - bare_half.Percentile(99));
  }

  for (const BareSession& b : *bare) {
    (*store)->TokenForTest().fn()->C_CloseSession(b.session);
  }
  for (const BareSession& b : p11kit_sessions) {
    p11kit_store->TokenForTest().fn()->C_CloseSession(b.session);
  }
  if (in_process != nullptr) in_process->Shutdown(absl::Seconds(1));
  in_process.reset();
  const int offkeyd_status = offkeyd.pid() > 0 ? offkeyd.Stop() : 0;
  if (offkeyd_status != 0) {
    fprintf(stderr, "offkey-bench: offkeyd exited with status %d; its log:\n%s\n",
            offkeyd_status, tests::ReadFileOrEmpty(work + "/offkeyd.log").c_str());
  }
  p11kit_server.Stop();
  std::error_code ignored;
  std::filesystem::remove_all(work, ignored);
  if (!p11kit_dir.empty()) std::filesystem::remove_all(p11kit_dir, ignored);
  if (!dir.empty()) {
    std::filesystem::remove_all(std::filesystem::path(dir).parent_path(), ignored);
  }
  const long failures = bare_sat.failures + p11kit_sat.failures +  // NOLINT(runtime/int)
                        rpc_sat.failures + floor_sat.failures + grpc_sat.failures +
                        stream_sat.failures + bare_half.failures + rpc_half.failures;
  return failures > 0 || offkeyd_status != 0 ? 1 : 0;
}

}  // namespace
}  // namespace offkey::tests::bench

int main(int argc, char** argv) { return offkey::tests::bench::Main(argc, argv); }
