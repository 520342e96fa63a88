#include "sandbox/cgroup.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/strings.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"

namespace wb {
namespace {

// /proc/self/mountinfo of a v1/v2 hybrid host (the development VM), trimmed
// to the cgroup mounts plus a few unrelated lines.
constexpr char kHybridMountinfo[] =
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "23 27 0:22 / /sys rw,relatime - sysfs sysfs rw\n"
    "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534\n"
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

// /proc/self/cgroup of a process on that host.
constexpr char kHybridSelf[] =
    "9:name=systemd:/\n"
    "8:pids:/\n"
    "7:blkio:/\n"
    "6:freezer:/\n"
    "5:devices:/\n"
    "4:memory:/process_api/dd7da3acf8cede5f08506ce73a7641e5\n"
    "3:cpuset:/\n"
    "2:cpuacct:/\n"
    "1:cpu:/\n"
    "0::/\n";

// /sys/fs/cgroup/unified/cgroup.controllers there: no limit controllers.
constexpr char kHybridControllers[] = "hugetlb\n";

constexpr char kMemSelf[] = "/sys/fs/cgroup/memory/process_api/dd7da3acf8cede5f08506ce73a7641e5";

// A pure cgroup v2 host (systemd, unified hierarchy).
constexpr char kV2Mountinfo[] =
    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n"
    "24 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
    "31 24 0:6 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:5 - debugfs debugfs rw\n";
constexpr char kV2Self[] = "0::/user.slice/x.scope\n";
constexpr char kV2Controllers[] = "cpuset cpu io memory pids\n";

Limits TestLimits(double cpus = 0.5) {
  Limits l;
  l.memory_bytes = 256ull << 20;
  l.pids = 64;
  l.cpus = cpus;
  return l;
}

CgroupLayout HybridLayout() {
  auto l = ParseCgroupLayout(kHybridMountinfo, kHybridSelf, kHybridControllers);
  EXPECT_OK(l);
  return l.ok() ? *l : CgroupLayout{};
}

CgroupLayout V2Layout() {
  auto l = ParseCgroupLayout(kV2Mountinfo, kV2Self, kV2Controllers);
  EXPECT_OK(l);
  return l.ok() ? *l : CgroupLayout{};
}

const CgroupWrite* FindWrite(const CgroupPlan& p, const std::string& file) {
  for (const auto& w : p.writes) {
    if (w.file == file) return &w;
  }
  return nullptr;
}

int WriteIndex(const CgroupPlan& p, const std::string& file) {
  for (size_t i = 0; i < p.writes.size(); ++i) {
    if (p.writes[i].file == file) return static_cast<int>(i);
  }
  return -1;
}

bool HasWriteEndingWith(const CgroupPlan& p, const std::string& suffix) {
  return std::any_of(p.writes.begin(), p.writes.end(), [&](const CgroupWrite& w) {
    return w.file.size() >= suffix.size() &&
           w.file.compare(w.file.size() - suffix.size(), suffix.size(), suffix) == 0;
  });
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// --- ParseCgroupLayout: hybrid --------------------------------------------------

TEST(ParseCgroupLayoutTest, HybridFindsUnifiedMount) {
  CgroupLayout l = HybridLayout();
  EXPECT_EQ(l.unified_mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(l.unified_self, "/");
  EXPECT_FALSE(l.unified_has_controllers);
}

TEST(ParseCgroupLayoutTest, HybridFindsNestedMemoryDir) {
  CgroupLayout l = HybridLayout();
  ASSERT_EQ(l.v1_dir_of_self.count("memory"), 1u);
  EXPECT_EQ(l.v1_dir_of_self.at("memory"), kMemSelf);
}

TEST(ParseCgroupLayoutTest, HybridFindsPidsAndCpuAtRoot) {
  CgroupLayout l = HybridLayout();
  ASSERT_EQ(l.v1_dir_of_self.count("pids"), 1u);
  EXPECT_EQ(l.v1_dir_of_self.at("pids"), "/sys/fs/cgroup/pids");
  ASSERT_EQ(l.v1_dir_of_self.count("cpu"), 1u);
  EXPECT_EQ(l.v1_dir_of_self.at("cpu"), "/sys/fs/cgroup/cpu");
}

TEST(ParseCgroupLayoutTest, HybridIgnoresOtherV1Controllers) {
  CgroupLayout l = HybridLayout();
  EXPECT_EQ(l.v1_dir_of_self.size(), 3u);
  EXPECT_EQ(l.v1_dir_of_self.count("cpuacct"), 0u);
  EXPECT_EQ(l.v1_dir_of_self.count("cpuset"), 0u);
  EXPECT_EQ(l.v1_dir_of_self.count("name=systemd"), 0u);
}

TEST(ParseCgroupLayoutTest, HybridWithMemoryInV2ControllersIsStillHybrid) {
  // v1 holds the memory controller, so limits must go there.
  auto l = ParseCgroupLayout(kHybridMountinfo, kHybridSelf, "memory pids");
  ASSERT_OK(l);
  EXPECT_FALSE(l->unified_has_controllers);
}

TEST(ParseCgroupLayoutTest, CoMountedCpuCpuacctIsFound) {
  constexpr char kMountinfo[] =
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  auto l = ParseCgroupLayout(kMountinfo, "2:cpu,cpuacct:/user.slice\n0::/user.slice\n", "");
  ASSERT_OK(l);
  ASSERT_EQ(l->v1_dir_of_self.count("cpu"), 1u);
  EXPECT_EQ(l->v1_dir_of_self.at("cpu"), "/sys/fs/cgroup/cpu,cpuacct/user.slice");
  EXPECT_EQ(l->unified_self, "/user.slice");
}

TEST(ParseCgroupLayoutTest, MountRootIsStrippedFromSelfPath) {
  // In a container the memory hierarchy is mounted from /process_api down.
  constexpr char kMountinfo[] =
      "35 31 0:32 /process_api /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
  auto l = ParseCgroupLayout(kMountinfo, "4:memory:/process_api/dd7\n", "");
  ASSERT_OK(l);
  EXPECT_EQ(l->v1_dir_of_self.at("memory"), "/sys/fs/cgroup/memory/dd7");
}

TEST(ParseCgroupLayoutTest, SelfEqualToMountRootIsTheMountPoint) {
  constexpr char kMountinfo[] =
      "35 31 0:32 /process_api /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
  auto l = ParseCgroupLayout(kMountinfo, "4:memory:/process_api\n", "");
  ASSERT_OK(l);
  EXPECT_EQ(l->v1_dir_of_self.at("memory"), "/sys/fs/cgroup/memory");
}

TEST(ParseCgroupLayoutTest, SelfOutsideMountRootUsesTheMountPoint) {
  constexpr char kMountinfo[] =
      "35 31 0:32 /process_api /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
  auto l = ParseCgroupLayout(kMountinfo, "4:memory:/elsewhere/x\n", "");
  ASSERT_OK(l);
  EXPECT_EQ(l->v1_dir_of_self.at("memory"), "/sys/fs/cgroup/memory");
}

// Disabled: documents a bug in cgroup.cc RelativeTo(): it compares with a
// plain string prefix, so a self path that merely shares a prefix with the
// mount root ("/process_api2/x" vs "/process_api") is taken as inside it and
// yields "/sys/fs/cgroup/memory/2/x" instead of the mount point.
TEST(ParseCgroupLayoutTest, MountRootPrefixMustEndAtPathComponent) {
  constexpr char kMountinfo[] =
      "35 31 0:32 /process_api /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
  auto l = ParseCgroupLayout(kMountinfo, "4:memory:/process_api2/x\n", "");
  ASSERT_OK(l);
  EXPECT_EQ(l->v1_dir_of_self.at("memory"), "/sys/fs/cgroup/memory");
}

TEST(ParseCgroupLayoutTest, UnifiedMountRootIsStrippedFromSelfPath) {
  constexpr char kMountinfo[] =
      "41 31 0:38 /process_api /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n";
  auto l = ParseCgroupLayout(kMountinfo, "0::/process_api/dd7\n", "cpu memory pids");
  ASSERT_OK(l);
  EXPECT_EQ(l->unified_mount, "/sys/fs/cgroup");
  EXPECT_EQ(l->unified_self, "/dd7");
}

TEST(ParseCgroupLayoutTest, NoCgroupMountsIsAnError) {
  constexpr char kMountinfo[] =
      "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
      "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n";
  auto l = ParseCgroupLayout(kMountinfo, kHybridSelf, "");
  ASSERT_FALSE(l.ok());
  EXPECT_FALSE(l.error().ToString().empty());
}

TEST(ParseCgroupLayoutTest, EmptyInputIsAnError) {
  EXPECT_FALSE(ParseCgroupLayout("", "", "").ok());
}

TEST(ParseCgroupLayoutTest, OnlyUninterestingV1ControllersIsAnError) {
  constexpr char kMountinfo[] =
      "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
  EXPECT_FALSE(ParseCgroupLayout(kMountinfo, "3:cpuset:/\n", "").ok());
}

TEST(ParseCgroupLayoutTest, MalformedLinesAreSkipped) {
  std::string mountinfo = std::string("garbage\n - \n1 2 - cgroup2\n") + kHybridMountinfo;
  auto l = ParseCgroupLayout(mountinfo, std::string("junk\n") + kHybridSelf, kHybridControllers);
  ASSERT_OK(l);
  EXPECT_EQ(l->unified_mount, "/sys/fs/cgroup/unified");
  EXPECT_EQ(l->v1_dir_of_self.at("memory"), kMemSelf);
}

// --- ParseCgroupLayout: pure v2 -------------------------------------------------

TEST(ParseCgroupLayoutTest, PureV2HasControllers) {
  CgroupLayout l = V2Layout();
  EXPECT_EQ(l.unified_mount, "/sys/fs/cgroup");
  EXPECT_EQ(l.unified_self, "/user.slice/x.scope");
  EXPECT_TRUE(l.unified_has_controllers);
  EXPECT_TRUE(l.v1_dir_of_self.empty());
}

TEST(ParseCgroupLayoutTest, V2WithoutMemoryControllerHasNoControllers) {
  auto l = ParseCgroupLayout(kV2Mountinfo, kV2Self, "cpu pids");
  ASSERT_OK(l);
  EXPECT_FALSE(l->unified_has_controllers);
}

// --- PlanSandboxCgroup: hybrid -------------------------------------------------

TEST(PlanSandboxCgroupTest, HybridV2DirIsUnderOurUnifiedCgroup) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  EXPECT_EQ(p.v2_dir, "/sys/fs/cgroup/unified/warmbox/abc");
}

TEST(PlanSandboxCgroupTest, HybridV1DirsAreUnderOurCgroups) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  const std::string mem = std::string(kMemSelf) + "/warmbox/abc";
  EXPECT_EQ(Sorted(p.dirs),
            Sorted({"/sys/fs/cgroup/unified/warmbox/abc", mem, "/sys/fs/cgroup/pids/warmbox/abc",
                    "/sys/fs/cgroup/cpu/warmbox/abc"}));
  EXPECT_EQ(Sorted(p.parents),
            Sorted({"/sys/fs/cgroup/unified/warmbox", std::string(kMemSelf) + "/warmbox",
                    "/sys/fs/cgroup/pids/warmbox", "/sys/fs/cgroup/cpu/warmbox"}));
}

TEST(PlanSandboxCgroupTest, HybridMemoryLimit) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  const std::string dir = std::string(kMemSelf) + "/warmbox/abc";
  const CgroupWrite* limit = FindWrite(p, dir + "/memory.limit_in_bytes");
  ASSERT_NE(limit, nullptr);
  EXPECT_EQ(limit->value, "268435456");
  EXPECT_FALSE(limit->optional);
  const CgroupWrite* memsw = FindWrite(p, dir + "/memory.memsw.limit_in_bytes");
  ASSERT_NE(memsw, nullptr);
  EXPECT_EQ(memsw->value, "268435456");
  EXPECT_TRUE(memsw->optional) << "swap accounting may be off: memsw must be optional";
  // memsw may never be set below the plain limit: the limit goes first.
  EXPECT_LT(WriteIndex(p, dir + "/memory.limit_in_bytes"),
            WriteIndex(p, dir + "/memory.memsw.limit_in_bytes"));
}

TEST(PlanSandboxCgroupTest, HybridPidsLimit) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  const CgroupWrite* w = FindWrite(p, "/sys/fs/cgroup/pids/warmbox/abc/pids.max");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->value, "64");
  EXPECT_FALSE(w->optional);
}

