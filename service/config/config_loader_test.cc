#include "service/config/config_loader.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/testing/status_matchers.h"
#include "base/testing/text.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "offkey/v1/config.pb.h"

namespace offkey::service::config {
namespace {

using ::offkey::testing::IsOk;

using offkey::v1::ServerConfig;

using ::offkey::testing::Contains;

// Every field set. Line numbers matter to the tests below (line 1 is "# full"); the
// "cfg" delimiter keeps clang-format from reflowing the text.
constexpr char kFull[] = R"cfg(# full
listen_address: "0.0.0.0:8443"
admin_listen_address: "[::1]:8444"
metrics_address: "localhost:9091"
tls {
  cert_file: "/etc/offkey/server.pem"
  key_file: "/etc/offkey/server.key"
  client_ca_file: "/etc/offkey/clients.pem"
}
insecure_plaintext_for_development: false
hsm {
  module_path: "/usr/lib/softhsm/libsofthsm2.so"
  token_uri: "pkcs11:token=offkey"
  pin_file: "/run/secrets/pin"
  max_sessions: 8
}
workers {
  threads: 6
  queue_depth: 512
}
policy {
  grants {
    identities: "spiffe://example.org/ns/edge/*"
    identities: "dns:edge-01.example.org"
    operations: [SIGN, GET_CERTIFICATE, LIST_KEYS]
    keys { labels { key: "tier" value: "edge" } }
  }
  grants {
    identities: "spiffe://example.org/ns/legacy/lb"
    operations: DECRYPT_PREMASTER
    operations: DERIVE_MASTER_SECRET
    keys { names: ["legacy-rsa"] }
  }
  grants {
    identities: "spiffe://example.org/ns/auth/verifier"
    operations: VERIFY_CLIENT
    keys { all_keys: true }
  }
}
admin_identities: "spiffe://example.org/ns/ops/offkeyctl"
audit { path: "/var/log/offkey/audit.log" }
dev_state_dir: "/tmp/offkey-dev"
handshake { allow_rfc7919_dhe: true }
)cfg";

// The smallest complete configuration.
constexpr char kMinimal[] = R"cfg(tls {
  cert_file: "s.pem"
  key_file: "s.key"
  client_ca_file: "ca.pem"
}
hsm {
  module_path: "/usr/lib/softhsm/libsofthsm2.so"
  token_uri: "pkcs11:token=offkey"
  pin_env: "OFFKEY_PIN"
}
)cfg";

absl::Status ParseError(const std::string& text,
                        Completeness completeness = Completeness::kComplete) {
  absl::StatusOr<ServerConfig> config =
      ParseConfigText(text, "config.textproto", completeness);
  EXPECT_FALSE(config.ok()) << "accepted:\n" << text;
  if (config.ok()) return absl::OkStatus();
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return config.status();
}

TEST(ConfigLoaderTest, FullConfigRoundTrips) {
  absl::StatusOr<ServerConfig> config = ParseConfigText(kFull, "config.textproto");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->listen_address(), "0.0.0.0:8443");
  EXPECT_EQ(config->admin_listen_address(), "[::1]:8444");
  EXPECT_EQ(config->metrics_address(), "localhost:9091");
  EXPECT_EQ(config->tls().client_ca_file(), "/etc/offkey/clients.pem");
  EXPECT_EQ(config->hsm().max_sessions(), 8);
  EXPECT_EQ(config->workers().threads(), 6);
  EXPECT_EQ(config->workers().queue_depth(), 512);
  ASSERT_EQ(config->policy().grants_size(), 3);
  EXPECT_EQ(config->policy().grants(0).operations_size(), 3);
  EXPECT_EQ(config->policy().grants(0).keys().labels().at("tier"), "edge");
  EXPECT_EQ(config->policy().grants(1).operations(1), offkey::v1::DERIVE_MASTER_SECRET);
  EXPECT_TRUE(config->policy().grants(2).keys().all_keys());
  EXPECT_EQ(config->admin_identities(0), "spiffe://example.org/ns/ops/offkeyctl");
  EXPECT_EQ(config->audit().path(), "/var/log/offkey/audit.log");
  EXPECT_EQ(config->dev_state_dir(), "/tmp/offkey-dev");
  EXPECT_TRUE(config->handshake().allow_rfc7919_dhe());

  // Printing and parsing again gives the same message (what `offkeyd --dev` relies on
  // when it writes its configuration).
  std::string printed;
  ASSERT_TRUE(google::protobuf::TextFormat::PrintToString(*config, &printed));
  absl::StatusOr<ServerConfig> again = ParseConfigText(printed, "printed");
  ASSERT_THAT(again, IsOk());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*config, *again));
  EXPECT_THAT(ValidateConfig(*config), IsOk());
}

