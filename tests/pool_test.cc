// End-to-end tests of the warm-pool daemon with real sandboxes, mirroring the
// upstream's e2e test and going beyond it (hang-ups, garbage, drain, limits).
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "sandbox/agent_client.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/daemon_fixture.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using daemon::PoolClient;
using wb::testing::Eventually;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kPoolTest);

class PoolTest : public wb::testing::DaemonFixture {
 protected:
  PoolTest() : DaemonFixture("wb-pool-test", kBase) {}

  // A second image: a minimal tree with busybox and sh.
  void ImportSecondImage() {
    std::string src = state_ + "/second-src";
    ASSERT_TRUE(MkdirAll(src + "/bin").ok());
    {
      std::ifstream in("/bin/busybox", std::ios::binary);
      std::ofstream out(src + "/bin/busybox", std::ios::binary);
      out << in.rdbuf();
    }
    ASSERT_EQ(::chmod((src + "/bin/busybox").c_str(), 0755), 0);
    ASSERT_EQ(::symlink("busybox", (src + "/bin/sh").c_str()), 0);
    ASSERT_EQ(::symlink("busybox", (src + "/bin/cat").c_str()), 0);
    { std::ofstream(src + "/which") << "second\n"; }
    auto r = wb::testing::RunProcess(Cli({"image", "import-dir", "second", src}));
    ASSERT_EQ(r.code, 0) << r.err;
  }
};

TEST_F(PoolTest, UpstreamScenario) {
  ImportSecondImage();
  StartDaemon({"--size", "3", "--max", "6", "--warm", "second=2"});
  ASSERT_TRUE(IdleIs("busybox", 3)) << Log();
  ASSERT_TRUE(IdleIs("second", 2)) << Log();

  auto one = Run({"sh", "-c", "echo warm; exit 4"});
  EXPECT_EQ(one.exit_code, 4);
  EXPECT_EQ(one.stdout_data, "warm\n");
  EXPECT_FALSE(one.error);

  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      auto r = PoolClient(sock_).Run(
          proto::RunRequest{std::nullopt, {"sh", "-c", "echo " + std::to_string(i)}});
      if (r.ok() && r->exit_code == 0 && r->stdout_data == std::to_string(i) + "\n") ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 3);

  auto second = Run({"cat", "/which"}, "second");
  EXPECT_EQ(second.exit_code, 0) << (second.error ? *second.error : "");
  EXPECT_EQ(second.stdout_data, "second\n");

  auto st = PoolClient(sock_).Status();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->size(), 2u);
  EXPECT_EQ((*st)[0].image, "busybox");  // sorted
  EXPECT_EQ((*st)[1].image, "second");
  EXPECT_EQ((*st)[0].total_acquired, 4u);
  EXPECT_EQ((*st)[1].total_acquired, 1u);
  EXPECT_GE((*st)[0].total_created, 4u);
  // Pools refill to their targets after the runs.
  EXPECT_TRUE(IdleIs("busybox", 3));
  EXPECT_TRUE(IdleIs("second", 2));

  // The CLI's table and JSON.
  auto table = wb::testing::RunProcess(Cli({"pool", "status", "--socket", sock_}));
  EXPECT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("IMAGE"), std::string::npos);
  EXPECT_NE(table.out.find("HIT%"), std::string::npos);
  EXPECT_NE(table.out.find("second"), std::string::npos);
  auto json = wb::testing::RunProcess(Cli({"pool", "status", "--socket", sock_, "--json"}));
  EXPECT_EQ(json.code, 0);
  EXPECT_EQ(json.out.front(), '[');
}