TEST(PlanSandboxCgroupTest, HybridCpuQuota) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(0.5), "");
  const CgroupWrite* quota = FindWrite(p, "/sys/fs/cgroup/cpu/warmbox/abc/cpu.cfs_quota_us");
  const CgroupWrite* period = FindWrite(p, "/sys/fs/cgroup/cpu/warmbox/abc/cpu.cfs_period_us");
  ASSERT_NE(quota, nullptr);
  ASSERT_NE(period, nullptr);
  EXPECT_EQ(quota->value, "50000");
  EXPECT_EQ(period->value, "100000");
  EXPECT_FALSE(quota->optional);
}

TEST(PlanSandboxCgroupTest, CpuQuotaScalesWithCores) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(2.25), "");
  const CgroupWrite* quota = FindWrite(p, "/sys/fs/cgroup/cpu/warmbox/abc/cpu.cfs_quota_us");
  ASSERT_NE(quota, nullptr);
  EXPECT_EQ(quota->value, "225000");
}

TEST(PlanSandboxCgroupTest, HybridNoCpuWritesWhenUnlimited) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(0), "");
  EXPECT_FALSE(HasWriteEndingWith(p, "/cpu.cfs_quota_us"));
  EXPECT_FALSE(HasWriteEndingWith(p, "/cpu.cfs_period_us"));
  EXPECT_FALSE(HasWriteEndingWith(p, "/cpu.max"));
  // The other limits are still there.
  EXPECT_TRUE(HasWriteEndingWith(p, "/memory.limit_in_bytes"));
  EXPECT_TRUE(HasWriteEndingWith(p, "/pids.max"));
}

