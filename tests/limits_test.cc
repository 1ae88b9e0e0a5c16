// Fairness and size against a real offkeyd: one identity flooding the
// HSM workers cannot starve another; VerifyClient does not wait for the HSM workers;
// every RPC refuses an oversized request at the edge, naming the limit, and offkeyd
// keeps serving; a connection cannot open more streams than max_concurrent_streams.
//
// Deterministic by construction: the HSM calls of the flooding identity's key wait at a
// gate in the store that the test opens one call at a time, so what runs in which order
// is decided by offkeyd's queue, not by timing.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/mutex.h"
#include "hsm/testing/forwarding_store.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

namespace v1 = offkey::v1;

constexpr char kOther[] = "spiffe://test.offkey/other";

// Sign calls for one key wait at a gate until the test lets them through; every other
// call goes straight to the token.
class GatedStore : public hsm::testing::ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  void GateKey(const std::string& key_id) {
    offkey::MutexLock lock(&mu_);
    gated_key_ = key_id;
  }
  // Lets `n` more gated calls through.
  void Release(int n) {
    offkey::MutexLock lock(&mu_);
    permits_ += n;
  }
  // Lets every gated call through from now on.
  void Open() {
    offkey::MutexLock lock(&mu_);
    open_ = true;
  }
  // Waits (up to 30 s) until `n` gated calls have reached the gate in all.
  bool WaitArrived(int n) {
    offkey::MutexLock lock(&mu_);
    auto arrived = [this, n]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return arrived_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(30));
  }
  int arrived() {
    offkey::MutexLock lock(&mu_);
    return arrived_;
  }
  // Sign calls of other keys that reached the token.
  int ungated_signs() {
    offkey::MutexLock lock(&mu_);
    return ungated_signs_;
  }

  absl::StatusOr<std::string> Sign(absl::string_view id, hsm::SignAlgorithm a,
                                   absl::string_view m,
                                   const hsm::CallOptions& o) override {
    {
      offkey::MutexLock lock(&mu_);
      if (id == gated_key_) {
        ++arrived_;
        auto may_pass = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return open_ || permits_ > 0;
        };
        mu_.Await(absl::Condition(&may_pass));
        if (!open_) --permits_;
      } else {
        ++ungated_signs_;
      }
    }
    return ForwardingStore::Sign(id, a, m, o);
  }

 private:
  offkey::Mutex mu_;
  std::string gated_key_ ABSL_GUARDED_BY(mu_);
  int permits_ ABSL_GUARDED_BY(mu_) = 0;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int ungated_signs_ ABSL_GUARDED_BY(mu_) = 0;
};

// One unary Sign in flight on the client's callback API.
struct PendingSign {
  // A test that stops early must not free a call gRPC still holds.
  ~PendingSign() {
    context.TryCancel();
    done.WaitForNotification();
  }
  grpc::ClientContext context;
  v1::SignRequest request;
  v1::SignResponse response;
  grpc::Status status;
  absl::Notification done;
};

v1::SignRequest SignOf(const std::string& key) {
  v1::SignRequest request;
  request.mutable_key()->set_name(key);
  request.set_scheme(v1::ECDSA_SECP256R1_SHA256);
  request.set_message(Tls13Input());
  request.mutable_context()->set_version(v1::TLS_1_3);
  return request;
}

std::unique_ptr<PendingSign> StartSign(v1::KeyService::Stub* stub, const std::string& key,
                                       absl::Duration timeout) {
  auto call = std::make_unique<PendingSign>();
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  call->request = SignOf(key);
  PendingSign* p = call.get();
  stub->async()->Sign(&p->context, &p->request, &p->response, [p](grpc::Status status) {
    p->status = std::move(status);
    p->done.Notify();
  });
  return call;
}

class LimitsTest : public OffkeydTest {
 protected:
  void Configure(v1::ServerConfig* config) override {
    config->mutable_workers()->set_threads(1);
    config->mutable_workers()->set_queue_depth(16);
    config->mutable_limits()->set_max_calls_in_flight_per_identity(4);
    v1::Grant* other = config->mutable_policy()->add_grants();
    other->add_identities(kOther);
    other->add_operations(v1::SIGN);
    other->add_operations(v1::VERIFY_CLIENT);
    other->mutable_keys()->set_all_keys(true);
    v1::TrustBundle* bundle = config->add_trust_bundles();
    bundle->set_name("clients");
    bundle->set_ca_file(dir_ + "/ca.pem");
  }
  hsm::KeyStore* ServedStore(hsm::KeyStore* real) override {
    gated_ = std::make_unique<GatedStore>(real);
    return gated_.get();
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    hsm::KeyInfo flood_key = AddKey("flood", hsm::KeyAlgorithm::kEcP256);
    AddKey("calm", hsm::KeyAlgorithm::kEcP256);
    gated_->GateKey(flood_key.key_id);
  }
  void TearDown() override {
    if (gated_ != nullptr) gated_->Open();  // No worker stays stuck at the gate.
    OffkeydTest::TearDown();
  }

