#include "service/config_diff.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

offkey::v1::ServerConfig Base() {
  offkey::v1::ServerConfig config;
  config.set_listen_address("127.0.0.1:8443");
  config.mutable_hsm()->set_module_path("/usr/lib/softhsm/libsofthsm2.so");
  config.mutable_hsm()->set_token_uri("pkcs11:token=a");
  config.mutable_tls()->set_cert_file("/etc/offkey/server.pem");
  config.add_admin_identities("spiffe://x/admin");
  return config;
}

TEST(RestartOnlyChangesTest, ReloadableChangesAreNotListed) {
  offkey::v1::ServerConfig next = Base();
  next.add_admin_identities("spiffe://x/other");
  next.mutable_policy()->add_grants()->add_identities("spiffe://x/t");
  next.add_trust_bundles()->set_name("b");
  next.mutable_handshake()->set_allow_rfc7919_dhe(true);
  EXPECT_THAT(RestartOnlyChanges(Base(), next), IsEmpty());
  EXPECT_THAT(RestartOnlyChanges(Base(), Base()), IsEmpty());
}

TEST(RestartOnlyChangesTest, NamesEachRestartOnlyFieldThatChanged) {
  offkey::v1::ServerConfig next = Base();
  next.set_listen_address("0.0.0.0:8443");
  next.mutable_hsm()->set_token_uri("pkcs11:token=b");
  next.mutable_audit()->set_path("/var/log/offkey/audit.log");
  EXPECT_THAT(RestartOnlyChanges(Base(), next),
              ElementsAre("listen_address", "hsm.token_uri", "audit.path"));
}

}  // namespace
}  // namespace offkey::service
