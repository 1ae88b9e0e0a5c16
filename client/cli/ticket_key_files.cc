#include "client/cli/ticket_key_files.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace offkey::client::cli {
namespace {

constexpr size_t kNameSize = 16;
constexpr size_t kAesKeySize = 32;
constexpr size_t kHmacKeySize = 32;
constexpr size_t kKeyFileSize = kNameSize + kAesKeySize + kHmacKeySize;  // 80

absl::Status CheckSizes(const offkey::v1::TicketKey& key) {
  if (key.name().size() != kNameSize || key.aes_key().size() != kAesKeySize ||
      key.hmac_key().size() != kHmacKeySize) {
    // Sizes only: never the bytes.
    return absl::DataLossError(absl::StrCat(
        "offkeyd sent a ticket key for epoch ", key.epoch(), " with a ",
        key.name().size(), "-byte name, ", key.aes_key().size(), "-byte AES key and ",
        key.hmac_key().size(), "-byte HMAC key (expected 16, 32 and 32)"));
  }
  return absl::OkStatus();
}

// `parts` concatenated into one secret buffer.
SecretBytes Concat(std::initializer_list<absl::string_view> parts) {
  size_t size = 0;
  for (absl::string_view part : parts) size += part.size();
  SecretBytes out(size);
  size_t at = 0;
  for (absl::string_view part : parts) {
    memcpy(out.data() + at, part.data(), part.size());
    at += part.size();
  }
  return out;
}

// Standard base64 of `bytes`, written straight into secret memory.
SecretBytes Base64(const SecretBytes& bytes) {
  SecretBytes out(4 * ((bytes.size() + 2) / 3) + 1);  // EVP_EncodeBlock adds a NUL.
  const int n = EVP_EncodeBlock(out.data(), bytes.data(), static_cast<int>(bytes.size()));
  out.Truncate(static_cast<size_t>(n));
  return out;
}

absl::Status SystemError(absl::string_view what, const std::string& path, int error) {
  return absl::PermissionDeniedError(
      absl::StrCat("cannot ", what, " '", path, "': ", strerror(error)));
}

absl::Status WriteAll(int fd, absl::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::ErrnoToStatus(errno, "write");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SecretBytes> NginxTicketKeyFile(const offkey::v1::TicketKey& key) {
  if (absl::Status sizes = CheckSizes(key); !sizes.ok()) return sizes;
  // nginx reads an 80-byte file as name, then the HMAC key, then the AES key (unlike
  // its 48-byte form and unlike haproxy).
  SecretBytes file = Concat({key.name(), key.hmac_key(), key.aes_key()});
  static_assert(kKeyFileSize == 80);
  return file;
}

absl::StatusOr<SecretBytes> HaproxyTicketKey(const offkey::v1::TicketKey& key) {
  if (absl::Status sizes = CheckSizes(key); !sizes.ok()) return sizes;
  const SecretBytes raw = Concat({key.name(), key.aes_key(), key.hmac_key()});
  return Base64(raw);
}

absl::StatusOr<SecretBytes> HaproxyTicketKeysFile(
    const offkey::v1::GetTicketKeysResponse& keys) {
  if (!keys.has_previous() || !keys.has_current() || !keys.has_next()) {
    return absl::DataLossError(
        "offkeyd's answer lacks the previous, current or next ticket key");
  }
  std::vector<SecretBytes> lines;
  for (const offkey::v1::TicketKey* key :
       {&keys.previous(), &keys.current(), &keys.next()}) {
    absl::StatusOr<SecretBytes> line = HaproxyTicketKey(*key);
    if (!line.ok()) return line.status();
    lines.push_back(*std::move(line));
  }
  return Concat({lines[0].view(), "\n", lines[1].view(), "\n", lines[2].view(), "\n"});
}

absl::Status ReplaceFileAtomically(const std::string& path, absl::string_view data,
                                   mode_t mode) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmp = absl::StrCat(dir, "/.", base, ".XXXXXX");
  const int fd = mkostemp(tmp.data(), O_CLOEXEC);  // Created with mode 0600.
  if (fd < 0) return SystemError("create a temporary file beside", path, errno);
  absl::Status written = WriteAll(fd, data);
  if (written.ok() && fchmod(fd, mode) != 0) {
    written = absl::ErrnoToStatus(errno, "chmod");
  }
  if (written.ok() && fsync(fd) != 0) written = absl::ErrnoToStatus(errno, "fsync");
  if (close(fd) != 0 && written.ok()) written = absl::ErrnoToStatus(errno, "close");
  if (written.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    written = absl::ErrnoToStatus(errno, "rename");
  }
  if (!written.ok()) {
    unlink(tmp.c_str());
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write '", path, "': ", written.message()));
  }
  // The rename itself survives a crash once the directory is synced.
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    fsync(dir_fd);
    close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace offkey::client::cli
