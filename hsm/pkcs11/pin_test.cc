#include "hsm/pkcs11/pin.h"

#include <stdlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/testing/status_matchers.h"
#include "base/testing/text.h"
#include "gtest/gtest.h"

namespace offkey::hsm::pkcs11 {
namespace {

using ::offkey::testing::IsOk;

// Distinctive enough that finding it in a message can only mean the PIN leaked.
constexpr char kPin[] = "Zq7-PIN-SENTINEL-4k2";

using ::offkey::testing::Contains;

class PinTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const std::string& path : files_) std::remove(path.c_str());
    for (const std::string& name : vars_) unsetenv(name.c_str());
  }

  // Writes `contents` byte for byte to a fresh file under TEST_TMPDIR.
  std::string WriteFile(const std::string& name, const std::string& contents) {
    const char* dir = getenv("TEST_TMPDIR");
    std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/pin_test_" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    EXPECT_TRUE(out.good()) << path;
    files_.push_back(path);
    return path;
  }

  std::string MissingPath() {
    const char* dir = getenv("TEST_TMPDIR");
    return std::string(dir != nullptr ? dir : "/tmp") + "/pin_test_no_such_file";
  }

  void SetEnv(const std::string& name, const std::string& value) {
    ASSERT_EQ(setenv(name.c_str(), value.c_str(), 1), 0);
    vars_.push_back(name);
  }

  static absl::StatusOr<std::string> ReadFromFile(const std::string& path) {
    PinSource source;
    source.file = path;
    absl::StatusOr<SecretBytes> pin = ReadPin(source);
    if (!pin.ok()) return pin.status();
    return std::string(pin->view());
  }

  static absl::StatusOr<std::string> ReadFromEnv(const std::string& name) {
    PinSource source;
    source.env = name;
    absl::StatusOr<SecretBytes> pin = ReadPin(source);
    if (!pin.ok()) return pin.status();
    return std::string(pin->view());
  }

 private:
  std::vector<std::string> files_;
  std::vector<std::string> vars_;
};

TEST_F(PinTest, ReadsFileWithoutNewline) {
  absl::StatusOr<std::string> pin = ReadFromFile(WriteFile("plain", kPin));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, kPin);
}

TEST_F(PinTest, DropsTrailingLf) {
  absl::StatusOr<std::string> pin =
      ReadFromFile(WriteFile("lf", std::string(kPin) + "\n"));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, kPin);
}

TEST_F(PinTest, DropsTrailingCrLf) {
  absl::StatusOr<std::string> pin =
      ReadFromFile(WriteFile("crlf", std::string(kPin) + "\r\n"));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, kPin);
}

TEST_F(PinTest, DropsOnlyOneNewline) {
  absl::StatusOr<std::string> pin =
      ReadFromFile(WriteFile("lflf", std::string(kPin) + "\n\n"));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, std::string(kPin) + "\n");

  pin = ReadFromFile(WriteFile("crlfcrlf", std::string(kPin) + "\r\n\r\n"));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, std::string(kPin) + "\r\n");
}

TEST_F(PinTest, KeepsInnerAndLeadingBytes) {
  std::string raw = std::string(" a\nb\0c ", 7);
  absl::StatusOr<std::string> pin = ReadFromFile(WriteFile("inner", raw + "\n"));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, raw);
}

// pin.h: "one trailing newline (LF or CRLF) is dropped". A CR that is not followed by
// an LF is not a newline of either kind and belongs to the PIN.
TEST_F(PinTest, LoneTrailingCrIsKept) {
  absl::StatusOr<std::string> pin =
      ReadFromFile(WriteFile("cr", std::string(kPin) + "\r"));
  ASSERT_THAT(pin, IsOk());
  // Only a CR that belongs to a trailing CRLF is dropped.
  EXPECT_EQ(*pin, std::string(kPin) + "\r");
}

TEST_F(PinTest, ReadsEnvVariableVerbatim) {
  SetEnv("OFFKEY_PIN_TEST_VAR", kPin);
  absl::StatusOr<std::string> pin = ReadFromEnv("OFFKEY_PIN_TEST_VAR");
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, kPin);

  // Only files lose a trailing newline; a variable is taken as is.
  SetEnv("OFFKEY_PIN_TEST_VAR_LF", std::string(kPin) + "\n");
  pin = ReadFromEnv("OFFKEY_PIN_TEST_VAR_LF");
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, std::string(kPin) + "\n");
}

// The PIN must not stay in the environment once read: children would inherit it, and
// getenv anywhere in the process would find it. The value's bytes are wiped too (with
// putenv the buffer is the test's, so it can look).
TEST_F(PinTest, EnvVariableIsWipedAndUnsetOnceRead) {
  static char entry[] = "OFFKEY_PIN_TEST_ONCE=Zq7-PIN-SENTINEL-4k2";
  const size_t name_len = strlen("OFFKEY_PIN_TEST_ONCE=");
  ASSERT_EQ(putenv(entry), 0);
  absl::StatusOr<std::string> pin = ReadFromEnv("OFFKEY_PIN_TEST_ONCE");
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, kPin);
  EXPECT_EQ(getenv("OFFKEY_PIN_TEST_ONCE"), nullptr);
  EXPECT_EQ(std::string(entry + name_len, strlen(kPin)), std::string(strlen(kPin), '\0'));
  // Read once: a second read finds nothing.
  EXPECT_EQ(ReadFromEnv("OFFKEY_PIN_TEST_ONCE").status().code(),
            absl::StatusCode::kNotFound);

  // Also when the value is refused.
  std::string huge;
  while (huge.size() <= 256) huge += kPin;
  SetEnv("OFFKEY_PIN_TEST_HUGE_ONCE", huge);
  EXPECT_FALSE(ReadFromEnv("OFFKEY_PIN_TEST_HUGE_ONCE").ok());
  EXPECT_EQ(getenv("OFFKEY_PIN_TEST_HUGE_ONCE"), nullptr);
  unsetenv("OFFKEY_PIN_TEST_ONCE");  // `entry` must not outlive the test in environ.
}

