// The Pipeline stream's arrival against a Drain, made deterministic with the registry's
// test hook: a Drain that lands after the stream registered and before its first read
// must end it exactly once (a second Finish is a gRPC assertion that aborts offkeyd).
#include "service/pipeline_reactor.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/testing/status_matchers.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "hsm/testing/fake_key_store.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/config/policy.h"
#include "service/key_catalog.h"
#include "service/key_service_async.h"
#include "service/operations.h"
#include "service/worker_pool.h"

namespace offkey::service {
namespace {

using ::offkey::testing::IsOk;

class PipelineArrivalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<config::Policy> policy = config::Policy::Create(
        offkey::v1::PolicyConfig(), google::protobuf::RepeatedPtrField<std::string>());
    ASSERT_THAT(policy, IsOk());
    operations_ = std::make_unique<Operations>(
        store_.get(), &catalog_, std::make_shared<const config::Policy>(*policy));
    absl::StatusOr<std::unique_ptr<WorkerPool>> pool = WorkerPool::Create(2, 16);
    ASSERT_THAT(pool, IsOk());
    pool_ = *std::move(pool);
    KeyServiceAsync::Options options;
    options.allow_plaintext = true;
    service_ = std::make_unique<KeyServiceAsync>(operations_.get(), pool_.get(), nullptr,
                                                 nullptr, options);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    service_->Register(builder, 2);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    service_->Start();
    stub_ = offkey::v1::KeyService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    // OffkeyServer's order: drain, stop the listener, the workers, then the pollers.
    if (service_ != nullptr) service_->Drain();
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now()));
    if (pool_ != nullptr) pool_->Shutdown();
    pool_.reset();
    if (service_ != nullptr) service_->Stop();
    server_.reset();
    service_.reset();
  }

  // Opens a stream and reads until it ends; returns its status.
  grpc::Status RunEmptyStream() {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto stream = stub_->Pipeline(&context);
    offkey::v1::PipelineResponse response;
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  }

  std::unique_ptr<hsm::testing::FakeKeyStore> store_ =
      hsm::testing::FakeKeyStore::Create();
  KeyCatalog catalog_{store_.get()};
  std::unique_ptr<Operations> operations_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<KeyServiceAsync> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<offkey::v1::KeyService::Stub> stub_;
};

TEST_F(PipelineArrivalTest, DrainBetweenRegistrationAndFirstReadEndsTheStreamOnce) {
  int hooked = 0;
  service_->PipelineForTest().SetAfterRegisterForTest([&] {
    ++hooked;
    service_->Drain();
  });
  grpc::Status status = RunEmptyStream();
  EXPECT_EQ(hooked, 1);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "shutting down"))
      << status.error_message();

  // A stream arriving after the drain ends the same way, and every stream let go.
  service_->PipelineForTest().SetAfterRegisterForTest(nullptr);
  status = RunEmptyStream();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (service_->open_streams() != 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(service_->open_streams(), 0);
}

}  // namespace
}  // namespace offkey::service
