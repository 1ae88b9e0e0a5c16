#include "service/config/policy.h"

#include <string>

#include "absl/strings/match.h"
#include "base/testing/status_matchers.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "offkey/v1/config.pb.h"

namespace offkey::service::config {
namespace {

using ::offkey::testing::IsOk;

using offkey::v1::DECRYPT_PREMASTER;
using offkey::v1::GET_CERTIFICATE;
using offkey::v1::LIST_KEYS;
using offkey::v1::SIGN;

// A ServerConfig in text format, for its policy and admin_identities.
offkey::v1::ServerConfig Config(const std::string& text) {
  offkey::v1::ServerConfig config;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &config)) << text;
  return config;
}

Policy MustCreate(const std::string& text) {
  offkey::v1::ServerConfig config = Config(text);
  absl::StatusOr<Policy> policy =
      Policy::Create(config.policy(), config.admin_identities());
  EXPECT_THAT(policy, IsOk());
  return *std::move(policy);
}

absl::Status CreateStatus(const std::string& text) {
  offkey::v1::ServerConfig config = Config(text);
  return Policy::Create(config.policy(), config.admin_identities()).status();
}

KeyFacts Key(const std::string& name, std::map<std::string, std::string> labels = {}) {
  return KeyFacts{name, std::move(labels)};
}

constexpr char kEdge[] = "spiffe://example.org/ns/edge/sa/nginx";

TEST(PolicyTest, ExactIdentity) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "spiffe://example.org/ns/edge/sa/nginx"
        operations: [ SIGN ]
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows(kEdge, SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/edge/sa/nginx2", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/edge/sa/ngin", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("SPIFFE://example.org/ns/edge/sa/nginx", SIGN, Key("web")));
}

TEST(PolicyTest, VerifyClientGrantNeedsNoKeys) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "spiffe://example.org/ns/edge/sa/nginx"
        operations: [ VERIFY_CLIENT ]
      }
      grants {
        identities: "spiffe://example.org/ns/edge/sa/signer"
        operations: [ SIGN ]
        keys { names: "web" }
      }
    })pb");
  EXPECT_TRUE(policy.AllowsKeyless(kEdge, offkey::v1::VERIFY_CLIENT));
  EXPECT_FALSE(policy.AllowsKeyless(kEdge, SIGN));
  EXPECT_FALSE(policy.AllowsKeyless("spiffe://example.org/ns/edge/sa/signer",
                                    offkey::v1::VERIFY_CLIENT));
  EXPECT_FALSE(policy.AllowsKeyless("", offkey::v1::VERIFY_CLIENT));
  EXPECT_FALSE(policy.Allows(kEdge, offkey::v1::VERIFY_CLIENT, Key("web")));
  // A key-using operation beside VERIFY_CLIENT still needs a selector.
  absl::Status mixed = CreateStatus(R"pb(
    policy {
      grants {
        identities: "spiffe://example.org/ns/edge/sa/nginx"
        operations: [ VERIFY_CLIENT, SIGN ]
      }
    })pb");
  EXPECT_TRUE(
      absl::StrContains(mixed.message(), "policy.grants[0].keys: selects nothing"))
      << mixed;
}

TEST(PolicyTest, PrefixIdentity) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "spiffe://example.org/ns/edge/*"
        operations: [ SIGN ]
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("spiffe://example.org/ns/edge/a", SIGN, Key("web")));
  EXPECT_TRUE(policy.Allows(kEdge, SIGN, Key("web")));
  // The prefix stops at its '/': a sibling namespace that merely starts the same way
  // is someone else.
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/edgeX/a", SIGN, Key("web")));
  // At least one character after the prefix.
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/edge/", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/", SIGN, Key("web")));
  EXPECT_TRUE(policy.MayUseAnyKey("spiffe://example.org/ns/edge/b"));
  EXPECT_FALSE(policy.MayUseAnyKey("spiffe://example.org/ns/edgeX/b"));
}

