// Channels over a VM's port (proto/mux.h, agent/port_mux.cc), no VM needed:
// a socketpair stands in for the port. First the frames themselves (the test
// plays the host), then the host's bridge (sandbox/vm/mux_bridge.h) on the
// host end, with clients connecting per operation as they would to an ns
// agent.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <thread>

#include "agent/live_test_util.h"
#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "proto/agent_proto.h"
#include "proto/mux.h"
#include "sandbox/vm/mux_bridge.h"
#include "tests/assert_ok.h"

namespace wb {
namespace {

using proto::Frame;
using proto::FrameType;

// The agent in port mode on one end of a socketpair.
class PortAgent {
 public:
  bool Start() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    host_ = UniqueFd(sv[0]);
    UniqueFd guest(sv[1]);
    SpawnOptions o;
    o.path = std::string(WB_BUILD_DIR) + "/warmbox-agent";
    o.argv = {"warmbox-agent", "--port-fd", "3", "--hostname", "vmbox"};
    o.fds = {{guest.get(), 3}};
    o.pdeath_signal = SIGKILL;
    auto c = ChildProcess::Spawn(o);
    if (!c.ok()) return false;
    child_ = std::move(*c);
    return true;
  }
  ~PortAgent() { child_.KillAndReap(); }
  UniqueFd& host() { return host_; }
  pid_t pid() const { return child_.pid(); }

 private:
  UniqueFd host_;
  ChildProcess child_;
};

// The test as the host: raw frames on the port.
class PortMuxTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(agent_.Start()); }
  int fd() { return agent_.host().get(); }

  void Raw(const std::string& bytes) { ASSERT_TRUE(WriteAll(fd(), bytes).ok()); }
  void Send(FrameType t, std::string_view payload = "") { Raw(proto::EncodeFrame(t, payload)); }
  // Inner frame t on channel ch.
  void SendOn(uint32_t ch, FrameType t, std::string_view payload = "") {
    std::string out;
    proto::AppendChannelData(out, ch, proto::EncodeFrame(t, payload));
    Raw(out);
  }
  void Close(uint32_t ch) {
    std::string out;
    proto::AppendChannelClose(out, ch);
    Raw(out);
  }
  void Grant(uint32_t ch, uint32_t n) {
    std::string out;
    proto::AppendGrant(out, ch, n);
    Raw(out);
  }
  // The next port frame (nullopt after ms).
  std::optional<Frame> NextPort(int ms = 10000) {
    for (;;) {
      if (auto f = dec_.Next()) return f;
      pollfd p{fd(), POLLIN, 0};
      if (::poll(&p, 1, ms) != 1) return std::nullopt;
      char buf[65536];
      ssize_t n = ::read(fd(), buf, sizeof buf);
      if (n <= 0) return std::nullopt;
      dec_.Feed(std::string_view(buf, static_cast<size_t>(n)));
      EXPECT_EQ(dec_.TakeSkipped(), 0u);
    }
  }
  // Reads port frames, demultiplexing channels, until pred holds (or ms).
  template <typename Pred>
  bool Until(Pred pred, int ms = 10000) {
    while (!pred()) {
      auto f = NextPort(ms);
      if (!f) return false;
      Take(*f);
    }
    return true;
  }
  void Take(const Frame& f) {
    if (f.type == FrameType::kChannelData || f.type == FrameType::kChannelClose ||
        f.type == FrameType::kChannelGrant) {
      auto p = proto::ParseChannelPayload(f.type, f.payload);
      ASSERT_OK(p);
      Chan& c = chans_[p->channel];
      if (f.type == FrameType::kChannelData) {
        c.bytes += p->rest.size();
        ASSERT_TRUE(c.dec.Feed(p->rest).ok());
        while (auto in = c.dec.Next()) c.frames.push_back(std::move(*in));
      } else if (f.type == FrameType::kChannelClose) {
        c.closed = true;
      } else {
        c.granted += proto::GrantCount(*p);
      }
    } else {
      main_.push_back(f);
    }
  }
  struct Chan {
    proto::FrameDecoder dec;
    std::vector<Frame> frames;
    uint64_t bytes = 0, granted = 0;
    bool closed = false;
    bool Has(FrameType t) const {
      for (const auto& f : frames)
        if (f.type == t) return true;
      return false;
    }
    std::string Out() const {
      std::string o;
      for (const auto& f : frames)
        if (f.type == FrameType::kStdout) o += f.payload;
      return o;
    }
  };
  static std::string Exec(const std::string& script, bool keep = false, bool stdin = false) {
    proto::ExecRequest r;
    r.argv = {"/bin/sh", "-c", script};
    r.keep = keep;
    r.stdin = stdin;
    return proto::ToJson(r);
  }

  PortAgent agent_;
  // The port's own stream: a q may follow padding (proto/mux.h).
  proto::PortDecoder dec_{proto::PortDecoder::Sender::kAgent};
  std::map<uint32_t, Chan> chans_;
  std::vector<Frame> main_;
};

