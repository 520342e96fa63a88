// Issue 19, finding 12: another user created the default
// /tmp/warmbox-UID/pool.sock first and captured a run's environment. The
// client refuses a socket, or its directory, that belongs to neither root nor
// itself, before it connects.
#include "daemon/client.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/fs.h"

namespace wb::daemon {
namespace {

constexpr uid_t kOther = 65534;  // nobody

class SocketOwnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to give files to another user";
    char tmpl[] = "/tmp/wb-client-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/pool.sock";
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_.c_str());
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_.get(), 4), 0);
  }
  void TearDown() override {
    if (squatter_.joinable()) (void)StopSquatter();
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }
  // The squatter: reads what the first client sends, then hangs up.
  void StartSquatter() {
    squatter_ = std::thread([this] {
      UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c.valid()) return;  // shut down: nobody came
      char buf[4096];
      ssize_t n = ::read(c.get(), buf, sizeof buf);
      if (n > 0) captured_.assign(buf, static_cast<size_t>(n));
    });
  }
  // Stops the squatter and returns what it captured.
  std::string StopSquatter() {
    ::shutdown(listener_.get(), SHUT_RDWR);  // wakes its accept
    squatter_.join();
    return captured_;
  }

  std::string dir_, sock_;
  UniqueFd listener_;
  std::thread squatter_;
  std::string captured_;
};

TEST_F(SocketOwnerTest, SocketOfAnotherUserIsRefusedBeforeConnecting) {
  ASSERT_EQ(::fchmod(listener_.get(), 0777), 0);
  ASSERT_EQ(::chown(sock_.c_str(), kOther, kOther), 0);
  StartSquatter();
  proto::RunRequest req;
  req.image = "x";
  req.cmd = {"env"};
  req.env = {"SECRET=x"};
  auto r = PoolClient(sock_).Run(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);
  EXPECT_NE(r.error().ToString().find("socket " + sock_ + " belongs to uid 65534"),
            std::string::npos)
      << r.error().ToString();
  EXPECT_EQ(StopSquatter(), "");
  // Control: the same socket, ours again, is trusted.
  ASSERT_EQ(::chown(sock_.c_str(), 0, 0), 0);
  EXPECT_TRUE(CheckSocketOwner(sock_, 0).ok());
  // Not root: a user trusts root's sockets and its own, nobody else's.
  EXPECT_TRUE(CheckSocketOwner(sock_, 1000).ok());
  ASSERT_EQ(::chown(sock_.c_str(), 1000, 1000), 0);
  EXPECT_TRUE(CheckSocketOwner(sock_, 1000).ok());
  EXPECT_FALSE(CheckSocketOwner(sock_, 1001).ok());
}

TEST_F(SocketOwnerTest, DirectoryOfAnotherUserIsRefused) {
  ASSERT_EQ(::chown(dir_.c_str(), kOther, kOther), 0);
  StartSquatter();
  auto r = PoolClient(sock_).Status();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("directory " + dir_ + " belongs to uid 65534"),
            std::string::npos)
      << r.error().ToString();
  EXPECT_EQ(StopSquatter(), "");
  // Even with no socket in it yet: the squatter would create it later.
  EXPECT_FALSE(CheckSocketOwner(dir_ + "/other.sock", 0).ok());
  ASSERT_EQ(::chown(dir_.c_str(), 0, 0), 0);
  EXPECT_TRUE(CheckSocketOwner(sock_, 0).ok());
}

}  // namespace
}  // namespace wb::daemon
