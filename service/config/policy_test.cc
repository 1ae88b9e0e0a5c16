#include "service/config/policy.h"

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

TEST(PolicyTest, TicketGrantsNameTheirSets) {
  using offkey::v1::GET_TICKET_KEYS;
  using offkey::v1::SEAL_TICKET;
  using offkey::v1::UNSEAL_TICKET;
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "spiffe://example.org/ns/edge/sa/nginx"
        operations: [ GET_TICKET_KEYS ]
        ticket_key_sets: [ "edge", "edge-2" ]
      }
      grants {
        identities: "spiffe://example.org/ns/edge/*"
        operations: [ SEAL_TICKET, UNSEAL_TICKET, SIGN ]
        keys { names: "web" }
        ticket_key_sets: "callback"
      }
    })pb");
  EXPECT_TRUE(policy.AllowsTicketKeySet(kEdge, GET_TICKET_KEYS, "edge"));
  EXPECT_TRUE(policy.AllowsTicketKeySet(kEdge, GET_TICKET_KEYS, "edge-2"));
  EXPECT_TRUE(policy.AllowsTicketKeySet(kEdge, SEAL_TICKET, "callback"));
  EXPECT_TRUE(policy.AllowsTicketKeySet(kEdge, UNSEAL_TICKET, "callback"));
  // Deny by default: another set, another operation, another caller, no caller.
  EXPECT_FALSE(policy.AllowsTicketKeySet(kEdge, GET_TICKET_KEYS, "callback"));
  EXPECT_FALSE(policy.AllowsTicketKeySet(kEdge, SEAL_TICKET, "edge"));
  EXPECT_FALSE(policy.AllowsTicketKeySet(kEdge, GET_TICKET_KEYS, "edg"));
  EXPECT_FALSE(policy.AllowsTicketKeySet(kEdge, GET_TICKET_KEYS, ""));
  EXPECT_FALSE(policy.AllowsTicketKeySet("spiffe://example.org/ns/edge/sa/other",
                                         GET_TICKET_KEYS, "edge"));
  EXPECT_FALSE(policy.AllowsTicketKeySet("", GET_TICKET_KEYS, "edge"));
  // A key operation is never a ticket operation, and set names select no key.
  EXPECT_FALSE(policy.AllowsTicketKeySet(kEdge, SIGN, "callback"));
  EXPECT_FALSE(policy.Allows(kEdge, GET_TICKET_KEYS, Key("edge")));
  EXPECT_FALSE(policy.Allows(kEdge, SIGN, Key("callback")));
  EXPECT_TRUE(policy.Allows(kEdge, SIGN, Key("web")));
}

TEST(PolicyTest, TicketGrantsAreChecked) {
  // A ticket operation without sets.
  absl::Status no_sets = CreateStatus(R"pb(
    policy {
      grants {
        identities: "dns:edge"
        operations: [ SEAL_TICKET ]
      }
    })pb");
  EXPECT_TRUE(
      absl::StrContains(no_sets.message(), "policy.grants[0].ticket_key_sets: empty"))
      << no_sets;
  // Sets without a ticket operation.
  absl::Status stray = CreateStatus(R"pb(
    policy {
      grants {
        identities: "dns:edge"
        operations: [ SIGN ]
        keys { all_keys: true }
        ticket_key_sets: "edge"
      }
    })pb");
  EXPECT_TRUE(absl::StrContains(
      stray.message(), "policy.grants[0].ticket_key_sets: set in a grant without"))
      << stray;
  // Names outside the set name limits, and no wildcard.
  for (const char* bad :
       {"", "*", "a/b", "tickets!", "-edge",
        "12345678901234567890123456789012345678901234567890123456789012345"}) {
    offkey::v1::PolicyConfig config;
    offkey::v1::Grant* grant = config.add_grants();
    grant->add_identities("dns:edge");
    grant->add_operations(offkey::v1::GET_TICKET_KEYS);
    grant->add_ticket_key_sets(bad);
    absl::Status status = Policy::Create(config, {}).status();
    EXPECT_TRUE(
        absl::StrContains(status.message(), "policy.grants[0].ticket_key_sets[0]: "))
        << bad << ": " << status;
  }
  // A ticket operation beside a key operation still needs a selector.
  absl::Status mixed = CreateStatus(R"pb(
    policy {
      grants {
        identities: "dns:edge"
        operations: [ GET_TICKET_KEYS, SIGN ]
        ticket_key_sets: "edge"
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
        identities: "dns:edge-01.example.org"
        operations: [ SIGN, GET_CERTIFICATE ]
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("dns:edge-01.example.org", SIGN, Key("web")));
  EXPECT_TRUE(policy.Allows("dns:edge-01.example.org", GET_CERTIFICATE, Key("web")));
  EXPECT_FALSE(policy.Allows("dns:edge-01.example.org", DECRYPT_PREMASTER, Key("web")));
  EXPECT_FALSE(policy.Allows("dns:edge-01.example.org", LIST_KEYS, Key("web")));
  EXPECT_FALSE(policy.Allows("dns:edge-01.example.org", offkey::v1::OPERATION_UNSPECIFIED,
                             Key("web")));
  EXPECT_FALSE(policy.Allows("dns:edge-01.example.org",
                             static_cast<offkey::v1::Operation>(31), Key("web")));
}

TEST(PolicyTest, KeyNames) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
        operations: SIGN
        keys { names: [ "web", "api" ] }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("web")));
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("api")));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("mail")));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("")));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("web2")));
}