TEST_F(PortMuxTest, ResetIsAnswered) {
  Send(FrameType::kMuxReset);
  auto q = NextPort();
  ASSERT_TRUE(q);
  EXPECT_EQ(q->type, FrameType::kMuxResetDone);
  // The plain exchange goes on beside channels.
  Send(FrameType::kHeartbeat);
  auto h = NextPort();
  ASSERT_TRUE(h);
  EXPECT_EQ(h->type, FrameType::kHeartbeatReply);
}

TEST_F(PortMuxTest, TwoChannelsRunConcurrently) {
  Send(FrameType::kMuxReset);
  // Channel 1 waits for channel 2's file: they must run at once.
  const std::string flag = "/tmp/wb-mux-flag-" + std::to_string(::getpid());
  ::unlink(flag.c_str());
  SendOn(1, FrameType::kExec,
         Exec("while [ ! -e " + flag + " ]; do sleep 0.01; done; echo one; exit 3"));
  SendOn(2, FrameType::kExec, Exec("echo two; touch " + flag));
  ASSERT_TRUE(Until([&] { return chans_[1].closed && chans_[2].closed; }));
  ::unlink(flag.c_str());
  EXPECT_EQ(chans_[1].Out(), "one\n");
  EXPECT_EQ(chans_[2].Out(), "two\n");
  ASSERT_TRUE(chans_[1].Has(FrameType::kExit));
  EXPECT_NE(chans_[1].frames.back().payload.find("\"exit_code\":3"), std::string::npos);
  ASSERT_EQ(main_.size(), 1u);
  EXPECT_EQ(main_[0].type, FrameType::kMuxResetDone);
}

TEST_F(PortMuxTest, HostCloseIsAHangUp) {
  Send(FrameType::kMuxReset);
  // A pool run on a channel: the host's Z kills it, as a socket's EOF does.
  SendOn(1, FrameType::kExec, Exec("echo $$; exec sleep 100"));
  ASSERT_TRUE(Until([&] { return chans_[1].Out().find('\n') != std::string::npos; }));
  pid_t pid = std::stoi(chans_[1].Out());
  Close(1);
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = ::kill(pid, 0) != 0;
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone) << "the command outlived its channel";
  // No Z answers a Z; a late Y of the closed channel is dropped (no new
  // channel 1), and channels below the highest are not reopened.
  SendOn(1, FrameType::kList);
  SendOn(3, FrameType::kList);
  ASSERT_TRUE(Until([&] { return chans_[3].closed; }));
  EXPECT_TRUE(chans_[3].Has(FrameType::kListReply));
  EXPECT_FALSE(chans_[1].closed);
  EXPECT_FALSE(chans_[1].Has(FrameType::kListReply));
}

TEST_F(PortMuxTest, KeptProcessOutlivesItsChannelAndIsReattached) {
  Send(FrameType::kMuxReset);
  SendOn(1, FrameType::kExec, Exec("echo first; read x; echo got $x", true, true));
  ASSERT_TRUE(Until([&] { return chans_[1].Out() == "first\n"; }));
  auto st = proto::ParseStarted(chans_[1].frames.at(0).payload);
  ASSERT_OK(st);
  Close(1);
  // Another channel attaches from offset 0, feeds stdin, sees the exit.
  SendOn(2, FrameType::kAttach, proto::ToJson(proto::AttachRequest{st->pid, 0}));
  SendOn(2, FrameType::kStdin, "more\n");
  ASSERT_TRUE(Until([&] { return chans_[2].closed; }));
  EXPECT_EQ(chans_[2].Out(), "first\ngot more\n");
  EXPECT_TRUE(chans_[2].Has(FrameType::kExit));
}

