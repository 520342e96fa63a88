// Tests of warmbox-agent's exec server, run as a plain process (no
// namespaces, no root): the agent makes itself the subreaper of its orphans,
// so the reaper behaves as it does as PID 1.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "proto/agent_proto.h"
#include "sandbox/agent_client.h"
#include "tests/assert_ok.h"

namespace wb {
namespace {

using proto::ExecRequest;

// Children of pid (all threads), from procfs.
std::set<pid_t> ChildrenOf(pid_t pid) {
  std::set<pid_t> out;
  auto text =
      ReadFile("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  if (!text.ok()) return out;
  for (const auto& tok : Split(*text, ' ')) {
    auto v = ParseUint(tok, "pid");
    if (v.ok()) out.insert(static_cast<pid_t>(*v));
  }
  return out;
}

// Waits (bounded) until pred holds; returns whether it did.
template <typename Pred>
bool Eventually(Pred pred, int ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::yield();
  }
  return pred();
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wb-agent-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/agent.sock";
    UniqueFd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(l.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_.c_str());
    ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(l.get(), 16), 0);
    SpawnOptions o;
    o.path = std::string(WB_BUILD_DIR) + "/warmbox-agent";
    o.argv = {"warmbox-agent", "--listen-fd", "3", "--hostname", "testbox"};
    o.fds = {{l.get(), 3}};
    o.pdeath_signal = SIGKILL;
    auto c = ChildProcess::Spawn(o);
    ASSERT_OK(c);
    agent_ = std::move(*c);
    ASSERT_TRUE(WaitAgentReady(ep(), 1000, 10000).ok());
  }
  void TearDown() override {
    agent_.KillAndReap();
    (void)RemoveTree(dir_);
  }
  AgentEndpoint ep() const { return AgentEndpoint{sock_, agent_.pidfd()}; }

  ExecOutcome Run(const ExecRequest& req, ExecIo io = {}) {
    auto r = AgentExec(ep(), req, io);
    EXPECT_OK(r);
    return r.ok() ? std::move(*r) : ExecOutcome{};
  }
  // Starts `sleep 100` on a new connection and returns once it runs: frames
  // are handled in order, so the heartbeat's reply after the request proves
  // the command started.
  void StartSleeper(UniqueFd& out) {
    auto fd = ConnectUnix(sock_);
    ASSERT_TRUE(fd.ok());
    ExecRequest req;
    req.argv = {"/bin/sh", "-c", "sleep 100"};
    std::string msg = proto::EncodeFrame(proto::FrameType::kExec, proto::ToJson(req)) +
                      proto::EncodeFrame(proto::FrameType::kHeartbeat, "");
    ASSERT_TRUE(WriteAll(fd->get(), msg).ok());
    char hdr[proto::kHeaderSize];
    ASSERT_EQ(::recv(fd->get(), hdr, sizeof hdr, MSG_WAITALL), static_cast<ssize_t>(sizeof hdr));
    ASSERT_EQ(hdr[0], 'h');
    out = std::move(*fd);
  }

  ExecOutcome Sh(const std::string& script) {
    ExecRequest req;
    req.argv = {"/bin/sh", "-c", script};
    return Run(req);
  }

  std::string dir_, sock_;
  ChildProcess agent_;
};

TEST_F(AgentTest, ExitCodes) {
  EXPECT_EQ(Sh("exit 0").exit.exit_code, 0);
  EXPECT_EQ(Sh("exit 1").exit.exit_code, 1);
  EXPECT_EQ(Sh("exit 7").exit.exit_code, 7);
  auto killed = Sh("kill -9 $$");
  EXPECT_EQ(killed.exit.exit_code, 137);
  EXPECT_EQ(killed.exit.signal, 9);
  EXPECT_FALSE(killed.exit.timed_out);
}

TEST_F(AgentTest, MissingProgramIs127WithMessage) {
  ExecRequest req;
  req.argv = {"no-such-program-xyz"};
  auto out = Run(req);
  EXPECT_EQ(out.exit.exit_code, 127);
  EXPECT_NE(out.exit.error.find("no-such-program-xyz"), std::string::npos);
  EXPECT_NE(out.stderr_data.find("not found"), std::string::npos) << out.stderr_data;

  req.argv = {"/no/such/path"};
  out = Run(req);
  EXPECT_EQ(out.exit.exit_code, 127);
  EXPECT_NE(out.stderr_data.find("/no/such/path"), std::string::npos);
}

