// The namespace driver, for real: root, user namespaces, overlayfs, cgroups.
// Skips (with the reason) only when a probe says the kernel cannot do it.
#include "sandbox/ns/ns_driver.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox_dir.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using proto::ExecRequest;
using wb::testing::Eventually;

// A uid range of this test's own: a warmbox daemon running on the same host
// (with the default range) must not count as ours.
constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kNsDriverTest);

class NsDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = wb::testing::SandboxProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    state_ = wb::testing::MakeTempDir("wb-ns-test");
    ASSERT_FALSE(state_.empty());
    store_ = std::make_unique<ImageStore>(state_, kBase);
    NsDriverOptions o;
    o.uid_base = kBase;
    // Cgroups of our own too, for the same reason.
    o.cgroup_parent = cgroup_parent_;
    o.state_dir = state_;
    o.agent_path = wb::testing::BuildDir() + "/warmbox-agent";
    auto d = NsDriver::Open(o, store_.get());
    ASSERT_OK(d);
    driver_ = std::move(*d);
  }
  void TearDown() override {
    driver_.reset();
    if (!state_.empty()) (void)RemoveTree(state_);
    // The (empty) parents of our cgroups.
    if (auto layout = HostCgroupLayout(); layout.ok()) {
      for (const auto& p : PlanSandboxCgroup(*layout, "x", Limits{}, cgroup_parent_).parents)
        ::rmdir(p.c_str());
    }
  }

  std::unique_ptr<Sandbox> NewSandbox(SandboxSpec spec = {}) {
    auto sb = driver_->Create(spec);
    EXPECT_OK(sb);
    return sb.ok() ? std::move(*sb) : nullptr;
  }

  static ExecOutcome Sh(Sandbox& sb, const std::string& script, uint64_t timeout_ms = 0) {
    ExecRequest req;
    req.argv = {"sh", "-c", script};
    req.timeout_ms = timeout_ms;
    ExecIo io;
    auto r = sb.Exec(req, io);
    EXPECT_OK(r);
    return r.ok() ? std::move(*r) : ExecOutcome{};
  }

  // The agent's host pid, from the sandbox's socket dir record.
  std::string SandboxDir(const Sandbox& sb) const { return SandboxesDir(state_) + "/" + sb.id(); }

  std::string state_;
  const std::string cgroup_parent_ = "/warmbox-test-" + std::to_string(::getpid());
  std::unique_ptr<ImageStore> store_;
  std::unique_ptr<NsDriver> driver_;
};

TEST_F(NsDriverTest, ExitCodes) {
  auto sb = NewSandbox();
  ASSERT_TRUE(sb);
  EXPECT_EQ(Sh(*sb, "exit 0").exit.exit_code, 0);
  EXPECT_EQ(Sh(*sb, "exit 1").exit.exit_code, 1);
  EXPECT_EQ(Sh(*sb, "exit 7").exit.exit_code, 7);
  EXPECT_EQ(Sh(*sb, "kill -9 $$").exit.exit_code, 137);
  EXPECT_EQ(Sh(*sb, "false").exit.exit_code, 1);
  ExecRequest req;
  req.argv = {"no-such-program"};
  ExecIo io;
  auto r = sb->Exec(req, io);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit.exit_code, 127);
  EXPECT_NE(r->stderr_data.find("no-such-program"), std::string::npos);
  EXPECT_EQ(r->stderr_data, wb::testing::kMissingProgramStderr);
  // No command at all (the default image has no Cmd): refused before the agent.
  auto none = sb->Exec(ExecRequest{}, io);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().ToString(), wb::testing::kMissingCommandError);
  EXPECT_EQ(none.error().code, ErrorCode::kInvalidArgument);
  auto t = Sh(*sb, "sleep 100", 200);
  EXPECT_EQ(t.exit.exit_code, 137);
  EXPECT_TRUE(t.exit.timed_out);
}

TEST_F(NsDriverTest, FalseReportsOneWhilePid1ReapsOrphans) {
  auto sb = NewSandbox();
  ASSERT_TRUE(sb);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(Sh(*sb, "(true &); sh -c 'true &'; false").exit.exit_code, 1) << "iteration " << i;
  }
}

