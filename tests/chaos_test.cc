// Chaos under load: offkeyd over the fault-injecting PKCS#11 module
// (hsm/pkcs11/testing/fault_module.cc) and a SoftHSM2 token serves a steady mixed load
// (RSA and ECDSA signatures, DecryptPremaster with good and malformed ciphertexts,
// DeriveMasterSecret, VerifyClient, a Pipeline stream), every call with a deadline,
// while a driver cycles the module through every fault the service must survive: one
// phase each, the fault on for a few seconds and then cleared. Checked throughout:
//   - no call outlives its deadline (plus a little slack);
//   - the HSM's failures reach callers as UNAVAILABLE or DEADLINE_EXCEEDED, never
//     INTERNAL or anything else, and every OK answer is right (signatures verify,
//     premasters and master secrets are the ones the client made);
//   - DecryptPremaster keeps its contract: a malformed ciphertext gets the same
//     substitute as before the faults; a fault gets an error, never a substitute (see
//     "DecryptPremaster under faults" below);
//   - every kind of call succeeds again within a second of the fault clearing;
//   - /readyz and the offkey_ready gauge answer within a second, say "not ready" while
//     the HSM cannot serve and "ready" after, and offkey_operations_total agrees with
//     what the clients saw; once the load stops offkeyd holds no session and no work.
// FUNCTION_FAILED and GENERAL_ERROR count as transient here: the HSM failed a correct
// call, and offkeyd answers UNAVAILABLE (hsm/pkcs11/ck_rv.cc). A PIN the token refuses
// is not among the faults: offkeyd never presents it again by design (token.h).
// The server is the offkeyd library in this process (tests/offkeyd_fixture.h); the
// faults are driven through the module's control file, as for a separate process.
// A table of phases, calls, outcomes and recovery times goes to the test log; a second
// test pins one finding: a health check hung in the HSM must not leave offkeyd ready.
#include <stdio.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "hsm/pkcs11/testing/fault_control.h"
#include "hsm/testing/verify.h"
#include "httplib.h"
#include "service/crypto/tls_prf.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

using hsm::testing::RsaEncryptPkcs1;
using hsm::testing::RsaEncryptRaw;
using hsm::testing::VerifyWithOpenSsl;
using ::offkey::testing::RecordSecret;

// Every call's deadline, and how far past it a call may end (the client's own timer
// and a loaded machine).
constexpr absl::Duration kDeadline = absl::Seconds(1);
constexpr absl::Duration kSlack = absl::Milliseconds(300);
// How long each fault stays on, and the quiet time after it.
constexpr absl::Duration kFaultOn = absl::Seconds(4);
constexpr absl::Duration kFaultOff = absl::Milliseconds(2500);
// Every kind of call succeeds again this soon after a fault clears.
constexpr absl::Duration kRecovery = absl::Seconds(1);
// /readyz follows the HSM through offkeyd's periodic health check (every second), so
// it may trail the calls by that much.
constexpr absl::Duration kHealthInterval = absl::Seconds(1);
const absl::Duration kReadyBack = kRecovery + kHealthInterval;
// Pause between one worker's calls: a steady load that leaves the two cores of the
// test machine room for the server.
constexpr absl::Duration kPause = absl::Milliseconds(5);

struct Fault {
  const char* name;
  // The control file's contents while the fault is on.
  const char* rules;
  // The HSM cannot serve: every HSM call made inside the fault fails. Added latency is
  // a slow HSM, not a gone one.
  bool down;
  // /readyz and offkey_ready must say "not ready" by the end of the fault: offkeyd's
  // health check (a session, the login, the store secret found) fails in it.
  bool not_ready;
};

// "*" is every function that touches a slot, token, session or object, so an error
// there is an HSM that answers nothing but that error.
const Fault kFaults[] = {
    {"CKR_DEVICE_ERROR", "error * CKR_DEVICE_ERROR\n", true, true},
    {"CKR_DEVICE_REMOVED", "error * CKR_DEVICE_REMOVED\n", true, true},
    {"CKR_TOKEN_NOT_PRESENT", "error * CKR_TOKEN_NOT_PRESENT\n", true, true},
    {"CKR_SESSION_HANDLE_INVALID", "error * CKR_SESSION_HANDLE_INVALID\n", true, true},
    {"CKR_SESSION_CLOSED", "error * CKR_SESSION_CLOSED\n", true, true},
    {"CKR_FUNCTION_FAILED", "error * CKR_FUNCTION_FAILED\n", true, true},
    {"CKR_GENERAL_ERROR", "error * CKR_GENERAL_ERROR\n", true, true},
    // The HSM drops the login and refuses a new one (not for the PIN: a refused PIN is
    // never retried by design, see hsm/pkcs11/token.h).
    {"C_Login fails",
     "error C_Login CKR_FUNCTION_FAILED\n"
     "error C_SignInit CKR_USER_NOT_LOGGED_IN\n"
     "error C_DecryptInit CKR_USER_NOT_LOGGED_IN\n",
     true, true},
    // The HSM drops sessions while signing and decrypting, then hangs in closing them:
    // only the callers whose sessions are being closed may wait, not every caller nor
    // the metrics. The health check neither signs nor closes a session, so it passes:
    // readiness is not checked here.
    {"sessions lost, close hangs",
     "error C_Sign CKR_SESSION_HANDLE_INVALID\n"
     "error C_Decrypt CKR_SESSION_HANDLE_INVALID\n"
     "hang C_CloseSession\n",
     true, false},
    {"latency 150 ms", "latency * 150\n", false, false},
    {"hang", "hang *\n", true, true},
};