TEST_F(AgentTest, BadCwdIs127AndNamesTheDir) {
  ExecRequest req;
  req.argv = {"/bin/true"};
  req.cwd = "/no/such/dir";
  auto out = Run(req);
  EXPECT_EQ(out.exit.exit_code, 127);
  EXPECT_NE(out.exit.error.find("/no/such/dir"), std::string::npos) << out.exit.error;
}

// The regression of the upstream reaper: a reaper that reaps every child
// must never take the exit status from the exec handler.
TEST_F(AgentTest, FalseReportsOneWhileOrphansAreReaped) {
  for (int i = 0; i < 20; ++i) {
    auto out = Sh("(true &) ; sh -c 'true &' ; false");
    ASSERT_EQ(out.exit.exit_code, 1) << "iteration " << i;
  }
}

TEST_F(AgentTest, TimeoutKillsTheWholeGroupWith137) {
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "sleep 100 & sleep 100"};
  req.timeout_ms = 300;
  auto out = Run(req);
  EXPECT_EQ(out.exit.exit_code, 137);
  EXPECT_TRUE(out.exit.timed_out);
  EXPECT_NE(out.stderr_data.find("timed out after 0.300s"), std::string::npos) << out.stderr_data;
  EXPECT_TRUE(Eventually([&] { return ChildrenOf(agent_.pid()).empty(); }))
      << "processes of the timed-out command survived";
}

TEST_F(AgentTest, OneMebibyteOfStdoutIsByteExact) {
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "head -c 1048576 /dev/urandom | tee /dev/stderr"};
  auto out = Run(req);
  EXPECT_EQ(out.exit.exit_code, 0);
  ASSERT_EQ(out.stdout_data.size(), 1048576u);
  EXPECT_EQ(out.stdout_data, out.stderr_data);  // same bytes through both pipes
  EXPECT_FALSE(out.exit.stdout_truncated);
}

TEST_F(AgentTest, TwentyMebibytesAreCappedWithTruncationFlag) {
  ExecRequest req;
  // A recognisable pattern so the kept prefix can be checked byte for byte.
  req.argv = {"/bin/sh", "-c", "yes 0123456789abcdef | head -c 20971520"};
  auto out = Run(req);
  EXPECT_EQ(out.exit.exit_code, 0);
  ASSERT_EQ(out.stdout_data.size(), proto::kDefaultOutputCap);
  EXPECT_TRUE(out.exit.stdout_truncated);
  EXPECT_FALSE(out.exit.stderr_truncated);
  std::string line = "0123456789abcdef\n";
  for (size_t i = 0; i < out.stdout_data.size(); i += 4096) {
    ASSERT_EQ(out.stdout_data[i], line[i % line.size()]) << "at byte " << i;
  }

  req.output_cap = 100;
  out = Run(req);
  EXPECT_EQ(out.stdout_data.size(), 100u);
  EXPECT_TRUE(out.exit.stdout_truncated);
}

TEST_F(AgentTest, BinaryOutputAndSeparateStreams) {
  auto out = Sh("printf 'a\\000b\\377c'; printf 'E\\000R' >&2");
  EXPECT_EQ(out.stdout_data, std::string("a\0b\xff"
                                         "c",
                                         5));
  EXPECT_EQ(out.stderr_data, std::string("E\0R", 3));
}

TEST_F(AgentTest, StdinIsDelivered) {
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "cat; echo end"};
  ExecIo io;
  io.has_stdin_data = true;
  io.stdin_data = std::string("in\0put", 6);
  auto out = Run(req, io);
  EXPECT_EQ(out.stdout_data, std::string("in\0put", 6) + "end\n");

  // More than every pipe buffer on the way, while output flows back.
  ExecIo big;
  big.has_stdin_data = true;
  big.stdin_data.assign(5 << 20, 'x');
  req.argv = {"/bin/cat"};
  out = Run(req, big);
  EXPECT_EQ(out.stdout_data.size(), size_t{5} << 20);
  EXPECT_EQ(out.stdout_data, big.stdin_data);
}