TEST_F(PortMuxTest, ClaimOnThePortItselfAndLiveFramesRefusedThere) {
  Send(FrameType::kClaim, R"({"env":["A=1"],"persist":false})");
  auto m = NextPort();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, FrameType::kClaimReply);
  Send(FrameType::kList);
  auto f = NextPort();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, FrameType::kFailure);
  // The port goes on, and the claim's env reaches a channel's command.
  SendOn(1, FrameType::kExec, Exec("echo $A"));
  ASSERT_TRUE(Until([&] { return chans_[1].closed; }));
  EXPECT_EQ(chans_[1].Out(), "1\n");
}

TEST_F(PortMuxTest, OutputStopsAtTheWindowUntilGranted) {
  Send(FrameType::kMuxReset);
  SendOn(1, FrameType::kExec, Exec("head -c 1000000 /dev/zero"));
  // Without grants the agent sends at most the window of channel bytes.
  while (auto f = NextPort(500)) Take(*f);
  EXPECT_LE(chans_[1].bytes, proto::kChannelWindow);
  EXPECT_GE(chans_[1].bytes, proto::kChannelWindow - 64);
  EXPECT_FALSE(chans_[1].closed);
  // Granting as it is consumed lets everything through.
  uint64_t granted = chans_[1].bytes;
  Grant(1, static_cast<uint32_t>(granted));
  ASSERT_TRUE(Until([&] {
    if (chans_[1].bytes > granted) {
      Grant(1, static_cast<uint32_t>(chans_[1].bytes - granted));
      granted = chans_[1].bytes;
    }
    return chans_[1].closed;
  }));
  EXPECT_EQ(chans_[1].Out().size(), 1000000u);
  EXPECT_TRUE(chans_[1].Has(FrameType::kExit));
}

TEST_F(PortMuxTest, InputIsGrantedAsItIsConsumed) {
  Send(FrameType::kMuxReset);
  const std::string e = Exec("wc -c", false, true);
  SendOn(1, FrameType::kExec, e);
  // 1 MiB of stdin in 60 KB frames, each sent only within credit.
  uint64_t credit = proto::kChannelWindow - proto::EncodeFrame(FrameType::kExec, e).size();
  uint64_t sent = 0;
  const std::string chunk(60000, 'x');
  std::string frame = proto::EncodeFrame(FrameType::kStdin, chunk);
  while (sent < (1u << 20)) {
    while (credit < frame.size()) {
      auto f = NextPort();
      ASSERT_TRUE(f) << "no grant within 10 s";
      Take(*f);
      credit += chans_[1].granted;
      chans_[1].granted = 0;
    }
    std::string out;
    proto::AppendChannelData(out, 1, frame);
    Raw(out);
    credit -= frame.size();
    sent += chunk.size();
  }
  SendOn(1, FrameType::kStdinClose);
  ASSERT_TRUE(Until([&] { return chans_[1].closed; }));
  EXPECT_EQ(chans_[1].Out(), std::to_string(sent) + "\n");
}

TEST_F(PortMuxTest, ResetHangsUpEveryChannel) {
  Send(FrameType::kMuxReset);
  SendOn(5, FrameType::kExec, Exec("echo $$; exec sleep 100"));
  ASSERT_TRUE(Until([&] { return chans_[5].Out().find('\n') != std::string::npos; }));
  pid_t pid = std::stoi(chans_[5].Out());
  Send(FrameType::kMuxReset);
  ASSERT_TRUE(Until([&] { return main_.size() == 2; }));
  EXPECT_EQ(main_[1].type, FrameType::kMuxResetDone);
  EXPECT_FALSE(chans_[5].closed);  // no Z to a host that is gone
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = ::kill(pid, 0) != 0;
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone);
  // After a reset, numbering starts again.
  SendOn(1, FrameType::kList);
  ASSERT_TRUE(Until([&] { return chans_[1].closed; }));
}