TEST(PlanSandboxCgroupTest, HybridAttachesToEveryV1Dir) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  EXPECT_EQ(Sorted(p.attach), Sorted({std::string(kMemSelf) + "/warmbox/abc/cgroup.procs",
                                      "/sys/fs/cgroup/pids/warmbox/abc/cgroup.procs",
                                      "/sys/fs/cgroup/cpu/warmbox/abc/cgroup.procs"}));
  // The spawning thread's way in and back, per v1 dir: the sandbox's tasks
  // file and ours in the same hierarchy.
  std::vector<std::string> moves;
  for (const auto& [in, out] : p.thread_moves) moves.push_back(in + " <- " + out);
  EXPECT_EQ(Sorted(moves),
            Sorted({std::string(kMemSelf) + "/warmbox/abc/tasks <- " + kMemSelf + "/tasks",
                    "/sys/fs/cgroup/pids/warmbox/abc/tasks <- /sys/fs/cgroup/pids/tasks",
                    "/sys/fs/cgroup/cpu/warmbox/abc/tasks <- /sys/fs/cgroup/cpu/tasks"}));
}

TEST(PlanSandboxCgroupTest, HybridWritesNoV2LimitFiles) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  EXPECT_FALSE(HasWriteEndingWith(p, "/memory.max"));
  EXPECT_FALSE(HasWriteEndingWith(p, "/cgroup.subtree_control"));
  EXPECT_FALSE(HasWriteEndingWith(p, "/cpu.max"));
}