TEST_F(PinTest, NeitherSourceIsInvalid) {
  absl::StatusOr<SecretBytes> pin = ReadPin(PinSource{});
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(pin.status().message(), "exactly one"));
}

TEST_F(PinTest, BothSourcesAreInvalid) {
  PinSource source;
  source.file = WriteFile("both", kPin);
  SetEnv("OFFKEY_PIN_TEST_BOTH", kPin);
  source.env = "OFFKEY_PIN_TEST_BOTH";
  absl::StatusOr<SecretBytes> pin = ReadPin(source);
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(pin.status().message(), "exactly one"));
  EXPECT_FALSE(Contains(pin.status().message(), kPin));
}

TEST_F(PinTest, MissingFileIsNotFound) {
  std::string path = MissingPath();
  absl::StatusOr<std::string> pin = ReadFromFile(path);
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(pin.status().message(), path));
}

TEST_F(PinTest, MissingEnvVariableIsNotFound) {
  unsetenv("OFFKEY_PIN_TEST_UNSET");
  absl::StatusOr<std::string> pin = ReadFromEnv("OFFKEY_PIN_TEST_UNSET");
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(pin.status().message(), "OFFKEY_PIN_TEST_UNSET"));
}

TEST_F(PinTest, EmptyFileIsInvalid) {
  std::string path = WriteFile("empty", "");
  absl::StatusOr<std::string> pin = ReadFromFile(path);
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(pin.status().message(), path));
  EXPECT_TRUE(Contains(pin.status().message(), "empty"));
}

TEST_F(PinTest, NewlineOnlyFileIsInvalid) {
  absl::StatusOr<std::string> pin = ReadFromFile(WriteFile("just_lf", "\n"));
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);

  pin = ReadFromFile(WriteFile("just_crlf", "\r\n"));
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PinTest, EmptyEnvVariableIsInvalid) {
  SetEnv("OFFKEY_PIN_TEST_EMPTY", "");
  absl::StatusOr<std::string> pin = ReadFromEnv("OFFKEY_PIN_TEST_EMPTY");
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(pin.status().message(), "OFFKEY_PIN_TEST_EMPTY"));
}

TEST_F(PinTest, LengthLimitIs256Bytes) {
  // Exactly 256 bytes is fine, also with a newline after it.
  std::string max(256, 'p');
  absl::StatusOr<std::string> pin = ReadFromFile(WriteFile("max", max));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, max);
  pin = ReadFromFile(WriteFile("max_crlf", max + "\r\n"));
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, max);

  SetEnv("OFFKEY_PIN_TEST_MAX", max);
  pin = ReadFromEnv("OFFKEY_PIN_TEST_MAX");
  ASSERT_THAT(pin, IsOk());
  EXPECT_EQ(*pin, max);
}

TEST_F(PinTest, OversizedFileIsInvalidAndNotEchoed) {
  // 257 bytes, and a much larger file, both made of the distinctive PIN text.
  std::string over = std::string(kPin) + std::string(257 - strlen(kPin), 'x');
  ASSERT_EQ(over.size(), 257u);
  std::string path = WriteFile("over", over);
  absl::StatusOr<std::string> pin = ReadFromFile(path);
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(pin.status().message(), path));
  EXPECT_TRUE(Contains(pin.status().message(), "256"));
  EXPECT_FALSE(Contains(pin.status().message(), kPin));

  std::string huge;
  while (huge.size() < 4096) huge += kPin;
  pin = ReadFromFile(WriteFile("huge", huge + "\n"));
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Contains(pin.status().message(), kPin));

  // 257 bytes followed by CRLF must not squeeze under the limit.
  pin = ReadFromFile(WriteFile("over_crlf", over + "\r\n"));
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PinTest, OversizedEnvVariableIsInvalidAndNotEchoed) {
  std::string huge;
  while (huge.size() <= 256) huge += kPin;
  SetEnv("OFFKEY_PIN_TEST_HUGE", huge);
  absl::StatusOr<std::string> pin = ReadFromEnv("OFFKEY_PIN_TEST_HUGE");
  ASSERT_FALSE(pin.ok());
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(pin.status().message(), "OFFKEY_PIN_TEST_HUGE"));
  EXPECT_FALSE(Contains(pin.status().message(), kPin));
}

TEST_F(PinTest, DirectoryIsRefused) {
  const char* dir = getenv("TEST_TMPDIR");
  absl::StatusOr<std::string> pin = ReadFromFile(dir != nullptr ? dir : "/tmp");
  EXPECT_FALSE(pin.ok());
}

}  // namespace
}  // namespace offkey::hsm::pkcs11