TEST_F(PortMuxTest, ANewHostResyncsAfterAHalfWrittenFrame) {
  // A host (a daemon's bridge) dies in the middle of a Y; the next host's
  // bytes follow in the same stream (the agent did not see the hang-up in
  // between). Its padding completes or skips the half frame, its Q is read
  // in step, and the agent's q (after padding of its own) echoes the nonce.
  Send(FrameType::kMuxReset, "n1");
  ASSERT_TRUE(Until([&] { return main_.size() == 1; }));
  EXPECT_EQ(main_[0].payload, "n1");
  SendOn(1, FrameType::kExec, Exec("echo $$; exec sleep 100"));
  ASSERT_TRUE(Until([&] { return chans_[1].Out().find('\n') != std::string::npos; }));
  pid_t pid = std::stoi(chans_[1].Out());
  std::string half;
  proto::AppendChannelData(half, 1, std::string(60000, 'x'));
  Raw(half.substr(0, 1000));
  std::string hello;
  proto::AppendReset(hello, FrameType::kMuxReset, "n2", proto::kSyncPadBytes);
  Raw(hello);
  ASSERT_TRUE(Until([&] { return main_.size() >= 2 && main_.back().payload == "n2"; }));
  EXPECT_EQ(main_.back().type, FrameType::kMuxResetDone);
  // The old host's channel was hung up: its command is gone.
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = ::kill(pid, 0) != 0;
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone);
  // The new host's channels start again at 1 and work.
  chans_.clear();
  SendOn(1, FrameType::kExec, Exec("echo again"));
  ASSERT_TRUE(Until([&] { return chans_[1].closed; }));
  EXPECT_EQ(chans_[1].Out(), "again\n");
}

TEST_F(PortMuxTest, TheHostsHangUpEndsItsChannels) {
  // Once the port carries channels, its host hanging up (read 0: no host
  // connected, as when a daemon is killed) hangs up every channel at once.
  Send(FrameType::kMuxReset);
  SendOn(1, FrameType::kExec, Exec("echo $$; exec sleep 100"));
  ASSERT_TRUE(Until([&] { return chans_[1].Out().find('\n') != std::string::npos; }));
  pid_t pid = std::stoi(chans_[1].Out());
  ASSERT_EQ(::shutdown(fd(), SHUT_WR), 0);
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = ::kill(pid, 0) != 0;
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone) << "a channel's command outlived the port's host";
}

TEST_F(PortMuxTest, BadChannelFramesAreAnsweredAndThePortGoesOn) {
  Send(FrameType::kChannelData, std::string("\0\0", 2));
  auto f = NextPort();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, FrameType::kFailure);
  // Garbage inside a channel ends that channel only.
  std::string out;
  proto::AppendChannelData(out, 1, "\x01garbage");
  Raw(out);
  ASSERT_TRUE(Until([&] { return chans_[1].closed; }));
  EXPECT_TRUE(chans_[1].Has(FrameType::kFailure));
  // A channel frame inside a channel is refused there.
  std::string inner;
  proto::AppendChannelClose(inner, 9);
  out.clear();
  proto::AppendChannelData(out, 2, inner);
  Raw(out);
  ASSERT_TRUE(Until([&] { return chans_[2].closed; }));
  EXPECT_TRUE(chans_[2].Has(FrameType::kFailure));
  Send(FrameType::kHeartbeat);
  ASSERT_TRUE(
      Until([&] { return !main_.empty() && main_.back().type == FrameType::kHeartbeatReply; }));
}

// --- through the host's bridge ----------------------------------------------------

class BridgeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.Start());
    char tmpl[] = "/tmp/wb-bridge-test-XXXXXX";
    ASSERT_TRUE(::mkdtemp(tmpl));
    dir_ = tmpl;
    auto b = vm::MuxBridge::Start(std::move(agent_.host()), dir_ + "/live.sock", 10000);
    ASSERT_OK(b);
    bridge_ = std::move(*b);
  }
  void TearDown() override {
    bridge_.reset();
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }
  std::string sock() const { return dir_ + "/live.sock"; }
  static proto::ExecRequest Sh(const std::string& script, bool keep = false, bool stdin = false) {
    proto::ExecRequest r;
    r.argv = {"/bin/sh", "-c", script};
    r.keep = keep;
    r.stdin = stdin;
    return r;
  }

  PortAgent agent_;
  std::string dir_;
  std::unique_ptr<vm::MuxBridge> bridge_;
};

TEST_F(BridgeTest, ExecPerConnection) {
  live_test::Wire w(sock());
  ASSERT_TRUE(w.ok());
  w.Send(FrameType::kExec, proto::ToJson(Sh("echo hi; echo err >&2; exit 7")));
  auto o = w.UntilExit();
  EXPECT_EQ(o.out, "hi\n");
  EXPECT_EQ(o.err, "err\n");
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 7);
  EXPECT_TRUE(w.ClosedByAgent());
  // The next connection is a new channel.
  live_test::Wire w2(sock());
  w2.Send(FrameType::kExec, proto::ToJson(Sh("echo $HOSTNAME")));
  EXPECT_EQ(w2.UntilExit().out, "vmbox\n");
}