TEST(PlanSandboxCgroupTest, HybridWritesStayInsideSandboxDirs) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "");
  for (const auto& w : p.writes) {
    bool inside = std::any_of(p.dirs.begin(), p.dirs.end(), [&](const std::string& d) {
      return w.file.compare(0, d.size() + 1, d + "/") == 0;
    });
    EXPECT_TRUE(inside) << w.file;
  }
}

TEST(PlanSandboxCgroupTest, ParentOverrideOnHybrid) {
  CgroupPlan p = PlanSandboxCgroup(HybridLayout(), "abc", TestLimits(), "/warmbox.slice");
  EXPECT_EQ(p.v2_dir, "/sys/fs/cgroup/unified/warmbox.slice/abc");
  EXPECT_EQ(
      Sorted(p.dirs),
      Sorted({"/sys/fs/cgroup/unified/warmbox.slice/abc", "/sys/fs/cgroup/memory/warmbox.slice/abc",
              "/sys/fs/cgroup/pids/warmbox.slice/abc", "/sys/fs/cgroup/cpu/warmbox.slice/abc"}));
  EXPECT_NE(FindWrite(p, "/sys/fs/cgroup/memory/warmbox.slice/abc/memory.limit_in_bytes"), nullptr);
}

// Disabled: documents a bug in cgroup.cc PlanSandboxCgroup(): with a parent
// override, v1 parents are built from the hard-coded "/sys/fs/cgroup/<ctl>"
// instead of the controller's real mount point from mountinfo, so a v1
// hierarchy mounted anywhere else gets dirs in the wrong place.
TEST(PlanSandboxCgroupTest, ParentOverrideUsesRealV1MountPoint) {
  constexpr char kMountinfo[] = "35 31 0:32 / /cg/mem rw,relatime - cgroup cgroup rw,memory\n";
  auto l = ParseCgroupLayout(kMountinfo, "4:memory:/\n", "");
  ASSERT_OK(l);
  CgroupPlan p = PlanSandboxCgroup(*l, "abc", TestLimits(), "/warmbox.slice");
  EXPECT_EQ(p.dirs, std::vector<std::string>{"/cg/mem/warmbox.slice/abc"});
}