  // Polls offkeyd's queue gauge until it reads `n` (up to 30 s).
  bool WaitQueued(int n) {
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (MetricValue("offkey_worker_queue_depth") != n) {
      if (absl::Now() > give_up) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return true;
  }

  std::unique_ptr<GatedStore> gated_;
};

TEST_F(LimitsTest, OneIdentityFloodingDoesNotStarveAnother) {
  auto flooder = Stub(kTerminator);
  auto other = Stub(kOther);
  // The flooder takes its whole allowance: one call running (held at the gate) and
  // three queued.
  std::vector<std::unique_ptr<PendingSign>> flood;
  for (int i = 0; i < 4; ++i) {
    flood.push_back(StartSign(flooder.get(), "flood", absl::Seconds(60)));
  }
  ASSERT_TRUE(gated_->WaitArrived(1));
  ASSERT_TRUE(WaitQueued(3));

  // Everything more it sends is refused at once, naming the limit, although the queue
  // (16) has room.
  std::vector<std::unique_ptr<PendingSign>> excess;
  for (int i = 0; i < 8; ++i) {
    excess.push_back(StartSign(flooder.get(), "flood", absl::Seconds(10)));
  }
  for (auto& call : excess) {
    call->done.WaitForNotification();
    EXPECT_EQ(call->status.error_code(), grpc::RESOURCE_EXHAUSTED)
        << call->status.error_message();
    EXPECT_TRUE(absl::StrContains(call->status.error_message(),
                                  "max_calls_in_flight_per_identity"))
        << call->status.error_message();
  }
  EXPECT_EQ(gated_->arrived(), 1);

  // The other identity's calls, sent during the flood with a deadline, queue behind it.
  std::vector<std::unique_ptr<PendingSign>> calm;
  for (int i = 0; i < 2; ++i) {
    calm.push_back(StartSign(other.get(), "calm", absl::Seconds(30)));
  }
  ASSERT_TRUE(WaitQueued(5));

  // Each flooder call the HSM finishes lets the next identity in turn run: the other
  // identity's two calls are done after three of them (the one running, and one
  // flooder call per turn), not after the flooder's whole backlog.
  for (int released = 1; released <= 3; ++released) {
    gated_->Release(1);
    ASSERT_TRUE(gated_->WaitArrived(released + 1)) << "after " << released;
  }
  EXPECT_EQ(gated_->ungated_signs(), 2);
  for (auto& call : calm) {
    call->done.WaitForNotification();
    EXPECT_TRUE(call->status.ok()) << call->status.error_message();
    EXPECT_FALSE(call->response.signature().empty());
  }

  gated_->Open();
  for (auto& call : flood) {
    call->done.WaitForNotification();
    EXPECT_TRUE(call->status.ok()) << call->status.error_message();
  }
  // The flooder's allowance is whole again.
  grpc::ClientContext again;
  v1::SignResponse response;
  EXPECT_TRUE(flooder->Sign(&again, SignOf("flood"), &response).ok());
}

// VerifyClient needs no HSM: it is answered while every HSM worker is busy and the
// queue in front of them is full.
TEST_F(LimitsTest, VerifyClientDoesNotWaitForHsmWorkers) {
  auto flooder = Stub(kTerminator);
  std::vector<std::unique_ptr<PendingSign>> flood;
  for (int i = 0; i < 4; ++i) {
    flood.push_back(StartSign(flooder.get(), "flood", absl::Seconds(60)));
  }
  ASSERT_TRUE(gated_->WaitArrived(1));
  ASSERT_TRUE(WaitQueued(3));

  service::dev::CertSpec spec;
  spec.common_name = "browser";
  spec.uris = {"spiffe://clients.test/browser"};
  spec.client_auth = true;
  absl::StatusOr<service::dev::IssuedCert> leaf = service::dev::Issue(ca_, spec);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  v1::VerifyClientRequest request;
  request.mutable_context()->set_version(v1::TLS_1_3);
  request.add_certificate_chain(*service::dev::PemToDer(leaf->cert_pem));
  request.set_trust_bundle("clients");
  request.set_scheme(v1::ECDSA_SECP256R1_SHA256);
  request.set_signed_content(Tls13ClientInput());
  request.set_signature(SignWithPem(leaf->key_pem.view(), request.signed_content()));
  auto other = Stub(kOther);
  v1::VerifyClientResponse response;
  grpc::Status status =
      other->VerifyClient(Context(absl::Seconds(10)).get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.result(), v1::VERIFIED) << response.detail();
  EXPECT_EQ(gated_->arrived(), 1);  // The HSM worker was held all along.

  gated_->Open();
  for (auto& call : flood) call->done.WaitForNotification();
}

// A small stream cap, and the admin listener, for the size and connection tests.
class EdgeLimitsTest : public OffkeydTest {
 protected:
  static constexpr char kAdmin[] = "spiffe://test.offkey/admin";

