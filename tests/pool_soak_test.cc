// 500 warm runs in a row through one daemon leave no leak: the daemon's fds,
// the sandbox processes, mounts, cgroups and sandbox dirs are back to their
// baseline (the idle set) afterwards. Label: slow.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "base/child.h"
#include "base/fs.h"
#include "daemon/client.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using wb::testing::Eventually;
constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kPoolSoakTest);

std::string ListFds(const std::string& dir) {
  std::string out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char buf[256];
    ssize_t n = ::readlink((dir + "/" + e->d_name).c_str(), buf, sizeof buf - 1);
    out += std::string(e->d_name) + " -> " +
           (n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?") + "\n";
  }
  ::closedir(d);
  return out;
}

size_t CountDir(const std::string& dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

TEST(PoolSoakTest, FiveHundredRunsLeakNothing) {
  std::string why = wb::testing::SandboxProbe();
  if (!why.empty()) GTEST_SKIP() << why;
  std::string state = wb::testing::MakeTempDir("wb-soak");
  std::string sock = state + "/pool.sock";
  SpawnOptions o;
  o.path = wb::testing::BuildDir() + "/warmbox";
  o.argv = {"warmbox",     "--state-dir", state,  "--userns-base", std::to_string(kBase),
            "--log-level", "warn",        "pool", "start",         "--socket",
            sock,          "--size",      "2",    "--max",         "4"};
  auto daemon = ChildProcess::Spawn(o);
  ASSERT_TRUE(daemon.ok());
  daemon::PoolClient client(sock);
  auto settled = [&] {
    auto st = client.Status();
    return st.ok() && st->size() == 1 && (*st)[0].idle == 2 && (*st)[0].creating == 0 &&
           (*st)[0].active == 0;
  };
  ASSERT_TRUE(Eventually(settled, 10000));

  auto layout = HostCgroupLayout();
  ASSERT_TRUE(layout.ok());
  auto plan = PlanSandboxCgroup(*layout, "x", Limits{}, "");
  auto cgroups = [&] {
    size_t n = 0;
    for (const auto& p : plan.parents) n += wb::testing::DirsBelow(p).size();
    return n;
  };
  const std::string fd_dir = "/proc/" + std::to_string(daemon->pid()) + "/fd";
  // Client connections close a moment after their reply: count once only the
  // listening socket is left.
  auto quiet = [&] {
    std::string l = ListFds(fd_dir);
    size_t sockets = 0;
    for (size_t p = l.find("socket:"); p != std::string::npos; p = l.find("socket:", p + 1))
      ++sockets;
    return sockets == 1;
  };
  ASSERT_TRUE(Eventually(quiet, 2000));
  const size_t fds_before = CountDir(fd_dir);
  const std::string fd_list_before = ListFds(fd_dir);
  size_t user_ns_before = 0;
  for (size_t p = fd_list_before.find("user:["); p != std::string::npos;
       p = fd_list_before.find("user:[", p + 1)) {
    ++user_ns_before;
  }
  const size_t cgroups_before = cgroups();
  const auto mounts_before = wb::testing::MountPoints();
  const size_t procs_before =
      wb::testing::PidsWithUidIn(kBase, kBase + UidSpan(kDefaultUidSlots)).size();
  const size_t threads_before = CountDir("/proc/" + std::to_string(daemon->pid()) + "/task");
  EXPECT_EQ(procs_before, 2u) << "one agent per idle sandbox";

  for (int i = 0; i < 500; ++i) {
    auto r = client.Run(
        proto::RunRequest{std::nullopt, {"sh", "-c", "echo $((" + std::to_string(i) + "+1))"}});
    ASSERT_OK(r);
    ASSERT_EQ(r->stdout_data, std::to_string(i + 1) + "\n");
  }
  ASSERT_TRUE(Eventually(settled, 10000));
  EXPECT_TRUE(Eventually(quiet, 2000));
  // The ns driver keeps one idmap user namespace per uid slot it has used
  // (sandbox/ns/idmap_mount.h): bounded by the slots, never by the runs, and
  // slots are taken lowest first, so 500 runs through a pool of at most 4
  // use only a few. Every other fd is back to its count.
  auto user_ns_fds = [&] {
    std::string l = ListFds(fd_dir);
    size_t n = 0;
    for (size_t p = l.find("user:["); p != std::string::npos; p = l.find("user:[", p + 1)) ++n;
    return n;
  };
  const size_t user_ns_after = user_ns_fds();
  EXPECT_LE(user_ns_after, 16u) << ListFds(fd_dir);
  EXPECT_EQ(CountDir(fd_dir) - user_ns_after, fds_before - user_ns_before)
      << "before:\n"
      << fd_list_before << "after:\n"
      << ListFds(fd_dir);
  EXPECT_EQ(CountDir("/proc/" + std::to_string(daemon->pid()) + "/task"), threads_before);
  EXPECT_EQ(cgroups(), cgroups_before);
  EXPECT_EQ(wb::testing::MountPoints(), mounts_before);
  EXPECT_TRUE(Eventually([&] {
    return wb::testing::PidsWithUidIn(kBase, kBase + UidSpan(kDefaultUidSlots)).size() ==
           procs_before;
  }));
  EXPECT_EQ(CountDir(state + "/sandboxes"), 2u);
  auto st = client.Status();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ((*st)[0].total_acquired, 500u);

  ASSERT_TRUE(daemon->Signal(SIGTERM).ok());
  auto exit = daemon->Wait();
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->code, 0);
  EXPECT_EQ(CountDir(state + "/sandboxes"), 0u);
  EXPECT_EQ(cgroups(), cgroups_before - 2 * plan.dirs.size());
  (void)RemoveTree(state);
}

}  // namespace
}  // namespace wb