TEST(ConfigLoaderTest, DefaultsApplied) {
  absl::StatusOr<ServerConfig> config = ParseConfigText(kMinimal, "config.textproto");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->listen_address(), "127.0.0.1:8443");
  EXPECT_EQ(config->admin_listen_address(), "127.0.0.1:8444");
  EXPECT_EQ(config->metrics_address(), "127.0.0.1:9090");
  EXPECT_EQ(config->hsm().max_sessions(), 4);
  EXPECT_EQ(config->workers().threads(), 0);  // = hsm.max_sessions, left to the server
  EXPECT_EQ(config->workers().queue_depth(), 256);
  EXPECT_FALSE(config->insecure_plaintext_for_development());
  EXPECT_EQ(config->policy().grants_size(), 0);
  EXPECT_EQ(config->audit().path(), "");
  EXPECT_FALSE(config->handshake().allow_rfc7919_dhe());  // ECDHE only.

  ServerConfig empty;
  ApplyDefaults(&empty);
  EXPECT_EQ(empty.listen_address(), "127.0.0.1:8443");
  EXPECT_EQ(empty.hsm().max_sessions(), 4);
  EXPECT_EQ(empty.workers().queue_depth(), 256);
  // Set fields are kept, and applying twice changes nothing.
  ServerConfig set;
  set.set_listen_address("10.0.0.1:1");
  set.mutable_hsm()->set_max_sessions(2);
  ApplyDefaults(&set);
  ApplyDefaults(&set);
  EXPECT_EQ(set.listen_address(), "10.0.0.1:1");
  EXPECT_EQ(set.hsm().max_sessions(), 2);
  EXPECT_EQ(set.admin_listen_address(), "127.0.0.1:8444");
}

TEST(ConfigLoaderTest, LimitsDefaultsAndRanges) {
  absl::StatusOr<ServerConfig> config = ParseConfigText(kMinimal, "config.textproto");
  ASSERT_THAT(config, IsOk());
  // 0: half of workers.queue_depth, resolved by the server like workers.threads.
  EXPECT_EQ(config->limits().max_calls_in_flight_per_identity(), 0);
  EXPECT_EQ(config->limits().max_concurrent_streams(), 256);
  EXPECT_EQ(config->limits().verify_client_threads(), 2);
  EXPECT_EQ(config->limits().verify_client_queue_depth(), 64);

  absl::StatusOr<ServerConfig> set =
      ParseConfigText(absl::StrCat(kMinimal,
                                   "workers { queue_depth: 32 }\n"
                                   "limits {\n"
                                   "  max_calls_in_flight_per_identity: 32\n"
                                   "  max_concurrent_streams: 8\n"
                                   "  verify_client_threads: 1\n"
                                   "  verify_client_queue_depth: 4\n"
                                   "}\n"),
                      "config.textproto");
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->limits().max_calls_in_flight_per_identity(), 32);
  EXPECT_EQ(set->limits().max_concurrent_streams(), 8);
  EXPECT_EQ(set->limits().verify_client_threads(), 1);
  EXPECT_EQ(set->limits().verify_client_queue_depth(), 4);

  const std::pair<const char*, const char*> cases[] = {
      {"limits {\n  max_calls_in_flight_per_identity: 300\n}",
       "config.textproto:12:3: limits.max_calls_in_flight_per_identity: must be 0..256 "
       "(0 = half of workers.queue_depth) (is 300)"},
      {"limits {\n  max_calls_in_flight_per_identity: -1\n}",
       "limits.max_calls_in_flight_per_identity: must be 0..256"},
      {"limits {\n  max_concurrent_streams: -1\n}",
       "config.textproto:12:3: limits.max_concurrent_streams: must be 1..65536 (is -1)"},
      {"limits {\n  max_concurrent_streams: 70000\n}",
       "limits.max_concurrent_streams: must be 1..65536 (is 70000)"},
      {"limits {\n  verify_client_threads: 65\n}",
       "limits.verify_client_threads: must be 1..64 (is 65)"},
      {"limits {\n  verify_client_queue_depth: -3\n}",
       "limits.verify_client_queue_depth: must be 1..65536 (is -3)"},
  };
  for (const auto& [limits, expected] : cases) {
    absl::Status status = ParseError(absl::StrCat(kMinimal, limits, "\n"));
    EXPECT_TRUE(Contains(status.message(), expected)) << limits;
  }
}