// DecryptPremaster under faults. The contract (always OK with 48 bytes) is about padding
// oracles: no answer may depend on whether the plaintext was well formed. An HSM fault
// does not: offkeyd asks the HSM for the substitute's HMAC and for the raw RSA
// decryption (CKM_RSA_X_509, which never looks at the padding) on every call, before it
// looks at the plaintext, so a fault hits good and malformed ciphertexts alike and its
// error tells nothing about either. A substitute in its place would be wrong twice:
// offkeyd cannot compute one (its key is on the HSM), and a genuine client given a
// made-up premaster fails at Finished, where UNAVAILABLE lets the terminator try another
// replica. So here: in a fault both kinds get UNAVAILABLE or DEADLINE_EXCEEDED, the same
// codes, and every OK answer is the client's premaster or the substitute seen before.

// The kinds of call the workers make. Each must succeed again after every fault.
enum Kind {
  kSignRsa,
  kSignEc,
  kPremaster,
  kPremasterBad,
  kDerive,
  kVerify,
  kStream,
  kKinds
};
constexpr const char* kKindNames[kKinds] = {
    "sign-rsa", "sign-ec", "premaster", "premaster-bad", "derive", "verify", "stream"};

struct Outcome {
  Kind kind;
  std::string operation;  // As offkey_operations_total names it.
  absl::Time start, end;
  grpc::StatusCode code;
  std::string message;
};

// A good premaster and what offkeyd must answer for it.
struct Handshake {
  std::string ciphertext;
  std::string premaster;
  std::string client_random, server_random;
  std::string master_secret;
};

class ChaosTest : public OffkeydTest {
 protected:
  void AdjustToken(hsm::pkcs11::TokenOptions* options) override {
    control_file_ = absl::StrCat(getenv("TEST_TMPDIR"), "/faults");
    ASSERT_EQ(setenv("OFFKEY_FAULT_CONTROL_FILE", control_file_.c_str(), 1), 0);
    auto faults = hsm::pkcs11::testing::FaultControl::Load();
    ASSERT_TRUE(faults.ok()) << faults.status();
    faults_.emplace(*faults);
    options->module_path = hsm::pkcs11::testing::FaultModulePath();
  }
  void Configure(offkey::v1::ServerConfig* config) override {
    clients_ = TestCa("clients CA");
    std::ofstream(dir_ + "/clients.pem") << clients_.cert_pem;
    offkey::v1::TrustBundle* bundle = config->add_trust_bundles();
    bundle->set_name("clients");
    bundle->set_ca_file(dir_ + "/clients.pem");
    offkey::v1::Grant* grant = config->mutable_policy()->add_grants();
    grant->add_identities(kTerminator);
    grant->add_operations(offkey::v1::VERIFY_CLIENT);
    // Tens of thousands of lines: kept with the test's outputs, out of the test log.
    config->mutable_audit()->set_path(AuditPath());
  }
  service::ServerOptions Options() override {
    service::ServerOptions options;
    options.health_interval = kHealthInterval;
    return options;
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    if (HasFatalFailure()) return;
    rsa_ = AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
    ec_ = AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
    for (int i = 0; i < 8; ++i) {
      Handshake h;
      h.premaster = "\x03\x03" + Random(46);
      h.ciphertext = RsaEncryptPkcs1(rsa_.public_key_spki, h.premaster);
      h.client_random = Random(32);
      h.server_random = Random(32);
      auto master = service::crypto::MasterSecret(hsm::HashAlgorithm::kSha256,
                                                  SecretBytes(h.premaster),
                                                  h.client_random, h.server_random);
      ASSERT_TRUE(master.ok()) << master.status();
      h.master_secret = std::string(master->view());
      RecordSecret("premaster", h.premaster);
      RecordSecret("master secret", h.master_secret);
      handshakes_.push_back(std::move(h));
    }
    // A block that is not PKCS#1 type 2: offkeyd must answer it with a substitute.
    std::string block(256, '\x5a');
    block[0] = 0;
    bad_ciphertext_ = RsaEncryptRaw(rsa_.public_key_spki, block);
    service::dev::CertSpec spec;
    spec.common_name = "browser";
    spec.uris = {"spiffe://clients.test/browser"};
    spec.client_auth = true;
    auto leaf = service::dev::Issue(clients_, spec);
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    leaf_ = *std::move(leaf);
  }
  void TearDown() override {
    WriteControlFile("");
    if (faults_.has_value()) faults_->Release();
    OffkeydTest::TearDown();
  }