TEST(PolicyTest, WrongOperationDenied) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge-01.example.org"
        operations: [ SIGN, GET_CERTIFICATE ]
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("edge-01.example.org", SIGN, Key("web")));
  EXPECT_TRUE(policy.Allows("edge-01.example.org", GET_CERTIFICATE, Key("web")));
  EXPECT_FALSE(policy.Allows("edge-01.example.org", DECRYPT_PREMASTER, Key("web")));
  EXPECT_FALSE(policy.Allows("edge-01.example.org", LIST_KEYS, Key("web")));
  EXPECT_FALSE(policy.Allows("edge-01.example.org", offkey::v1::OPERATION_UNSPECIFIED,
                             Key("web")));
  EXPECT_FALSE(policy.Allows("edge-01.example.org",
                             static_cast<offkey::v1::Operation>(31), Key("web")));
}

TEST(PolicyTest, KeyNames) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        operations: SIGN
        keys { names: [ "web", "api" ] }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("web")));
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("api")));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("mail")));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("")));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("web2")));
}

TEST(PolicyTest, LabelsMustBeASubsetOfTheKeyLabels) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        operations: SIGN
        keys {
          labels { key: "tier" value: "edge" }
          labels { key: "env" value: "prod" }
        }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("a", {{"tier", "edge"}, {"env", "prod"}})));
  EXPECT_TRUE(policy.Allows(
      "edge", SIGN, Key("a", {{"tier", "edge"}, {"env", "prod"}, {"team", "x"}})));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("a", {{"tier", "edge"}})));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("a", {{"tier", "edge"}, {"env", "dev"}})));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("a")));
}

TEST(PolicyTest, NamesOrLabels) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        operations: SIGN
        keys {
          names: "legacy"
          labels { key: "tier" value: "edge" }
        }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("legacy")));
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("new", {{"tier", "edge"}})));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("new", {{"tier", "core"}})));
}

TEST(PolicyTest, AllKeys) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        operations: SIGN
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("anything")));
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("", {{"x", "y"}})));
}

TEST(PolicyTest, GrantsAddUp) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        operations: SIGN
        keys { names: "web" }
      }
      grants {
        identities: [ "edge", "lister" ]
        operations: LIST_KEYS
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("mail")));
  EXPECT_TRUE(policy.Allows("edge", LIST_KEYS, Key("mail")));
  EXPECT_TRUE(policy.Allows("lister", LIST_KEYS, Key("web")));
  EXPECT_FALSE(policy.Allows("lister", SIGN, Key("web")));
}

TEST(PolicyTest, UnknownAndEmptyIdentitiesAreDenied) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        identities: "spiffe://example.org/ns/edge/*"
        operations: SIGN
        keys { all_keys: true }
      }
    }
    admin_identities: "ops"
  )pb");
  EXPECT_FALSE(policy.Allows("stranger", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("", SIGN, Key("web")));
  EXPECT_FALSE(policy.MayUseAnyKey("stranger"));
  EXPECT_FALSE(policy.MayUseAnyKey(""));
  EXPECT_TRUE(policy.MayUseAnyKey("edge"));
  EXPECT_FALSE(policy.IsAdmin(""));
  EXPECT_FALSE(policy.IsAdmin("stranger"));
}

TEST(PolicyTest, EmptyPolicyDeniesEveryone) {
  Policy policy = MustCreate("");
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.MayUseAnyKey("edge"));
  EXPECT_FALSE(policy.IsAdmin("edge"));
}

