// SIGTERM drains offkeyd (the real binary, in development mode): calls in flight when
// the signal arrives all complete, a Pipeline stream gets every item it sent answered,
// new connections are refused, and the process exits 0.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "base/testing/secret_ledger.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "tests/handshake_inputs.h"

namespace offkey::tests {

using ::offkey::testing::OutputPath;
using ::offkey::testing::RecordPrivateKeyPem;
using ::offkey::testing::RecordSecret;
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class DrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tmp = getenv("TEST_TMPDIR");
    state_ = tmp + "/dev";
    port_file_ = tmp + "/port";
    log_ = OutputPath("offkeyd.log");  // Kept for the suite's log scan.
    const std::string binary =
        absl::StrCat(getenv("TEST_SRCDIR"), "/offkey/service/offkeyd");
    pid_ = fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      FILE* log = freopen(log_.c_str(), "w", stderr);
      (void)log;
      execl(binary.c_str(), binary.c_str(), "--dev",
            ("--dev_state_dir=" + state_).c_str(), "--listen=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0", "--admin_listen=127.0.0.1:0",
            ("--port_file=" + port_file_).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    // Ready when the port file appears (written once serving).
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (access(port_file_.c_str(), R_OK) != 0) {
      int status = 0;
      ASSERT_EQ(waitpid(pid_, &status, WNOHANG), 0) << ReadFile(log_);
      ASSERT_LT(absl::Now(), deadline) << "offkeyd did not start: " << ReadFile(log_);
      absl::SleepFor(absl::Milliseconds(50));
    }
    target_ = absl::StrCat("127.0.0.1:", std::stoi(ReadFile(port_file_)));
    // The development state's secrets, for the log scan.
    for (const char* pin : {"user.pin", "so.pin"}) {
      RecordSecret(pin, absl::StripAsciiWhitespace(ReadFile(state_ + "/" + pin)));
    }
    for (const char* key : {"ca.key", "server.key", "terminator.key", "admin.key"}) {
      RecordPrivateKeyPem(key, ReadFile(state_ + "/" + key));
    }
  }
  void TearDown() override {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  std::unique_ptr<offkey::v1::KeyService::Stub> NewStub(int channel_id) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadFile(state_ + "/ca.pem");
    tls.pem_cert_chain = ReadFile(state_ + "/terminator.pem");
    tls.pem_private_key = ReadFile(state_ + "/terminator.key");
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", channel_id);
    return offkey::v1::KeyService::NewStub(
        grpc::CreateCustomChannel(target_, grpc::SslCredentials(tls), args));
  }

  // SIGTERM, then the exit status (-1 if it did not exit within 30 s).
  int TerminateAndWait() {
    kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    int status = 0;
    while (absl::Now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return -1;
  }

  offkey::v1::SignRequest RsaSign() {
    offkey::v1::SignRequest request;
    request.mutable_key()->set_name("dev-rsa2048");
    request.mutable_context()->set_version(offkey::v1::TLS_1_3);
    request.set_scheme(offkey::v1::RSA_PSS_RSAE_SHA256);
    request.set_message(Tls13Input());
    return request;
  }

  std::string state_, port_file_, log_, target_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

TEST_F(DrainTest, SigtermWithCallsInFlightLosesNone) {
  auto stub = NewStub(1);
  // Warm the connection so every call below goes out at once.
  {
    offkey::v1::ListKeysRequest request;
    offkey::v1::ListKeysResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(stub->ListKeys(&context, request, &response).ok());
  }

  // 80 RSA-2048 signatures at once: far more than the HSM sessions, so most queue.
  constexpr int kCalls = 80;
  grpc::CompletionQueue cq;
  struct Call {
    grpc::ClientContext context;
    offkey::v1::SignResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<offkey::v1::SignResponse>> reader;
  };
  std::vector<Call> calls(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    calls[i].context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    calls[i].reader = stub->AsyncSign(&calls[i].context, RsaSign(), &cq);
    calls[i].reader->Finish(&calls[i].response, &calls[i].status, &calls[i]);
  }
  // And a stream with items in flight.
  grpc::ClientContext stream_context;
  auto stream = stub->Pipeline(&stream_context);
  constexpr int kItems = 20;
  for (int i = 0; i < kItems; ++i) {
    offkey::v1::PipelineRequest item;
    item.set_id(i);
    *item.mutable_sign() = RsaSign();
    ASSERT_TRUE(stream->Write(item));
  }

  // Once the first answer is back the server holds the rest: SIGTERM now.
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  int done = 1;
  std::thread terminate([&] { EXPECT_EQ(TerminateAndWait(), 0) << ReadFile(log_); });
  while (done < kCalls && cq.Next(&tag, &ok)) ++done;
  int answered = 0;
  offkey::v1::PipelineResponse response;
  while (answered < kItems && stream->Read(&response)) {
    EXPECT_EQ(response.status().code(), 0) << response.status().message();
    ++answered;
  }
  stream->WritesDone();
  grpc::Status stream_status = stream->Finish();
  terminate.join();

  int succeeded = 0;
  for (Call& call : calls) {
    if (call.status.ok() && !call.response.signature().empty()) {
      ++succeeded;
    } else {
      ADD_FAILURE() << call.status.error_code() << ": " << call.status.error_message();
    }
  }
  EXPECT_EQ(succeeded, kCalls);
  EXPECT_EQ(answered, kItems);
  // Every item was answered before the stream ended (OK if the client's half-close
  // arrived first, UNAVAILABLE "shutting down" otherwise).
  EXPECT_TRUE(stream_status.ok() || stream_status.error_code() == grpc::UNAVAILABLE)
      << stream_status.error_message();
  const std::string log = ReadFile(log_);
  EXPECT_TRUE(absl::StrContains(log, "SIGTERM received")) << log;
  EXPECT_TRUE(absl::StrContains(log, "offkeyd: stopped")) << log;

  // Gone: a new connection is refused.
  offkey::v1::ListKeysRequest request;
  offkey::v1::ListKeysResponse list;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  EXPECT_FALSE(NewStub(2)->ListKeys(&context, request, &list).ok());
}

}  // namespace
}  // namespace offkey::tests
