// The Pipeline stream against a real offkeyd and SoftHSM2: hundreds of interleaved
// operations answered by id with per-item errors, flow control, the stream-level
// failures, and the same policy and audit as unary calls.

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/mutex.h"
#include "base/testing/secret_ledger.h"
#include "hsm/testing/forwarding_store.h"
#include "hsm/testing/verify.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {

using ::offkey::testing::RecordSecret;
namespace {

using ::offkey::hsm::testing::ForwardingStore;

using hsm::testing::RsaEncryptPkcs1;
using hsm::testing::RsaEncryptRaw;
using hsm::testing::VerifyWithOpenSsl;
using offkey::v1::PipelineRequest;
using offkey::v1::PipelineResponse;

// Runs one stream: writes every request from a thread of its own (relying on flow
// control, as the contract tells clients to), half-closes, reads every response.
struct StreamResult {
  std::vector<PipelineResponse> responses;
  grpc::Status status;
};
StreamResult RunStream(offkey::v1::KeyService::Stub* stub,
                       const std::vector<PipelineRequest>& requests) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto stream = stub->Pipeline(context.get());
  std::thread writer([&] {
    for (const PipelineRequest& request : requests) {
      if (!stream->Write(request)) break;
    }
    stream->WritesDone();
  });
  StreamResult result;
  PipelineResponse response;
  while (stream->Read(&response)) result.responses.push_back(response);
  writer.join();
  result.status = stream->Finish();
  return result;
}

class PipelineTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->mutable_audit()->set_path(AuditPath());
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    rsa_ = AddKey("web-rsa", hsm::KeyAlgorithm::kRsa2048);
    ec_ = AddKey("web-ec", hsm::KeyAlgorithm::kEcP256);
    disabled_ = AddKey("old", hsm::KeyAlgorithm::kEcP256, offkey::v1::TLS_SERVER,
                       offkey::v1::DISABLED);
    terminator_ = Stub(kTerminator);
  }

  hsm::KeyInfo rsa_, ec_, disabled_;
  std::unique_ptr<offkey::v1::KeyService::Stub> terminator_;
};

// The same items whether workers run them or, when idle, the gRPC threads that read
// them (workers.run_on_rpc_threads_when_idle).
using PipelineDispatchTest = EveryDispatch<PipelineTest>;
INSTANTIATE_TEST_SUITE_P(Dispatch, PipelineDispatchTest, ::testing::Bool(), DispatchName);