TEST(PlanSandboxCgroupTest, V1OnlyHostHasNoV2Dir) {
  constexpr char kMountinfo[] =
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n";
  auto l = ParseCgroupLayout(kMountinfo, "8:pids:/\n4:memory:/\n", "");
  ASSERT_OK(l);
  EXPECT_EQ(l->unified_mount, "");
  CgroupPlan p = PlanSandboxCgroup(*l, "abc", TestLimits(), "");
  EXPECT_EQ(p.v2_dir, "");
  EXPECT_EQ(Sorted(p.dirs),
            Sorted({"/sys/fs/cgroup/memory/warmbox/abc", "/sys/fs/cgroup/pids/warmbox/abc"}));
  EXPECT_EQ(p.attach.size(), 2u);
}

// --- PlanSandboxCgroup: pure v2 -------------------------------------------------

TEST(PlanSandboxCgroupTest, V2DirIsUnderHierarchyRoot) {
  CgroupPlan p = PlanSandboxCgroup(V2Layout(), "abc", TestLimits(), "");
  EXPECT_EQ(p.v2_dir, "/sys/fs/cgroup/warmbox/abc");
  EXPECT_EQ(p.dirs, std::vector<std::string>{"/sys/fs/cgroup/warmbox/abc"});
  EXPECT_EQ(p.parents, std::vector<std::string>{"/sys/fs/cgroup/warmbox"});
}

TEST(PlanSandboxCgroupTest, V2Limits) {
  CgroupPlan p = PlanSandboxCgroup(V2Layout(), "abc", TestLimits(0.5), "");
  const std::string dir = "/sys/fs/cgroup/warmbox/abc";
  const CgroupWrite* mem = FindWrite(p, dir + "/memory.max");
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->value, "268435456");
  EXPECT_FALSE(mem->optional);
  const CgroupWrite* swap = FindWrite(p, dir + "/memory.swap.max");
  ASSERT_NE(swap, nullptr);
  EXPECT_EQ(swap->value, "0");
  EXPECT_TRUE(swap->optional);
  const CgroupWrite* pids = FindWrite(p, dir + "/pids.max");
  ASSERT_NE(pids, nullptr);
  EXPECT_EQ(pids->value, "64");
  const CgroupWrite* cpu = FindWrite(p, dir + "/cpu.max");
  ASSERT_NE(cpu, nullptr);
  EXPECT_EQ(cpu->value, "50000 100000");
}

