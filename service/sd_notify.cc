#include "service/sd_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace offkey::service {

SdNotifier SdNotifier::FromEnvironment() {
  const char* socket = getenv("NOTIFY_SOCKET");
  return SdNotifier(socket == nullptr ? "" : socket);
}

absl::Status SdNotifier::Notify(absl::string_view state) const {
  if (!enabled()) return absl::OkStatus();
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  // An abstract name has no terminating NUL, so its length is exact; a path's is not.
  if ((socket_[0] != '/' && socket_[0] != '@') ||
      socket_.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NOTIFY_SOCKET '", socket_, "' is not a usable socket name"));
  }
  memcpy(address.sun_path, socket_.data(), socket_.size());
  if (socket_[0] == '@') address.sun_path[0] = '\0';
  const socklen_t length = static_cast<socklen_t>(
      offsetof(sockaddr_un, sun_path) + socket_.size() + (socket_[0] == '/' ? 1 : 0));

  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  }
  const ssize_t sent = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                              reinterpret_cast<const sockaddr*>(&address), length);
  const int error = errno;
  close(fd);
  if (sent != static_cast<ssize_t>(state.size())) {
    return absl::UnavailableError(
        absl::StrCat("cannot notify '", socket_, "': ", strerror(error)));
  }
  return absl::OkStatus();
}

absl::Status SdNotifier::Reloading(absl::string_view status) const {
  timespec now = {};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long usec =
      static_cast<long long>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
  return Notify(absl::StrCat("RELOADING=1\nMONOTONIC_USEC=", usec, "\nSTATUS=", status));
}

}  // namespace offkey::service