// Connections age out by default (so clients find new replicas), never idle out, and
// an explicit 0 still means never.
TEST(ConfigLoaderTest, ConnectionTimersDefaultsAndAtLeastASecond) {
  absl::StatusOr<ServerConfig> config = ParseConfigText(kMinimal, "config.textproto");
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->connections().max_idle_ms(), 0);
  EXPECT_EQ(config->connections().max_age_ms(), 120000);
  EXPECT_EQ(config->connections().max_age_grace_ms(), 40000);
  absl::StatusOr<ServerConfig> never = ParseConfigText(
      absl::StrCat(kMinimal, "connections { max_age_ms: 0 max_age_grace_ms: 0 }\n"),
      "config.textproto");
  ASSERT_THAT(never, IsOk());
  EXPECT_EQ(never->connections().max_age_ms(), 0);
  EXPECT_EQ(never->connections().max_age_grace_ms(), 0);

  absl::StatusOr<ServerConfig> set =
      ParseConfigText(absl::StrCat(kMinimal,
                                   "connections { max_idle_ms: 1000 max_age_ms: 600000 "
                                   "max_age_grace_ms: 30000 }\n"),
                      "config.textproto");
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->connections().max_age_ms(), 600000);

  const std::pair<const char*, const char*> cases[] = {
      {"connections {\n  max_idle_ms: 999\n}",
       "config.textproto:12:3: connections.max_idle_ms: must be 1000..86400000 "
       "(0 = never) (is 999)"},
      {"connections {\n  max_age_ms: -1\n}",
       "connections.max_age_ms: must be 1000..86400000 (0 = never) (is -1)"},
      {"connections {\n  max_age_grace_ms: 86400001\n}",
       "connections.max_age_grace_ms: must be 1000..86400000 (0 = never) (is 86400001)"},
  };
  for (const auto& [connections, expected] : cases) {
    absl::Status status = ParseError(absl::StrCat(kMinimal, connections, "\n"));
    EXPECT_TRUE(Contains(status.message(), expected)) << status;
  }
}

TEST(ConfigLoaderTest, UnknownFieldCarriesLineAndColumn) {
  absl::Status status = ParseError(absl::StrCat(kMinimal, "  listen_adress: \"x:1\"\n"));
  EXPECT_TRUE(Contains(status.message(),
                       "config.textproto:11:3: Message type \"offkey.v1.ServerConfig\" "
                       "has no field named \"listen_adress\""));
  // In a nested message, after a tab (columns count tabs to the next multiple of 8, as
  // protobuf's tokenizer does), with the name also appearing earlier on the line.
  status = ParseError("hsm {\n\tmodule: 1 module_pat: \"x\"\n}\n");
  EXPECT_TRUE(
      Contains(status.message(),
               "config.textproto:2:9: Message type \"offkey.v1.HsmConfig\" has no "
               "field named \"module\""));
  status = ParseError("grants { a: 1 }\n");
  EXPECT_TRUE(Contains(status.message(), "config.textproto:1:1: Message type"));
  status = ParseError("policy { grants { a: 1 } }\n");
  EXPECT_TRUE(Contains(status.message(),
                       "config.textproto:1:19: Message type \"offkey.v1.Grant\" has no "
                       "field named \"a\""));
}

// A misspelt switch must not silently leave DHE off (or on).
TEST(ConfigLoaderTest, HandshakeSwitchIsStrict) {
  absl::Status status =
      ParseError(absl::StrCat(kMinimal, "handshake {\n  allow_dhe: true\n}\n"));
  EXPECT_TRUE(absl::StrContains(status.message(), "config.textproto:12:3"))
      << status.message();
  EXPECT_TRUE(absl::StrContains(status.message(), "allow_dhe")) << status.message();
  status = ParseError(absl::StrCat(kMinimal, "handshake { allow_rfc7919_dhe: 2 }\n"));
  EXPECT_TRUE(absl::StrContains(status.message(), "config.textproto:11:"))
      << status.message();
}

