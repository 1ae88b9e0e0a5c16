#include "client/cli/names.h"

#include "base/testing/text.h"
#include "gtest/gtest.h"

namespace offkey::client::cli {
namespace {

using offkey::testing::Contains;

TEST(NamesTest, AlgorithmsInEverySpelling) {
  EXPECT_EQ(*ParseAlgorithm("ec-p256"), offkey::v1::EC_P256);
  EXPECT_EQ(*ParseAlgorithm("P256"), offkey::v1::EC_P256);
  EXPECT_EQ(*ParseAlgorithm("EC_P384"), offkey::v1::EC_P384);  // As JSON output shows it.
  EXPECT_EQ(*ParseAlgorithm("rsa2048"), offkey::v1::RSA_2048);
  EXPECT_EQ(*ParseAlgorithm("ed25519"), offkey::v1::ED25519_KEY);
  EXPECT_EQ(*ParseAlgorithm("ED25519_KEY"), offkey::v1::ED25519_KEY);
  absl::StatusOr<offkey::v1::KeyAlgorithm> bad = ParseAlgorithm("dsa");
  EXPECT_TRUE(
      Contains(bad.status().message(), "unknown algorithm 'dsa'; use one of: rsa-2048"));
  EXPECT_FALSE(ParseAlgorithm("KEY_ALGORITHM_UNSPECIFIED").ok());
  EXPECT_EQ(AlgorithmName(offkey::v1::EC_P521), "ec-p521");
}

TEST(NamesTest, UsageStateSchemeVersion) {
  EXPECT_EQ(*ParseUsage("general-signing"), offkey::v1::GENERAL_SIGNING);
  EXPECT_EQ(*ParseUsage("TLS_SERVER"), offkey::v1::TLS_SERVER);
  EXPECT_FALSE(ParseUsage("server").ok());
  EXPECT_EQ(*ParseState("pending"), offkey::v1::PENDING_DESTRUCTION);
  EXPECT_EQ(StateName(offkey::v1::PENDING_DESTRUCTION), "pending-destruction");
  EXPECT_EQ(*ParseScheme("rsa_pss_rsae_sha256"), offkey::v1::RSA_PSS_RSAE_SHA256);
  EXPECT_TRUE(Contains(ParseScheme("rsa").status().message(), "ecdsa_secp256r1_sha256"));
  EXPECT_EQ(SchemeName(offkey::v1::ED25519), "ed25519");
  EXPECT_EQ(*ParseTlsVersion("1.2"), offkey::v1::TLS_1_2);
  EXPECT_EQ(*ParseTlsVersion("TLS_1_3"), offkey::v1::TLS_1_3);
  EXPECT_FALSE(ParseTlsVersion("1.1").ok());
}

TEST(NamesTest, KeyRefs) {
  EXPECT_EQ(ParseKeyRef("web")->name(), "web");
  EXPECT_EQ(ParseKeyRef("id:0a0B")->key_id(), std::string("\x0a\x0b"));
  EXPECT_EQ(ParseKeyRef("ski:0a:0b")->ski(), std::string("\x0a\x0b"));
  EXPECT_EQ(ParseKeyRef("sha256:ff")->cert_sha256(), std::string("\xff"));
  EXPECT_TRUE(Contains(ParseKeyRef("id:abc").status().message(), "not hex"));
  EXPECT_TRUE(Contains(ParseKeyRef("id:zz").status().message(), "not hex"));
  EXPECT_FALSE(ParseKeyRef("").ok());
  EXPECT_EQ(KeyRefText(*ParseKeyRef("id:0a0b")), "id:0a0b");
}

TEST(NamesTest, LabelsAndDurations) {
  EXPECT_EQ(ParseLabel("env=prod")->second, "prod");
  EXPECT_EQ(ParseLabel("k=")->second, "");
  EXPECT_EQ(ParseLabel("k=a=b")->second, "a=b");
  EXPECT_TRUE(Contains(ParseLabel("env").status().message(), "KEY=VALUE"));
  EXPECT_FALSE(ParseLabel("=x").ok());
  EXPECT_EQ(*ParseDurationSeconds("7d"), 604800);
  EXPECT_EQ(*ParseDurationSeconds("36h"), 129600);
  EXPECT_EQ(*ParseDurationSeconds("90m"), 5400);
  EXPECT_EQ(*ParseDurationSeconds("600s"), 600);
  EXPECT_EQ(*ParseDurationSeconds("600"), 600);
  EXPECT_EQ(*ParseDurationSeconds("1h30m"), 5400);
  EXPECT_EQ(*ParseDurationSeconds("1d2h3m4s"), 93784);
  EXPECT_EQ(*ParseDurationSeconds(DurationText(5400)), 5400);
  for (const char* bad : {"", "0", "-5", "7x", "d", "1.5h", "0h0m", "30m1h", "1h1h",
                          "1hm", "1h30", "h30m"}) {
    EXPECT_FALSE(ParseDurationSeconds(bad).ok()) << bad;
  }
  EXPECT_EQ(DurationText(604800), "7d");
  EXPECT_EQ(DurationText(5400), "1h30m");
  EXPECT_EQ(Hex("\x01\xab"), "01ab");
}

}  // namespace
}  // namespace offkey::client::cli
