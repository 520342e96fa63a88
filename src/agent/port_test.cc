// The agent serving a VM's virtio-serial port (ServerOptions::port_fd): one
// byte stream for the agent's whole life, exchanges one after another, never
// closed by the agent. A socketpair stands in for the port.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "agent/guest.h"
#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "proto/agent_proto.h"
#include "tests/assert_ok.h"

namespace wb {
namespace {

using proto::FrameType;

class PortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    host_ = UniqueFd(sv[0]);
    UniqueFd guest(sv[1]);
    SpawnOptions o;
    o.path = std::string(WB_BUILD_DIR) + "/warmbox-agent";
    o.argv = {"warmbox-agent", "--port-fd", "3", "--hostname", "vmbox"};
    o.fds = {{guest.get(), 3}};
    o.pdeath_signal = SIGKILL;
    auto c = ChildProcess::Spawn(o);
    ASSERT_OK(c);
    agent_ = std::move(*c);
  }
  void TearDown() override { agent_.KillAndReap(); }

  void Send(FrameType t, std::string_view payload) {
    ASSERT_TRUE(WriteAll(host_.get(), proto::EncodeFrame(t, payload)).ok());
  }
  // The next frame from the agent (fails the test after 10 s or at EOF).
  proto::Frame Next() {
    for (;;) {
      if (auto f = dec_.Next()) return *f;
      pollfd p{host_.get(), POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) {
        ADD_FAILURE() << "no frame from the agent within 10 s";
        return {FrameType::kFailure, "timeout"};
      }
      char buf[65536];
      ssize_t n = ::read(host_.get(), buf, sizeof buf);
      if (n <= 0) {
        ADD_FAILURE() << "the agent closed the port";
        return {FrameType::kFailure, "eof"};
      }
      EXPECT_TRUE(dec_.Feed(std::string_view(buf, static_cast<size_t>(n))).ok());
    }
  }
  // Runs argv as one exchange; returns stdout and the exit JSON.
  std::pair<std::string, std::string> Exec(const std::vector<std::string>& argv,
                                           const std::string* in = nullptr) {
    proto::ExecRequest req;
    req.argv = argv;
    req.stdin = in != nullptr;
    Send(FrameType::kExec, proto::ToJson(req));
    if (in) {
      Send(FrameType::kStdin, *in);
      Send(FrameType::kStdinClose, "");
    }
    std::string out;
    for (;;) {
      proto::Frame f = Next();
      if (f.type == FrameType::kStdout) {
        out += f.payload;
      } else if (f.type == FrameType::kExit || f.type == FrameType::kFailure) {
        return {out, std::string(1, static_cast<char>(f.type)) + f.payload};
      }
    }
  }

  UniqueFd host_;
  ChildProcess agent_;
  proto::FrameDecoder dec_;
};

TEST_F(PortTest, ExchangesFollowEachOtherOnOneStream) {
  Send(FrameType::kHeartbeat, "");
  proto::Frame h = Next();
  EXPECT_EQ(h.type, FrameType::kHeartbeatReply);
  // After an exit, the next request on the same stream is served: the port
  // is never "one exec per connection".
  auto [out1, x1] = Exec({"sh", "-c", "echo one; exit 3"});
  EXPECT_EQ(out1, "one\n");
  EXPECT_NE(x1.find("\"exit_code\":3"), std::string::npos) << x1;
  const std::string in = "through the port\n";
  auto [out2, x2] = Exec({"cat"}, &in);
  EXPECT_EQ(out2, in);
  EXPECT_NE(x2.find("\"exit_code\":0"), std::string::npos) << x2;
  // A heartbeat and a request in one write, as the pool sends them.
  proto::ExecRequest req;
  req.argv = {"sh", "-c", "echo $HOSTNAME"};
  std::string both = proto::EncodeFrame(FrameType::kHeartbeat, "") +
                     proto::EncodeFrame(FrameType::kExec, proto::ToJson(req));
  ASSERT_TRUE(WriteAll(host_.get(), both).ok());
  EXPECT_EQ(Next().type, FrameType::kHeartbeatReply);
  proto::Frame o = Next();
  EXPECT_EQ(o.type, FrameType::kStdout);
  EXPECT_EQ(o.payload, "vmbox\n");
  EXPECT_EQ(Next().type, FrameType::kExit);
}

