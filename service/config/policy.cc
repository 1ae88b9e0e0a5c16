#include "service/config/policy.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/identity.h"
#include "base/status_macros.h"
#include "hsm/ticket_keys.h"

namespace offkey::service::config {
namespace {

using offkey::v1::Operation;

// Grants keep their operations as a bit set.
static_assert(offkey::v1::Operation_MAX < 32, "Policy::Grant::operations is 32 bits");

constexpr absl::string_view kPrefixExample = "spiffe://example.org/ns/edge/*";

bool HasControlCharacters(absl::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// `s` quoted and escaped for an error message.
std::string Quoted(absl::string_view s) {
  if (s.size() > 80) s = s.substr(0, 80);
  return absl::StrCat("'", absl::CHexEscape(s), "'");
}

bool IsKnownOperation(int op) {
  return op != offkey::v1::OPERATION_UNSPECIFIED && offkey::v1::Operation_IsValid(op);
}

// Operations that use no key: a grant of only these needs no key selector.
bool IsKeyless(int op) {
  return op == offkey::v1::VERIFY_CLIENT || IsTicketOperation(op);
}

// The ticket-key set names of a grant: required with a ticket operation, refused without
// one (Grant.ticket_key_sets), each a valid set name.
void CheckTicketKeySets(const offkey::v1::Grant& grant, const MessageCursor& where) {
  const bool has_ticket_op = std::any_of(grant.operations().begin(),
                                         grant.operations().end(), IsTicketOperation);
  if (has_ticket_op && grant.ticket_key_sets().empty()) {
    where.Error("ticket_key_sets", -1,
                "empty; a grant of GET_TICKET_KEYS, SEAL_TICKET or UNSEAL_TICKET names "
                "the ticket-key sets it covers");
  }
  if (!has_ticket_op && !grant.ticket_key_sets().empty()) {
    where.Error("ticket_key_sets", -1,
                "set in a grant without GET_TICKET_KEYS, SEAL_TICKET or UNSEAL_TICKET; "
                "add the ticket operations or move the sets to a grant of their own");
  }
  for (int i = 0; i < grant.ticket_key_sets().size(); ++i) {
    const std::string& name = grant.ticket_key_sets(i);
    if (!hsm::ValidateTicketKeySetName(name).ok()) {
      where.Error("ticket_key_sets", i,
                  absl::StrCat(Quoted(name),
                               " is not a ticket-key set name (1..64 characters of "
                               "A-Z a-z 0-9 . _ -, starting with a letter or digit)"));
    }
  }
}

void CheckPatterns(const google::protobuf::RepeatedPtrField<std::string>& patterns,
                   const MessageCursor& where, absl::string_view field,
                   absl::string_view empty_message) {
  if (patterns.empty() && !empty_message.empty()) where.Error(field, -1, empty_message);
  for (int i = 0; i < patterns.size(); ++i) {
    absl::StatusOr<IdentityPattern> parsed = IdentityPattern::Parse(patterns[i]);
    if (!parsed.ok()) where.Error(field, i, parsed.status().message());
  }
}

void CheckSelector(const offkey::v1::KeySelector& keys, const MessageCursor& grant) {
  MessageCursor selector = grant.Nested("keys");
  const bool by_name_or_label = !keys.names().empty() || !keys.labels().empty();
  if (!keys.all_keys() && !by_name_or_label) {
    grant.Error("keys", -1, "selects nothing (set names, labels or all_keys)");
  }
  if (keys.all_keys() && by_name_or_label) {
    selector.Error("all_keys", -1,
                   "set together with names or labels; all_keys already selects every "
                   "key, so remove one or the other");
  }
  for (int i = 0; i < keys.names().size(); ++i) {
    const std::string& name = keys.names(i);
    if (name.empty()) {
      selector.Error("names", i, "empty key name");
    } else if (HasControlCharacters(name)) {
      selector.Error("names", i, "contains control characters");
    }
  }
  for (const auto& [key, value] : keys.labels()) {
    if (key.empty()) selector.Error("labels", -1, "empty label key");
  }
}

// A pattern names one identity source (base/identity.h), so it can match callers of that
// source only, and it must be able to match some identity the certificate rule gives:
// a pattern that never could is a configuration mistake (typically a name written
// without its "dns:" or "cn:"), reported rather than left to deny silently.
absl::Status CheckSource(absl::string_view pattern, absl::string_view body,
                         bool is_prefix) {
  if (absl::StartsWith(body, kSpiffeIdentityPrefix)) {
    // A prefix's body ends in '/', the start of the next path segment.
    absl::string_view id = is_prefix ? body.substr(0, body.size() - 1) : body;
    if (absl::Status valid = CheckSpiffeId(id); !valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quoted(pattern), ": not a valid SPIFFE ID",
                       is_prefix ? " prefix" : "", ": it ", valid.message()));
    }
    return absl::OkStatus();
  }
  for (absl::string_view prefix : {kDnsIdentityPrefix, kCnIdentityPrefix}) {
    if (!absl::StartsWith(body, prefix)) continue;
    if (is_prefix) {
      return absl::InvalidArgumentError(absl::StrCat(
          Quoted(pattern), ": a prefix pattern must be a SPIFFE ID prefix like '",
          kPrefixExample, "'; DNS and CN identities are matched exactly"));
    }
    absl::string_view value = body.substr(prefix.size());
    if (value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Quoted(pattern), ": empty name after '", prefix, "'"));
    }
    if (LooksLikeUri(value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          Quoted(pattern),
          ": the name looks like a URI, and offkeyd refuses such DNS SANs and CNs; a "
          "SPIFFE ID is written as is ('spiffe://...')"));
    }
    return absl::OkStatus();
  }
  if (body == kPlaintextIdentity) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(Quoted(pattern), " names no identity source; write ",
                   Quoted(absl::StrCat(kDnsIdentityPrefix, body)), " for a DNS SAN, ",
                   Quoted(absl::StrCat(kCnIdentityPrefix, body)),
                   " for a subject CN, or a SPIFFE ID ('spiffe://trust-domain/path')"));
}

}  // namespace

