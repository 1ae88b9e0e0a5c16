#include "hsm/pkcs11/token_uri.h"

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/testing/status_matchers.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

using ::offkey::testing::Contains;

// Expects Parse(uri) to fail with INVALID_ARGUMENT and a message holding `fragment`.
void ExpectRefused(absl::string_view uri, absl::string_view fragment) {
  absl::StatusOr<TokenUri> parsed = TokenUri::Parse(uri);
  ASSERT_FALSE(parsed.ok()) << uri << " parsed";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << uri;
  EXPECT_TRUE(Contains(parsed.status().message(), fragment)) << uri;
}

// CK_TOKEN_INFO text fields are padded with spaces, not NUL-terminated.
template <size_t N>
void SetPadded(unsigned char (&field)[N], const std::string& text) {
  ASSERT_LE(text.size(), N);
  memset(field, ' ', N);
  memcpy(field, text.data(), text.size());
}

CK_TOKEN_INFO MakeInfo(const std::string& label, const std::string& manufacturer,
                       const std::string& model, const std::string& serial) {
  CK_TOKEN_INFO info;
  memset(&info, 0, sizeof(info));
  SetPadded(info.label, label);
  SetPadded(info.manufacturerID, manufacturer);
  SetPadded(info.model, model);
  SetPadded(info.serialNumber, serial);
  return info;
}

TEST(TokenUriTest, ParsesAllTokenAttributes) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse(
      "pkcs11:token=offkey;serial=5f3a0c12;manufacturer=SoftHSM%20project;"
      "model=SoftHSM%20v2;slot-id=42");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "offkey");
  EXPECT_EQ(uri->serial, "5f3a0c12");
  EXPECT_EQ(uri->manufacturer, "SoftHSM project");
  EXPECT_EQ(uri->model, "SoftHSM v2");
  ASSERT_TRUE(uri->slot_id.has_value());
  EXPECT_EQ(*uri->slot_id, 42u);
  EXPECT_TRUE(uri->module_path.empty());
  EXPECT_TRUE(uri->pin_file.empty());
}

TEST(TokenUriTest, EmptyUriSelectsAnything) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse("pkcs11:");
  ASSERT_THAT(uri, IsOk());
  EXPECT_TRUE(uri->token.empty());
  EXPECT_TRUE(uri->serial.empty());
  EXPECT_FALSE(uri->slot_id.has_value());
}

TEST(TokenUriTest, PercentDecodes) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse("pkcs11:token=my%20token");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "my token");

  // Upper and lower case hex, reserved characters, and a literal '%'.
  uri = TokenUri::Parse("pkcs11:token=a%3Bb%3db%25c%2fd");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "a;b=b%c/d");
}

TEST(TokenUriTest, ValueMayContainEquals) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse("pkcs11:token=a=b");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "a=b");
}

TEST(TokenUriTest, ParsesQueryAttributes) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse(
      "pkcs11:token=offkey?module-path=/usr/lib/softhsm/libsofthsm2.so"
      "&pin-source=file:/etc/offkey/pin");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "offkey");
  EXPECT_EQ(uri->module_path, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(uri->pin_file, "/etc/offkey/pin");
}

TEST(TokenUriTest, PinSourceForms) {
  absl::StatusOr<TokenUri> plain = TokenUri::Parse("pkcs11:?pin-source=/run/pin");
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(plain->pin_file, "/run/pin");

  absl::StatusOr<TokenUri> file_url =
      TokenUri::Parse("pkcs11:?pin-source=file:///run/pin");
  ASSERT_THAT(file_url, IsOk());
  EXPECT_EQ(file_url->pin_file, "/run/pin");

  absl::StatusOr<TokenUri> encoded =
      TokenUri::Parse("pkcs11:?pin-source=file:/run/my%20pin");
  ASSERT_THAT(encoded, IsOk());
  EXPECT_EQ(encoded->pin_file, "/run/my pin");

  ExpectRefused("pkcs11:?pin-source=", "pin-source");
  ExpectRefused("pkcs11:?pin-source=file:", "pin-source");
  ExpectRefused("pkcs11:?pin-source=https://example.com/pin",
                "pin-source");  // Not a file.
}

