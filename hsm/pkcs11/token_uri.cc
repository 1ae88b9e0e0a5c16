#include "hsm/pkcs11/token_uri.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace offkey::hsm::pkcs11 {
namespace {

constexpr absl::string_view kScheme = "pkcs11:";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view in,
                                          absl::string_view attribute) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    int hi = i + 2 < in.size() ? HexValue(in[i + 1]) : -1;
    int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
    if (i + 2 >= in.size() || hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(absl::StrCat("PKCS#11 URI attribute '", attribute,
                                                     "' has a bad percent escape"));
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string PercentEncode(absl::string_view in) {
  std::string out;
  for (char c : in) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      absl::StrAppend(&out, "%",
                      absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

std::string TrimPadded(const unsigned char* field, size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  size_t end = s.find_last_not_of(std::string(" \0", 2));
  return end == std::string::npos ? "" : s.substr(0, end + 1);
}

absl::StatusOr<TokenUri> TokenUri::Parse(absl::string_view uri) {
  // RFC 3986: the scheme is case-insensitive.
  if (!absl::StartsWithIgnoreCase(uri, kScheme)) {
    return absl::InvalidArgumentError(
        "a PKCS#11 token URI starts with 'pkcs11:' (RFC 7512), e.g. "
        "pkcs11:token=offkey");
  }
  uri.remove_prefix(kScheme.size());
  absl::string_view path = uri;
  absl::string_view query;
  if (size_t q = uri.find('?'); q != absl::string_view::npos) {
    path = uri.substr(0, q);
    query = uri.substr(q + 1);
  }
  TokenUri out;
  for (absl::string_view part : absl::StrSplit(path, ';', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    auto [name, raw] = kv;
    if (part.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PKCS#11 URI attribute '", part, "' has no value (expected name=value)"));
    }
    auto value = PercentDecode(raw, name);
    if (!value.ok()) return value.status();
    if (name == "token") {
      out.token = *value;
    } else if (name == "manufacturer") {
      out.manufacturer = *value;
    } else if (name == "serial") {
      out.serial = *value;
    } else if (name == "model") {
      out.model = *value;
    } else if (name == "slot-id") {
      CK_SLOT_ID id;
      if (!absl::SimpleAtoi(*value, &id)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "PKCS#11 URI attribute 'slot-id' must be a decimal number, got '", *value,
            "'"));
      }
      out.slot_id = id;
    } else if (name == "library-manufacturer" || name == "library-description" ||
               name == "library-version" || name == "slot-description" ||
               name == "slot-manufacturer") {
      // Describe the module or slot, not the token; accepted and not matched.
    } else if (name == "object" || name == "id" || name == "type") {
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 URI attribute '", name,
                       "' selects an object; offkey's token URI selects a whole token "
                       "(use token=, serial=, manufacturer=, model= or slot-id=)"));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown PKCS#11 URI attribute '", name, "'"));
    }
  }
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    auto [name, raw] = kv;
    if (part.find('=') == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PKCS#11 URI query attribute '", part, "' has no value (expected name=value)"));
    }
    auto value = PercentDecode(raw, name);
    if (!value.ok()) return value.status();
    if (name == "module-path") {
      out.module_path = *value;
    } else if (name == "pin-source") {
      absl::string_view source = *value;
      if (absl::ConsumePrefix(&source, "file:")) absl::ConsumePrefix(&source, "//");
      if (source.empty() || source.find(':') != absl::string_view::npos) {
        return absl::InvalidArgumentError(
            "PKCS#11 URI 'pin-source' must be a file (pin-source=file:/path)");
      }
      out.pin_file = std::string(source);
    } else if (name == "pin-value") {
      return absl::InvalidArgumentError(
          "PKCS#11 URI 'pin-value' is refused: a PIN in a URI leaks through process "
          "listings and logs; use pin-source=file:/path or a PIN file or "
          "environment variable");
    } else if (name == "module-name") {
      // Informational; the module is chosen by module-path or configuration.
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown PKCS#11 URI query attribute '", name, "'"));
    }
  }
  return out;
}

bool TokenUri::Matches(CK_SLOT_ID slot, const CK_TOKEN_INFO& info) const {
  if (slot_id.has_value() && *slot_id != slot) return false;
  auto field_matches = [](const std::string& want, const unsigned char* field,
                          size_t size) {
    return want.empty() || TrimPadded(field, size) == want;
  };
  return field_matches(token, info.label, sizeof(info.label)) &&
         field_matches(manufacturer, info.manufacturerID, sizeof(info.manufacturerID)) &&
         field_matches(serial, info.serialNumber, sizeof(info.serialNumber)) &&
         field_matches(model, info.model, sizeof(info.model));
}

std::string TokenUri::ToString() const {
  std::vector<std::string> parts;
  if (!token.empty()) parts.push_back("token=" + PercentEncode(token));
  if (!manufacturer.empty()) {
    parts.push_back("manufacturer=" + PercentEncode(manufacturer));
  }
  if (!serial.empty()) parts.push_back("serial=" + PercentEncode(serial));
  if (!model.empty()) parts.push_back("model=" + PercentEncode(model));
  if (slot_id.has_value()) parts.push_back(absl::StrCat("slot-id=", *slot_id));
  std::string out = absl::StrCat(kScheme, absl::StrJoin(parts, ";"));
  if (!module_path.empty()) {
    absl::StrAppend(&out, "?module-path=", PercentEncode(module_path));
  }
  return out;
}

}  // namespace offkey::hsm::pkcs11
