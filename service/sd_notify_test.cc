#include "service/sd_notify.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "base/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace offkey::service {
namespace {

using ::offkey::testing::IsOk;
using ::offkey::testing::StatusIs;

// A datagram socket bound to `name` (a path, or "@..." for an abstract name).
int Bind(const std::string& name) {
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (name.size() >= sizeof(address.sun_path)) {
    ADD_FAILURE() << "socket name too long: " << name;
    return fd;
  }
  memcpy(address.sun_path, name.data(), name.size());
  if (name[0] == '@') address.sun_path[0] = '\0';
  const socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) +
                                                  name.size() + (name[0] == '@' ? 0 : 1));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), length), 0)
      << strerror(errno);
  return fd;
}

std::string Receive(int fd) {
  char buffer[4096];
  const ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  return n < 0 ? std::string("<nothing>") : std::string(buffer, n);
}

TEST(SdNotifierTest, SendsToAPathSocket) {
  // Bazel's test directories are too deep for sun_path's 108 bytes.
  char dir[] = "/tmp/offkey-sd-notify-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = absl::StrCat(dir, "/notify");
  const int fd = Bind(path);
  ASSERT_EQ(setenv("NOTIFY_SOCKET", path.c_str(), 1), 0);
  const SdNotifier notifier = SdNotifier::FromEnvironment();
  EXPECT_TRUE(notifier.enabled());
  EXPECT_THAT(notifier.Notify("READY=1\nSTATUS=serving"), IsOk());
  EXPECT_EQ(Receive(fd), "READY=1\nSTATUS=serving");
  close(fd);
  unsetenv("NOTIFY_SOCKET");
  unlink(path.c_str());
  rmdir(dir);
}

TEST(SdNotifierTest, SendsToAnAbstractSocket) {
  const std::string name = absl::StrCat("@offkey-sd-notify-test-", getpid());
  const int fd = Bind(name);
  const SdNotifier notifier(name);
  EXPECT_THAT(notifier.Reloading("reloading"), IsOk());
  const std::string got = Receive(fd);
  EXPECT_EQ(got.rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u) << got;
  EXPECT_NE(got.find("\nSTATUS=reloading"), std::string::npos) << got;
  // Not the same abstract name with a trailing NUL, nor a path "@...".
  EXPECT_THAT(SdNotifier(name + "x").Notify("READY=1"),
              StatusIs(absl::StatusCode::kUnavailable));
  close(fd);
}

TEST(SdNotifierTest, NothingToDoWithoutASocket) {
  unsetenv("NOTIFY_SOCKET");
  const SdNotifier notifier = SdNotifier::FromEnvironment();
  EXPECT_FALSE(notifier.enabled());
  EXPECT_THAT(notifier.Notify("READY=1"), IsOk());
}

TEST(SdNotifierTest, RefusesNamesThatAreNotSockets) {
  EXPECT_THAT(SdNotifier("relative/path").Notify("READY=1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SdNotifier("/" + std::string(200, 'a')).Notify("READY=1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace offkey::service