TEST(TokenUriTest, AcceptsAndIgnoresModuleAndSlotDescriptions) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse(
      "pkcs11:library-manufacturer=SoftHSM;slot-description=x;token=t?module-name="
      "softhsm2");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "t");
  EXPECT_TRUE(uri->manufacturer.empty());
  EXPECT_TRUE(uri->module_path.empty());
}

TEST(TokenUriTest, RefusesMissingScheme) {
  ExpectRefused("token=offkey", "pkcs11:");
  ExpectRefused("", "pkcs11:");
  ExpectRefused("pkcs11-token=offkey", "pkcs11:");
  ExpectRefused("file:/etc/pin", "pkcs11:");
}

TEST(TokenUriTest, RefusesPinValue) {
  const char kUri[] = "pkcs11:token=offkey?pin-value=Hunter2-Distinctive";
  absl::StatusOr<TokenUri> uri = TokenUri::Parse(kUri);
  ASSERT_FALSE(uri.ok());
  EXPECT_EQ(uri.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(uri.status().message(), "pin-value"));
  EXPECT_TRUE(Contains(uri.status().message(), "refused"));
  EXPECT_TRUE(Contains(uri.status().message(), "pin-source=file:"));  // The way out.
  // The refusal must not echo the PIN it refuses.
  EXPECT_FALSE(Contains(uri.status().message(), "Hunter2-Distinctive"));
}

TEST(TokenUriTest, RefusesObjectAttributes) {
  // Refused as object selectors (pointing at whole-token selection), not as unknown.
  for (absl::string_view uri : {"pkcs11:token=offkey;object=web",
                                "pkcs11:token=offkey;id=%01%02", "pkcs11:type=private"}) {
    ExpectRefused(uri, "selects an object");
    ExpectRefused(uri, "whole token");
  }
  ExpectRefused("pkcs11:token=offkey;object=web", "'object'");
  ExpectRefused("pkcs11:token=offkey;id=%01%02", "'id'");
  ExpectRefused("pkcs11:type=private", "'type'");
}

TEST(TokenUriTest, RefusesUnknownAttributes) {
  ExpectRefused("pkcs11:token=offkey;colour=blue", "'colour'");
  ExpectRefused("pkcs11:Token=offkey", "'Token'");  // Names are case-sensitive.
  ExpectRefused("pkcs11:token=offkey?module-dir=/usr/lib", "'module-dir'");
}

TEST(TokenUriTest, RefusesBadPercentEscapes) {
  ExpectRefused("pkcs11:token=%4", "'token'");
  ExpectRefused("pkcs11:token=%zz", "'token'");
  ExpectRefused("pkcs11:token=abc%", "'token'");
  ExpectRefused("pkcs11:serial=%4g00", "'serial'");
  ExpectRefused("pkcs11:token=x?module-path=/usr/lib%2", "'module-path'");
  ExpectRefused("pkcs11:token=%4", "percent");
}

TEST(TokenUriTest, RefusesNonNumericSlotId) {
  ExpectRefused("pkcs11:slot-id=abc", "'slot-id'");
  ExpectRefused("pkcs11:slot-id=12abc", "'slot-id'");
  ExpectRefused("pkcs11:slot-id=-1", "'slot-id'");
  ExpectRefused("pkcs11:slot-id=", "'slot-id'");
  ExpectRefused("pkcs11:slot-id=0x10", "'slot-id'");
}

TEST(TokenUriTest, RefusesAttributeWithoutValue) {
  ExpectRefused("pkcs11:token", "'token'");
  ExpectRefused("pkcs11:token=offkey;serial", "'serial'");
  ExpectRefused("pkcs11:token", "no value");
}

TEST(TokenUriTest, RefusesQueryAttributeWithoutValue) {
  ExpectRefused("pkcs11:token=a?module-path", "module-path");
}

TEST(TokenUriTest, SchemeIsCaseInsensitive) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse("PKCS11:token=a");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->token, "a");
}

