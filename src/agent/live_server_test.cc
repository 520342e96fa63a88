// Kept processes of live sandboxes (docs/protocol.md, "Kept processes"),
// against warmbox-agent run as a plain process.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "agent/live_test_util.h"
#include "tests/assert_ok.h"

namespace wb::live_test {
namespace {

using proto::ExecRequest;

class LiveAgentTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(agent_.Start()); }

  // E keep:true on a new connection; the pid from S (0 on failure).
  int64_t StartKept(Wire& w, ExecRequest req) {
    req.keep = true;
    w.Send(FrameType::kExec, proto::ToJson(req));
    auto s = w.Expect(FrameType::kStarted);
    EXPECT_TRUE(s) << w.last_unexpected();
    if (!s) return 0;
    auto st = proto::ParseStarted(*s);
    EXPECT_OK(st);
    EXPECT_EQ(st->offset, 0u);
    return st.ok() ? st->pid : 0;
  }
  static ExecRequest Sh(const std::string& script, bool stdin = false) {
    ExecRequest r;
    r.argv = {"/bin/sh", "-c", script};
    r.stdin = stdin;
    return r;
  }
  // A on a new connection; S's offset.
  std::optional<uint64_t> Attach(Wire& w, int64_t pid, int64_t from) {
    w.Send(FrameType::kAttach, proto::ToJson(proto::AttachRequest{pid, from}));
    auto s = w.Expect(FrameType::kStarted);
    EXPECT_TRUE(s) << w.last_unexpected();
    if (!s) return std::nullopt;
    auto st = proto::ParseStarted(*s);
    if (!st.ok()) return std::nullopt;
    EXPECT_EQ(st->pid, pid);
    return st->offset;
  }
  std::vector<proto::ProcessInfo> List() {
    Wire w(agent_.sock());
    w.Send(FrameType::kList);
    auto p = w.Expect(FrameType::kListReply);
    EXPECT_TRUE(p) << w.last_unexpected();
    if (!p) return {};
    auto l = proto::ParseProcessList(*p);
    EXPECT_OK(l);
    return l.ok() ? *l : std::vector<proto::ProcessInfo>{};
  }
  std::optional<proto::ProcessInfo> Info(int64_t pid) {
    for (auto& p : List()) {
      if (p.pid == pid) return p;
    }
    return std::nullopt;
  }
  // Polls P until pid has exited (bounded).
  bool WaitExited(int64_t pid, int ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto i = Info(pid);
      if (i && !i->running) return true;
    }
    return false;
  }
  // One exchange: frame t, the answer frame's type and payload.
  Frame Ask(FrameType t, const std::string& payload) {
    Wire w(agent_.sock());
    w.Send(t, payload);
    auto f = w.Next();
    return f ? *f : Frame{FrameType::kFailure, "no answer"};
  }

  TestAgent agent_;
};

// Whether a process named comm, a descendant of session leader `session`,
// is its terminal's foreground process group (pgrp == tpgid, procfs).
bool ForegroundInSession(const std::string& comm, int64_t session) {
  DIR* d = ::opendir("/proc");
  if (!d) return false;
  bool found = false;
  while (dirent* de = ::readdir(d)) {
    auto stat = ReadFile(std::string("/proc/") + de->d_name + "/stat");
    if (!stat.ok()) continue;
    size_t close = stat->rfind(')');
    size_t open = stat->find('(');
    if (close == std::string::npos || open == std::string::npos) continue;
    if (stat->substr(open + 1, close - open - 1) != comm) continue;
    // After ")": state ppid pgrp session tty_nr tpgid
    std::istringstream rest(stat->substr(close + 1));
    std::string state;
    int64_t ppid, pgrp, sid, tty, tpgid;
    if (!(rest >> state >> ppid >> pgrp >> sid >> tty >> tpgid)) continue;
    if (sid == session && pgrp == tpgid) found = true;
  }
  ::closedir(d);
  return found;
}

std::string Seq(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) s += std::to_string(i) + "\n";
  return s;
}

TEST_F(LiveAgentTest, KeptProcessSurvivesHangUpAndIsReattached) {
  int64_t pid;
  {
    Wire w(agent_.sock());
    pid = StartKept(w, Sh("echo first; read x; echo \"later $x\"", true));
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(w.UntilOutput("first\n"));
  }  // hang-up: a kept process goes on
  ASSERT_TRUE(Info(pid).has_value());
  Wire w2(agent_.sock());
  auto off = Attach(w2, pid, -1);
  ASSERT_TRUE(off);
  EXPECT_EQ(*off, 6u);  // "first\n" was before
  // Stdin from the attaching connection.
  w2.Send(FrameType::kStdin, "hi\n");
  auto o = w2.UntilExit();
  EXPECT_EQ(o.out, "later hi\n");
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 0);
  EXPECT_TRUE(w2.ClosedByAgent());
}