TEST_P(PipelineDispatchTest, HundredsOfInterleavedItemsWithPerItemErrors) {
  // What each id must come back with.
  struct Expect {
    grpc::StatusCode code = grpc::OK;
    std::string message_part;
    std::string signed_message;  // Sign: verify the signature over this.
    const hsm::KeyInfo* key = nullptr;
    offkey::v1::SignatureScheme scheme = offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED;
    std::string premaster;  // DecryptPremaster: the good premaster; "" = substitute.
    bool certificate = false;
  };
  std::map<uint64_t, Expect> expect;
  std::vector<PipelineRequest> requests;
  const std::string good_premaster = std::string("\x03\x03", 2) + Random(46);
  RecordSecret("premaster", good_premaster);
  const std::string good_ct = RsaEncryptPkcs1(rsa_.public_key_spki, good_premaster);
  // A bad block type: answered with a 48-byte substitute and OK, like a good one.
  std::string bad_block = std::string("\x00\x01", 2) + std::string(256 - 2 - 49, '\xff') +
                          std::string(1, '\0') + good_premaster;
  const std::string bad_ct = RsaEncryptRaw(rsa_.public_key_spki, bad_block);
  for (uint64_t id = 1000; id < 1400; ++id) {
    PipelineRequest request;
    request.set_id(id);
    Expect e;
    switch (id % 8) {
      case 0:
      case 1: {
        auto* sign = request.mutable_sign();
        sign->mutable_key()->set_name(id % 8 == 0 ? "web-rsa" : "web-ec");
        sign->mutable_context()->set_version(offkey::v1::TLS_1_3);
        e.scheme = id % 8 == 0 ? offkey::v1::RSA_PSS_RSAE_SHA256
                               : offkey::v1::ECDSA_SECP256R1_SHA256;
        sign->set_scheme(e.scheme);
        e.signed_message = Tls13Input();
        sign->set_message(e.signed_message);
        e.key = id % 8 == 0 ? &rsa_ : &ec_;
        break;
      }
      case 2: {
        auto* decrypt = request.mutable_decrypt_premaster();
        decrypt->mutable_key()->set_name("web-rsa");
        decrypt->mutable_context()->set_version(offkey::v1::TLS_1_2);
        decrypt->set_ciphertext(id % 16 == 2 ? good_ct : bad_ct);
        decrypt->set_client_version(0x0303);
        e.premaster = id % 16 == 2 ? good_premaster : "";
        break;
      }
      case 3: {
        auto* get = request.mutable_get_certificate();
        get->mutable_key()->set_name("web-ec");
        e.certificate = true;
        break;
      }
      case 4: {  // Injected: PKCS#1 v1.5 in TLS 1.3.
        auto* sign = request.mutable_sign();
        sign->mutable_key()->set_name("web-rsa");
        sign->mutable_context()->set_version(offkey::v1::TLS_1_3);
        sign->set_scheme(offkey::v1::RSA_PKCS1_SHA256);
        sign->set_message(Tls13Input());
        e.code = grpc::INVALID_ARGUMENT;
        e.message_part = "not allowed in TLS 1.3";
        break;
      }
      case 5: {  // Injected: a key that does not exist.
        auto* sign = request.mutable_sign();
        sign->mutable_key()->set_name("no-such-key");
        sign->mutable_context()->set_version(offkey::v1::TLS_1_3);
        sign->set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
        sign->set_message(Tls13Input());
        e.code = grpc::PERMISSION_DENIED;
        e.message_part = "no grant";
        break;
      }
      case 6: {  // Injected: a disabled key.
        auto* sign = request.mutable_sign();
        sign->mutable_key()->set_name("old");
        sign->mutable_context()->set_version(offkey::v1::TLS_1_3);
        sign->set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
        sign->set_message(Tls13Input());
        e.code = grpc::FAILED_PRECONDITION;
        e.message_part = "disabled";
        break;
      }
      case 7:  // Injected: no operation at all.
        e.code = grpc::INVALID_ARGUMENT;
        e.message_part = "op: set one of";
        break;
    }
    expect[id] = e;
    requests.push_back(request);
  }

  StreamResult result = RunStream(terminator_.get(), requests);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.responses.size(), requests.size());
  std::set<uint64_t> seen;
  int out_of_order = 0;
  uint64_t previous = 0;
  for (const PipelineResponse& response : result.responses) {
    ASSERT_TRUE(seen.insert(response.id()).second) << "id answered twice";
    ASSERT_EQ(expect.count(response.id()), 1u) << response.id();
    if (response.id() < previous) ++out_of_order;
    previous = response.id();
    const Expect& e = expect[response.id()];
    ASSERT_EQ(response.status().code(), e.code)
        << response.id() << ": " << response.status().message();
    if (e.code != grpc::OK) {
      EXPECT_TRUE(absl::StrContains(response.status().message(), e.message_part))
          << response.status().message();
      EXPECT_EQ(response.result_case(), PipelineResponse::RESULT_NOT_SET);
      continue;
    }
    if (e.key != nullptr) {
      ASSERT_EQ(response.result_case(), PipelineResponse::kSign);
      const hsm::SignAlgorithm algorithm =
          e.scheme == offkey::v1::RSA_PSS_RSAE_SHA256
              ? hsm::SignAlgorithm{hsm::SignatureKind::kRsaPss,
                                   hsm::HashAlgorithm::kSha256}
              : hsm::SignAlgorithm{hsm::SignatureKind::kEcdsa,
                                   hsm::HashAlgorithm::kSha256};
      absl::Status verified =
          VerifyWithOpenSsl(e.key->public_key_spki, algorithm, e.signed_message,
                            response.sign().signature());
      EXPECT_TRUE(verified.ok()) << response.id() << ": " << verified;
    } else if (e.certificate) {
      ASSERT_EQ(response.result_case(), PipelineResponse::kGetCertificate);
      EXPECT_EQ(response.get_certificate().key_id(), ec_.key_id);
      EXPECT_EQ(response.get_certificate().certificate_chain_size(), 2);
    } else {
      ASSERT_EQ(response.result_case(), PipelineResponse::kDecryptPremaster);
      ASSERT_EQ(response.decrypt_premaster().premaster().size(), 48u);
      RecordSecret("premaster answer", response.decrypt_premaster().premaster());
      if (!e.premaster.empty()) {
        EXPECT_EQ(response.decrypt_premaster().premaster(), e.premaster);
      } else {
        EXPECT_NE(response.decrypt_premaster().premaster(), good_premaster);
      }
    }
  }
  // Out-of-order delivery depends on scheduling; report it rather than assert it.
  printf("%d of %zu responses arrived after a higher id\n", out_of_order,
         result.responses.size());

  // Audited like unary calls, one line per item, marked as carried by the stream.
  std::ifstream audit(AuditPath());
  std::string line;
  int pipeline_lines = 0;
  while (std::getline(audit, line)) {
    if (absl::StrContains(line, "\"via\":\"pipeline\"")) ++pipeline_lines;
  }
  // Items without an operation have nothing to audit.
  EXPECT_EQ(pipeline_lines, 400 - 50);
}

TEST_P(PipelineDispatchTest, PolicyAppliesPerItemAndTheStreamGoesOn) {
  auto stranger = Stub(kStranger);
  std::vector<PipelineRequest> requests(3);
  for (int i = 0; i < 3; ++i) {
    requests[i].set_id(i);
    auto* get = requests[i].mutable_get_certificate();
    get->mutable_key()->set_name("web-ec");
  }
  StreamResult result = RunStream(stranger.get(), requests);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.responses.size(), 3u);
  for (const PipelineResponse& response : result.responses) {
    EXPECT_EQ(response.status().code(), grpc::PERMISSION_DENIED);
    EXPECT_TRUE(absl::StrContains(response.status().message(), kStranger));
  }
}