TEST_F(NsDriverTest, DoubleForkedOrphanIsReapedByPid1) {
  auto sb = NewSandbox();
  ASSERT_TRUE(sb);
  // The grandchild outlives its parent and is reparented to PID 1 (the agent).
  ASSERT_EQ(Sh(*sb, "sh -c 'sleep 0.05 & exit 0'").exit.exit_code, 0);
  // Once it has exited, PID 1's only child is the shell that asks; a zombie
  // left unreaped would still be listed.
  auto only_me = [&] {
    auto r = Sh(*sb, "set -- $(cat /proc/1/task/1/children); [ \"$*\" = \"$$\" ]");
    return r.exit.exit_code == 0;
  };
  EXPECT_TRUE(Eventually(only_me))
      << Sh(*sb, "cat /proc/1/task/1/children; ps -o pid,stat,args").stdout_data;
}

TEST_F(NsDriverTest, OutputSizesAndStdin) {
  auto sb = NewSandbox();
  ASSERT_TRUE(sb);
  auto mib = Sh(*sb, "head -c 1048576 /dev/zero | tr '\\0' 'a'");
  EXPECT_EQ(mib.stdout_data, std::string(1 << 20, 'a'));
  auto big = Sh(*sb, "head -c 20971520 /dev/zero");
  EXPECT_EQ(big.stdout_data.size(), proto::kDefaultOutputCap);
  EXPECT_TRUE(big.exit.stdout_truncated);
  EXPECT_EQ(big.stdout_data, std::string(proto::kDefaultOutputCap, '\0'));
  auto bin = Sh(*sb, "printf 'x\\000y'; printf 'e' >&2");
  EXPECT_EQ(bin.stdout_data, std::string("x\0y", 3));
  EXPECT_EQ(bin.stderr_data, "e");

  ExecRequest req;
  req.argv = {"sh", "-c", "cat; pwd; echo $A"};
  req.cwd = "/etc";
  req.env = {"A=b"};
  ExecIo io;
  io.has_stdin_data = true;
  io.stdin_data = "from stdin\n";
  auto r = sb->Exec(req, io);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, "from stdin\n/etc\nb\n");
}