bool IsTicketOperation(int op) {
  return op == offkey::v1::GET_TICKET_KEYS || op == offkey::v1::SEAL_TICKET ||
         op == offkey::v1::UNSEAL_TICKET;
}

absl::StatusOr<IdentityPattern> IdentityPattern::Parse(absl::string_view pattern) {
  if (pattern.empty()) {
    return absl::InvalidArgumentError("empty; name a caller identity");
  }
  if (pattern == "*") {
    return absl::InvalidArgumentError(
        absl::StrCat("'*' is not allowed; grant identities explicitly or use a prefix "
                     "like '",
                     kPrefixExample, "'"));
  }
  if (pattern.size() > kMaxIdentityBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("longer than ", kMaxIdentityBytes, " bytes"));
  }
  if (HasControlCharacters(pattern)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quoted(pattern), " contains control characters"));
  }
  if (absl::ascii_isspace(static_cast<unsigned char>(pattern.front())) ||
      absl::ascii_isspace(static_cast<unsigned char>(pattern.back()))) {
    return absl::InvalidArgumentError(
        absl::StrCat(Quoted(pattern), " has leading or trailing whitespace"));
  }
  const bool is_prefix = absl::EndsWith(pattern, "/*");
  absl::string_view body = is_prefix ? pattern.substr(0, pattern.size() - 1) : pattern;
  if (body.find('*') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        Quoted(pattern), ": '*' is only allowed as a final '/*' (a prefix match), like '",
        kPrefixExample, "'"));
  }
  OFFKEY_RETURN_IF_ERROR(CheckSource(pattern, body, is_prefix));
  return IdentityPattern(std::string(body), is_prefix);
}

bool IdentityPattern::Matches(absl::string_view identity) const {
  if (identity.empty()) return false;
  if (!is_prefix_) return identity == text_;
  return identity.size() > text_.size() && absl::StartsWith(identity, text_);
}