TEST_P(PipelineDispatchTest, EmptyStreamEndsOk) {
  StreamResult result = RunStream(terminator_.get(), {});
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_TRUE(result.responses.empty());
}

// A store whose Sign waits at a gate, so items can be held in flight.
class GatedStore : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  void Close() {
    offkey::MutexLock lock(&mu_);
    open_ = false;
  }
  void Open() {
    offkey::MutexLock lock(&mu_);
    open_ = true;
  }
  // Waits until `n` Sign calls are waiting at the gate (or `timeout`); returns how many.
  int AwaitWaiting(int n, absl::Duration timeout) {
    offkey::MutexLock lock(&mu_);
    auto enough = [&] { return waiting_ >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return waiting_;
  }
  absl::StatusOr<std::string> Sign(absl::string_view key_id, hsm::SignAlgorithm algorithm,
                                   absl::string_view message,
                                   const hsm::CallOptions& options) override {
    {
      offkey::MutexLock lock(&mu_);
      ++waiting_;
      mu_.Await(absl::Condition(&open_));
      --waiting_;
    }
    return ForwardingStore::Sign(key_id, algorithm, message, options);
  }

 private:
  offkey::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
};

class GatedPipelineTest : public PipelineTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    PipelineTest::Configure(config);
    config->mutable_stream()->set_max_in_flight(3);
    config->mutable_workers()->set_threads(6);
    config->mutable_hsm()->set_max_sessions(6);
  }
  hsm::KeyStore* ServedStore(hsm::KeyStore* real) override {
    gated_ = std::make_unique<GatedStore>(real);
    return gated_.get();
  }
  PipelineRequest SignItem(uint64_t id) {
    PipelineRequest request;
    request.set_id(id);
    auto* sign = request.mutable_sign();
    sign->mutable_key()->set_name("web-ec");
    sign->mutable_context()->set_version(offkey::v1::TLS_1_3);
    sign->set_scheme(offkey::v1::ECDSA_SECP256R1_SHA256);
    sign->set_message(Tls13Input());
    return request;
  }
  std::unique_ptr<GatedStore> gated_;
};

TEST_F(GatedPipelineTest, StopsReadingAtTheInFlightBound) {
  gated_->Close();
  std::vector<PipelineRequest> requests;
  for (uint64_t id = 0; id < 50; ++id) requests.push_back(SignItem(id));
  StreamResult result;
  std::thread run([&] { result = RunStream(terminator_.get(), requests); });
  // Six workers are idle, yet only three items may be in flight on one stream.
  EXPECT_EQ(gated_->AwaitWaiting(3, absl::Seconds(20)), 3);
  EXPECT_EQ(gated_->AwaitWaiting(4, absl::Milliseconds(300)), 3)
      << "the stream read past its in-flight bound";
  gated_->Open();
  run.join();
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.responses.size(), 50u);
  for (const PipelineResponse& response : result.responses) {
    EXPECT_EQ(response.status().code(), grpc::OK) << response.status().message();
  }
}

TEST_F(GatedPipelineTest, ReusedInFlightIdFailsTheStream) {
  gated_->Close();
  auto context = OffkeydTest::Context();
  auto stream = terminator_->Pipeline(context.get());
  ASSERT_TRUE(stream->Write(SignItem(7)));
  ASSERT_EQ(gated_->AwaitWaiting(1, absl::Seconds(20)), 1);
  ASSERT_TRUE(stream->Write(SignItem(7)));
  stream->WritesDone();
  PipelineResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status status = stream->Finish();
  gated_->Open();
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "id 7 is already in flight"))
      << status.error_message();
}

TEST_F(GatedPipelineTest, IdMayBeReusedAfterItsReply) {
  auto context = OffkeydTest::Context();
  auto stream = terminator_->Pipeline(context.get());
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(stream->Write(SignItem(1)));
    PipelineResponse response;
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.id(), 1u);
    EXPECT_EQ(response.status().code(), grpc::OK);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(GatedPipelineTest, ShutdownAnswersItemsInFlightThenEndsUnavailable) {
  gated_->Close();
  auto context = OffkeydTest::Context();
  auto stream = terminator_->Pipeline(context.get());
  for (uint64_t id = 0; id < 3; ++id) ASSERT_TRUE(stream->Write(SignItem(id)));
  ASSERT_EQ(gated_->AwaitWaiting(3, absl::Seconds(20)), 3);
  std::thread shutdown([&] { server_->Shutdown(absl::Seconds(20)); });
  absl::SleepFor(absl::Milliseconds(100));  // Let the drain begin with items held.
  gated_->Open();
  std::set<uint64_t> answered;
  PipelineResponse response;
  while (stream->Read(&response)) {
    EXPECT_EQ(response.status().code(), grpc::OK) << response.status().message();
    answered.insert(response.id());
  }
  grpc::Status status = stream->Finish();
  shutdown.join();
  EXPECT_EQ(answered, (std::set<uint64_t>{0, 1, 2}));
  EXPECT_EQ(status.error_code(), grpc::UNAVAILABLE) << status.error_message();
}

}  // namespace
}  // namespace offkey::tests