TEST_F(LiveAgentTest, AttachFromReplaysRetainedOutput) {
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, Sh("printf abcdef; printf XYZ >&2; read x; printf end", true));
  ASSERT_GT(pid, 0);
  std::string seen;
  ASSERT_TRUE(w.UntilOutput("XYZ", &seen));
  Wire w2(agent_.sock());
  auto off = Attach(w2, pid, 2);
  ASSERT_TRUE(off);
  EXPECT_EQ(*off, 2u);
  ASSERT_EQ(w2.Expect(FrameType::kStdout).value_or("?"), "cdef");
  ASSERT_EQ(w2.Expect(FrameType::kStderr).value_or("?"), "XYZ");
  w2.Send(FrameType::kStdin, "\n");
  auto o2 = w2.UntilExit();
  EXPECT_EQ(o2.out, "end");
  ASSERT_TRUE(o2.exit);
  // The starting connection sees the same end.
  auto o1 = w.UntilExit();
  EXPECT_EQ(o1.out, "end");
  ASSERT_TRUE(o1.exit);
}

TEST_F(LiveAgentTest, RingOverflowKeepsTheNewestBytes) {
  ExecRequest req = Sh("seq 1 3000");
  req.ring_bytes = 4096;
  int64_t pid;
  {
    Wire w(agent_.sock());
    pid = StartKept(w, req);
    ASSERT_GT(pid, 0);
  }  // nobody attached: the ring overwrites its oldest bytes
  ASSERT_TRUE(WaitExited(pid));
  std::string all = Seq(3000);
  Wire w(agent_.sock());
  auto off = Attach(w, pid, 0);
  ASSERT_TRUE(off);
  EXPECT_EQ(*off, all.size() - 4096);  // where the replay starts
  auto o = w.UntilExit();
  EXPECT_EQ(o.out, all.substr(all.size() - 4096));
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 0);
}

TEST_F(LiveAgentTest, AttachToExitedProcessGivesExitAtOnce) {
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, Sh("echo bye; exit 3"));
  auto o = w.UntilExit();
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 3);
  EXPECT_EQ(o.out, "bye\n");
  Wire w2(agent_.sock());
  auto off = Attach(w2, pid, -1);
  ASSERT_TRUE(off);
  EXPECT_EQ(*off, 4u);
  auto x = w2.Expect(FrameType::kExit);
  ASSERT_TRUE(x) << w2.last_unexpected();
  EXPECT_EQ(proto::ParseExecExit(*x)->exit_code, 3);
  // From 0: the replay, then X.
  Wire w3(agent_.sock());
  ASSERT_TRUE(Attach(w3, pid, 0));
  auto o3 = w3.UntilExit();
  EXPECT_EQ(o3.out, "bye\n");
  ASSERT_TRUE(o3.exit);
}

TEST_F(LiveAgentTest, AttachToUnknownPidIsNotFound) {
  Frame f = Ask(FrameType::kAttach, R"({"pid":999999})");
  ASSERT_EQ(f.type, FrameType::kOpError) << f.payload;
  EXPECT_EQ(proto::ParseOpError(f.payload)->code, "not_found");
}

TEST_F(LiveAgentTest, FiftyConcurrentKeptProcesses) {
  std::vector<std::unique_ptr<Wire>> wires;
  std::vector<int64_t> pids;
  for (int i = 0; i < 50; ++i) {
    wires.push_back(std::make_unique<Wire>(agent_.sock()));
    pids.push_back(StartKept(*wires.back(), Sh("read x; echo \"$x$x\"", true)));
    ASSERT_GT(pids.back(), 0);
  }
  int running = 0;
  for (const auto& p : List()) running += p.running ? 1 : 0;
  EXPECT_EQ(running, 50);
  for (int i = 0; i < 50; ++i) {
    wires[i]->Send(FrameType::kStdin, std::to_string(i) + "\n");
    wires[i]->Send(FrameType::kStdinClose);
  }
  for (int i = 0; i < 50; ++i) {
    auto o = wires[i]->UntilExit();
    EXPECT_EQ(o.out, std::to_string(i) + std::to_string(i) + "\n") << i;
    ASSERT_TRUE(o.exit) << i;
    EXPECT_EQ(o.exit->exit_code, 0);
  }
}