TEST_F(PortTest, GarbageIsAnsweredAndTheStreamStartsAfresh) {
  ASSERT_TRUE(WriteAll(host_.get(), std::string("\x01junk")).ok());
  proto::Frame f = Next();
  EXPECT_EQ(f.type, FrameType::kFailure);
  Send(FrameType::kHeartbeat, "");
  EXPECT_EQ(Next().type, FrameType::kHeartbeatReply);
}

TEST_F(PortTest, HostHangUpDoesNotEndTheAgent) {
  Send(FrameType::kHeartbeat, "");
  EXPECT_EQ(Next().type, FrameType::kHeartbeatReply);
  // The read side reports EOF (as a port does while no host is connected):
  // the agent must neither exit nor spin. Its CPU time over a quiet period
  // shows the latter: edge-triggered, it does not wake again.
  ASSERT_EQ(::shutdown(host_.get(), SHUT_WR), 0);
  auto cpu = [&] {
    auto st = ReadFile("/proc/" + std::to_string(agent_.pid()) + "/stat");
    if (!st.ok()) return uint64_t{0};
    auto f = Split(st->substr(st->rfind(')') + 2), ' ');
    return static_cast<uint64_t>(std::stoull(f[11]) + std::stoull(f[12]));  // utime + stime
  };
  uint64_t before = cpu();
  pollfd p{agent_.pidfd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 300), 0) << "the agent exited on a host hang-up";
  EXPECT_LE(cpu() - before, 3u) << "the agent busy-loops on a port without a host";
}

TEST(GuestTest, ModuleParamsComeFromTheKernelCommandLine) {
  const std::string cmdline =
      "console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 virtio-mmio.device=512@0xfeb00c00:11 "
      "quiet "
      "virtio_blk.queue_depth=4 foo.=x -- --guest virtio_mmio.device=512@0xfeb00a00:10";
  EXPECT_EQ(agent::ModuleParamsFromCmdline(cmdline, "virtio_mmio"),
            "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11 device=512@0xfeb00a00:10");
  EXPECT_EQ(agent::ModuleParamsFromCmdline(cmdline, "virtio-blk"), "queue_depth=4");
  EXPECT_EQ(agent::ModuleParamsFromCmdline(cmdline, "erofs"), "");
  EXPECT_EQ(agent::ModuleParamsFromCmdline(cmdline, "foo"), "");
  EXPECT_EQ(agent::ModuleParamsFromCmdline("", "virtio_mmio"), "");
}

TEST(GuestTest, NetArgumentIsParsedAndBadOnesNamed) {
  auto n = agent::ParseGuestNet("10.0.2.15/24,10.0.2.2,169.254.0.53");
  ASSERT_TRUE(n.ok()) << n.error().ToString();
  EXPECT_EQ(n->addr, "10.0.2.15");
  EXPECT_EQ(n->prefix, 24);
  EXPECT_EQ(n->gateway, "10.0.2.2");
  EXPECT_EQ(n->resolver, "169.254.0.53");
  for (const char* bad : {"10.0.2.15,10.0.2.2,1.1.1.1", "10.0.2.15/33,10.0.2.2,1.1.1.1",
                          "10.0.2.15/24,gw,1.1.1.1", "10.0.2.15/24,10.0.2.2"}) {
    auto r = agent::ParseGuestNet(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
    EXPECT_NE(r.error().ToString().find(bad), std::string::npos) << r.error().ToString();
  }
}

}  // namespace
}  // namespace wb