TEST_F(NsDriverTest, TheInsideIsIsolated) {
  auto sb = NewSandbox();
  ASSERT_TRUE(sb);
  // The agent is PID 1 and the command sees only its own pid namespace.
  EXPECT_EQ(Sh(*sb, "tr '\\0' ' ' < /proc/1/cmdline").stdout_data.substr(0, 13), "warmbox-agent");
  auto pids = Sh(*sb, "ls /proc | grep -c '^[0-9]'");
  auto n = ParseUint(Trim(pids.stdout_data), "count");
  ASSERT_TRUE(n.ok()) << pids.stdout_data;
  EXPECT_LE(*n, 4u) << "agent, sh, ls, grep at most";
  // Hostname is the sandbox id.
  EXPECT_EQ(Sh(*sb, "hostname").stdout_data, sb->id() + "\n");
  // Host files are not there.
  std::string marker = "/tmp/wb-host-marker-" + sb->id();
  { std::ofstream(marker) << "x"; }
  EXPECT_EQ(Sh(*sb, "test -e " + marker).exit.exit_code, 1);
  ::unlink(marker.c_str());
  EXPECT_EQ(Sh(*sb, "ls /root | wc -l").stdout_data, "0\n");
  EXPECT_EQ(Sh(*sb, "test -e /var/lib/warmbox || test -e " + state_).exit.exit_code, 1);
  // Only lo.
  EXPECT_EQ(Sh(*sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout_data, "lo\n");
  // Root inside is the base of the sandbox's own range outside: slot 1 (slot
  // 0, kBase, is the image store's).
  EXPECT_EQ(Sh(*sb, "id -u").stdout_data, "0\n");
  EXPECT_EQ(Sh(*sb, "cat /proc/self/uid_map | tr -s ' '").stdout_data,
            " 0 " + std::to_string(kBase + 65536) + " 65536\n");
  auto host = wb::testing::PidsWithUidIn(kBase, kBase + UidSpan(kDefaultUidSlots));
  EXPECT_FALSE(host.empty()) << "the agent should run as host uid " << kBase;
  EXPECT_TRUE(wb::testing::PidsWithUidIn(0, 1).size() > 0);  // sanity of the scan
}

TEST_F(NsDriverTest, WritesStayInTheUpperLayerAndVanish) {
  std::string image_etc = state_ + "/images/busybox/rootfs/etc";
  {
    auto a = NewSandbox();
    ASSERT_TRUE(a);
    EXPECT_EQ(Sh(*a, "echo secret > /etc/written && rm /bin/ls && cat /etc/written").stdout_data,
              "secret\n");
    EXPECT_FALSE(PathExists(image_etc + "/written"));
    EXPECT_TRUE(PathExists(state_ + "/images/busybox/rootfs/bin/ls"));
    auto b = NewSandbox();
    ASSERT_TRUE(b);
    EXPECT_EQ(Sh(*b, "test -e /etc/written").exit.exit_code, 1);
    EXPECT_EQ(Sh(*b, "test -e /bin/ls").exit.exit_code, 0);
    std::string dir = SandboxDir(*a);
    ASSERT_TRUE(PathExists(dir));
    ASSERT_TRUE(a->Destroy().ok());
    EXPECT_FALSE(PathExists(dir));
  }
}

TEST_F(NsDriverTest, DiskCapIsEnforced) {
  SandboxSpec spec;
  spec.limits.disk_bytes = 4 << 20;
  auto sb = NewSandbox(spec);
  ASSERT_TRUE(sb);
  auto r = Sh(*sb, "head -c 8388608 /dev/zero > /big");
  // overlayfs reports the full upper as ENOSPC or EIO, depending on where it
  // runs out; either way the write fails and the file stays under the cap.
  EXPECT_NE(r.exit.exit_code, 0);
  EXPECT_FALSE(r.stderr_data.empty());
  auto size = Sh(*sb, "wc -c < /big");
  auto n = ParseUint(Trim(size.stdout_data), "size");
  ASSERT_TRUE(n.ok()) << size.stdout_data;
  EXPECT_LE(*n, 4u << 20);
}

TEST_F(NsDriverTest, CgroupLimitsAreApplied) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 64 << 20;
  spec.limits.pids = 32;
  const std::string own_before = ReadFile("/proc/thread-self/cgroup").value();
  auto sb = NewSandbox(spec);
  ASSERT_TRUE(sb);
  // The agent is born in its cgroups by the creating thread sitting in the
  // v1 ones for the clone: that thread is back in its own.
  EXPECT_EQ(ReadFile("/proc/thread-self/cgroup").value(), own_before);
  auto rec = ReadSandboxRecord(SandboxDir(*sb));
  ASSERT_TRUE(rec.ok());
  bool saw_memory = false, saw_pids = false;
  for (const auto& d : rec->cgroups) {
    if (PathExists(d + "/memory.limit_in_bytes")) {
      EXPECT_EQ(Trim(ReadFile(d + "/memory.limit_in_bytes").value()), std::to_string(64 << 20));
      saw_memory = true;
    }
    if (PathExists(d + "/memory.max")) {
      EXPECT_EQ(Trim(ReadFile(d + "/memory.max").value()), std::to_string(64 << 20));
      saw_memory = true;
    }
    if (PathExists(d + "/pids.max")) {
      EXPECT_EQ(Trim(ReadFile(d + "/pids.max").value()), "32");
      saw_pids = true;
    }
    // The agent lives in every one of its cgroups, and nothing else does.
    EXPECT_EQ(Trim(ReadFile(d + "/cgroup.procs").value()), std::to_string(sb->host_pid())) << d;
  }
  EXPECT_TRUE(saw_memory);
  EXPECT_TRUE(saw_pids);
  // A fork bomb stops at the limit, and the kernel counts the refusals.
  auto bomb = Sh(*sb, "i=0; while [ $i -lt 64 ]; do sleep 10 & i=$((i+1)); done; echo done", 5000);
  EXPECT_NE(bomb.stderr_data.find("fork"), std::string::npos) << bomb.stderr_data;
  bool saw_events = false;
  for (const auto& d : rec->cgroups) {
    if (!PathExists(d + "/pids.events")) continue;
    auto ev = ReadFile(d + "/pids.events").value();
    EXPECT_NE(ev.find("max "), std::string::npos);
    EXPECT_EQ(ev.find("max 0\n"), std::string::npos) << ev;
    saw_events = true;
  }
  EXPECT_TRUE(saw_events);
}

