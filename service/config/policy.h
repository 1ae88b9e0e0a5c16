// The data-plane authorization policy and the admin role, from the configuration.
#ifndef OFFKEY_SERVICE_CONFIG_POLICY_H_
#define OFFKEY_SERVICE_CONFIG_POLICY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/repeated_field.h"
#include "offkey/v1/config.pb.h"
#include "service/config/field_errors.h"

namespace offkey::service::config {

// What the policy needs to know about a key. Built by the caller from the key catalog.
struct KeyFacts {
  std::string name;
  std::map<std::string, std::string> labels;
};

// An identity pattern from the configuration: an exact identity, or a SPIFFE prefix
// ending in "/*" matching identities that extend the prefix (through its "/") by at least
// one character. A pattern names one identity source ("spiffe://", "dns:", "cn:", see
// base/identity.h), so it never matches a caller of another source. See offkey.v1.Grant
// for the rules and the reasons.
class IdentityPattern {
 public:
  // INVALID_ARGUMENT (message without a field path) for an empty pattern, a bare "*",
  // a '*' anywhere but a final "/*", control characters, surrounding whitespace, more
  // than kMaxIdentityBytes bytes, or a pattern that no certificate identity could match:
  // no source prefix (except "insecure:anonymous"), an invalid SPIFFE ID or prefix, a
  // "dns:" or "cn:" prefix pattern, an empty or URI-looking "dns:"/"cn:" name.
  static absl::StatusOr<IdentityPattern> Parse(absl::string_view pattern);

  // False for an empty identity.
  bool Matches(absl::string_view identity) const;

 private:
  IdentityPattern(std::string text, bool is_prefix)
      : text_(std::move(text)), is_prefix_(is_prefix) {}

  std::string text_;  // The exact identity, or the prefix including its final '/'.
  bool is_prefix_;
};

// The longest identity offkey accepts (the same limit as identity.h applies).
inline constexpr size_t kMaxIdentityBytes = 1024;

// GET_TICKET_KEYS, SEAL_TICKET and UNSEAL_TICKET: operations on ticket-key sets, which
// grants name in ticket_key_sets rather than selecting keys.
bool IsTicketOperation(int op);

// Deny by default: a call is allowed only when a grant names the caller (exact or by
// prefix), lists the operation and selects the key. Immutable once created, hence
// thread-safe; to change the policy make a new one and swap a shared_ptr to it.
class Policy {
 public:
  // Checks `policy` and `admin_identities` (see CheckPolicy) and compiles them. On
  // failure INVALID_ARGUMENT listing every problem, each named by its configuration path
  // ("policy.grants[1].keys: selects nothing ...").
  static absl::StatusOr<Policy> Create(
      const offkey::v1::PolicyConfig& policy,
      const google::protobuf::RepeatedPtrField<std::string>& admin_identities);

  // Whether some grant lets `identity` perform `op` on the key described by `key`.
  // Cost: linear in the number of grants and their patterns.
  bool Allows(absl::string_view identity, offkey::v1::Operation op,
              const KeyFacts& key) const;

  // Whether some grant lets `identity` perform `op`, whatever keys it selects: the whole
  // check for operations that use no key (VERIFY_CLIENT), and the check made before any
  // key lookup for the others. False for an empty identity.
  bool AllowsKeyless(absl::string_view identity, offkey::v1::Operation op) const;

  // Whether some grant lets `identity` perform the ticket operation `op`
  // (GET_TICKET_KEYS, SEAL_TICKET, UNSEAL_TICKET) on the ticket-key set named `set`.
  // False for any other operation and for an empty identity.
  bool AllowsTicketKeySet(absl::string_view identity, offkey::v1::Operation op,
                          absl::string_view set) const;

  // Whether `identity` matches one of admin_identities.
  bool IsAdmin(absl::string_view identity) const;

  // Whether `identity` appears in at least one grant (for any operation and key), so a
  // caller with none can be turned away before any key lookup.
  bool MayUseAnyKey(absl::string_view identity) const;

 private:
  struct Grant {
    std::vector<IdentityPattern> identities;
    uint32_t operations = 0;  // Bit (1 << op) per listed operation.
    bool all_keys = false;
    std::set<std::string> names;
    std::map<std::string, std::string> labels;  // Empty: selects nothing by labels.
    std::set<std::string, std::less<>> ticket_key_sets;

    bool MatchesIdentity(absl::string_view identity) const;
    bool Selects(const KeyFacts& key) const;
  };

  Policy() = default;

  // Whether some grant names `identity`, lists `op` and satisfies `covers`. False for
  // an empty identity or an unknown operation.
  template <typename Covers>
  bool AnyGrant(absl::string_view identity, offkey::v1::Operation op,
                const Covers& covers) const;

  std::vector<Grant> grants_;
  std::vector<IdentityPattern> admins_;
};

// Adds to `server_config`'s error sink every problem with the policy part of a
// ServerConfig: `policy` (field "policy") and `admin_identities` (field
// "admin_identities"). `server_config` is a cursor on the ServerConfig message. Used by
// Policy::Create and by the config loader (which adds file locations).
void CheckPolicy(const offkey::v1::PolicyConfig& policy,
                 const google::protobuf::RepeatedPtrField<std::string>& admin_identities,
                 const MessageCursor& server_config);

}  // namespace offkey::service::config

#endif  // OFFKEY_SERVICE_CONFIG_POLICY_H_