TEST(TokenUriTest, MatchesSpacePaddedTokenInfo) {
  CK_TOKEN_INFO info = MakeInfo("offkey", "SoftHSM project", "SoftHSM v2", "5f3a0c12");

  auto matches = [&](absl::string_view text, CK_SLOT_ID slot) {
    absl::StatusOr<TokenUri> uri = TokenUri::Parse(text);
    EXPECT_THAT(uri, IsOk());
    return uri.ok() && uri->Matches(slot, info);
  };
  EXPECT_TRUE(matches("pkcs11:", 7));
  EXPECT_TRUE(matches("pkcs11:token=offkey", 7));
  EXPECT_TRUE(matches("pkcs11:serial=5f3a0c12", 7));
  EXPECT_TRUE(matches("pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2", 7));
  EXPECT_TRUE(
      matches("pkcs11:token=offkey;serial=5f3a0c12;manufacturer=SoftHSM%20project;"
              "model=SoftHSM%20v2;slot-id=7",
              7));

  EXPECT_FALSE(matches("pkcs11:token=offkey;slot-id=8", 7));
  EXPECT_FALSE(matches("pkcs11:token=offke", 7));    // A prefix is not the label.
  EXPECT_FALSE(matches("pkcs11:token=offkey2", 7));  // Nor is a longer name.
  EXPECT_FALSE(matches("pkcs11:token=OFFKEY", 7));
  EXPECT_FALSE(matches("pkcs11:token=offkey;serial=5f3a0c13", 7));
  EXPECT_FALSE(matches("pkcs11:token=offkey;model=SoftHSM", 7));
  EXPECT_FALSE(matches("pkcs11:manufacturer=SoftHSM", 7));
}

TEST(TokenUriTest, MatchesFullWidthAndInnerSpaces) {
  // A label that fills all 32 bytes has no padding at all.
  std::string full(32, 'x');
  CK_TOKEN_INFO info = MakeInfo(full, "m", "d", "s");
  TokenUri uri;
  uri.token = full;
  EXPECT_TRUE(uri.Matches(0, info));

  // Spaces inside a label are kept; only the padding goes.
  info = MakeInfo("my token", "m", "d", "s");
  uri.token = "my token";
  EXPECT_TRUE(uri.Matches(0, info));
  uri.token = "my";
  EXPECT_FALSE(uri.Matches(0, info));
}

TEST(TokenUriTest, TrimPadded) {
  const unsigned char spaces[] = {'a', ' ', 'b', ' ', ' ', ' '};
  EXPECT_EQ(TrimPadded(spaces, sizeof(spaces)), "a b");
  const unsigned char nuls[] = {'a', 'b', '\0', '\0'};
  EXPECT_EQ(TrimPadded(nuls, sizeof(nuls)), "ab");
  const unsigned char blank[] = {' ', ' ', ' '};
  EXPECT_EQ(TrimPadded(blank, sizeof(blank)), "");
  const unsigned char leading[] = {' ', 'a', ' '};
  EXPECT_EQ(TrimPadded(leading, sizeof(leading)), " a");
}

TEST(TokenUriTest, ToStringRoundTrips) {
  TokenUri original;
  original.token = "my token;x=y?z&%";
  original.manufacturer = "SoftHSM project";
  original.serial = "5f3a0c12";
  original.model = "SoftHSM v2";
  original.slot_id = 3;
  original.module_path = "/usr/lib/softhsm/libsofthsm2.so";
  original.pin_file = "/etc/offkey/pin";

  std::string text = original.ToString();
  EXPECT_EQ(text.rfind("pkcs11:", 0), 0u) << text;
  // The PIN's location is left out of a string meant for messages.
  EXPECT_FALSE(Contains(text, "pin-source")) << text;
  EXPECT_FALSE(Contains(text, "/etc/offkey/pin")) << text;
  EXPECT_FALSE(Contains(text, " ")) << text;

  absl::StatusOr<TokenUri> back = TokenUri::Parse(text);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->token, original.token);
  EXPECT_EQ(back->manufacturer, original.manufacturer);
  EXPECT_EQ(back->serial, original.serial);
  EXPECT_EQ(back->model, original.model);
  EXPECT_EQ(back->slot_id, original.slot_id);
  EXPECT_EQ(back->module_path, original.module_path);
  EXPECT_TRUE(back->pin_file.empty());
}

TEST(TokenUriTest, ToStringOfSimpleUri) {
  absl::StatusOr<TokenUri> uri = TokenUri::Parse("pkcs11:token=offkey;slot-id=0");
  ASSERT_THAT(uri, IsOk());
  EXPECT_EQ(uri->ToString(), "pkcs11:token=offkey;slot-id=0");
  EXPECT_EQ(TokenUri().ToString(), "pkcs11:");
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