  // Replaces the control file at once (the module rereads it on its next call).
  void WriteControlFile(const std::string& rules) {
    const std::string tmp = control_file_ + ".tmp";
    {
      std::ofstream out(tmp);
      out << rules;
      ASSERT_TRUE(out.good());
    }
    ASSERT_EQ(rename(tmp.c_str(), control_file_.c_str()), 0);
  }

  offkey::v1::SignRequest SignRequest(Kind kind) {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name(kind == kSignRsa ? "web-rsa" : "web-ec");
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.set_scheme(kind == kSignRsa ? offkey::v1::RSA_PSS_RSAE_SHA256
                                        : offkey::v1::ECDSA_SECP256R1_SHA256);
    request.set_message(Tls13Input());
    return request;
  }
  offkey::v1::DecryptPremasterRequest PremasterRequest(const std::string& ciphertext) {
    offkey::v1::DecryptPremasterRequest request;
    request.mutable_key()->set_name("web-rsa");
    request.mutable_context()->set_version(offkey::v1::TLS_1_2);
    request.set_ciphertext(ciphertext);
    request.set_client_version(0x0303);
    return request;
  }

  // Whether an OK answer is right; the reason if not.
  std::string CheckSignature(const offkey::v1::SignRequest& request,
                             const offkey::v1::SignResponse& response) {
    const bool rsa = request.key().name() == "web-rsa";
    const hsm::SignAlgorithm algorithm =
        rsa ? hsm::SignAlgorithm{hsm::SignatureKind::kRsaPss, hsm::HashAlgorithm::kSha256}
            : hsm::SignAlgorithm{hsm::SignatureKind::kEcdsa, hsm::HashAlgorithm::kSha256};
    absl::Status verified =
        VerifyWithOpenSsl(rsa ? rsa_.public_key_spki : ec_.public_key_spki, algorithm,
                          request.message(), response.signature());
    return verified.ok() ? "" : absl::StrCat("bad signature: ", verified.ToString());
  }

  // One unary call of `kind`; its outcome and, for an OK answer that is wrong, why.
  Outcome Call(Kind kind, offkey::v1::KeyService::Stub* stub, int n, std::string* wrong) {
    Outcome o;
    o.kind = kind;
    auto context = Context(kDeadline);
    o.start = absl::Now();
    grpc::Status status;
    switch (kind) {
      case kSignRsa:
      case kSignEc: {
        o.operation = "sign";
        offkey::v1::SignRequest request = SignRequest(kind);
        offkey::v1::SignResponse response;
        status = stub->Sign(context.get(), request, &response);
        if (status.ok()) *wrong = CheckSignature(request, response);
        break;
      }
      case kPremaster:
      case kPremasterBad: {
        o.operation = "decrypt-premaster";
        const Handshake& h = handshakes_[n % handshakes_.size()];
        offkey::v1::DecryptPremasterResponse response;
        status = stub->DecryptPremaster(
            context.get(),
            PremasterRequest(kind == kPremaster ? h.ciphertext : bad_ciphertext_),
            &response);
        if (status.ok()) {
          const std::string& want = kind == kPremaster ? h.premaster : substitute_;
          if (response.premaster() != want) {
            *wrong = kind == kPremaster
                         ? "a good ciphertext got a premaster that is not the client's"
                         : "a malformed ciphertext got another substitute than before";
          }
        }
        break;
      }
      case kDerive: {
        o.operation = "derive-master-secret";
        const Handshake& h = handshakes_[n % handshakes_.size()];
        offkey::v1::DeriveMasterSecretRequest request;
        request.mutable_key()->set_name("web-rsa");
        request.mutable_context()->set_version(offkey::v1::TLS_1_2);
        request.set_ciphertext(h.ciphertext);
        request.set_client_version(0x0303);
        request.set_prf_hash(offkey::v1::PRF_SHA256);
        request.mutable_randoms()->set_client_random(h.client_random);
        request.mutable_randoms()->set_server_random(h.server_random);
        offkey::v1::DeriveMasterSecretResponse response;
        status = stub->DeriveMasterSecret(context.get(), request, &response);
        if (status.ok() && response.master_secret() != h.master_secret) {
          *wrong = "a master secret that is not the client's";
        }
        break;
      }
      case kVerify: {
        o.operation = "verify-client";
        offkey::v1::VerifyClientRequest request;
        request.mutable_context()->set_version(offkey::v1::TLS_1_3);
        request.add_certificate_chain(*service::dev::PemToDer(leaf_.cert_pem));
        request.set_trust_bundle("clients");
        request.set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
        request.set_signed_content(Tls13ClientInput());
        request.set_signature(
            SignWithPem(leaf_.key_pem.view(), request.signed_content()));
        offkey::v1::VerifyClientResponse response;
        status = stub->VerifyClient(context.get(), request, &response);
        if (status.ok() && response.result() != offkey::v1::VERIFIED) {
          *wrong = absl::StrCat("client not verified: ", response.detail());
        }
        break;
      }
      default:
        break;
    }
    o.end = absl::Now();
    o.code = status.error_code();
    o.message = status.error_message();
    return o;
  }