TEST(PolicyTest, AdminIsASeparateRole) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "edge"
        operations: SIGN
        keys { all_keys: true }
      }
    }
    admin_identities: [
      "spiffe://example.org/ns/ops/offkeyctl",
      "spiffe://example.org/ns/sre/*"
    ]
  )pb");
  EXPECT_TRUE(policy.IsAdmin("spiffe://example.org/ns/ops/offkeyctl"));
  EXPECT_TRUE(policy.IsAdmin("spiffe://example.org/ns/sre/alice"));
  EXPECT_FALSE(policy.IsAdmin("spiffe://example.org/ns/sre"));
  EXPECT_FALSE(policy.IsAdmin("edge"));
  // Admin gives no data-plane rights.
  EXPECT_FALSE(policy.Allows("spiffe://example.org/ns/ops/offkeyctl", SIGN, Key("web")));
  EXPECT_FALSE(policy.MayUseAnyKey("spiffe://example.org/ns/ops/offkeyctl"));
}

void ExpectRefused(const std::string& text, const std::string& fragment) {
  absl::Status status = CreateStatus(text);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_TRUE(absl::StrContains(status.message(), fragment))
      << "'" << status.message() << "' lacks '" << fragment << "'";
}

TEST(PolicyTest, CreateRefusesBadGrants) {
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "*"
                         operations: SIGN
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].identities[0]: '*' is not allowed; grant identities "
                "explicitly or use a prefix like 'spiffe://example.org/ns/edge/*'");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "spiffe://example.org/*/edge"
                         operations: SIGN
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].identities[0]: 'spiffe://example.org/*/edge': '*' is "
                "only allowed as a final '/*'");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "spiffe://example.org/edge*"
                         operations: SIGN
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].identities[0]");
  ExpectRefused(R"pb(policy {
                       grants {
                         operations: SIGN
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].identities: empty");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a"
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].operations: empty");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a"
                         operations: 99
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].operations[0]: unknown operation 99");
  // OPERATION_UNSPECIFIED (0) grants nothing and is refused, not silently ignored.
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a"
                         operations: SIGN
                         operations: OPERATION_UNSPECIFIED
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].operations[1]: unknown operation 0");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a"
                         operations: SIGN
                         keys { all_keys: true }
                       }
                       grants { identities: "a" operations: SIGN }
                     })pb",
                "policy.grants[1].keys: selects nothing (set names, labels or all_keys)");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a"
                         operations: SIGN
                         keys { all_keys: true names: "web" }
                       }
                     })pb",
                "policy.grants[0].keys.all_keys: set together with names or labels");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a "
                         operations: SIGN
                         keys { names: "w" }
                       }
                     })pb",
                "whitespace");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "a\nb"
                         operations: SIGN
                         keys { names: "w" }
                       }
                     })pb",
                "control characters");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: ""
                         operations: SIGN
                         keys { names: "w" }
                       }
                     })pb",
                "policy.grants[0].identities[0]: empty");
  ExpectRefused(R"pb(admin_identities: "*")pb",
                "admin_identities[0]: '*' is not allowed");
  ExpectRefused("admin_identities: \"" + std::string(1025, 'a') + "\"",
                "admin_identities[0]: longer than 1024 bytes");
}

TEST(PolicyTest, CreateReportsEveryProblem) {
  absl::Status status = CreateStatus(R"pb(
    policy {
      grants {
        identities: "*"
        operations: SIGN
        keys { all_keys: true }
      }
      grants { identities: "a" }
    })pb");
  EXPECT_TRUE(absl::StrContains(status.message(), "policy.grants[0].identities[0]"));
  EXPECT_TRUE(absl::StrContains(status.message(), "policy.grants[1].operations: empty"));
  EXPECT_TRUE(
      absl::StrContains(status.message(), "policy.grants[1].keys: selects nothing"));
}

TEST(IdentityPatternTest, LongestAllowed) {
  std::string longest(kMaxIdentityBytes, 'a');
  absl::StatusOr<IdentityPattern> pattern = IdentityPattern::Parse(longest);
  ASSERT_THAT(pattern, IsOk());
  EXPECT_TRUE(pattern->Matches(longest));
  EXPECT_FALSE(pattern->Matches(longest + "a"));
}

}  // namespace
}  // namespace offkey::service::config