TEST_F(BridgeTest, KeptProcessSurvivesItsClientAndIsReattached) {
  int64_t pid = 0;
  {
    live_test::Wire w(sock());
    w.Send(FrameType::kExec, proto::ToJson(Sh("echo started; while :; do sleep 0.05; done", true)));
    auto s = w.Expect(FrameType::kStarted);
    ASSERT_TRUE(s) << w.last_unexpected();
    pid = proto::ParseStarted(*s)->pid;
    ASSERT_TRUE(w.UntilOutput("started\n"));
  }  // hang-up
  live_test::Wire l(sock());
  l.Send(FrameType::kList);
  auto p = l.Expect(FrameType::kListReply);
  ASSERT_TRUE(p) << l.last_unexpected();
  auto list = proto::ParseProcessList(*p);
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_TRUE((*list)[0].running);
  live_test::Wire a(sock());
  a.Send(FrameType::kAttach, proto::ToJson(proto::AttachRequest{pid, 0}));
  ASSERT_TRUE(a.Expect(FrameType::kStarted)) << a.last_unexpected();
  ASSERT_TRUE(a.UntilOutput("started\n"));
  live_test::Wire k(sock());
  k.Send(FrameType::kSignal, proto::ToJson(proto::SignalRequest{pid, SIGKILL}));
  ASSERT_TRUE(k.Expect(FrameType::kSignalReply)) << k.last_unexpected();
  auto x = a.UntilExit();
  ASSERT_TRUE(x.exit);
  EXPECT_EQ(x.exit->signal, SIGKILL);
}

TEST_F(BridgeTest, FilesRoundTripBothWays) {
  const std::string path = dir_ + "/up.bin";
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 131 + (i >> 13));
  {
    live_test::Wire w(sock());
    proto::FileRequest r;
    r.op = "write";
    r.path = path;
    w.Send(FrameType::kFile, proto::ToJson(r));
    for (size_t off = 0; off < data.size(); off += 60000)
      w.Send(FrameType::kStdin, std::string_view(data).substr(off, 60000));
    w.Send(FrameType::kStdinClose);
    auto st = w.Expect(FrameType::kFileReply, 30000);
    ASSERT_TRUE(st) << w.last_unexpected();
    EXPECT_EQ(proto::ParseFileStat(*st)->size, data.size());
  }
  live_test::Wire w(sock());
  proto::FileRequest r;
  r.op = "read";
  r.path = path;
  w.Send(FrameType::kFile, proto::ToJson(r));
  ASSERT_TRUE(w.Expect(FrameType::kFileReply)) << w.last_unexpected();
  std::string back;
  while (auto f = w.Next(30000)) {
    if (f->type != FrameType::kStdout) {
      EXPECT_EQ(f->type, FrameType::kFileEnd);
      break;
    }
    back += f->payload;
  }
  EXPECT_TRUE(back == data) << back.size();
}

TEST_F(BridgeTest, AStalledChannelDoesNotHoldUpTheOthers) {
  // A kept process that never reads its stdin, fed 4 MiB from a thread:
  // its channel stalls at the credit window; others go on.
  live_test::Wire w(sock());
  w.Send(FrameType::kExec, proto::ToJson(Sh("sleep 100", true, true)));
  auto s = w.Expect(FrameType::kStarted);
  ASSERT_TRUE(s) << w.last_unexpected();
  int64_t pid = proto::ParseStarted(*s)->pid;
  ASSERT_OK(SetNonBlocking(w.fd()));
  const std::string frame = proto::EncodeFrame(FrameType::kStdin, std::string(60000, 'x'));
  size_t pushed = 0;
  for (int i = 0; i < 70; ++i) {
    ssize_t n = ::send(w.fd(), frame.data(), frame.size(), MSG_NOSIGNAL);
    if (n > 0) pushed += static_cast<size_t>(n);
    if (n < static_cast<ssize_t>(frame.size())) break;  // the bridge stopped reading it
  }
  EXPECT_LT(pushed, 4000000u) << "nothing pushed back";
  for (int i = 0; i < 3; ++i) {
    live_test::Wire e(sock());
    e.Send(FrameType::kExec, proto::ToJson(Sh("echo ok")));
    EXPECT_EQ(e.UntilExit(5000).out, "ok\n");
  }
  live_test::Wire k(sock());
  k.Send(FrameType::kSignal, proto::ToJson(proto::SignalRequest{pid, SIGKILL}));
  EXPECT_TRUE(k.Expect(FrameType::kSignalReply)) << k.last_unexpected();
}