TEST_F(LiveAgentTest, TwoListenersBothSeeAllOutput) {
  Wire w1(agent_.sock());
  int64_t pid = StartKept(w1, Sh("read x; seq 1 20000", true));
  ASSERT_GT(pid, 0);
  Wire w2(agent_.sock());
  ASSERT_TRUE(Attach(w2, pid, 0));
  w1.Send(FrameType::kStdin, "\n");
  auto o1 = w1.UntilExit();
  auto o2 = w2.UntilExit();
  std::string want = Seq(20000);
  EXPECT_EQ(o1.out, want);
  EXPECT_EQ(o2.out, want);
  ASSERT_TRUE(o1.exit && o2.exit);
}

// A listener that reads slowly slows the process but loses nothing, even
// with a ring far smaller than the output.
TEST_F(LiveAgentTest, SlowListenerLosesNothing) {
  ExecRequest req = Sh("seq 1 300000");
  req.ring_bytes = 65536;
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, req);
  ASSERT_GT(pid, 0);
  auto first = w.Expect(FrameType::kStdout);
  ASSERT_TRUE(first) << w.last_unexpected();
  // Not synchronisation: a slow reader, so the socket and the ring fill.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto o = w.UntilExit();
  EXPECT_EQ(*first + o.out, Seq(300000));
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 0);
}

TEST_F(LiveAgentTest, The256LatestExitsAreRetained) {
  std::vector<int64_t> pids;
  for (int i = 0; i < 260; ++i) {
    Wire w(agent_.sock());
    pids.push_back(StartKept(w, Sh("exit " + std::to_string(i % 100))));
    ASSERT_GT(pids.back(), 0);
    ASSERT_TRUE(w.UntilExit().exit) << i;  // final: the exit is recorded
  }
  auto list = List();
  ASSERT_EQ(list.size(), 256u);
  EXPECT_EQ(list.front().pid, pids[4]);  // in start order, the oldest 4 gone
  EXPECT_EQ(list.back().pid, pids[259]);
  EXPECT_EQ(list.back().exit->exit_code, 59);
  EXPECT_EQ(Ask(FrameType::kAttach, proto::ToJson(proto::AttachRequest{pids[0], 0})).type,
            FrameType::kOpError);
  Wire w(agent_.sock());
  ASSERT_TRUE(Attach(w, pids[4], 0));
  EXPECT_EQ(w.UntilExit().exit->exit_code, 4);
}

TEST_F(LiveAgentTest, ListShowsProcessesAndSignalEndsThem) {
  ExecRequest req;
  req.argv = {"sleep", "100"};
  req.cwd = "/tmp";
  req.tag = "main";
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, req);
  ASSERT_GT(pid, 0);
  auto i = Info(pid);
  ASSERT_TRUE(i);
  EXPECT_EQ(i->argv, req.argv);
  EXPECT_EQ(i->cwd, "/tmp");
  EXPECT_EQ(i->user, "");
  EXPECT_EQ(i->tag, "main");
  EXPECT_FALSE(i->tty);
  EXPECT_TRUE(i->running);
  EXPECT_FALSE(i->exit);
  EXPECT_GT(i->started_ms, 1700000000000);

  Frame k = Ask(FrameType::kSignal, proto::ToJson(proto::SignalRequest{pid, 15}));
  EXPECT_EQ(k.type, FrameType::kSignalReply) << k.payload;
  EXPECT_EQ(k.payload, "{}");
  auto o = w.UntilExit();
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->signal, 15);
  EXPECT_EQ(o.exit->exit_code, 143);
  i = Info(pid);
  ASSERT_TRUE(i);
  EXPECT_FALSE(i->running);
  ASSERT_TRUE(i->exit);
  EXPECT_EQ(i->exit->signal, 15);

  Frame bad = Ask(FrameType::kSignal, R"({"pid":999999,"signal":9})");
  ASSERT_EQ(bad.type, FrameType::kOpError) << bad.payload;
  EXPECT_EQ(proto::ParseOpError(bad.payload)->code, "not_found");
  Frame exited = Ask(FrameType::kSignal, proto::ToJson(proto::SignalRequest{pid, 9}));
  ASSERT_EQ(exited.type, FrameType::kOpError);
  EXPECT_EQ(proto::ParseOpError(exited.payload)->code, "not_found");
  Frame garbage = Ask(FrameType::kSignal, R"({"pid":1,"signal":"KILL"})");
  ASSERT_EQ(garbage.type, FrameType::kOpError);
  EXPECT_EQ(proto::ParseOpError(garbage.payload)->code, "bad_request");
}

