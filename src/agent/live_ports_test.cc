// TCP connections to a sandbox's ports (T; docs/protocol.md, "Ports"),
// against warmbox-agent run as a plain process: it shares the test's network
// namespace, so a listener the test opens on 127.0.0.1 is "in the sandbox".
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "agent/live_test_util.h"
#include "tests/assert_ok.h"

namespace wb::live_test {
namespace {

class LivePortsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(agent_.Start()); }
  // T on w; true once t came.
  static bool Open(Wire& w, uint16_t port) {
    w.Send(FrameType::kTunnel, proto::ToJson(proto::TunnelRequest{port}));
    auto t = w.Expect(FrameType::kTunnelReply);
    EXPECT_TRUE(t) << w.last_unexpected();
    return t.has_value();
  }
  // O frames until x; their bytes, and x's size (or -1 when something else came).
  static std::pair<std::string, int64_t> UntilEnd(Wire& w, int ms = 20000) {
    std::string got;
    while (auto f = w.Next(ms)) {
      if (f->type == FrameType::kStdout) {
        got += f->payload;
        continue;
      }
      if (f->type != FrameType::kFileEnd) break;
      auto e = proto::ParseFileEnd(f->payload);
      return {got, e.ok() ? static_cast<int64_t>(e->size) : -1};
    }
    return {got, -1};
  }

  TestAgent agent_;
};

TEST_F(LivePortsTest, NothingListeningIsUnavailable) {
  TcpListener bound(false, /*listen=*/false);  // bound, so no one else takes the port
  ASSERT_TRUE(bound.ok());
  Wire w(agent_.sock());
  w.Send(FrameType::kTunnel, proto::ToJson(proto::TunnelRequest{bound.port()}));
  auto e = w.Expect(FrameType::kOpError);
  ASSERT_TRUE(e) << w.last_unexpected();
  auto err = proto::ParseOpError(*e);
  ASSERT_OK(err);
  EXPECT_EQ(err->code, "unavailable");
  EXPECT_EQ(err->err, ECONNREFUSED);
  EXPECT_NE(err->message.find("127.0.0.1:" + std::to_string(bound.port())), std::string::npos)
      << err->message;
  EXPECT_NE(err->message.find("nothing listens on port"), std::string::npos) << err->message;
  EXPECT_TRUE(w.ClosedByAgent());
}

TEST_F(LivePortsTest, BadRequestsNameThePort) {
  for (const char* bad : {R"({})", R"({"port":0})", R"({"port":70000})", "nope"}) {
    SCOPED_TRACE(bad);
    Wire w(agent_.sock());
    w.Send(FrameType::kTunnel, bad);
    auto e = w.Expect(FrameType::kOpError);
    ASSERT_TRUE(e) << w.last_unexpected();
    auto err = proto::ParseOpError(*e);
    ASSERT_OK(err);
    EXPECT_EQ(err->code, "bad_request");
    EXPECT_TRUE(w.ClosedByAgent());
  }
  // A second operation on a tunnel's connection is refused.
  TcpListener l;
  ASSERT_TRUE(l.ok());
  Wire w(agent_.sock());
  ASSERT_TRUE(Open(w, l.port()));
  w.Send(FrameType::kList);
  EXPECT_TRUE(w.Expect(FrameType::kFailure)) << w.last_unexpected();
}

TEST_F(LivePortsTest, BytesBothWaysAndHalfClose) {
  TcpListener l;
  ASSERT_TRUE(l.ok());
  // The service reads the whole request (to the host's C), then answers
  // with it reversed and closes.
  const std::string up = Pattern(3 * 1024 * 1024 + 11);
  std::string service_got;
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    service_got = ReadToEof(c.get());
    std::string back(service_got.rbegin(), service_got.rend());
    (void)WriteAll(c.get(), back);
  });
  Wire w(agent_.sock());
  ASSERT_TRUE(Open(w, l.port()));
  for (size_t off = 0; off < up.size(); off += 60000) {
    w.Send(FrameType::kStdin, std::string_view(up).substr(off, 60000));
  }
  w.Send(FrameType::kStdinClose);
  auto [got, size] = UntilEnd(w, 30000);
  service.join();
  EXPECT_TRUE(service_got == up) << service_got.size();
  EXPECT_TRUE(got == std::string(up.rbegin(), up.rend())) << got.size();
  EXPECT_EQ(size, static_cast<int64_t>(up.size()));
  // Both directions ended: the agent closes.
  EXPECT_TRUE(w.ClosedByAgent());
}

