// Faults injected into a running pool daemon: it keeps serving, says clearly
// what happened, and loses or leaks nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/daemon_fixture.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using daemon::PoolClient;
using wb::testing::Eventually;
using wb::testing::ParentOf;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kPoolFaultTest);

class PoolFaultTest : public wb::testing::DaemonFixture {
 protected:
  PoolFaultTest() : DaemonFixture("wb-fault-test", kBase) {}
  void TearDown() override {
    StopDaemon();
    if (!mounted_.empty()) ::umount2(mounted_.c_str(), MNT_DETACH);
    DaemonFixture::TearDown();
  }

  std::string mounted_;
};

TEST_F(PoolFaultTest, AgentKilledMidRunGivesAClearErrorAndThePoolRecovers) {
  StartDaemon({"--size", "1", "--max", "2"});
  ASSERT_TRUE(Settled(1));
  proto::RunResponse resp;
  std::thread t([&] { resp = Run({"sh", "-c", "echo started; sleep 100"}); });
  // Wait until the command runs, then kill the agent of its sandbox: the
  // first warmbox-agent among sleep's ancestors.
  auto comm = [](pid_t p) {
    auto c = ReadFile("/proc/" + std::to_string(p) + "/comm");
    return c.ok() ? std::string(Trim(*c)) : std::string();
  };
  pid_t agent = 0;
  ASSERT_TRUE(Eventually([&] {
    for (pid_t p : wb::testing::PidsWithUidIn(kBase, kBase + UidSpan(kDefaultUidSlots))) {
      if (comm(p) != "sleep") continue;
      for (pid_t a = ParentOf(p); a > 1; a = ParentOf(a)) {
        if (comm(a) == "warmbox-agent") {
          agent = a;
          return true;
        }
      }
    }
    return false;
  }));
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  t.join();
  EXPECT_EQ(resp.exit_code, -1);
  ASSERT_TRUE(resp.error);
  EXPECT_NE(resp.error->find("agent"), std::string::npos) << *resp.error;
  // The permit came back, the pool refilled, the next run is served.
  EXPECT_TRUE(Settled(1)) << Log();
  EXPECT_EQ(Run({"echo", "next"}).stdout_data, "next\n");
}

TEST_F(PoolFaultTest, ClientKilledMidRunKillsTheCommandWithinASecond) {
  StartDaemon({"--size", "1"});
  ASSERT_TRUE(Settled(1));
  SpawnOptions o;
  auto argv = Cli({"pool", "run", "--socket", sock_, "--", "sh", "-c", "trap '' TERM; sleep 1000"});
  o.path = argv[0];
  o.argv = argv;
  auto client = ChildProcess::Spawn(o);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(Eventually([&] {
    auto s = Stat();
    return s && s->active == 1;
  }));
  ASSERT_TRUE(Eventually([&] { return SandboxProcesses() >= 3; }));
  ASSERT_TRUE(client->Signal(SIGKILL).ok());
  ASSERT_TRUE(client->Wait().ok());
  auto t0 = std::chrono::steady_clock::now();
  // Everything of that run is gone; only the refilled idle sandbox's agent remains.
  ASSERT_TRUE(Eventually([&] { return SandboxProcesses() == 1 && Agents().size() == 1; }, 1000))
      << SandboxProcesses();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_TRUE(Settled(1));
}

TEST_F(PoolFaultTest, DaemonKilledWithSandboxesUpAndRunsInFlight) {
  StartDaemon({"--size", "4", "--max", "8"});
  ASSERT_TRUE(Settled(4));
  std::vector<std::thread> runs;
  std::atomic<int> answered{0};
  for (int i = 0; i < 4; ++i) {
    runs.emplace_back([&] {
      proto::RunRequest r;
      r.cmd = {"sleep", "1000"};
      auto resp = PoolClient(sock_).Run(r);
      // The daemon dies: the client must get an error, not hang.
      if (!resp.ok() || resp->error) ++answered;
    });
  }
  // 4 running commands, and the pool refilling towards 4 idle: 8 sandboxes.
  ASSERT_TRUE(Eventually([&] {
    auto s = Stat();
    return s && s->active == 4 && s->idle == 4;
  })) << Log();
  ASSERT_GE(Agents().size(), 8u);
  ASSERT_TRUE(daemon_.Signal(SIGKILL).ok());
  ASSERT_TRUE(daemon_.Wait().ok());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(Eventually([&] { return SandboxProcesses() == 0; }, 2000))
      << SandboxProcesses() << " left";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  for (auto& t : runs) t.join();
  EXPECT_EQ(answered, 4);
  // A new daemon removes every leftover (dirs, cgroups, stale socket) and serves.
  ASSERT_FALSE(wb::testing::DirsBelow(state_ + "/sandboxes").empty());
  StartDaemon({"--size", "1"});
  ASSERT_TRUE(Settled(1));
  EXPECT_EQ(Run({"echo", "back"}).stdout_data, "back\n");
  EXPECT_TRUE(Settled(1));
  // Only the new idle sandbox's dir remains (its <id> and <id>/scratch).
  EXPECT_EQ(wb::testing::DirsBelow(state_ + "/sandboxes").size(), 2u);
}