TEST_F(PoolTest, CliRunIsByteExactWithExitCodesAndStdin) {
  StartDaemon({"--size", "1"});
  std::string input("a\0b\n", 4);
  auto r = wb::testing::RunProcess(
      Cli({"pool", "run", "--socket", sock_, "-e", "X=1", "-w", "/tmp", "--", "sh", "-c",
           "cat; printf '\\000\\377'; echo $X $(pwd) >&2; exit 9"}),
      {}, &input);
  EXPECT_EQ(r.code, 9);
  EXPECT_EQ(r.out, input + std::string("\0\xff", 2));
  EXPECT_EQ(r.err, "1 /tmp\n");
  auto t = wb::testing::RunProcess(
      Cli({"pool", "run", "--socket", sock_, "--timeout", "0.2", "--", "sleep", "10"}));
  EXPECT_EQ(t.code, 137);
  EXPECT_NE(t.err.find("timed out"), std::string::npos);
  auto missing = wb::testing::RunProcess(
      Cli({"pool", "run", "--socket", sock_, "--image", "nope", "--", "true"}));
  EXPECT_EQ(missing.code, 125);
  EXPECT_NE(missing.err.find("no such image"), std::string::npos);
  auto notfound =
      wb::testing::RunProcess(Cli({"pool", "run", "--socket", sock_, "--", "no-such-program"}));
  EXPECT_EQ(notfound.code, 127);
  // The same words as warmbox run's (cli_test), from the same agent.
  EXPECT_EQ(notfound.err, wb::testing::kMissingProgramStderr);
}

TEST_F(PoolTest, PerRunLimitsApplyToThePrebootedSandbox) {
  StartDaemon({"--size", "1"});
  ASSERT_TRUE(IdleIs("busybox", 1));
  proto::RunRequest r;
  r.cmd = {"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"};
  r.memory_bytes = 32u << 20;
  auto oom = PoolClient(sock_).Run(r);
  ASSERT_TRUE(oom.ok());
  EXPECT_EQ(oom->exit_code, 137);
  EXPECT_TRUE(oom->oom_killed);
  // Control: the daemon's default (512m) lets the same command through.
  r.memory_bytes.reset();
  auto fine = PoolClient(sock_).Run(r);
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ(fine->exit_code, 0);
  EXPECT_FALSE(fine->oom_killed);
  proto::RunRequest caps;
  caps.cmd = {"sh", "-c", "ulimit -n; echo 1234567890"};
  caps.nofile = 77;
  caps.output_cap = 7;
  auto c = PoolClient(sock_).Run(caps);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->stdout_data, "77\n1234");
  EXPECT_TRUE(c->stdout_truncated);
}

TEST_F(PoolTest, NoDaemonAndBadOptionsExit125) {
  auto r = wb::testing::RunProcess(Cli({"pool", "run", "--socket", sock_, "--", "true"}));
  EXPECT_EQ(r.code, 125);
  EXPECT_NE(r.err.find(sock_), std::string::npos);
  EXPECT_NE(r.err.find("warmbox pool start"), std::string::npos);
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  for (const Case& c : std::vector<Case>{
           {{"--size", "0"}, "--size must be greater than 0"},
           {{"--size", "5", "--max", "2"}, "--size (5) cannot exceed --max (2)"},
           {{"--warm", "img=0"}, "count must be > 0 (in 'img=0')"},
           {{"--warm", "=3"}, "missing image in '=3'"},
           {{"--warm", "img=x"}, "invalid warm count in 'img=x'"},
           {{"--driver", "xen"}, "--driver"},
       }) {
    std::vector<std::string> args = {"pool", "start", "--socket", sock_};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto s = wb::testing::RunProcess(Cli(args));
    EXPECT_EQ(s.code, 125) << c.needle;
    EXPECT_NE(s.err.find(c.needle), std::string::npos) << s.err;
  }
  EXPECT_FALSE(PathExists(sock_));
}

