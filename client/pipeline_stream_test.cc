// PipelineStream against a scripted in-process KeyService: the transport paths a real
// offkeyd never takes on purpose (wrong ids, ending a stream mid-item, silence). The
// happy path against a real offkeyd is in tests/offkey_client_test.cc.
#include "client/pipeline_stream.h"

#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "offkey/v1/key_service.grpc.pb.h"

namespace offkey::client {
namespace {

// What the scripted server does with each item it reads.
enum class Script {
  kEcho,            // answers with the item's id
  kWrongId,         // answers with another id
  kEndOk,           // ends the stream with OK without answering
  kEndDenied,       // ends the stream with PERMISSION_DENIED
  kSilent,          // never answers; waits for the client to cancel
  kCountAndFinish,  // answers every item; reports how the client ended the stream
};

class ScriptedService final : public v1::KeyService::Service {
 public:
  explicit ScriptedService(Script script) : script_(script) {}

  grpc::Status Pipeline(grpc::ServerContext* context,
                        grpc::ServerReaderWriter<v1::PipelineResponse,
                                                 v1::PipelineRequest>* stream) override {
    v1::PipelineRequest request;
    while (stream->Read(&request)) {
      v1::PipelineResponse response;
      response.set_id(request.id());
      switch (script_) {
        case Script::kEcho:
        case Script::kCountAndFinish:
          ++answered_;
          stream->Write(response);
          break;
        case Script::kWrongId:
          response.set_id(request.id() + 7);
          stream->Write(response);
          break;
        case Script::kEndOk:
          return grpc::Status::OK;
        case Script::kEndDenied:
          return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "not for you");
        case Script::kSilent:
          while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(5));
          cancelled_.Notify();
          return grpc::Status::CANCELLED;
      }
    }
    // The client half-closed: the polite end of a healthy stream.
    if (!context->IsCancelled()) half_closed_.Notify();
    return grpc::Status::OK;
  }

  int answered() const { return answered_; }
  absl::Notification& half_closed() { return half_closed_; }
  absl::Notification& cancelled() { return cancelled_; }

 private:
  const Script script_;
  int answered_ = 0;  // One stream at a time in these tests.
  absl::Notification half_closed_;
  absl::Notification cancelled_;
};

class PipelineStreamTest : public testing::Test {
 protected:
  void Serve(Script script) {
    service_ = std::make_unique<ScriptedService>(script);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::KeyService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  static v1::PipelineRequest SignItem() {
    v1::PipelineRequest request;
    request.mutable_sign()->mutable_key()->set_name("k");
    return request;
  }

  static absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

  // One item on `stream`; the answer is dropped.
  static grpc::Status ExchangeOne(PipelineStream& stream, absl::Time deadline = Soon()) {
    v1::PipelineRequest request = SignItem();
    v1::PipelineResponse response;
    return stream.Exchange(request, &response, deadline);
  }

  std::unique_ptr<ScriptedService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::KeyService::Stub> stub_;
};

TEST_F(PipelineStreamTest, ItemsGetFreshIdsAndTheirOwnAnswers) {
  Serve(Script::kCountAndFinish);
  {
    PipelineStream stream(*stub_);
    for (uint64_t i = 1; i <= 3; ++i) {
      v1::PipelineRequest request = SignItem();
      v1::PipelineResponse response;
      const grpc::Status status = stream.Exchange(request, &response, Soon());
      ASSERT_TRUE(status.ok()) << status.error_message();
      EXPECT_EQ(request.id(), i);
      EXPECT_EQ(response.id(), i);
    }
    EXPECT_FALSE(stream.broken());
  }
  // The destructor half-closed the stream rather than cancelling it.
  EXPECT_TRUE(service_->half_closed().WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(service_->answered(), 3);
}

TEST_F(PipelineStreamTest, AnAnswerWithAnotherIdBreaksTheStream) {
  Serve(Script::kWrongId);
  PipelineStream stream(*stub_);
  v1::PipelineRequest request = SignItem();
  v1::PipelineResponse response;
  const grpc::Status status = stream.Exchange(request, &response, Soon());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_NE(status.error_message().find("with the id 8"), std::string::npos)
      << status.error_message();
  EXPECT_TRUE(stream.broken());
  const grpc::Status again = stream.Exchange(request, &response, Soon());
  EXPECT_EQ(again.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(PipelineStreamTest, AStreamEndedWithoutAnAnswerIsUnavailable) {
  Serve(Script::kEndOk);
  PipelineStream stream(*stub_);
  const grpc::Status status = ExchangeOne(stream);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(stream.broken());
}

TEST_F(PipelineStreamTest, TheServersStatusIsPassedOn) {
  Serve(Script::kEndDenied);
  PipelineStream stream(*stub_);
  const grpc::Status status = ExchangeOne(stream);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(), "not for you");
  EXPECT_TRUE(stream.broken());
}

TEST_F(PipelineStreamTest, SilenceMissesTheDeadlineAndCancelsTheStream) {
  Serve(Script::kSilent);
  const absl::Time start = absl::Now();
  {
    PipelineStream stream(*stub_);
    const grpc::Status status =
        ExchangeOne(stream, absl::Now() + absl::Milliseconds(200));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_TRUE(stream.broken());
  }
  // Neither the exchange nor the destructor waited on the silent server.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(service_->cancelled().WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST_F(PipelineStreamTest, AnUnreachableServerIsUnavailable) {
  Serve(Script::kEcho);
  server_->Shutdown(absl::ToChronoTime(absl::Now()));
  server_.reset();
  PipelineStream stream(*stub_);
  const grpc::Status status = ExchangeOne(stream);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(stream.broken());
}

TEST_F(PipelineStreamTest, AStreamNeverUsedSendsNothing) {
  Serve(Script::kCountAndFinish);
  { PipelineStream stream(*stub_); }
  EXPECT_FALSE(
      service_->half_closed().WaitForNotificationWithTimeout(absl::Milliseconds(200)));
  EXPECT_EQ(service_->answered(), 0);
}

}  // namespace
}  // namespace offkey::client