TEST(ConfigLoaderTest, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_TRUE(Contains(ParseError("hsm {\n  max_sessions: \"four\"\n}\n").message(),
                       "config.textproto:2:17: "));
  EXPECT_TRUE(
      Contains(ParseError("policy {\n  grants { operations: SIGNN }\n}\n").message(),
               "config.textproto:2:24: Unknown enumeration value of \"SIGNN\""));
  EXPECT_TRUE(
      Contains(ParseError("listen_address: \"a:1\"\nlisten_address: \"b:2\"\n").message(),
               "config.textproto:2:1: Non-repeated field \"listen_address\" is specified "
               "multiple times"));
  EXPECT_TRUE(Contains(ParseError("tls {\n").message(), "config.textproto:2:1: "));
}

// The error for `text` with line `line` replaced, expecting `fragment` at `line`.
struct Case {
  std::string replace;  // A line of kFull, verbatim (without its newline).
  std::string with;     // Its replacement (may span lines).
  std::string expected;
};

TEST(ConfigLoaderTest, SemanticErrorsNameTheirPathAndLine) {
  const Case cases[] = {
      {"    identities: \"dns:edge-01.example.org\"", "    identities: \"*\"",
       "config.textproto:24:5: policy.grants[0].identities[1]: '*' is not allowed; grant "
       "identities explicitly or use a prefix like 'spiffe://example.org/ns/edge/*'"},
      {"    operations: VERIFY_CLIENT", "",
       "config.textproto:34:3: policy.grants[2].operations: empty"},
      {"    keys { names: [\"legacy-rsa\"] }", "",
       "config.textproto:28:3: policy.grants[1].keys: selects nothing (set names, labels "
       "or all_keys)"},
      {"    keys { names: [\"legacy-rsa\"] }", "    keys { names: [\"a\", \"\"] }",
       "config.textproto:32:5: policy.grants[1].keys.names[1]: empty key name"},
      {"    operations: DERIVE_MASTER_SECRET", "    operations: 42",
       "config.textproto:31:5: policy.grants[1].operations[1]: unknown operation 42"},
      {"  max_sessions: 8", "  max_sessions: 5000",
       "config.textproto:15:3: hsm.max_sessions: must be 1..1024 (is 5000)"},
      {"  max_sessions: 8", "  max_sessions: -1",
       "config.textproto:15:3: hsm.max_sessions: must be 1..1024 (is -1)"},
      {"  threads: 6", "  threads: 2000",
       "config.textproto:18:3: workers.threads: must be 0..1024 (0 = hsm.max_sessions) "
       "(is 2000)"},
      {"listen_address: \"0.0.0.0:8443\"", "listen_address: \"foo\"",
       "config.textproto:2:1: listen_address: 'foo' is not host:port"},
      {"metrics_address: \"localhost:9091\"", "metrics_address: \"::1:9091\"",
       "config.textproto:4:1: metrics_address: '::1:9091' is not host:port"},
      {"admin_listen_address: \"[::1]:8444\"", "admin_listen_address: \"0.0.0.0:8443\"",
       "config.textproto:3:1: admin_listen_address: '0.0.0.0:8443' is also "
       "listen_address"},
      // A missing required field is placed at its enclosing message.
      {"  cert_file: \"/etc/offkey/server.pem\"", "",
       "config.textproto:5:1: tls.cert_file: required unless "
       "insecure_plaintext_for_development is set"},
      {"  token_uri: \"pkcs11:token=offkey\"", "  token_uri: \"token=offkey\"",
       "config.textproto:13:3: hsm.token_uri: 'token=offkey' is not a PKCS#11 URI"},
      {"  token_uri: \"pkcs11:token=offkey\"",
       "  token_uri: \"pkcs11:token=offkey?pin-value=1234\"",
       "config.textproto:13:3: hsm.token_uri: pin-value is refused"},
      {"  pin_file: \"/run/secrets/pin\"",
       "  pin_file: \"/run/secrets/pin\"\n  pin_env: \"PIN\"",
       "config.textproto:15:3: hsm.pin_env: set only one of pin_file and pin_env"},
      {"  pin_file: \"/run/secrets/pin\"", "  pin_env: \"1PIN\"",
       "config.textproto:14:3: hsm.pin_env: '1PIN' is not an environment variable name"},
      {"  pin_file: \"/run/secrets/pin\"", "",
       "config.textproto:11:1: hsm.pin_file: required: set pin_file or pin_env"},
      {"    keys { all_keys: true }", "    keys { all_keys: true names: \"x\" }",
       "config.textproto:37:12: policy.grants[2].keys.all_keys: set together with names "
       "or labels"},
      {"admin_identities: \"spiffe://example.org/ns/ops/offkeyctl\"",
       "admin_identities: \"spiffe://example.org/ns/ops/offkeyctl\"\n"
       "admin_identities: \"spiffe://*/ops\"",
       "config.textproto:41:1: admin_identities[1]: 'spiffe://*/ops': '*' is only "
       "allowed as a final '/*'"},
      // Ticket grants: the sets are required with a ticket operation, refused without
      // one, and must be set names; such a grant needs no key selector.
      {"    operations: VERIFY_CLIENT", "    operations: [VERIFY_CLIENT, SEAL_TICKET]",
       "config.textproto:34:3: policy.grants[2].ticket_key_sets: empty; a grant of "
       "GET_TICKET_KEYS, SEAL_TICKET or UNSEAL_TICKET names the ticket-key sets"},
      {"    operations: VERIFY_CLIENT",
       "    operations: VERIFY_CLIENT\n    ticket_key_sets: \"edge\"",
       "config.textproto:37:5: policy.grants[2].ticket_key_sets: set in a grant without "
       "GET_TICKET_KEYS"},
      {"    operations: VERIFY_CLIENT",
       "    operations: GET_TICKET_KEYS\n    ticket_key_sets: \"edge\"\n"
       "    ticket_key_sets: \"a b\"",
       "config.textproto:38:5: policy.grants[2].ticket_key_sets[1]: 'a b' is not a "
       "ticket-key set name"},
  };
  for (const Case& c : cases) {
    std::string text = kFull;
    const std::string line = c.replace + "\n";
    ASSERT_TRUE(absl::StrContains(text, line)) << c.replace;
    text = absl::StrReplaceAll(text, {{line, c.with.empty() ? "" : c.with + "\n"}});
    absl::Status status = ParseError(text);
    EXPECT_TRUE(Contains(status.message(), c.expected)) << "replacing " << c.replace;
  }
}