TEST(PolicyTest, LabelsMustBeASubsetOfTheKeyLabels) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
        operations: SIGN
        keys {
          labels { key: "tier" value: "edge" }
          labels { key: "env" value: "prod" }
        }
      }
    })pb");
  EXPECT_TRUE(
      policy.Allows("cn:edge", SIGN, Key("a", {{"tier", "edge"}, {"env", "prod"}})));
  EXPECT_TRUE(policy.Allows(
      "cn:edge", SIGN, Key("a", {{"tier", "edge"}, {"env", "prod"}, {"team", "x"}})));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("a", {{"tier", "edge"}})));
  EXPECT_FALSE(
      policy.Allows("cn:edge", SIGN, Key("a", {{"tier", "edge"}, {"env", "dev"}})));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("a")));
}

TEST(PolicyTest, NamesOrLabels) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
        operations: SIGN
        keys {
          names: "legacy"
          labels { key: "tier" value: "edge" }
        }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("legacy")));
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("new", {{"tier", "edge"}})));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("new", {{"tier", "core"}})));
}

TEST(PolicyTest, AllKeys) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
        operations: SIGN
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("anything")));
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("", {{"x", "y"}})));
}

TEST(PolicyTest, GrantsAddUp) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
        operations: SIGN
        keys { names: "web" }
      }
      grants {
        identities: [ "cn:edge", "cn:lister" ]
        operations: LIST_KEYS
        keys { all_keys: true }
      }
    })pb");
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("mail")));
  EXPECT_TRUE(policy.Allows("cn:edge", LIST_KEYS, Key("mail")));
  EXPECT_TRUE(policy.Allows("cn:lister", LIST_KEYS, Key("web")));
  EXPECT_FALSE(policy.Allows("cn:lister", SIGN, Key("web")));
}

TEST(PolicyTest, UnknownAndEmptyIdentitiesAreDenied) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
        identities: "spiffe://example.org/ns/edge/*"
        operations: SIGN
        keys { all_keys: true }
      }
    }
    admin_identities: "cn:ops"
  )pb");
  EXPECT_FALSE(policy.Allows("cn:stranger", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("", SIGN, Key("web")));
  EXPECT_FALSE(policy.MayUseAnyKey("cn:stranger"));
  EXPECT_FALSE(policy.MayUseAnyKey(""));
  EXPECT_TRUE(policy.MayUseAnyKey("cn:edge"));
  EXPECT_FALSE(policy.IsAdmin(""));
  EXPECT_FALSE(policy.IsAdmin("cn:stranger"));
}