  // One Pipeline stream with a deadline, carrying two signatures and a premaster; an
  // outcome per item.
  std::vector<Outcome> Stream(offkey::v1::KeyService::Stub* stub, int n,
                              std::string* wrong) {
    auto context = Context(kDeadline);
    const absl::Time start = absl::Now();
    auto stream = stub->Pipeline(context.get());
    std::map<uint64_t, offkey::v1::PipelineRequest> sent;
    for (uint64_t id = 0; id < 3; ++id) {
      offkey::v1::PipelineRequest item;
      item.set_id(id);
      if (id < 2) {
        *item.mutable_sign() = SignRequest(id == 0 ? kSignEc : kSignRsa);
      } else {
        *item.mutable_decrypt_premaster() =
            PremasterRequest(handshakes_[n % handshakes_.size()].ciphertext);
      }
      if (!stream->Write(item)) break;
      sent[id] = item;
    }
    stream->WritesDone();
    std::vector<Outcome> outcomes;
    offkey::v1::PipelineResponse response;
    const size_t written = sent.size();
    while (outcomes.size() < written && stream->Read(&response)) {
      auto it = sent.find(response.id());
      if (it == sent.end()) {
        *wrong = absl::StrCat("an answer to an item never sent: ", response.id());
        continue;
      }
      Outcome o;
      o.kind = kStream;
      o.start = start;
      o.end = absl::Now();
      o.code = static_cast<grpc::StatusCode>(response.status().code());
      o.message = response.status().message();
      if (it->second.has_sign()) {
        o.operation = "sign";
        if (o.code == grpc::OK) {
          std::string why = CheckSignature(it->second.sign(), response.sign());
          if (!why.empty()) *wrong = why;
        }
      } else {
        o.operation = "decrypt-premaster";
        if (o.code == grpc::OK && response.decrypt_premaster().premaster() !=
                                      handshakes_[n % handshakes_.size()].premaster) {
          *wrong = "a good ciphertext got a premaster that is not the client's";
        }
      }
      sent.erase(it);
      outcomes.push_back(std::move(o));
    }
    grpc::Status status = stream->Finish();
    const absl::Time end = absl::Now();
    // Items the stream ended without answering take the stream's status.
    for (const auto& [id, item] : sent) {
      Outcome o;
      o.kind = kStream;
      o.operation = item.has_sign() ? "sign" : "decrypt-premaster";
      o.start = start;
      o.end = end;
      o.code = status.ok() ? grpc::UNKNOWN : status.error_code();
      o.message = status.ok() ? "the stream ended OK with the item unanswered"
                              : status.error_message();
      outcomes.push_back(std::move(o));
    }
    return outcomes;
  }

  std::optional<hsm::pkcs11::testing::FaultControl> faults_;
  std::string control_file_;
  hsm::KeyInfo rsa_, ec_;
  service::dev::IssuedCert clients_, leaf_;
  std::vector<Handshake> handshakes_;
  std::string bad_ciphertext_;
  std::string substitute_;  // offkeyd's answer to bad_ciphertext_ before any fault.
};

struct Sample {
  absl::Time at;
  bool ready;
};

// GET http://127.0.0.1:<port><path> as a Kubernetes probe makes it: an answer within a
// second, or none (status -1).
std::pair<int, std::string> Probe(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  client.set_read_timeout(1);
  httplib::Result result = client.Get(path);
  if (!result) return {-1, httplib::to_string(result.error())};
  return {result->status, result->body};
}