// The command exits without reading its stdin: the agent reports the exit
// and closes while the host is still sending. That is a normal end, not an
// error (the regression: a broken pipe on send failed the run).
TEST_F(AgentTest, UnreadStdinIsNotAnError) {
  for (int i = 0; i < 20; ++i) {
    ExecRequest req;
    req.argv = {"/bin/true"};
    ExecIo io;
    io.has_stdin_data = true;
    io.stdin_data.assign(4 << 20, 'x');
    auto out = Run(req, io);
    ASSERT_EQ(out.exit.exit_code, 0) << "iteration " << i;
  }
}

TEST_F(AgentTest, NoStdinMeansEof) {
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "cat; echo ok"};
  EXPECT_EQ(Run(req).stdout_data, "ok\n");
}

// Issue 19, finding 9: commands inherited the agent's listening socket (fd 3)
// and could answer the host's heartbeats. A command starts with its stdio
// only, whatever the agent holds (here its listening socket and a second
// connection with a command running on it).
TEST_F(AgentTest, CommandsStartWithOnlyTheirStdio) {
  UniqueFd other;
  StartSleeper(other);
  ASSERT_TRUE(other.valid());
  // ls runs in a child: it lists the shell's fds, not its own.
  auto r = Sh("ls /proc/$$/fd");
  EXPECT_EQ(r.exit.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "0\n1\n2\n");
}

TEST_F(AgentTest, EnvAndCwdApplied) {
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "echo \"$FOO|$HOSTNAME|$PWD\"; pwd"};
  req.env = {"FOO=bar baz"};
  req.cwd = "/tmp";
  auto out = Run(req);
  EXPECT_EQ(out.stdout_data, "bar baz|testbox|/tmp\n/tmp\n");
}

TEST_F(AgentTest, OrphansAreReaped) {
  // The background `true` outlives its parent shell and is reparented to the
  // agent; it must not stay a zombie.
  auto out = Sh("sh -c 'true & echo $!'");
  ASSERT_EQ(out.exit.exit_code, 0);
  auto pid = ParseUint(Trim(out.stdout_data), "pid");
  ASSERT_TRUE(pid.ok()) << out.stdout_data;
  EXPECT_TRUE(Eventually([&] { return !PathExists("/proc/" + std::to_string(*pid)); }))
      << "orphan " << *pid << " was not reaped";
}

TEST_F(AgentTest, HangingUpKillsTheCommand) {
  UniqueFd fd;
  ASSERT_NO_FATAL_FAILURE(StartSleeper(fd));
  EXPECT_FALSE(ChildrenOf(agent_.pid()).empty());
  fd.reset();
  EXPECT_TRUE(Eventually([&] { return ChildrenOf(agent_.pid()).empty(); }))
      << "the command outlived its connection";
}

TEST_F(AgentTest, GarbageGetsAFailureFrame) {
  auto fd = ConnectUnix(sock_);
  ASSERT_TRUE(fd.ok());
  // Announces 4 GiB: must be refused without allocating it.
  ASSERT_TRUE(WriteAll(fd->get(), std::string("E\xff\xff\xff\xff", 5)).ok());
  std::string reply = ReadAll(fd->get()).value();
  ASSERT_GE(reply.size(), proto::kHeaderSize);
  EXPECT_EQ(reply[0], 'F');
  EXPECT_NE(reply.find("limit"), std::string::npos);
  // The agent still serves.
  EXPECT_TRUE(AgentHeartbeat(ep(), 2000).ok());
}

TEST_F(AgentTest, SigtermEndsCommandsAndTheAgent) {
  UniqueFd fd;
  ASSERT_NO_FATAL_FAILURE(StartSleeper(fd));
  ASSERT_TRUE(agent_.Signal(SIGTERM).ok());
  auto st = agent_.Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0);
  EXPECT_EQ(st->signal, 0);
}

TEST_F(AgentTest, ConcurrentExecs) {
  std::vector<std::thread> threads;
  std::vector<int> codes(8, -1);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      ExecRequest req;
      req.argv = {"/bin/sh", "-c", "exit " + std::to_string(i + 10)};
      ExecIo io;
      auto r = AgentExec(ep(), req, io);
      if (r.ok()) codes[i] = r->exit.exit_code;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(codes[i], i + 10);
}

}  // namespace
}  // namespace wb