TEST(PlanSandboxCgroupTest, V2EnablesControllersOnParentFirst) {
  CgroupPlan p = PlanSandboxCgroup(V2Layout(), "abc", TestLimits(), "");
  const std::string parent_ctl = "/sys/fs/cgroup/warmbox/cgroup.subtree_control";
  const CgroupWrite* w = FindWrite(p, parent_ctl);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->value, "+cpu +memory +pids");  // in the host's order
  EXPECT_FALSE(w->optional);
  // The limit files exist only once the parent enables the controllers.
  int enable = WriteIndex(p, parent_ctl);
  EXPECT_LT(enable, WriteIndex(p, "/sys/fs/cgroup/warmbox/abc/memory.max"));
  EXPECT_LT(enable, WriteIndex(p, "/sys/fs/cgroup/warmbox/abc/pids.max"));
  EXPECT_LT(enable, WriteIndex(p, "/sys/fs/cgroup/warmbox/abc/cpu.max"));
  // And the root must pass them down to the parent before that.
  int root = WriteIndex(p, "/sys/fs/cgroup/cgroup.subtree_control");
  ASSERT_GE(root, 0);
  EXPECT_LT(root, enable);
}

TEST(PlanSandboxCgroupTest, V2HasNoAttachEntries) {
  CgroupPlan p = PlanSandboxCgroup(V2Layout(), "abc", TestLimits(), "");
  EXPECT_TRUE(p.attach.empty());
  EXPECT_TRUE(p.thread_moves.empty());  // born there by CLONE_INTO_CGROUP alone
  EXPECT_FALSE(HasWriteEndingWith(p, "memory.limit_in_bytes"));
}

TEST(PlanSandboxCgroupTest, V2NoCpuMaxWhenUnlimited) {
  CgroupPlan p = PlanSandboxCgroup(V2Layout(), "abc", TestLimits(0), "");
  EXPECT_FALSE(HasWriteEndingWith(p, "/cpu.max"));
  EXPECT_NE(FindWrite(p, "/sys/fs/cgroup/warmbox/abc/memory.max"), nullptr);
}

TEST(PlanSandboxCgroupTest, ParentOverrideOnV2) {
  CgroupPlan p = PlanSandboxCgroup(V2Layout(), "abc", TestLimits(), "/warmbox.slice");
  EXPECT_EQ(p.v2_dir, "/sys/fs/cgroup/warmbox.slice/abc");
  EXPECT_EQ(p.parents, std::vector<std::string>{"/sys/fs/cgroup/warmbox.slice"});
  EXPECT_NE(FindWrite(p, "/sys/fs/cgroup/warmbox.slice/cgroup.subtree_control"), nullptr);
  EXPECT_NE(FindWrite(p, "/sys/fs/cgroup/warmbox.slice/abc/memory.max"), nullptr);
}

TEST(PlanSandboxCgroupTest, DistinctIdsGetDistinctDirs) {
  CgroupLayout l = HybridLayout();
  CgroupPlan a = PlanSandboxCgroup(l, "a1", TestLimits(), "");
  CgroupPlan b = PlanSandboxCgroup(l, "b2", TestLimits(), "");
  EXPECT_EQ(a.parents, b.parents);
  for (const auto& d : a.dirs) {
    EXPECT_EQ(std::find(b.dirs.begin(), b.dirs.end(), d), b.dirs.end()) << d;
  }
}

}  // namespace
}  // namespace wb