// The value of the unlabelled series `name` in a scrape, or -1.
double Gauge(const std::string& metrics, absl::string_view name) {
  const std::string prefix = absl::StrCat(name, " ");
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    double value = 0;
    if (absl::StartsWith(line, prefix) &&
        absl::SimpleAtod(line.substr(prefix.size()), &value)) {
      return value;
    }
  }
  return -1;
}

// offkey_operations_total by operation and code, from a scrape.
std::map<std::pair<std::string, std::string>, int64_t> OperationCounts(
    const std::string& metrics) {
  std::map<std::pair<std::string, std::string>, int64_t> counts;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(line, "offkey_operations_total{")) continue;
    auto label = [&](absl::string_view name) {
      const std::string key = absl::StrCat(name, "=\"");
      size_t at = line.find(key);
      if (at == line.npos) return std::string();
      at += key.size();
      return std::string(line.substr(at, line.find('"', at) - at));
    };
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) {
      counts[{label("operation"), label("code")}] += static_cast<int64_t>(value);
    }
  }
  return counts;
}

TEST_F(ChaosTest, EveryFaultUnderMixedLoad) {
  offkey::Mutex mu;
  std::vector<Outcome> outcomes;  // Guarded by mu.
  // The substitute for the malformed ciphertext, before any fault.
  {
    offkey::v1::DecryptPremasterResponse response;
    Outcome o{kPremasterBad, "decrypt-premaster", absl::Now()};
    grpc::Status status =
        Stub(kTerminator)
            ->DecryptPremaster(Context().get(), PremasterRequest(bad_ciphertext_),
                               &response);
    o.end = absl::Now();
    o.code = status.error_code();
    outcomes.push_back(o);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.premaster().size(), 48u);
    substitute_ = response.premaster();
    RecordSecret("substitute premaster", substitute_);
  }
  ASSERT_EQ(HttpGet("/readyz").first, 200);

  std::vector<std::string> wrong;     // Guarded by mu: OK answers that were not right.
  std::vector<Sample> readyz, gauge;  // Guarded by mu.
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int k = 0; k < kKinds; ++k) {
    const Kind kind = static_cast<Kind>(k);
    threads.emplace_back([&, kind, stub = Stub(kTerminator)] {
      for (int n = 0; !stop.load(); ++n) {
        std::string why;
        std::vector<Outcome> done;
        if (kind == kStream) {
          done = Stream(stub.get(), n, &why);
        } else {
          done.push_back(Call(kind, stub.get(), n, &why));
        }
        {
          offkey::MutexLock lock(&mu);
          if (!why.empty()) wrong.push_back(absl::StrCat(kKindNames[kind], ": ", why));
          for (Outcome& o : done) outcomes.push_back(std::move(o));
        }
        absl::SleepFor(kPause);
      }
    });
  }
  // What an operator's probes see: /readyz every 50 ms, the offkey_ready gauge every
  // 200 ms.
  std::vector<std::string> unanswered;  // Guarded by mu: probes with no answer.
  threads.emplace_back([&, port = server_->metrics_port()] {
    for (int n = 0; !stop.load(); ++n) {
      const absl::Time asked = absl::Now();
      const int status = Probe(port, "/readyz").first;
      const absl::Time at = absl::Now();
      std::pair<int, std::string> metrics{0, ""};
      if (n % 4 == 0) metrics = Probe(port, "/metrics");
      {
        offkey::MutexLock lock(&mu);
        if (status != 200 && status != 503) {
          unanswered.push_back(absl::StrCat("/readyz at ", absl::FormatTime(asked)));
        } else {
          readyz.push_back({at, status == 200});
        }
        if (metrics.first == 200) {
          gauge.push_back({absl::Now(), Gauge(metrics.second, "offkey_ready") == 1});
        } else if (n % 4 == 0) {
          unanswered.push_back(absl::StrCat("/metrics at ", absl::FormatTime(at)));
        }
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  });

  // The load runs a moment before the first fault.
  absl::SleepFor(absl::Seconds(1));
  // Calls are counted in the phase they started in. A call started after `on` met the
  // fault; one that ended before `clear` ran entirely inside it. Recovery counts from
  // `clear`, before the file is rewritten.
  struct Phase {
    absl::Time begin, on, clear, next;
    uint64_t injected = 0;
  };
  std::vector<Phase> phases;
  for (const Fault& fault : kFaults) {
    Phase phase;
    const uint64_t injected = faults_->Injected("*");
    phase.begin = absl::Now();
    WriteControlFile(fault.rules);
    phase.on = absl::Now();
    absl::SleepFor(kFaultOn);
    phase.clear = absl::Now();
    WriteControlFile("");
    phase.injected = faults_->Injected("*") - injected;
    absl::SleepFor(kFaultOff);
    phase.next = absl::Now();
    phases.push_back(phase);
  }
  stop = true;
  for (std::thread& t : threads) t.join();

  // offkeyd finishes what it still holds (calls whose callers gave up), then its
  // counts must stop moving.
  // Nothing stays stuck in it: no session held, nothing queued, within a few seconds.
  std::map<std::pair<std::string, std::string>, int64_t> server;
  bool quiet = false;
  for (const absl::Time until = absl::Now() + absl::Seconds(5);
       !quiet && absl::Now() < until;) {
    std::pair<int, std::string> scrape = Probe(server_->metrics_port(), "/metrics");
    ASSERT_EQ(scrape.first, 200);
    auto counts = OperationCounts(scrape.second);
    quiet = counts == server && Gauge(scrape.second, "offkey_hsm_sessions_in_use") == 0 &&
            Gauge(scrape.second, "offkey_worker_queue_depth") == 0 &&
            Gauge(scrape.second, "offkey_pipeline_items_in_flight") == 0;
    server = std::move(counts);
    if (!quiet) absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_TRUE(quiet) << "offkeyd still holds sessions or work after the load stopped";

  offkey::MutexLock lock(&mu);
  EXPECT_TRUE(unanswered.empty()) << unanswered.size() << " probes got no answer within "
                                  << "a second, first: " << unanswered[0];
  EXPECT_TRUE(wrong.empty()) << wrong.size() << " wrong answers, first: " << wrong[0];

  // The table, and the checks per phase.
  printf("\nchaos: %zu calls, deadline %s; fault on %s, then off %s\n", outcomes.size(),
         absl::FormatDuration(kDeadline).c_str(), absl::FormatDuration(kFaultOn).c_str(),
         absl::FormatDuration(kFaultOff).c_str());
  printf("%-27s %6s %6s %6s %6s %6s %6s %7s %8s %-13s %8s %8s\n", "fault", "calls", "ok",
         "unavail", "deadln", "intern", "other", "max ms", "recov ms", "(slowest)",
         "ready ms", "injected");
  absl::Duration worst_latency;
  // Recovery by kind, printed after the table: when the first success after the fault
  // cleared ended, and when that call had started (relative to the clearing).
  std::string by_kind;
  for (size_t p = 0; p < phases.size(); ++p) {
    const Fault& fault = kFaults[p];
    const Phase& phase = phases[p];
    SCOPED_TRACE(fault.name);
    int calls = 0, ok = 0, unavailable = 0, deadline = 0, internal = 0, other = 0;
    absl::Duration max_latency;
    // When each kind first succeeded after the fault cleared.
    std::vector<absl::Time> back(kKinds, absl::InfiniteFuture());
    std::vector<absl::Time> back_started(kKinds);  // When that call started.
    // The codes of the calls made and finished inside the fault, by kind.
    std::vector<std::set<grpc::StatusCode>> in_fault(kKinds);
    std::string first_other;
    for (const Outcome& o : outcomes) {
      if (o.start < phase.begin || o.start >= phase.next) continue;
      ++calls;
      max_latency = std::max(max_latency, o.end - o.start);
      switch (o.code) {
        case grpc::OK:
          ++ok;
          break;
        case grpc::UNAVAILABLE:
          ++unavailable;
          break;
        case grpc::DEADLINE_EXCEEDED:
          ++deadline;
          break;
        case grpc::INTERNAL:
          ++internal;
          if (first_other.empty()) first_other = o.message;
          break;
        default:
          ++other;
          if (first_other.empty()) first_other = absl::StrCat(o.code, ": ", o.message);
      }
      if (o.code == grpc::OK && o.end >= phase.clear && o.end < back[o.kind]) {
        back[o.kind] = o.end;
        back_started[o.kind] = o.start;
      }
      // The HSM was serving nothing: an HSM call made and finished inside the fault
      // cannot have succeeded (VerifyClient does not use the HSM).
      if (o.start > phase.on && o.end < phase.clear) in_fault[o.kind].insert(o.code);
      if (fault.down && o.kind != kVerify && o.start > phase.on && o.end < phase.clear) {
        EXPECT_NE(o.code, grpc::OK)
            << kKindNames[o.kind] << " succeeded in the fault, started "
            << absl::FormatDuration(o.start - phase.on) << " into it, took "
            << absl::FormatDuration(o.end - o.start);
      }
      if (o.kind == kVerify) {
        EXPECT_EQ(o.code, grpc::OK) << "VerifyClient needs no HSM: " << o.message;
      }
    }
    absl::Time all_back = phase.clear;
    int slowest = 0;
    for (int k = 0; k < kKinds; ++k) {
      if (back[k] > all_back) {
        all_back = back[k];
        slowest = k;
      }
    }
    // /readyz: not ready at the end of a fault that took the HSM away, ready again soon
    // after it cleared and from then on.
    absl::Time ready_back = absl::InfiniteFuture();
    bool down_seen = false, flapped = false;
    for (const Sample& s : readyz) {
      if (s.at > phase.clear - absl::Milliseconds(500) && s.at <= phase.clear &&
          fault.not_ready) {
        EXPECT_FALSE(s.ready) << "/readyz said ready "
                              << absl::FormatDuration(phase.clear - s.at)
                              << " before the fault cleared";
        down_seen = down_seen || !s.ready;
      }
      if (s.at > phase.clear && s.at < phase.next) {
        if (s.ready && ready_back == absl::InfiniteFuture()) ready_back = s.at;
        if (!s.ready && ready_back != absl::InfiniteFuture()) flapped = true;
      }
    }
    for (const Sample& s : gauge) {
      if (fault.not_ready && s.at > phase.clear - absl::Milliseconds(500) &&
          s.at <= phase.clear) {
        EXPECT_FALSE(s.ready) << "offkey_ready said 1 in the fault";
      }
      if (s.at > ready_back + absl::Milliseconds(200) && s.at < phase.next) {
        EXPECT_TRUE(s.ready) << "offkey_ready said 0 after /readyz said ready";
      }
    }
    if (fault.not_ready) {
      EXPECT_TRUE(down_seen) << "/readyz never said not ready";
    }
    EXPECT_FALSE(flapped) << "/readyz went back to not ready after recovering";
    EXPECT_LE(ready_back - phase.clear, kReadyBack) << "/readyz slow to come back";

    const absl::Duration recovery = all_back - phase.clear;
    printf("%-27s %6d %6d %6d %6d %6d %6d %7lld %8lld %-13s %8lld %8llu\n", fault.name,
           calls, ok, unavailable, deadline, internal, other,
           static_cast<long long>(absl::ToInt64Milliseconds(max_latency)),
           static_cast<long long>(absl::ToInt64Milliseconds(recovery)),
           kKindNames[slowest],
           static_cast<long long>(absl::ToInt64Milliseconds(ready_back - phase.clear)),
           static_cast<unsigned long long>(phase.injected));
    absl::StrAppendFormat(&by_kind, "%-27s", fault.name);
    for (int k = 0; k < kKinds; ++k) {
      absl::StrAppendFormat(&by_kind, " %5d(%+5d)",
                            absl::ToInt64Milliseconds(back[k] - phase.clear),
                            absl::ToInt64Milliseconds(back_started[k] - phase.clear));
    }
    by_kind += "\n";
    for (int k = 0; k < kKinds; ++k) {
      EXPECT_LE(back[k] - phase.clear, kRecovery)
          << kKindNames[k] << " did not succeed within " << kRecovery
          << " of the fault clearing";
    }
    // Good and malformed ciphertexts meet a fault alike. A stray DEADLINE_EXCEEDED is
    // the machine's load (it comes to either kind, at random), not an answer that
    // depends on the padding, so it is left out of the comparison.
    if (fault.down) {
      auto without_deadline = [](std::set<grpc::StatusCode> codes) {
        codes.erase(grpc::DEADLINE_EXCEEDED);
        return codes;
      };
      EXPECT_EQ(without_deadline(in_fault[kPremaster]),
                without_deadline(in_fault[kPremasterBad]));
      EXPECT_FALSE(in_fault[kPremaster].empty());
    }
    EXPECT_EQ(internal, 0) << "first: " << first_other;
    EXPECT_EQ(other, 0) << "first: " << first_other;
    EXPECT_GT(calls, 0);
    if (fault.down && std::string(fault.rules).rfind("error", 0) == 0) {
      EXPECT_GT(phase.injected, 0u) << "the fault never fired";
    }
    worst_latency = std::max(worst_latency, max_latency);
  }
  printf(
      "\nrecovery by kind, ms after the fault cleared: first success ended (started)\n");
  printf("%-27s", "fault");
  for (const char* name : kKindNames) printf(" %12s", name);
  printf("\n%s", by_kind.c_str());
  fflush(stdout);
  EXPECT_LE(worst_latency, kDeadline + kSlack) << "a call outlived its deadline";

  // offkeyd counted every call the clients made, each under the code they saw, except
  // that a call whose deadline passed at the client may have ended later in offkeyd
  // with another code (or not been counted if it never arrived).
  std::map<std::string, std::map<std::string, int64_t>> client;
  for (const Outcome& o : outcomes) {
    ++client[o.operation]
            [absl::StatusCodeToString(static_cast<absl::StatusCode>(o.code))];
  }
  for (const auto& [operation, codes] : client) {
    SCOPED_TRACE(operation);
    const std::string kDl = "DEADLINE_EXCEEDED";
    int64_t client_total = 0, server_total = 0, excess = 0;
    for (const auto& [code, n] : codes) client_total += n;
    for (const auto& [key, n] : server) {
      if (key.first != operation) continue;
      server_total += n;
      const auto it = codes.find(key.second);
      const int64_t seen = it == codes.end() ? 0 : it->second;
      if (key.second == kDl) {
        EXPECT_LE(n, seen) << "offkeyd counted more DEADLINE_EXCEEDED than callers saw";
      } else {
        EXPECT_GE(n, seen) << key.second << ": offkeyd counted fewer than callers saw";
        excess += n - seen;
      }
    }
    const int64_t client_dl = codes.count(kDl) ? codes.at(kDl) : 0;
    const int64_t server_dl =
        server.count({operation, kDl}) ? server.at({operation, kDl}) : 0;
    EXPECT_LE(server_total, client_total);
    EXPECT_LE(excess, client_dl - server_dl)
        << "offkeyd counted answers no caller was waiting for";
    EXPECT_EQ(
        server.count({operation, "INTERNAL"}) ? server.at({operation, "INTERNAL"}) : 0,
        0);
  }
  EXPECT_EQ(faults_->LifecycleOverlaps(), 0u)
      << "the module was finalised or initialised under another call";
}

// An HSM that stops answering while offkeyd is idle: the periodic health check takes an
// idle session and hangs inside the module with it, so it never reports. A check that
// does not return is no answer either: /readyz, offkey_ready and grpc.health.v1 must
// turn to "not serving" all the same, and back once the HSM answers again.
TEST_F(ChaosTest, HealthCheckHungInTheHsmIsNotReady) {
  const int port = server_->metrics_port();
  auto health = grpc::health::v1::Health::NewStub(Channel(kTerminator));
  // What the three say at once: "serving" from all, "not serving" from all, or
  // "mixed"; an unanswered probe fails the test.
  auto verdict = [&]() -> std::string {
    const std::pair<int, std::string> ready = Probe(port, "/readyz");
    const std::pair<int, std::string> metrics = Probe(port, "/metrics");
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status =
        health->Check(Context(absl::Seconds(1)).get(), request, &response);
    EXPECT_TRUE(ready.first == 200 || ready.first == 503) << "/readyz: " << ready.second;
    EXPECT_EQ(metrics.first, 200) << "/metrics: " << metrics.second;
    EXPECT_TRUE(status.ok()) << "grpc.health.v1: " << status.error_message();
    const bool serving[] = {
        ready.first == 200, Gauge(metrics.second, "offkey_ready") == 1,
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING};
    if (serving[0] && serving[1] && serving[2]) return "serving";
    if (!serving[0] && !serving[1] && !serving[2]) return "not serving";
    return "mixed";
  };
  // How long until verdict() says `want` (bounded by `bound` and 10 s more).
  auto await = [&](const std::string& want, absl::Duration bound) {
    const absl::Time start = absl::Now();
    while (absl::Now() < start + bound + absl::Seconds(10)) {
      if (verdict() == want) return absl::Now() - start;
      if (HasFailure()) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return absl::InfiniteDuration();
  };
  ASSERT_EQ(verdict(), "serving");
  WriteControlFile("hang *\n");
  // The next check starts within an interval and hangs; two seconds later (the
  // check's own deadline) it counts as failed, and grpc.health.v1 hears of it within
  // 200 ms.
  const absl::Duration bound =
      kHealthInterval + absl::Seconds(2) + absl::Milliseconds(200) + kSlack;
  const absl::Duration down = await("not serving", bound);
  EXPECT_LE(down, bound) << "a health check hung in the HSM left offkeyd ready";
  EXPECT_GT(faults_->InFlight(), 0) << "no call hung in the module";
  WriteControlFile("");
  const absl::Duration back = await("serving", kReadyBack);
  EXPECT_LE(back, kReadyBack);
  printf(
      "hung health check: not serving after %s, serving again %s after the HSM "
      "answered\n",
      absl::FormatDuration(down).c_str(), absl::FormatDuration(back).c_str());
  offkey::v1::SignResponse response;
  grpc::Status status =
      Stub(kTerminator)->Sign(Context().get(), SignRequest(kSignEc), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace offkey::tests