TEST(ConfigLoaderTest, TicketGrantWithoutKeysIsAccepted) {
  const std::string text = absl::StrReplaceAll(
      kMinimal, {{"hsm {",
                  "policy {\n  grants {\n    identities: \"dns:edge\"\n"
                  "    operations: [GET_TICKET_KEYS, UNSEAL_TICKET]\n"
                  "    ticket_key_sets: \"edge-tickets\"\n  }\n}\nhsm {"}});
  absl::StatusOr<ServerConfig> config = ParseConfigText(text, "config.textproto");
  ASSERT_THAT(config, IsOk());
  ASSERT_EQ(config->policy().grants_size(), 1);
  EXPECT_EQ(config->policy().grants(0).ticket_key_sets(0), "edge-tickets");
}

TEST(ConfigLoaderTest, EveryProblemIsReported) {
  std::string text = absl::StrReplaceAll(
      kFull, {{"  max_sessions: 8\n", "  max_sessions: 8\n  max_sessions: 9\n"}});
  EXPECT_TRUE(Contains(ParseError(text).message(), "specified multiple times"));

  text = absl::StrReplaceAll(
      kFull, {{"listen_address: \"0.0.0.0:8443\"", "listen_address: \"x\""},
              {"  threads: 6", "  threads: -3"}});
  absl::Status status = ParseError(text);
  EXPECT_TRUE(Contains(status.message(), "config.textproto:2:1: listen_address:"));
  EXPECT_TRUE(Contains(status.message(), "\nconfig.textproto:18:3: workers.threads:"));
}

TEST(ConfigLoaderTest, AbsentSectionsHaveNoLine) {
  absl::Status status = ParseError("listen_address: \"127.0.0.1:1\"\n");
  EXPECT_TRUE(Contains(status.message(),
                       "config.textproto: tls.cert_file: required unless "
                       "insecure_plaintext_for_development is set"));
  EXPECT_TRUE(Contains(status.message(), "config.textproto: hsm.token_uri: required"));
  EXPECT_TRUE(Contains(status.message(), "config.textproto: hsm.module_path: required"));
}