TEST_F(BridgeTest, TunnelToAPortCarriesBytesBothWays) {
  // T in a channel, as the port proxy sends it to a vm sandbox: a service
  // on the guest's loopback (here the test's), 2 MiB each way, half-close.
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  const uint32_t port = l.port();
  const std::string data = live_test::Pattern(2 << 20);
  std::string service_got;
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    service_got = live_test::ReadToEof(c.get());
    (void)WriteAll(c.get(), std::string(service_got.rbegin(), service_got.rend()));
  });
  live_test::Wire w(sock());
  w.Send(FrameType::kTunnel, proto::ToJson(proto::TunnelRequest{port}));
  ASSERT_TRUE(w.Expect(FrameType::kTunnelReply)) << w.last_unexpected();
  for (size_t off = 0; off < data.size(); off += 60000)
    w.Send(FrameType::kStdin, std::string_view(data).substr(off, 60000));
  w.Send(FrameType::kStdinClose);
  std::string back;
  std::optional<Frame> end;
  while (auto f = w.Next(30000)) {
    if (f->type != FrameType::kStdout) {
      end = f;
      break;
    }
    back += f->payload;
  }
  service.join();
  EXPECT_TRUE(service_got == data) << service_got.size();
  EXPECT_TRUE(back == std::string(data.rbegin(), data.rend())) << back.size();
  ASSERT_TRUE(end);
  EXPECT_EQ(end->type, FrameType::kFileEnd);
  EXPECT_TRUE(w.ClosedByAgent());
}

TEST_F(BridgeTest, ANewBridgeResyncsAPortCutMidFrameBothWays) {
  // The bridge's daemon is killed: the agent's stream towards it and its own
  // towards the agent may both stop mid-frame. Here the old host (the test,
  // on a second agent) leaves the agent a half Y, and reads the agent's
  // stream only up to the middle of a frame; then a new bridge takes the
  // port over with resync.
  PortAgent agent;
  ASSERT_TRUE(agent.Start());
  int fd = agent.host().get();
  std::string out;
  proto::AppendReset(out, FrameType::kMuxReset, "old", 0);
  // A kept process whose output fills the channel's window.
  proto::AppendChannelData(
      out, 1,
      proto::EncodeFrame(FrameType::kExec,
                         proto::ToJson(Sh("echo started; head -c 1000000 /dev/zero", true))));
  ASSERT_OK(WriteAll(fd, out));
  std::string seen;
  char buf[4096];
  while (seen.size() < 100000) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1) << "the agent sent " << seen.size() << " bytes";
    ssize_t n = ::read(fd, buf, 1000 + seen.size() % 777);  // ends mid-frame
    ASSERT_GT(n, 0);
    seen.append(buf, static_cast<size_t>(n));
  }
  std::string half;
  proto::AppendChannelData(half, 1, std::string(50000, 'y'));
  ASSERT_OK(WriteAll(fd, half.substr(0, 777)));
  const std::string sock2 = dir_ + "/live2.sock";
  auto b = vm::MuxBridge::Start(std::move(agent.host()), sock2, 10000, /*resync=*/true);
  ASSERT_OK(b);
  live_test::Wire w(sock2);
  w.Send(FrameType::kExec, proto::ToJson(Sh("echo fresh")));
  EXPECT_EQ(w.UntilExit().out, "fresh\n");
  // The kept process outlived the old host's channel; a new one lists it.
  live_test::Wire l(sock2);
  l.Send(FrameType::kList);
  auto p = l.Expect(FrameType::kListReply);
  ASSERT_TRUE(p) << l.last_unexpected();
  auto list = proto::ParseProcessList(*p);
  ASSERT_OK(list);
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(BridgeTest, TheBridgeEndsWithThePort) {
  EXPECT_TRUE(bridge_->alive());
  ::kill(agent_.pid(), SIGKILL);
  for (int i = 0; i < 500 && bridge_->alive(); ++i) ::usleep(10000);
  EXPECT_FALSE(bridge_->alive());
  EXPECT_FALSE(ConnectUnix(sock()).ok());
}

}  // namespace
}  // namespace wb