TEST(PolicyTest, EmptyPolicyDeniesEveryone) {
  Policy policy = MustCreate("");
  EXPECT_FALSE(policy.Allows("cn:edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.MayUseAnyKey("cn:edge"));
  EXPECT_FALSE(policy.IsAdmin("cn:edge"));
}

TEST(PolicyTest, AdminIsASeparateRole) {
  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: "cn:edge"
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
  EXPECT_FALSE(policy.IsAdmin("cn:edge"));
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

// Identities carry their source ("spiffe://", "dns:", "cn:"), and so do patterns: a
// pattern names one source and can never match a caller of another.
TEST(PolicyTest, PatternsNameTheirIdentitySource) {
  auto grant = [](const std::string& identity) {
    return absl::StrCat(R"pb(policy { grants { identities: ")pb",
                        absl::CHexEscape(identity),
                        R"pb(" operations: SIGN keys { all_keys: true } } })pb");
  };
  // A bare name, as configurations before the source prefixes wrote them.
  ExpectRefused(grant("edge-01.example.org"),
                "policy.grants[0].identities[0]: 'edge-01.example.org' names no identity "
                "source; write 'dns:edge-01.example.org' for a DNS SAN, "
                "'cn:edge-01.example.org' for a subject CN");
  ExpectRefused(R"pb(admin_identities: "ops")pb",
                "admin_identities[0]: 'ops' names no identity source");
  // Prefix patterns only within a SPIFFE trust domain.
  ExpectRefused(grant("dns:edge/*"), "a prefix pattern must be a SPIFFE ID");
  ExpectRefused(grant("cn:team/*"), "a prefix pattern must be a SPIFFE ID");
  ExpectRefused(grant("spiffe://*"), "not a valid SPIFFE ID");
  ExpectRefused(grant("spiffe:///*"), "not a valid SPIFFE ID");
  // Patterns that could never match an identity the certificate rule gives.
  ExpectRefused(grant("spiffe://Example.org/a"), "not a valid SPIFFE ID");
  ExpectRefused(grant("spiffe://example.org/ns/edge/../admin"), "not a valid SPIFFE ID");
  ExpectRefused(grant("spiffe://example.org/ns/edge/../*"), "not a valid SPIFFE ID");
  ExpectRefused(grant("dns:spiffe://example.org/admin"), "looks like a URI");
  ExpectRefused(grant("cn:spiffe://example.org/admin"), "looks like a URI");
  ExpectRefused(grant("cn:"), "empty");
  ExpectRefused(grant("dns:"), "empty");

  for (const char* good : {"dns:edge-01.example.org", "cn:edge", "cn:Edge team: nginx",
                           "insecure:anonymous", "spiffe://example.org",
                           "spiffe://example.org/*", "spiffe://example.org/ns/edge/*"}) {
    EXPECT_THAT(CreateStatus(grant(good)), IsOk()) << good;
  }

  Policy policy = MustCreate(R"pb(
    policy {
      grants {
        identities: [ "cn:edge", "dns:edge.example.org" ]
        operations: [ SIGN ]
        keys { all_keys: true }
      }
    }
    admin_identities: "cn:ops")pb");
  EXPECT_TRUE(policy.Allows("cn:edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("dns:edge", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("edge", SIGN, Key("web")));
  EXPECT_TRUE(policy.Allows("dns:edge.example.org", SIGN, Key("web")));
  EXPECT_FALSE(policy.Allows("cn:edge.example.org", SIGN, Key("web")));
  EXPECT_TRUE(policy.IsAdmin("cn:ops"));
  EXPECT_FALSE(policy.IsAdmin("dns:ops"));
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
                         identities: "cn:a"
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].operations: empty");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "cn:a"
                         operations: 99
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].operations[0]: unknown operation 99");
  // OPERATION_UNSPECIFIED (0) grants nothing and is refused, not silently ignored.
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "cn:a"
                         operations: SIGN
                         operations: OPERATION_UNSPECIFIED
                         keys { all_keys: true }
                       }
                     })pb",
                "policy.grants[0].operations[1]: unknown operation 0");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "cn:a"
                         operations: SIGN
                         keys { all_keys: true }
                       }
                       grants { identities: "cn:a" operations: SIGN }
                     })pb",
                "policy.grants[1].keys: selects nothing (set names, labels or all_keys)");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "cn:a"
                         operations: SIGN
                         keys { all_keys: true names: "web" }
                       }
                     })pb",
                "policy.grants[0].keys.all_keys: set together with names or labels");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "cn:a "
                         operations: SIGN
                         keys { names: "w" }
                       }
                     })pb",
                "whitespace");
  ExpectRefused(R"pb(policy {
                       grants {
                         identities: "cn:a\nb"
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
      grants { identities: "cn:a" }
    })pb");
  EXPECT_TRUE(absl::StrContains(status.message(), "policy.grants[0].identities[0]"));
  EXPECT_TRUE(absl::StrContains(status.message(), "policy.grants[1].operations: empty"));
  EXPECT_TRUE(
      absl::StrContains(status.message(), "policy.grants[1].keys: selects nothing"));
}

TEST(IdentityPatternTest, LongestAllowed) {
  std::string longest = "dns:" + std::string(kMaxIdentityBytes - 4, 'a');
  absl::StatusOr<IdentityPattern> pattern = IdentityPattern::Parse(longest);
  ASSERT_THAT(pattern, IsOk());
  EXPECT_TRUE(pattern->Matches(longest));
  EXPECT_FALSE(pattern->Matches(longest + "a"));
}

}  // namespace
}  // namespace offkey::service::config