void CheckPolicy(const offkey::v1::PolicyConfig& policy,
                 const google::protobuf::RepeatedPtrField<std::string>& admin_identities,
                 const MessageCursor& server_config) {
  MessageCursor policy_cursor = server_config.Nested("policy");
  for (int g = 0; g < policy.grants().size(); ++g) {
    const offkey::v1::Grant& grant = policy.grants(g);
    MessageCursor where = policy_cursor.Nested("grants", g);
    CheckPatterns(grant.identities(), where, "identities",
                  "empty; a grant names at least one caller identity");
    if (grant.operations().empty()) {
      where.Error("operations", -1,
                  "empty; list at least one of SIGN, DECRYPT_PREMASTER, "
                  "DERIVE_MASTER_SECRET, VERIFY_CLIENT, GET_CERTIFICATE, LIST_KEYS, "
                  "GET_TICKET_KEYS, SEAL_TICKET, UNSEAL_TICKET");
    }
    for (int i = 0; i < grant.operations().size(); ++i) {
      if (!IsKnownOperation(grant.operations(i))) {
        where.Error("operations", i,
                    absl::StrCat("unknown operation ", grant.operations(i)));
      }
    }
    // VerifyClient and the ticket operations use no key, so a grant of only those
    // needs no selector.
    const bool keyless_only =
        !grant.operations().empty() &&
        std::all_of(grant.operations().begin(), grant.operations().end(), IsKeyless);
    if (!keyless_only || grant.has_keys()) CheckSelector(grant.keys(), where);
    CheckTicketKeySets(grant, where);
  }
  CheckPatterns(admin_identities, server_config, "admin_identities", "");
}

absl::StatusOr<Policy> Policy::Create(
    const offkey::v1::PolicyConfig& policy,
    const google::protobuf::RepeatedPtrField<std::string>& admin_identities) {
  FieldErrors errors;
  CheckPolicy(policy, admin_identities,
              MessageCursor(&errors, offkey::v1::ServerConfig::descriptor(), nullptr));
  if (!errors.empty()) return errors.ToStatus();

  Policy compiled;
  for (const offkey::v1::Grant& in : policy.grants()) {
    Grant grant;
    for (const std::string& pattern : in.identities()) {
      grant.identities.push_back(*IdentityPattern::Parse(pattern));
    }
    for (int op : in.operations()) grant.operations |= uint32_t{1} << op;
    grant.all_keys = in.keys().all_keys();
    grant.names.insert(in.keys().names().begin(), in.keys().names().end());
    grant.labels.insert(in.keys().labels().begin(), in.keys().labels().end());
    grant.ticket_key_sets.insert(in.ticket_key_sets().begin(),
                                 in.ticket_key_sets().end());
    compiled.grants_.push_back(std::move(grant));
  }
  for (const std::string& pattern : admin_identities) {
    compiled.admins_.push_back(*IdentityPattern::Parse(pattern));
  }
  return compiled;
}

bool Policy::Grant::MatchesIdentity(absl::string_view identity) const {
  for (const IdentityPattern& pattern : identities) {
    if (pattern.Matches(identity)) return true;
  }
  return false;
}

bool Policy::Grant::Selects(const KeyFacts& key) const {
  if (all_keys) return true;
  if (names.count(key.name) > 0) return true;
  if (labels.empty()) return false;
  for (const auto& [label, value] : labels) {
    auto it = key.labels.find(label);
    if (it == key.labels.end() || it->second != value) return false;
  }
  return true;
}

template <typename Covers>
bool Policy::AnyGrant(absl::string_view identity, Operation op,
                      const Covers& covers) const {
  if (identity.empty() || !IsKnownOperation(op)) return false;
  const uint32_t bit = uint32_t{1} << op;
  for (const Grant& grant : grants_) {
    if ((grant.operations & bit) != 0 && grant.MatchesIdentity(identity) &&
        covers(grant)) {
      return true;
    }
  }
  return false;
}

bool Policy::Allows(absl::string_view identity, Operation op, const KeyFacts& key) const {
  return AnyGrant(identity, op,
                  [&key](const Grant& grant) { return grant.Selects(key); });
}

bool Policy::AllowsKeyless(absl::string_view identity, Operation op) const {
  return AnyGrant(identity, op, [](const Grant&) { return true; });
}

bool Policy::AllowsTicketKeySet(absl::string_view identity, Operation op,
                                absl::string_view set) const {
  if (!IsTicketOperation(op)) return false;
  return AnyGrant(identity, op, [set](const Grant& grant) {
    return grant.ticket_key_sets.count(set) > 0;
  });
}

bool Policy::IsAdmin(absl::string_view identity) const {
  for (const IdentityPattern& pattern : admins_) {
    if (pattern.Matches(identity)) return true;
  }
  return false;
}

bool Policy::MayUseAnyKey(absl::string_view identity) const {
  for (const Grant& grant : grants_) {
    if (grant.MatchesIdentity(identity)) return true;
  }
  return false;
}

}  // namespace offkey::service::config