TEST_F(PoolTest, SocketIsPrivateAndSingleInstance) {
  // A stale socket file (nobody listening) is replaced.
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_.c_str());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  StartDaemon({"--size", "1"});
  struct stat st;
  ASSERT_EQ(::stat(sock_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = wb::testing::RunProcess(Cli({"pool", "start", "--socket", sock_}));
  EXPECT_EQ(second.code, 125);
  EXPECT_NE(second.err.find("already serving"), std::string::npos) << second.err;
  EXPECT_TRUE(PoolClient(sock_).Status().ok()) << "the first daemon must keep serving";
}

// Runs PoolClient::Status in a child with the given credentials.
bool StatusAs(const std::string& sock, uid_t uid, gid_t gid) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(2);
    }
    ::_exit(PoolClient(sock).Status().ok() ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

TEST_F(PoolTest, SocketGroupOpensTheSocketToItsMembersOnly) {
  ASSERT_EQ(::chmod(state_.c_str(), 0755), 0);  // let other uids reach the socket dir
  StartDaemon({"--size", "1", "--socket-group", "4242"});
  struct stat st;
  ASSERT_EQ(::stat(sock_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, 4242u);
  EXPECT_TRUE(StatusAs(sock_, 65534, 4242)) << "a member of the group may connect";
  EXPECT_FALSE(StatusAs(sock_, 65534, 65534)) << "others may not";
}

TEST_F(PoolTest, GarbageDoesNotDisturbARun) {
  StartDaemon({"--size", "1"});
  std::thread runner([&] {
    auto r = Run({"sh", "-c", "sleep 0.3; echo survived"});
    EXPECT_EQ(r.stdout_data, "survived\n");
    EXPECT_EQ(r.exit_code, 0);
  });
  PoolClient c(sock_);
  for (const char* bad :
       {"not json", "[]", R"({"op":"fly"})", R"({"op":"run"})", R"({"op":"run","cmd":[]})",
        R"({"op":"run","cmd":[1]})", R"({"op":"run","cmd":["x"],"image":5})"}) {
    auto body = c.RoundTrip(bad);
    ASSERT_TRUE(body.ok()) << bad;
    EXPECT_NE(body->find("\"exit_code\":-1"), std::string::npos) << *body;
    EXPECT_EQ(body->find("\"error\":null"), std::string::npos) << *body;
  }
  auto unknown = c.RoundTrip(R"({"op":"fly"})");
  EXPECT_NE(unknown->find("fly"), std::string::npos);
  // An announced 4 GiB request: refused before reading it.
  auto fd = ConnectUnix(sock_);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(WriteAll(fd->get(), std::string("\xff\xff\xff\xff", 4)).ok());
  std::string reply = ReadAll(fd->get()).value();
  EXPECT_NE(reply.find("limit"), std::string::npos) << reply;
  // A client that connects and sends nothing does not block anyone either.
  auto idle = ConnectUnix(sock_);
  ASSERT_TRUE(idle.ok());
  runner.join();
  EXPECT_TRUE(c.Status().ok());
}

TEST_F(PoolTest, ClientKilledMidRunFreesItsSlot) {
  StartDaemon({"--size", "1", "--max", "1"});
  ASSERT_TRUE(IdleIs("busybox", 1));
  SpawnOptions o;
  auto argv = Cli({"pool", "run", "--socket", sock_, "--", "sleep", "1000"});
  o.path = argv[0];
  o.argv = argv;
  auto client = ChildProcess::Spawn(o);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(Eventually([&] {
    auto s = Stat("busybox");
    return s && s->active == 1 && s->total_acquired == 1;
  }));
  ASSERT_TRUE(client->Signal(SIGKILL).ok());
  ASSERT_TRUE(client->Wait().ok());
  // The slot comes back (only after the sandbox is torn down), and with
  // --max 1 the next run proves it.
  EXPECT_TRUE(Eventually(
      [&] {
        auto s = Stat("busybox");
        return s && s->active == 0;
      },
      3000))
      << Log();
  auto r = Run({"echo", "next"});
  EXPECT_EQ(r.stdout_data, "next\n");
  EXPECT_NE(Log().find("outcome=client_gone"), std::string::npos) << Log();
}

// The agents of idle sandboxes: PID 1 inside, root of the range outside.
std::vector<pid_t> IdleAgents() {
  auto pids = wb::testing::SandboxRootPids(kBase);
  return {pids.begin(), pids.end()};
}

TEST_F(PoolTest, DeadOrHungIdleSandboxesAreEvictedAndTheRunStillServed) {
  StartDaemon({"--size", "2"});
  ASSERT_TRUE(IdleIs("busybox", 2));
  auto agents = IdleAgents();
  ASSERT_EQ(agents.size(), 2u);
  // One dies, one hangs (stopped: its socket accepts, but nobody answers).
  ASSERT_EQ(::kill(agents[0], SIGKILL), 0);
  ASSERT_EQ(::kill(agents[1], SIGSTOP), 0);
  auto r = Run({"echo", "served"});
  EXPECT_EQ(r.stdout_data, "served\n");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.error);
  auto s = Stat("busybox");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total_evicted, 2u) << Log();
  EXPECT_EQ(s->total_acquired, 1u);
  EXPECT_NE(Log().find("failed its health check"), std::string::npos);
  // Replaced: the pool is back at its size.
  EXPECT_TRUE(IdleIs("busybox", 2));
}