TEST_F(LivePortsTest, FullDuplexEchoOfALargeStream) {
  TcpListener l;
  ASSERT_TRUE(l.ok());
  // An echo service: every byte back as it comes. Neither side may wait for
  // the other to finish (each direction has bounded buffers), so the host
  // writes from a thread of its own.
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(c.get(), buf, sizeof buf);
      if (n <= 0) break;
      if (!WriteAll(c.get(), std::string_view(buf, static_cast<size_t>(n))).ok()) break;
    }
  });
  const std::string data = Pattern(8 * 1024 * 1024);
  Wire w(agent_.sock());
  ASSERT_TRUE(Open(w, l.port()));
  std::thread writer([&] {
    for (size_t off = 0; off < data.size(); off += 65536) {
      w.Send(FrameType::kStdin, std::string_view(data).substr(off, 65536));
    }
    w.Send(FrameType::kStdinClose);
  });
  auto [got, size] = UntilEnd(w, 30000);
  writer.join();
  service.join();
  EXPECT_TRUE(got == data) << got.size();
  EXPECT_EQ(size, static_cast<int64_t>(data.size()));
}

TEST_F(LivePortsTest, OutputIsStreamedAsTheServiceWritesIt) {
  TcpListener l;
  ASSERT_TRUE(l.ok());
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  UniqueFd go_r(go[0]), go_w(go[1]);
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    (void)WriteAll(c.get(), "line 1\n");
    // The second line only once the host has seen the first.
    char b;
    pollfd p{go_r.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) == 1 && ::read(go_r.get(), &b, 1) == 1) {
      (void)WriteAll(c.get(), "line 2\n");
    }
  });
  Wire w(agent_.sock());
  ASSERT_TRUE(Open(w, l.port()));
  std::string seen;
  ASSERT_TRUE(w.UntilOutput("line 1\n", &seen)) << seen;
  ASSERT_EQ(::write(go_w.get(), "x", 1), 1);
  auto [rest, size] = UntilEnd(w);
  service.join();
  EXPECT_EQ(seen + rest, "line 1\nline 2\n");
  EXPECT_EQ(size, 14);
}

TEST_F(LivePortsTest, HostHangUpClosesTheServicesConnection) {
  TcpListener l;
  ASSERT_TRUE(l.ok());
  UniqueFd c;
  {
    Wire w(agent_.sock());
    ASSERT_TRUE(Open(w, l.port()));
    c = l.Accept();
    ASSERT_TRUE(c);
    w.Send(FrameType::kStdin, "partial");
    // The agent wrote it before we hang up: the service reads it first.
    char buf[16];
    pollfd p{c.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    ASSERT_EQ(::read(c.get(), buf, sizeof buf), 7);
  }  // hang-up
  EXPECT_EQ(ReadToEof(c.get(), 10000), "");
}

TEST_F(LivePortsTest, ServiceOnIpv6LoopbackOnly) {
  TcpListener l(/*ipv6=*/true);
  if (!l.ok()) GTEST_SKIP() << "no IPv6 loopback here";
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (c) (void)WriteAll(c.get(), "six");
  });
  Wire w(agent_.sock());
  ASSERT_TRUE(Open(w, l.port()));
  auto [got, size] = UntilEnd(w);
  service.join();
  EXPECT_EQ(got, "six");
}

}  // namespace
}  // namespace wb::live_test
