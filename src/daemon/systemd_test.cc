#include "daemon/systemd.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/fd.h"

namespace wb::daemon {
namespace {

TEST(SystemdTest, PlansTheFdsPassedToThisProcess) {
  auto fds = PlanActivationFds("42", "2", "pool:http", 42);
  ASSERT_TRUE(fds.ok());
  ASSERT_EQ(fds->size(), 2u);
  EXPECT_EQ((*fds)[0].fd, 3);
  EXPECT_EQ((*fds)[0].name, "pool");
  EXPECT_EQ((*fds)[1].fd, 4);
  EXPECT_EQ((*fds)[1].name, "http");
  auto unnamed = PlanActivationFds("42", "1", nullptr, 42);
  ASSERT_TRUE(unnamed.ok());
  ASSERT_EQ(unnamed->size(), 1u);
  EXPECT_EQ((*unnamed)[0].name, "");
}

TEST(SystemdTest, IgnoresFdsMeantForAnotherProcessOrAbsent) {
  EXPECT_TRUE(PlanActivationFds("41", "2", "pool:http", 42)->empty());
  EXPECT_TRUE(PlanActivationFds(nullptr, nullptr, nullptr, 42)->empty());
  EXPECT_TRUE(PlanActivationFds("42", nullptr, nullptr, 42)->empty());
}

TEST(SystemdTest, RejectsGarbage) {
  EXPECT_FALSE(PlanActivationFds("abc", "1", nullptr, 42).ok());
  EXPECT_FALSE(PlanActivationFds("42", "x", nullptr, 42).ok());
  EXPECT_FALSE(PlanActivationFds("42", "100000", nullptr, 42).ok());
}

TEST(SystemdTest, NotifySendsTheStateToNotifySocket) {
  std::string path = "/tmp/wb-notify-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  Notify("READY=1\nSTATUS=serving");
  ::unsetenv("NOTIFY_SOCKET");
  char buf[256];
  // The datagram was sent before recv: it is queued, no waiting needed.
  ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  ::unlink(path.c_str());
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "READY=1\nSTATUS=serving");
  Notify("READY=1");  // without NOTIFY_SOCKET: a no-op, no crash
}

}  // namespace
}  // namespace wb::daemon