namespace wb {
namespace {

// Freeze on plain files standing in for cgroupfs: what is written, and the
// bounded wait on what the kernel would report.
TEST(CgroupFreezeTest, V2WritesFreezeAndWaitsForEvents) {
  std::string d = wb::testing::MakeTempDir("wb-freeze-v2");
  ASSERT_FALSE(d.empty());
  ASSERT_TRUE(WriteFileAtomic(d + "/cgroup.freeze", "0\n").ok());
  ASSERT_TRUE(WriteFileAtomic(d + "/cgroup.events", "populated 1\nfrozen 1\n").ok());
  Cgroup cg = Cgroup::FromDirs({d});
  ASSERT_TRUE(cg.Freeze(true, 50).ok());
  EXPECT_EQ(Trim(*ReadFile(d + "/cgroup.freeze")), "1");
  // The kernel never says "frozen 0": the thaw times out, with a clear error.
  auto thaw = cg.Freeze(false, 20);
  ASSERT_FALSE(thaw.ok());
  EXPECT_EQ(thaw.error().code, ErrorCode::kDeadlineExceeded);
  EXPECT_NE(thaw.error().ToString().find("frozen 0"), std::string::npos);
  cg = Cgroup();
  (void)RemoveTree(d);
}

TEST(CgroupFreezeTest, V1FreezerState) {
  std::string d = wb::testing::MakeTempDir("wb-freeze-v1");
  ASSERT_FALSE(d.empty());
  ASSERT_TRUE(WriteFileAtomic(d + "/freezer.state", "THAWED\n").ok());
  Cgroup cg = Cgroup::FromDirs({d});
  ASSERT_TRUE(cg.Freeze(true, 50).ok());  // a plain file reads back what was written
  EXPECT_EQ(Trim(*ReadFile(d + "/freezer.state")), "FROZEN");
  ASSERT_TRUE(cg.Freeze(false, 50).ok());
  EXPECT_EQ(Trim(*ReadFile(d + "/freezer.state")), "THAWED");
  cg = Cgroup();
  (void)RemoveTree(d);
}

TEST(CgroupFreezeTest, NoFreezerIsFailedPrecondition) {
  std::string d = wb::testing::MakeTempDir("wb-freeze-none");
  Cgroup cg = Cgroup::FromDirs({d});
  auto r = cg.Freeze(true, 10);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kFailedPrecondition);
  cg = Cgroup();
  (void)RemoveTree(d);
}

TEST(CgroupFreezeTest, UsageReadsV2AndV1Files) {
  std::string v2 = wb::testing::MakeTempDir("wb-usage-v2");
  std::string v1 = wb::testing::MakeTempDir("wb-usage-v1");
  ASSERT_TRUE(WriteFileAtomic(v2 + "/cgroup.freeze", "0\n").ok());
  ASSERT_TRUE(WriteFileAtomic(v2 + "/cpu.stat", "usage_usec 1234\nuser_usec 1000\n").ok());
  ASSERT_TRUE(WriteFileAtomic(v1 + "/memory.usage_in_bytes", "4096\n").ok());
  ASSERT_TRUE(WriteFileAtomic(v1 + "/pids.current", "3\n").ok());
  Cgroup cg = Cgroup::FromDirs({v2, v1});
  ResourceUsage u = cg.Usage();
  EXPECT_EQ(u.cpu_usage_us, 1234u);
  EXPECT_EQ(u.memory_bytes, 4096u);
  EXPECT_EQ(u.pids, 3u);
  cg = Cgroup();
  (void)RemoveTree(v2);
  (void)RemoveTree(v1);
}

TEST(CgroupFreezeTest, V1OnlyHostsGetAFreezerCgroup) {
  CgroupLayout l;
  l.v1_dir_of_self = {{"memory", "/sys/fs/cgroup/memory"}};
  l.v1_mount = {{"memory", "/sys/fs/cgroup/memory"}};
  l.v1_freezer_self = "/sys/fs/cgroup/freezer/me";
  l.v1_freezer_mount = "/sys/fs/cgroup/freezer";
  CgroupPlan p = PlanSandboxCgroup(l, "abc", Limits{}, "");
  ASSERT_EQ(p.dirs.size(), 2u);
  EXPECT_EQ(p.dirs[1], "/sys/fs/cgroup/freezer/me/warmbox/abc");
  // With a cgroup2 mount (hybrid, as here), its cgroup.freeze pauses: no freezer dir.
  l.unified_mount = "/sys/fs/cgroup/unified";
  l.unified_self = "/";
  p = PlanSandboxCgroup(l, "abc", Limits{}, "");
  for (const auto& d : p.dirs) EXPECT_EQ(d.find("freezer"), std::string::npos) << d;
}

}  // namespace
}  // namespace wb