  void Configure(v1::ServerConfig* config) override {
    config->mutable_limits()->set_max_concurrent_streams(2);
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    v1::Grant* verify = config->mutable_policy()->add_grants();
    verify->add_identities(kTerminator);
    verify->add_operations(v1::VERIFY_CLIENT);
  }
  void SetUp() override {
    OffkeydTest::SetUp();
    AddKey("ec", hsm::KeyAlgorithm::kEcP256);
    AddKey("rsa", hsm::KeyAlgorithm::kRsa2048);
  }

  // offkeyd still answers a good Sign on a fresh connection.
  void ExpectServing() {
    v1::SignResponse response;
    grpc::Status status =
        Stub(kTerminator)->Sign(Context().get(), SignOf("ec"), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
};

// A refusal for size: RESOURCE_EXHAUSTED, with the limit in bytes in the message.
void ExpectTooLarge(const grpc::Status& status, size_t limit, const char* what) {
  EXPECT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED)
      << what << ": " << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), absl::StrCat(limit)))
      << what << ": " << status.error_message();
}

TEST_F(EdgeLimitsTest, OversizedRequestsAreRefusedNamingTheLimit) {
  auto stub = Stub(kTerminator);
  {
    v1::SignRequest request = SignOf("ec");
    request.set_message(std::string(65 * 1024 + 1, 'x'));
    v1::SignResponse response;
    ExpectTooLarge(stub->Sign(Context().get(), request, &response), 65 * 1024, "Sign");
  }
  {
    v1::DecryptPremasterRequest request;
    request.mutable_key()->set_name("rsa");
    request.mutable_context()->set_version(v1::TLS_1_2);
    request.set_client_version(0x0303);
    request.set_ciphertext(std::string(4 * 1024 + 1, '\x01'));
    v1::DecryptPremasterResponse response;
    ExpectTooLarge(stub->DecryptPremaster(Context().get(), request, &response), 4 * 1024,
                   "DecryptPremaster");
  }
  {
    v1::DeriveMasterSecretRequest request;
    request.mutable_key()->set_name("rsa");
    request.mutable_context()->set_version(v1::TLS_1_2);
    request.set_client_version(0x0303);
    request.set_ciphertext(std::string(4 * 1024 + 1, '\x01'));
    request.set_prf_hash(v1::PRF_SHA256);
    request.set_session_hash(std::string(32, 's'));
    v1::DeriveMasterSecretResponse response;
    ExpectTooLarge(stub->DeriveMasterSecret(Context().get(), request, &response),
                   4 * 1024, "DeriveMasterSecret");
  }
  {
    // Within every per-field limit of VerifyClient (1 MiB of signed content), above the
    // request's.
    v1::VerifyClientRequest request;
    request.mutable_context()->set_version(v1::TLS_1_2);
    request.add_certificate_chain(std::string(100, 'c'));
    request.set_trust_bundle("clients");
    request.set_scheme(v1::ECDSA_SECP256R1_SHA256);
    request.set_signed_content(std::string(256 * 1024, 'm'));
    request.set_signature(std::string(72, 's'));
    v1::VerifyClientResponse response;
    ExpectTooLarge(stub->VerifyClient(Context().get(), request, &response), 256 * 1024,
                   "VerifyClient");
  }
  {
    v1::GetCertificateRequest request;
    request.mutable_key()->set_name(std::string(4 * 1024 + 1, 'k'));
    v1::GetCertificateResponse response;
    ExpectTooLarge(stub->GetCertificate(Context().get(), request, &response), 4 * 1024,
                   "GetCertificate");
  }
  {
    v1::ListKeysRequest request;
    (*request.mutable_label_selector())["team"] = std::string(16 * 1024, 'v');
    v1::ListKeysResponse response;
    ExpectTooLarge(stub->ListKeys(Context().get(), request, &response), 16 * 1024,
                   "ListKeys");
  }
  {
    // A Pipeline item over its operation's limit is answered alone; the stream goes on.
    auto context = Context();
    auto stream = stub->Pipeline(context.get());
    v1::PipelineRequest big;
    big.set_id(1);
    *big.mutable_sign() = SignOf("ec");
    big.mutable_sign()->set_message(std::string(65 * 1024 + 1, 'x'));
    v1::PipelineRequest good;
    good.set_id(2);
    *good.mutable_sign() = SignOf("ec");
    ASSERT_TRUE(stream->Write(big));
    ASSERT_TRUE(stream->Write(good));
    stream->WritesDone();
    std::map<uint64_t, v1::PipelineResponse> answers;
    v1::PipelineResponse answer;
    while (stream->Read(&answer)) answers[answer.id()] = answer;
    EXPECT_TRUE(stream->Finish().ok());
    ASSERT_EQ(answers.size(), 2u);
    ExpectTooLarge(grpc::Status(static_cast<grpc::StatusCode>(answers[1].status().code()),
                                answers[1].status().message()),
                   65 * 1024, "Pipeline item");
    EXPECT_EQ(answers[2].status().code(), grpc::OK) << answers[2].status().message();
    EXPECT_FALSE(answers[2].sign().signature().empty());
  }
  {
    // Far above every limit: gRPC refuses it before parsing, naming the listener's
    // limit (the largest request of any RPC).
    v1::SignRequest request = SignOf("ec");
    request.set_message(std::string(3 * 1024 * 1024, 'x'));
    v1::SignResponse response;
    ExpectTooLarge(stub->Sign(Context().get(), request, &response), 257 * 1024,
                   "Sign above the listener's limit");
  }
  ExpectServing();
}