TEST_F(LiveAgentTest, ProgramThatCannotStartIsAnErrorNotAProcess) {
  Wire w(agent_.sock());
  ExecRequest req;
  req.argv = {"no-such-program-xyz"};
  req.keep = true;
  w.Send(FrameType::kExec, proto::ToJson(req));
  auto e = w.Expect(FrameType::kOpError);
  ASSERT_TRUE(e) << w.last_unexpected();
  EXPECT_EQ(proto::ParseOpError(*e)->code, "not_found");
  req.argv = {"/bin/true"};
  req.cwd = "/no/such/dir";
  Wire w2(agent_.sock());
  w2.Send(FrameType::kExec, proto::ToJson(req));
  e = w2.Expect(FrameType::kOpError);
  ASSERT_TRUE(e) << w2.last_unexpected();
  EXPECT_NE(proto::ParseOpError(*e)->message.find("/no/such/dir"), std::string::npos);
  EXPECT_TRUE(List().empty());
}

TEST_F(LiveAgentTest, ClaimEnvAppliesToLaterCommands) {
  Frame m = Ask(FrameType::kClaim, R"({"env":["CLAIMED=yes","OTHER=1"],"persist":true})");
  ASSERT_EQ(m.type, FrameType::kClaimReply) << m.payload;
  ExecRequest req = Sh("echo \"$CLAIMED $OTHER\"");
  ExecIo io;
  auto r = AgentExec(agent_.ep(), req, io);
  ASSERT_OK(r);
  EXPECT_EQ(r->stdout_data, "yes 1\n");
  req.env = {"CLAIMED=overridden"};
  Wire w(agent_.sock());
  ASSERT_GT(StartKept(w, req), 0);
  EXPECT_EQ(w.UntilExit().out, "overridden 1\n");
}

TEST_F(LiveAgentTest, UnexpectedFrameIsRefused) {
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, Sh("read x", true));
  w.Send(FrameType::kList);  // one operation per connection
  auto f = w.Expect(FrameType::kFailure);
  ASSERT_TRUE(f) << w.last_unexpected();
  EXPECT_TRUE(w.ClosedByAgent());
  EXPECT_TRUE(Info(pid)->running);  // kept
}

// --- terminals ----------------------------------------------------------------------

TEST_F(LiveAgentTest, TtyHasTheGivenSize) {
  ExecRequest req;
  req.argv = {"stty", "size"};
  req.tty = true;
  req.rows = 33;
  req.cols = 101;
  Wire w(agent_.sock());
  ASSERT_GT(StartKept(w, req), 0);
  auto o = w.UntilExit();
  EXPECT_EQ(o.out, "33 101\r\n");
  EXPECT_EQ(o.err, "");  // one stream
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 0);
  auto i = List();
  ASSERT_EQ(i.size(), 1u);
  EXPECT_TRUE(i[0].tty);
}

TEST_F(LiveAgentTest, TtyResizeIsSeenByLaterStty) {
  ExecRequest req = Sh("echo $TERM; stty size; read x; stty size");
  req.tty = true;
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, req);
  ASSERT_GT(pid, 0);
  std::string seen;
  ASSERT_TRUE(w.UntilOutput("24 80\r\n", &seen)) << seen;
  EXPECT_NE(seen.find("xterm\r\n"), std::string::npos) << seen;
  // From another connection attached to it.
  Wire w2(agent_.sock());
  ASSERT_TRUE(Attach(w2, pid, -1));
  w2.Send(FrameType::kResize, proto::ToJson(proto::ResizeRequest{50, 120}));
  w2.Send(FrameType::kStdin, "\n");
  auto o = w2.UntilExit();
  EXPECT_NE(o.out.find("50 120\r\n"), std::string::npos) << o.out;
  ASSERT_TRUE(o.exit);
}

TEST_F(LiveAgentTest, CtrlCInterruptsSleepInInteractiveShell) {
  ExecRequest req;
  req.argv = {"/bin/sh", "-i"};
  req.env = {"PS1=$ "};
  req.tty = true;
  Wire w(agent_.sock());
  int64_t pid = StartKept(w, req);
  ASSERT_GT(pid, 0);
  w.Send(FrameType::kStdin, "sleep 100\n");
  // ^C once sleep is the terminal's foreground job (before, it would
  // interrupt the shell, not the sleep).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!ForegroundInSession("sleep", pid) && std::chrono::steady_clock::now() < deadline) {
  }
  ASSERT_TRUE(ForegroundInSession("sleep", pid));
  std::string seen;
  w.Send(FrameType::kStdin, "\x03");
  // Well before sleep's 100 s: the shell takes commands again.
  w.Send(FrameType::kStdin, "echo done$((40+2))\n");
  seen.clear();
  ASSERT_TRUE(w.UntilOutput("done42", &seen, 20000)) << seen;
  w.Send(FrameType::kStdin, "exit 7\n");
  auto o = w.UntilExit();
  ASSERT_TRUE(o.exit);
  EXPECT_EQ(o.exit->exit_code, 7);
}

}  // namespace
}  // namespace wb::live_test
