#include "hsm/pkcs11/pin.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace offkey::hsm::pkcs11 {
namespace {

constexpr size_t kMaxPin = 256;

absl::StatusOr<SecretBytes> ReadPinFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    auto msg = absl::StrCat("cannot open PIN file '", path, "': ", strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
  }
  SecretBytes buf(kMaxPin + 3);  // Room to detect an oversized file.
  size_t used = 0;
  while (used < buf.size()) {
    ssize_t n = read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return absl::InternalError(
          absl::StrCat("cannot read PIN file '", path, "': ", strerror(err)));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  close(fd);
  buf.Truncate(used);
  if (used > 0 && buf[used - 1] == '\n') {
    buf.Truncate(--used);
    if (used > 0 && buf[used - 1] == '\r') buf.Truncate(--used);  // CRLF
  }
  if (buf.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("PIN file '", path, "' is empty"));
  }
  if (buf.size() > kMaxPin) {
    return absl::InvalidArgumentError(
        absl::StrCat("PIN file '", path, "' holds more than ", kMaxPin, " bytes"));
  }
  return buf;
}

}  // namespace

absl::StatusOr<SecretBytes> ReadPin(const PinSource& source) {
  if (source.file.empty() == source.env.empty()) {
    return absl::InvalidArgumentError(
        "give the token PIN through exactly one of a PIN file or an environment "
        "variable");
  }
  if (!source.file.empty()) return ReadPinFile(source.file);
  char* value = std::getenv(source.env.c_str());
  if (value == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("PIN environment variable '", source.env, "' is not set"));
  }
  SecretBytes pin(absl::string_view(value, strlen(value)));
  // Read once, then gone: children do not inherit it and later getenv calls find
  // nothing. The bytes are wiped in place first, because unsetenv only drops the pointer
  // and the string (for a variable offkeyd was started with, the initial environment
  // block that /proc/<pid>/environ shows) would keep the PIN. glibc leaves that memory
  // writable and never reuses it; POSIX does not promise it, hence only here, at start.
  OPENSSL_cleanse(value, pin.size());
  unsetenv(source.env.c_str());
  if (pin.empty() || pin.size() > kMaxPin) {
    return absl::InvalidArgumentError(absl::StrCat("PIN environment variable '",
                                                   source.env, "' must hold 1 to ",
                                                   kMaxPin, " bytes"));
  }
  return pin;
}

}  // namespace offkey::hsm::pkcs11