TEST_F(PoolTest, BackpressureBoundsSandboxesAndSaysBusy) {
  StartDaemon({"--size", "1", "--max", "2", "--queue-timeout", "0.6"});
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&] {
      auto r = PoolClient(sock_).Run(proto::RunRequest{std::nullopt, {"sleep", "0.2"}});
      if (r.ok() && r->exit_code == 0)
        ++ok;
      else if (r.ok() && r->error && r->error->find("busy") != std::string::npos)
        ++busy;
      else
        ++other;
    });
  }
  for (auto& t : threads) t.join();
  auto s = Stat("busybox");
  ASSERT_TRUE(s);
  EXPECT_LE(s->peak_active, 2u) << "permits exceeded";
  EXPECT_GT(ok, 0);
  EXPECT_GT(busy, 0) << "the queue timeout must end in busy";
  EXPECT_EQ(other, 0);
  EXPECT_EQ(ok + busy, 50);
  EXPECT_EQ(s->rejected_busy, static_cast<uint64_t>(busy.load()));
}

TEST_F(PoolTest, StopDrainsInFlightRunsAndLeavesNothing) {
  StartDaemon({"--size", "2"});
  ASSERT_TRUE(IdleIs("busybox", 2));
  std::thread runner([&] {
    auto r = Run({"sh", "-c", "sleep 0.3; echo drained"});
    EXPECT_EQ(r.stdout_data, "drained\n");
  });
  ASSERT_TRUE(Eventually([&] {
    auto s = Stat("busybox");
    return s && s->active == 1;
  }));
  auto stop = wb::testing::RunProcess(Cli({"pool", "stop", "--socket", sock_}));
  EXPECT_EQ(stop.code, 0) << stop.err;
  runner.join();
  auto st = daemon_.Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0);
  EXPECT_FALSE(PathExists(sock_));
  EXPECT_EQ(SandboxProcesses(), 0u);
  EXPECT_TRUE(wb::testing::DirsBelow(state_ + "/sandboxes").empty());
}

TEST_F(PoolTest, KilledDaemonTakesItsSandboxesAlongAndNextStartCleansUp) {
  StartDaemon({"--size", "3"});
  ASSERT_TRUE(IdleIs("busybox", 3));
  EXPECT_GE(SandboxProcesses(), 3u);
  ASSERT_TRUE(daemon_.Signal(SIGKILL).ok());
  ASSERT_TRUE(daemon_.Wait().ok());
  EXPECT_TRUE(Eventually([&] { return SandboxProcesses() == 0; }, 2000))
      << "sandboxes outlived the daemon";
  EXPECT_FALSE(wb::testing::DirsBelow(state_ + "/sandboxes").empty());
  StartDaemon({"--size", "1"});  // replaces the stale socket, removes leftovers
  ASSERT_TRUE(IdleIs("busybox", 1));
  EXPECT_EQ(Run({"echo", "back"}).stdout_data, "back\n");
  // Only the new daemon's sandboxes remain: its idle one (and maybe a refill).
  EXPECT_LE(wb::testing::DirsBelow(state_ + "/sandboxes").size(), 2u * 2);
}

}  // namespace
}  // namespace wb