TEST_F(EdgeLimitsTest, OversizedAdminRequestsAreRefused) {
  auto admin = AdminStub(kAdmin);
  {
    v1::ImportKeyRequest request;
    request.set_name("big");
    request.set_private_key(std::string(64 * 1024 + 1, 'p'));
    v1::ImportKeyResponse response;
    ExpectTooLarge(admin->ImportKey(Context().get(), request, &response), 64 * 1024,
                   "ImportKey");
  }
  {
    v1::AttachCertificateRequest request;
    request.mutable_key()->set_name("ec");
    request.set_chain_pem(std::string(3 * 1024 * 1024, 'c'));
    v1::AttachCertificateResponse response;
    ExpectTooLarge(admin->AttachCertificate(Context().get(), request, &response),
                   2 * 1024 * 1024, "AttachCertificate above the listener's limit");
  }
  v1::AdminListKeysResponse keys;
  EXPECT_TRUE(admin->ListKeys(Context().get(), v1::AdminListKeysRequest(), &keys).ok());
  ExpectServing();
}

// A connection has at most max_concurrent_streams (2) calls open: a third waits for
// one of them to end, while other connections are served.
TEST_F(EdgeLimitsTest, StreamsPerConnectionAreCapped) {
  std::shared_ptr<grpc::Channel> channel = Channel(kTerminator);
  auto stub = v1::KeyService::NewStub(channel);
  struct Open {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientReaderWriter<v1::PipelineRequest, v1::PipelineResponse>>
        stream;
  };
  std::vector<Open> open;
  for (int i = 0; i < 2; ++i) {
    Open o;
    o.context = Context(absl::Seconds(60));
    o.stream = stub->Pipeline(o.context.get());
    // An answer on the stream: offkeyd has it open, and the client has read the
    // server's SETTINGS (which carry the cap) before it.
    v1::PipelineRequest item;
    item.set_id(1);
    *item.mutable_sign() = SignOf("ec");
    ASSERT_TRUE(o.stream->Write(item));
    v1::PipelineResponse answer;
    ASSERT_TRUE(o.stream->Read(&answer));
    ASSERT_EQ(answer.status().code(), grpc::OK) << answer.status().message();
    open.push_back(std::move(o));
  }
  // A third call on this connection cannot start while both streams are open.
  v1::SignResponse response;
  grpc::Status third =
      stub->Sign(Context(absl::Seconds(1)).get(), SignOf("ec"), &response);
  EXPECT_EQ(third.error_code(), grpc::DEADLINE_EXCEEDED) << third.error_message();
  // Another connection is not affected.
  ExpectServing();
  // Once one stream ends, the connection takes a call again.
  open.back().stream->WritesDone();
  EXPECT_TRUE(open.back().stream->Finish().ok());
  open.pop_back();
  grpc::Status after =
      stub->Sign(Context(absl::Seconds(20)).get(), SignOf("ec"), &response);
  EXPECT_TRUE(after.ok()) << after.error_message();
  for (Open& o : open) {
    o.stream->WritesDone();
    EXPECT_TRUE(o.stream->Finish().ok());
  }
}

}  // namespace
}  // namespace offkey::tests
