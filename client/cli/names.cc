#include "client/cli/names.h"

#include <cctype>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace offkey::client::cli {
namespace {

using offkey::v1::KeyAlgorithm;
using offkey::v1::KeyState;
using offkey::v1::KeyUsage;

template <typename Enum>
struct Spelling {
  Enum value;
  const char* name;  // The canonical spelling first for each value.
};

constexpr Spelling<KeyAlgorithm> kAlgorithms[] = {
    {offkey::v1::RSA_2048, "rsa-2048"},
    {offkey::v1::RSA_3072, "rsa-3072"},
    {offkey::v1::RSA_4096, "rsa-4096"},
    {offkey::v1::EC_P256, "ec-p256"},
    {offkey::v1::EC_P384, "ec-p384"},
    {offkey::v1::EC_P521, "ec-p521"},
    {offkey::v1::ED25519_KEY, "ed25519"},
    // Short forms.
    {offkey::v1::RSA_2048, "rsa2048"},
    {offkey::v1::RSA_3072, "rsa3072"},
    {offkey::v1::RSA_4096, "rsa4096"},
    {offkey::v1::EC_P256, "p256"},
    {offkey::v1::EC_P384, "p384"},
    {offkey::v1::EC_P521, "p521"},
    {offkey::v1::EC_P256, "p-256"},
    {offkey::v1::EC_P384, "p-384"},
    {offkey::v1::EC_P521, "p-521"},
};
constexpr int kCanonicalAlgorithms = 7;

constexpr Spelling<KeyUsage> kUsages[] = {
    {offkey::v1::TLS_SERVER, "tls-server"},
    {offkey::v1::GENERAL_SIGNING, "general-signing"},
};

constexpr Spelling<KeyState> kStates[] = {
    {offkey::v1::ENABLED, "enabled"},
    {offkey::v1::DISABLED, "disabled"},
    {offkey::v1::PENDING_DESTRUCTION, "pending-destruction"},
    {offkey::v1::PENDING_DESTRUCTION, "pending"},
};
constexpr int kCanonicalStates = 3;

template <typename Enum, size_t N>
std::string Choices(const Spelling<Enum> (&table)[N], size_t canonical = N) {
  std::vector<std::string> names;
  for (size_t i = 0; i < canonical; ++i) names.push_back(table[i].name);
  return absl::StrJoin(names, ", ");
}

// Looks `text` up among the spellings, then among the proto enum names (any case,
// '-' for '_'), so JSON output can be fed back.
template <typename Enum, size_t N>
absl::StatusOr<Enum> Parse(absl::string_view what, absl::string_view text,
                           const Spelling<Enum> (&table)[N],
                           bool (*parse_proto)(const std::string&, Enum*),
                           size_t canonical = N) {
  const std::string lower = absl::AsciiStrToLower(text);
  for (const auto& s : table) {
    if (lower == s.name) return s.value;
  }
  Enum value{};
  std::string upper = absl::StrReplaceAll(absl::AsciiStrToUpper(text), {{"-", "_"}});
  if (parse_proto(upper, &value) && static_cast<int>(value) != 0) return value;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown ", what, " '", text, "'; use one of: ", Choices(table, canonical)));
}

template <typename Enum, size_t N>
std::string Name(const Spelling<Enum> (&table)[N], Enum value,
                 const std::string& (*proto_name)(Enum)) {
  for (const auto& s : table) {
    if (s.value == value) return s.name;
  }
  return absl::AsciiStrToLower(proto_name(value));
}

}  // namespace

absl::StatusOr<KeyAlgorithm> ParseAlgorithm(absl::string_view text) {
  return Parse<KeyAlgorithm>("algorithm", text, kAlgorithms,
                             &offkey::v1::KeyAlgorithm_Parse, kCanonicalAlgorithms);
}

absl::StatusOr<KeyUsage> ParseUsage(absl::string_view text) {
  return Parse<KeyUsage>("usage", text, kUsages, &offkey::v1::KeyUsage_Parse);
}

absl::StatusOr<KeyState> ParseState(absl::string_view text) {
  return Parse<KeyState>("state", text, kStates, &offkey::v1::KeyState_Parse,
                         kCanonicalStates);
}