TEST_F(NsDriverTest, TeardownLeavesNothing) {
  // Warm the image first so its files are part of "before".
  { auto warm = NewSandbox(); }
  auto layout = HostCgroupLayout();
  ASSERT_TRUE(layout.ok());
  auto plan = PlanSandboxCgroup(*layout, "x", Limits{}, cgroup_parent_);
  auto cgroups_before = std::set<std::string>();
  for (const auto& p : plan.parents) {
    for (const auto& d : wb::testing::DirsBelow(p)) cgroups_before.insert(d);
  }
  auto mounts_before = wb::testing::MountPoints();
  auto dirs_before = wb::testing::DirsBelow(state_);
  int fds_before = wb::testing::CountOpenFds();

  for (int i = 0; i < 50; ++i) {
    auto sb = NewSandbox();
    ASSERT_TRUE(sb);
    ASSERT_EQ(Sh(*sb, "sleep 100 & echo $((1+" + std::to_string(i) + "))").stdout_data,
              std::to_string(i + 1) + "\n");
    ASSERT_TRUE(sb->Destroy().ok());
  }

  std::set<std::string> cgroups_after;
  for (const auto& p : plan.parents) {
    for (const auto& d : wb::testing::DirsBelow(p)) cgroups_after.insert(d);
  }
  EXPECT_EQ(cgroups_after, cgroups_before);
  EXPECT_EQ(wb::testing::MountPoints(), mounts_before);
  EXPECT_EQ(wb::testing::DirsBelow(state_), dirs_before);
  EXPECT_EQ(wb::testing::CountOpenFds(), fds_before);
  EXPECT_TRUE(wb::testing::PidsWithUidIn(kBase, kBase + UidSpan(kDefaultUidSlots)).empty());
}

TEST_F(NsDriverTest, AgentSetupFailureIsReportedClearly) {
  // An image whose rootfs is a file, not a dir: the overlay mount inside
  // must fail and the error must say so, quickly and without leftovers.
  { auto warm = NewSandbox(); }
  const std::string rootfs = state_ + "/images/busybox/rootfs";
  ASSERT_TRUE(RemoveTree(rootfs).ok());
  { std::ofstream(rootfs) << "not a dir"; }
  ASSERT_TRUE(PathExists(rootfs));
  auto dirs_before = wb::testing::DirsBelow(SandboxesDir(state_));
  auto sb = driver_->Create(SandboxSpec{});
  ASSERT_FALSE(sb.ok());
  std::string msg = sb.error().ToString();
  EXPECT_NE(msg.find("overlay"), std::string::npos) << msg;
  EXPECT_NE(msg.find("agent exited with code 1"), std::string::npos) << msg;
  EXPECT_EQ(wb::testing::DirsBelow(SandboxesDir(state_)), dirs_before);
  // A rootfs that vanished is caught before anything is mounted, by name.
  ASSERT_EQ(::unlink(rootfs.c_str()), 0);
  auto gone = driver_->Create(SandboxSpec{});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.error().code, ErrorCode::kNotFound);
  EXPECT_NE(gone.error().ToString().find(rootfs), std::string::npos) << gone.error().ToString();
  EXPECT_EQ(wb::testing::DirsBelow(SandboxesDir(state_)), dirs_before);
}

TEST_F(NsDriverTest, OrphanedCgroupsAreSweptButLiveOnesKept) {
  auto layout = HostCgroupLayout();
  ASSERT_TRUE(layout.ok());
  auto live = NewSandbox();  // its cgroups hold its agent
  ASSERT_TRUE(live);
  // An orphan: made like a sandbox's, with nothing in it and no state dir.
  auto orphan = PlanSandboxCgroup(*layout, "orphan0000", Limits{}, cgroup_parent_);
  for (const auto& d : orphan.dirs) ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
  EXPECT_EQ(SweepOrphanCgroups(*layout, cgroup_parent_, /*min_age_s=*/3600), 0u)
      << "too young to be an orphan";
  EXPECT_EQ(SweepOrphanCgroups(*layout, cgroup_parent_, 0), orphan.dirs.size());
  for (const auto& d : orphan.dirs) EXPECT_FALSE(PathExists(d));
  auto mine = PlanSandboxCgroup(*layout, live->id(), Limits{}, cgroup_parent_);
  for (const auto& d : mine.dirs) EXPECT_TRUE(PathExists(d)) << d;
  EXPECT_EQ(Sh(*live, "echo alive").stdout_data, "alive\n");
}

TEST_F(NsDriverTest, UnknownImageIsAClearError) {
  auto sb = driver_->Create(SandboxSpec{"no-such-image", {}});
  ASSERT_FALSE(sb.ok());
  EXPECT_NE(sb.error().ToString().find("no-such-image"), std::string::npos);
  EXPECT_NE(sb.error().ToString().find("no such image"), std::string::npos);
}

TEST_F(NsDriverTest, UsersFromTheImage) {
  auto sb = NewSandbox();
  ASSERT_TRUE(sb);
  ExecRequest req;
  req.argv = {"sh", "-c", "id -u; id -g; echo $HOME"};
  req.user = "user";
  ExecIo io;
  auto r = sb->Exec(req, io);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, "1000\n1000\n/home/user\n");
}

}  // namespace
}  // namespace wb