TEST_F(PoolFaultTest, ImageRemovedWhileThePoolRunsGivesClearErrors) {
  // A second image, warmed, then removed from the store under the daemon.
  std::string src = state_ + "/src";
  ASSERT_TRUE(MkdirAll(src + "/bin").ok());
  {
    std::ifstream in("/bin/busybox", std::ios::binary);
    std::ofstream out(src + "/bin/busybox", std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(::chmod((src + "/bin/busybox").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("busybox", (src + "/bin/sh").c_str()), 0);
  ASSERT_EQ(wb::testing::RunProcess(Cli({"image", "import-dir", "doomed", src})).code, 0);
  StartDaemon({"--size", "1", "--warm", "doomed=1"});
  ASSERT_TRUE(Settled(1, "doomed"));
  ASSERT_TRUE(RemoveTree(state_ + "/images/doomed").ok());
  // Runs on it fail at once, naming the image; nothing is created for it.
  for (int i = 0; i < 2; ++i) {
    auto r = Run({"true"}, "doomed");
    EXPECT_EQ(r.exit_code, -1);
    ASSERT_TRUE(r.error);
    EXPECT_NE(r.error->find("doomed"), std::string::npos) << *r.error;
    EXPECT_NE(r.error->find("no such image"), std::string::npos) << *r.error;
  }
  // The daemon stays up and serves other images.
  EXPECT_EQ(Run({"echo", "alive"}).stdout_data, "alive\n");
  EXPECT_TRUE(PoolClient(sock_).Status().ok());
}

TEST_F(PoolFaultTest, FullDiskGivesClearErrorsAndServiceResumes) {
  // The state dir on a small tmpfs that the test fills up.
  std::string state = state_ + "/small";
  ASSERT_EQ(::chmod(state_.c_str(), 0711), 0);  // the sandbox range must reach it
  ASSERT_TRUE(MkdirAll(state).ok());
  ASSERT_EQ(::mount("tmpfs", state.c_str(), "tmpfs", 0, "size=8m,mode=0755"), 0);
  mounted_ = state;
  StartDaemon({"--size", "1", "--max", "4"}, state);
  ASSERT_TRUE(Settled(1)) << Log();
  // Fills the disk to the last byte (appending to one filler file).
  auto fill_up = [&] {
    std::ofstream fill(state + "/filler", std::ios::binary | std::ios::app);
    std::string chunk(4096, 'x');
    for (int i = 0; i < 4096 && fill; ++i) fill << chunk;
  };
  fill_up();
  // The idle sandbox serves; the next one must be created on a full disk.
  EXPECT_EQ(Run({"echo", "one"}).stdout_data, "one\n");
  // But each used sandbox's teardown frees its few pages, and a creation
  // that follows it could use them: wait for the teardown, take the pages
  // back, then ask. (A refill may still win a race once; the next cannot.)
  proto::RunResponse r;
  for (int attempt = 0; attempt < 4 && !r.error; ++attempt) {
    ASSERT_TRUE(Eventually(
        [&] {
          auto st = Stat();
          return st && st->active == 0;
        },
        10000))
        << Log();
    fill_up();
    r = Run({"echo", "next"});
  }
  ASSERT_TRUE(r.error) << "a sandbox was created on a full disk";
  EXPECT_NE(r.error->find("No space left"), std::string::npos) << *r.error;
  EXPECT_TRUE(PoolClient(sock_).Status().ok()) << "the daemon stays up";
  EXPECT_TRUE(Eventually([&] { return Log().find("retrying in") != std::string::npos; }))
      << "refill backs off instead of spinning\n"
      << Log();
  // Room again: service resumes.
  ASSERT_EQ(::unlink((state + "/filler").c_str()), 0);
  EXPECT_TRUE(Eventually(
      [&] {
        proto::RunRequest rr;
        rr.cmd = {"echo", "back"};
        auto b = PoolClient(sock_).Run(rr);
        return b.ok() && b->stdout_data == "back\n";
      },
      10000));
  (void)daemon_.Signal(SIGTERM);
  (void)daemon_.Wait();
}

TEST_F(PoolFaultTest, HostileCommandsMeetTheirLimits) {
  StartDaemon({"--size", "1"});
  ASSERT_TRUE(Settled(1));
  // Ignores SIGTERM: the timeout kills with SIGKILL anyway.
  auto stubborn = Run({"sh", "-c", "trap '' TERM; sleep 100"}, std::nullopt, 300);
  EXPECT_EQ(stubborn.exit_code, 137);
  EXPECT_TRUE(stubborn.timed_out);
  // Closes its stdout early and keeps going.
  auto closer = Run({"sh", "-c", "echo before; exec >&-; sleep 0.1; echo after >&2"});
  EXPECT_EQ(closer.stdout_data, "before\n");
  EXPECT_EQ(closer.stderr_data, "after\n");
  EXPECT_EQ(closer.exit_code, 0);
  // Writes forever: capped, then stopped by its timeout.
  proto::RunRequest r;
  r.cmd = {"yes"};
  r.timeout_ms = 1000;
  r.output_cap = 1 << 20;
  auto flood = PoolClient(sock_).Run(r);
  ASSERT_TRUE(flood.ok());
  EXPECT_EQ(flood->stdout_data.size(), 1u << 20);
  EXPECT_TRUE(flood->stdout_truncated);
  EXPECT_TRUE(flood->timed_out);
  // Every used sandbox is destroyed: only the idle one is left.
  EXPECT_TRUE(Settled(1));
  EXPECT_TRUE(Eventually([&] { return SandboxProcesses() == 1; }));
}

}  // namespace
}  // namespace wb