absl::StatusOr<offkey::v1::SignatureScheme> ParseScheme(absl::string_view text) {
  offkey::v1::SignatureScheme scheme{};
  if (offkey::v1::SignatureScheme_Parse(absl::AsciiStrToUpper(text), &scheme) &&
      scheme != offkey::v1::SIGNATURE_SCHEME_UNSPECIFIED) {
    return scheme;
  }
  std::vector<std::string> names;
  const auto* descriptor = offkey::v1::SignatureScheme_descriptor();
  for (int i = 1; i < descriptor->value_count(); ++i) {
    names.push_back(absl::AsciiStrToLower(descriptor->value(i)->name()));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown signature scheme '", text, "'; use one of: ", absl::StrJoin(names, ", ")));
}

absl::StatusOr<offkey::v1::TlsVersion> ParseTlsVersion(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  absl::string_view v = lower;
  absl::ConsumePrefix(&v, "tls");
  absl::ConsumePrefix(&v, "_");
  const std::string t = absl::StrReplaceAll(v, {{"_", "."}});
  if (t == "1.2") return offkey::v1::TLS_1_2;
  if (t == "1.3") return offkey::v1::TLS_1_3;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown TLS version '", text, "'; use 1.2 or 1.3"));
}

std::string AlgorithmName(KeyAlgorithm algorithm) {
  return Name(kAlgorithms, algorithm, &offkey::v1::KeyAlgorithm_Name<KeyAlgorithm>);
}
std::string UsageName(KeyUsage usage) {
  return Name(kUsages, usage, &offkey::v1::KeyUsage_Name<KeyUsage>);
}
std::string StateName(KeyState state) {
  return Name(kStates, state, &offkey::v1::KeyState_Name<KeyState>);
}
std::string SchemeName(offkey::v1::SignatureScheme scheme) {
  return absl::AsciiStrToLower(offkey::v1::SignatureScheme_Name(scheme));
}

std::string AlgorithmChoices() { return Choices(kAlgorithms, kCanonicalAlgorithms); }
std::string UsageChoices() { return Choices(kUsages); }
std::string StateChoices() { return Choices(kStates, kCanonicalStates); }

absl::StatusOr<offkey::v1::KeyRef> ParseKeyRef(absl::string_view text) {
  offkey::v1::KeyRef ref;
  struct Prefix {
    const char* prefix;
    std::string* (offkey::v1::KeyRef::*field)();
  };
  for (const Prefix& p : {Prefix{"id:", &offkey::v1::KeyRef::mutable_key_id},
                          Prefix{"ski:", &offkey::v1::KeyRef::mutable_ski},
                          Prefix{"sha256:", &offkey::v1::KeyRef::mutable_cert_sha256}}) {
    absl::string_view rest = text;
    if (!absl::ConsumePrefix(&rest, p.prefix)) continue;
    absl::StatusOr<std::string> bytes = ParseHex(p.prefix, rest);
    if (!bytes.ok()) return bytes.status();
    *(ref.*p.field)() = *bytes;
    return ref;
  }
  if (text.empty()) {
    return absl::InvalidArgumentError(
        "a key is required: its NAME, or id:HEX, ski:HEX or sha256:HEX");
  }
  ref.set_name(std::string(text));
  return ref;
}

std::string KeyRefText(const offkey::v1::KeyRef& ref) {
  switch (ref.ref_case()) {
    case offkey::v1::KeyRef::kName:
      return ref.name();
    case offkey::v1::KeyRef::kKeyId:
      return "id:" + Hex(ref.key_id());
    case offkey::v1::KeyRef::kSki:
      return "ski:" + Hex(ref.ski());
    case offkey::v1::KeyRef::kCertSha256:
      return "sha256:" + Hex(ref.cert_sha256());
    default:
      return "(no key)";
  }
}

absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view text) {
  const size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("label '", text, "' must be KEY=VALUE (for example env=prod)"));
  }
  return std::make_pair(std::string(text.substr(0, eq)),
                        std::string(text.substr(eq + 1)));
}

absl::StatusOr<int64_t> ParseDurationSeconds(absl::string_view text) {
  const auto malformed = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "duration '", text,
        "' must be a positive whole number of d, h, m or s (e.g. 7d or 1h30m)"));
  };
  constexpr int64_t kMax = int64_t{1} << 40;
  int64_t value = 0;
  if (absl::SimpleAtoi(text, &value)) {  // Plain seconds.
    if (value <= 0 || value > kMax) return malformed();
    return value;
  }
  // Whole units from the largest down, each at most once: "7d", "1h30m" (DurationText's
  // spelling reads back).
  constexpr std::pair<char, int64_t> kUnits[] = {
      {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
  int64_t total = 0;
  size_t next_unit = 0;
  absl::string_view rest = text;
  while (!rest.empty()) {
    size_t digits = 0;
    while (digits < rest.size() && absl::ascii_isdigit(rest[digits])) ++digits;
    if (digits == 0 || digits == rest.size() || digits > 13) return malformed();
    while (next_unit < std::size(kUnits) && kUnits[next_unit].first != rest[digits]) {
      ++next_unit;
    }
    if (next_unit == std::size(kUnits)) return malformed();
    int64_t count = 0;
    if (!absl::SimpleAtoi(rest.substr(0, digits), &count)) return malformed();
    total += count * kUnits[next_unit].second;
    if (total > kMax) return malformed();
    ++next_unit;
    rest.remove_prefix(digits + 1);
  }
  if (total <= 0) return malformed();
  return total;
}

std::string DurationText(int64_t seconds) {
  if (seconds <= 0) return "0s";
  std::string out;
  for (const auto& [unit, suffix] :
       {std::pair<int64_t, const char*>{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}}) {
    if (seconds >= unit) {
      absl::StrAppend(&out, seconds / unit, suffix);
      seconds %= unit;
    }
  }
  return out;
}

absl::StatusOr<std::string> ParseHex(absl::string_view what, absl::string_view hex) {
  std::string clean = absl::StrReplaceAll(hex, {{":", ""}});
  if (clean.empty() || clean.size() % 2 != 0 ||
      !std::all_of(clean.begin(), clean.end(),
                   [](unsigned char c) { return std::isxdigit(c) != 0; })) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", hex, "' is not hex (pairs of 0-9a-f, ':' allowed)"));
  }
  return absl::HexStringToBytes(clean);
}

std::string Hex(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

}  // namespace offkey::client::cli
