// The service manager's readiness protocol (systemd's sd_notify(3)), without libsystemd:
// datagrams of "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET, a path
// or, starting with '@', an abstract name.
#ifndef OFFKEY_SERVICE_SD_NOTIFY_H_
#define OFFKEY_SERVICE_SD_NOTIFY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace offkey::service {

class SdNotifier {
 public:
  // Takes the socket from $NOTIFY_SOCKET (read once, here); none when unset or empty.
  static SdNotifier FromEnvironment();
  // Sends to `socket` ("/run/...", or "@name" for an abstract name; "" for none).
  explicit SdNotifier(std::string socket) : socket_(std::move(socket)) {}

  bool enabled() const { return !socket_.empty(); }

  // Sends `state` ("READY=1\nSTATUS=serving") as one datagram. OK without doing anything
  // when not enabled; INVALID_ARGUMENT for a socket name that is not a path or an
  // abstract name or is too long; UNAVAILABLE when sending fails (no one listening).
  absl::Status Notify(absl::string_view state) const;

  // RELOADING=1 with MONOTONIC_USEC (what Type=notify-reload expects), and `status`.
  absl::Status Reloading(absl::string_view status) const;

 private:
  std::string socket_;
};

}  // namespace offkey::service

#endif  // OFFKEY_SERVICE_SD_NOTIFY_H_