TEST(ConfigLoaderTest, PlaintextNeedsNoTls) {
  absl::StatusOr<ServerConfig> config = ParseConfigText(
      "insecure_plaintext_for_development: true\n"
      "hsm { token_uri: \"pkcs11:token=t?module-path=/m.so&pin-source=file:/p\" }\n",
      "config.textproto");
  EXPECT_THAT(config, IsOk());
}

TEST(ConfigLoaderTest, AllowIncompleteDefersWhatFlagsSupply) {
  absl::StatusOr<ServerConfig> config = ParseConfigText(
      "listen_address: \"127.0.0.1:0\"\n", "c", Completeness::kAllowIncomplete);
  ASSERT_THAT(config, IsOk());
  // ...but checks what is there, and a half-written tls block.
  EXPECT_TRUE(Contains(
      ParseError("listen_address: \"x\"\n", Completeness::kAllowIncomplete).message(),
      "listen_address: 'x' is not host:port"));
  EXPECT_TRUE(Contains(
      ParseError("tls { cert_file: \"a\" }\n", Completeness::kAllowIncomplete).message(),
      "config.textproto:1:1: tls.key_file: required"));
  // The flags are then applied and the whole checked.
  config->set_insecure_plaintext_for_development(true);
  EXPECT_TRUE(Contains(ValidateConfig(*config).message(), "hsm.token_uri: required"));
  config->mutable_hsm()->set_module_path("/m.so");
  config->mutable_hsm()->set_token_uri("pkcs11:token=t");
  config->mutable_hsm()->set_pin_env("PIN");
  EXPECT_THAT(ValidateConfig(*config), IsOk());
}

TEST(ConfigLoaderTest, ValidateConfigWithoutSource) {
  ServerConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(kMinimal, &config));
  EXPECT_TRUE(ValidateConfig(config).ok());  // zero fields are judged by their defaults
  config.mutable_policy()->add_grants()->add_identities("*");
  absl::Status status = ValidateConfig(config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  // No source, no line: the message starts with the path.
  EXPECT_TRUE(absl::StartsWith(status.message(), "policy.grants[0].identities[0]: '*'"))
      << status;
  EXPECT_TRUE(Contains(status.message(), "\npolicy.grants[0].operations: empty"));
  EXPECT_TRUE(Contains(status.message(), "\npolicy.grants[0].keys: selects nothing"));
}

TEST(ConfigLoaderTest, PortZeroMayRepeat) {
  ServerConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(kMinimal, &config));
  config.set_listen_address("127.0.0.1:0");
  config.set_admin_listen_address("127.0.0.1:0");
  config.set_metrics_address("127.0.0.1:0");
  EXPECT_THAT(ValidateConfig(config), IsOk());
  for (const char* bad : {"127.0.0.1:65536", "127.0.0.1:", ":8443", "127.0.0.1",
                          "[::1]8443", "[]:1", "a b:1", "127.0.0.1:+1"}) {
    config.set_listen_address(bad);
    EXPECT_TRUE(Contains(ValidateConfig(config).message(), "is not host:port")) << bad;
  }
}

class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    const char* dir = std::getenv("TEST_TMPDIR");
    path_ = absl::StrCat(dir != nullptr ? dir : "/tmp", "/config_loader_test_XXXXXX");
    int fd = mkstemp(path_.data());
    EXPECT_GE(fd, 0);
    EXPECT_EQ(write(fd, contents.data(), contents.size()),
              static_cast<ssize_t>(contents.size()));
    close(fd);
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ConfigLoaderTest, LoadConfigFile) {
  TempFile good(kFull);
  absl::StatusOr<ServerConfig> config = LoadConfigFile(good.path());
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->hsm().max_sessions(), 8);

  TempFile bad(absl::StrCat(kMinimal, "workers { threads: -1 }\n"));
  absl::StatusOr<ServerConfig> refused = LoadConfigFile(bad.path());
  EXPECT_TRUE(Contains(refused.status().message(),
                       absl::StrCat(bad.path(), ":11:11: workers.threads: must be")));

  absl::StatusOr<ServerConfig> missing = LoadConfigFile("/nonexistent/offkeyd.textproto");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status().message(), "/nonexistent/offkeyd.textproto"));

  TempFile huge(std::string((1 << 20) + 1, '#'));
  EXPECT_TRUE(Contains(LoadConfigFile(huge.path()).status().message(), "larger than"));
}

}  // namespace
}  // namespace offkey::service::config
