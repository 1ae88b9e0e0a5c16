#include "client/cli/connection.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"
#include "service/dev/dev_pki.h"

namespace offkey::client::cli {
namespace {

using offkey::testing::Contains;

class ConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(getenv("TEST_TMPDIR"), "/",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    mkdir(dir_.c_str(), 0700);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  GetEnv Env() const {
    return [this](const char* name) {
      auto it = env_.find(name);
      return it == env_.end() ? std::string() : it->second;
    };
  }
  std::string dir_;
  std::map<std::string, std::string> env_{{"HOME", "/nonexistent"}};
};

TEST_F(ConnectionTest, FlagsBeatEnvironmentBeatConfigFile) {
  const std::string config = Write("ctl.textproto",
                                   "admin_endpoint: \"file:1\"\n"
                                   "endpoint: \"file:2\"\n"
                                   "ca_file: \"ca.pem\"\n"
                                   "cert_file: \"/abs/op.pem\"\n"
                                   "key_file: \"op.key\"\n"
                                   "data_cert_file: \"term.pem\"\n"
                                   "timeout_seconds: 7\n");
  env_["OFFKEY_CONFIG"] = config;
  env_["OFFKEY_ENDPOINT"] = "env:2";
  ConnectionFlags flags;
  flags.admin_endpoint = "flag:1";
  absl::StatusOr<Connection> c = ResolveConnection(flags, Env());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->admin.target.value, "flag:1");
  EXPECT_EQ(c->admin.target.origin, "--admin-endpoint");
  EXPECT_EQ(c->data.target.value, "env:2");
  EXPECT_EQ(c->data.target.origin, "$OFFKEY_ENDPOINT");
  // Relative paths in the file are relative to the file.
  EXPECT_EQ(c->admin.ca_file.value, dir_ + "/ca.pem");
  EXPECT_EQ(c->admin.cert_file.value, "/abs/op.pem");
  EXPECT_EQ(c->admin.key_file.value, dir_ + "/op.key");
  EXPECT_EQ(c->data.cert_file.value, dir_ + "/term.pem");
  EXPECT_EQ(c->data.key_file.value, dir_ + "/op.key");  // Falls back to key_file.
  EXPECT_EQ(c->timeout, absl::Seconds(7));
}

TEST_F(ConnectionTest, ConfigFileErrorsNameTheLine) {
  env_["OFFKEY_CONFIG"] =
      Write("bad.textproto", "endpoint: \"x\"\nadmin_endpont: \"y\"\n");
  absl::StatusOr<Connection> c = ResolveConnection({}, Env());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(c.status().message(), "bad.textproto:2:"));
  EXPECT_TRUE(Contains(c.status().message(), "admin_endpont"));

  ConnectionFlags flags;
  flags.config = dir_ + "/missing.textproto";
  c = ResolveConnection(flags, Env());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(c.status().message(), "missing.textproto"));
}

TEST_F(ConnectionTest, DevUsesAdminAndTerminatorIdentitiesAndPortFiles) {
  Write("ca.pem", "x");
  Write("admin.port", "18444\n");
  ConnectionFlags flags;
  flags.dev_dir = dir_;
  absl::StatusOr<Connection> c = ResolveConnection(flags, Env());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->admin.target.value, "127.0.0.1:18444");
  EXPECT_EQ(c->data.target.value, "127.0.0.1:8443");  // No port file: the default.
  EXPECT_EQ(c->admin.cert_file.value, dir_ + "/admin.pem");
  EXPECT_EQ(c->data.cert_file.value, dir_ + "/terminator.pem");
  EXPECT_TRUE(Contains(c->admin.cert_file.origin, "--dev"));

  flags.dev_dir = dir_ + "/nowhere";
  c = ResolveConnection(flags, Env());
  EXPECT_TRUE(Contains(c.status().message(), "offkeyd --dev --dev_state_dir="));
}

TEST_F(ConnectionTest, OpenChannelNamesTheMissingOrBadSetting) {
  Connection c = *ResolveConnection({}, Env());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(c.admin);
  EXPECT_TRUE(Contains(channel.status().message(), "--admin-endpoint HOST:PORT"));
  EXPECT_TRUE(Contains(channel.status().message(), "OFFKEY_ADMIN_ENDPOINT"));

  absl::StatusOr<service::dev::IssuedCert> ca = service::dev::MakeCa("test ca");
  ASSERT_TRUE(ca.ok());
  service::dev::CertSpec spec;
  spec.uris = {"spiffe://test/op"};
  spec.client_auth = true;
  absl::StatusOr<service::dev::IssuedCert> op = service::dev::Issue(*ca, spec);
  absl::StatusOr<service::dev::IssuedCert> other = service::dev::Issue(*ca, spec);
  spec.not_before = absl::Now() - absl::Hours(48);
  spec.not_after = absl::Now() - absl::Hours(24);
  absl::StatusOr<service::dev::IssuedCert> expired = service::dev::Issue(*ca, spec);
  ASSERT_TRUE(op.ok() && other.ok() && expired.ok());

  ConnectionFlags flags;
  flags.admin_endpoint = "127.0.0.1:1";
  flags.ca = Write("ca.pem", ca->cert_pem);
  flags.cert = Write("op.pem", op->cert_pem);
  flags.key = dir_ + "/absent.key";
  c = *ResolveConnection(flags, Env());
  channel = OpenChannel(c.admin);
  EXPECT_TRUE(Contains(channel.status().message(), "cannot read the client key"));
  EXPECT_TRUE(Contains(channel.status().message(), "(from --tls-key)"));

  flags.key = Write("other.key", std::string(other->key_pem.view()));
  c = *ResolveConnection(flags, Env());
  EXPECT_TRUE(
      Contains(OpenChannel(c.admin).status().message(), "does not belong to the key"));

  flags.cert = Write("expired.pem", expired->cert_pem);
  flags.key = Write("expired.key", std::string(expired->key_pem.view()));
  c = *ResolveConnection(flags, Env());
  EXPECT_TRUE(Contains(OpenChannel(c.admin).status().message(), "has expired"));

  flags.cert = Write("op.pem", op->cert_pem);
  flags.key = Write("op.key", std::string(op->key_pem.view()));
  c = *ResolveConnection(flags, Env());
  EXPECT_TRUE(OpenChannel(c.admin).ok());
  EXPECT_EQ(PresentedIdentity(c.admin), "spiffe://test/op");
}

}  // namespace
}  // namespace offkey::client::cli
