// A uid range per sandbox (issue 19, finding 5), for real: root, the ns
// driver. Kernel quotas counted per user (inotify instances here) are each
// sandbox's own, neither another sandbox's nor host root's; sandboxes run as
// different host uids; a sandbox adopted by the next daemon keeps its range.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"
#include "image/default_image.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/sandbox_dir.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using proto::ExecRequest;
using wb::testing::Eventually;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kUidSlotsTest);
constexpr uint32_t kSlots = 8;

class UidSlotsRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = wb::testing::SandboxProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    state_ = wb::testing::MakeTempDir("wb-slots-test");
    ASSERT_FALSE(state_.empty());
    store_ = std::make_unique<ImageStore>(state_, kBase);
    std::string src = state_ + "/src";
    ASSERT_OK(BuildDefaultImage(src, 0));
    const std::string probe = src + "/bin/probe";
    {
      std::ifstream in(wb::testing::BuildDir() + "/warmbox-probe", std::ios::binary);
      std::ofstream out(probe, std::ios::binary);
      out << in.rdbuf();
    }
    ASSERT_EQ(::chmod(probe.c_str(), 0755), 0);
    ASSERT_OK(store_->ImportDir("probe", src));
    ASSERT_OK(RemoveTree(src));
    cgroup_parent_ = "/warmbox-slots-" + std::to_string(::getpid());
    driver_ = Open(kSlots);
    ASSERT_TRUE(driver_);
  }
  void TearDown() override {
    driver_.reset();
    if (!state_.empty()) (void)RemoveTree(state_);
    if (auto layout = HostCgroupLayout(); layout.ok() && !cgroup_parent_.empty()) {
      for (const auto& p : PlanSandboxCgroup(*layout, "x", Limits{}, cgroup_parent_).parents)
        ::rmdir(p.c_str());
    }
    EXPECT_TRUE(Eventually([] {
      return wb::testing::PidsWithUidIn(kBase, kBase + UidSpan(kSlots)).empty();
    })) << "sandbox processes left";
  }

  std::unique_ptr<NsDriver> Open(uint32_t slots) {
    NsDriverOptions o;
    o.state_dir = state_;
    o.agent_path = wb::testing::BuildDir() + "/warmbox-agent";
    o.uid_base = kBase;
    o.uid_slots = slots;
    o.cgroup_parent = cgroup_parent_;
    auto d = NsDriver::Open(o, store_.get());
    EXPECT_OK(d);
    return d.ok() ? std::move(*d) : nullptr;
  }

  std::unique_ptr<Sandbox> New(NsDriver& d) {
    SandboxSpec spec;
    spec.image = "probe";
    auto sb = d.Create(spec);
    EXPECT_OK(sb);
    return sb.ok() ? std::move(*sb) : nullptr;
  }

  static ExecOutcome Run(Sandbox& sb, std::vector<std::string> argv) {
    ExecRequest req;
    req.argv = std::move(argv);
    req.timeout_ms = 10000;
    ExecIo io;
    auto r = sb.Exec(req, io);
    EXPECT_OK(r);
    return r.ok() ? std::move(*r) : ExecOutcome{};
  }

  // The effective host uid of a sandbox's agent (root inside).
  static uint32_t HostUid(const Sandbox& sb) {
    auto status = ReadFile("/proc/" + std::to_string(sb.host_pid()) + "/status");
    if (!status.ok()) return 0;
    for (const auto& line : Split(*status, '\n')) {
      if (!StartsWith(line, "Uid:")) continue;
      auto f = Split(Trim(line.substr(4)), '\t');
      if (f.size() >= 2) return static_cast<uint32_t>(std::stoul(f[1]));
    }
    return 0;
  }

  // How many inotify instances host root can make (up to n), all closed again.
  static int HostRootInotify(int n) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      int fd = ::inotify_init1(IN_CLOEXEC);
      if (fd < 0) break;
      fds.push_back(fd);
    }
    for (int fd : fds) ::close(fd);
    return static_cast<int>(fds.size());
  }

  // Runs `probe inotify 100000 hold` in sb until stdin ends: returns the
  // thread, the write end of its stdin and how many it holds.
  struct Hold {
    std::thread t;
    UniqueFd stdin_w;
    int filled = -1;
    ~Hold() {
      stdin_w.reset();
      if (t.joinable()) t.join();
    }
  };
  static void HoldInotify(Sandbox& sb, Hold& h) {
    auto made = MakePipe();
    ASSERT_OK(made);
    Pipe p = std::move(*made);
    h.stdin_w = std::move(p.write);
    auto filled = std::make_shared<std::atomic<int>>(-1);
    auto r = std::make_shared<UniqueFd>(std::move(p.read));
    h.t = std::thread([&sb, filled, r] {
      ExecRequest req;
      req.argv = {"probe", "inotify", "100000", "hold"};
      req.timeout_ms = 20000;
      ExecIo io;
      io.stdin_fd = r->get();
      std::string out;
      io.on_stdout = [&](std::string_view d) {
        out += d;
        if (out.find('\n') != std::string::npos && StartsWith(out, "FILLED ")) {
          *filled = std::stoi(out.substr(7));
        }
      };
      (void)sb.Exec(req, io);
    });
    ASSERT_TRUE(Eventually([&] { return filled->load() >= 0; }, 10000));
    h.filled = filled->load();
  }

  std::string state_, cgroup_parent_;
  std::unique_ptr<ImageStore> store_;
  std::unique_ptr<NsDriver> driver_;
};

// The attack of the finding, on the shared range of earlier versions: every
// sandbox's user namespace owned by host root, so one sandbox's inotify
// instances are charged to host root (kernel/ucount.c) and none are left for
// host root or any other sandbox.
TEST_F(UidSlotsRootTest, SharedRangeLetsOneSandboxTakeHostRootsInotify) {
  if (HostRootInotify(1) != 1) GTEST_SKIP() << "host root has no inotify instance to spare now";
  auto shared = Open(0);
  ASSERT_TRUE(shared);
  auto a = New(*shared);
  auto b = New(*shared);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(HostUid(*a), kBase);
  EXPECT_EQ(HostUid(*b), kBase);
  Hold h;
  HoldInotify(*a, h);
  EXPECT_GT(h.filled, 0);
  EXPECT_EQ(HostRootInotify(10), 0) << "the attack: host root starved";
  EXPECT_EQ(Trim(Run(*b, {"probe", "inotify", "10"}).stdout_data), "0")
      << "the attack: another sandbox starved";
}

TEST_F(UidSlotsRootTest, OneSandboxCannotTakeAnothersOrHostRootsInotify) {
  auto a = New(*driver_);
  auto b = New(*driver_);
  ASSERT_TRUE(a && b);
  Hold h;
  HoldInotify(*a, h);
  // Its own user namespace's limit (agent/setup.cc), within its slot's
  // host-wide per-user one.
  EXPECT_EQ(h.filled, 128);
  EXPECT_EQ(Trim(Run(*b, {"probe", "inotify", "10"}).stdout_data), "10");
  EXPECT_EQ(HostRootInotify(10), 10);
  // A user inside A has the same per-sandbox share, not more.
  h.stdin_w.reset();
  h.t.join();
  EXPECT_EQ(Trim(Run(*a, {"probe", "inotify", "1000"}).stdout_data), "128");
}

TEST_F(UidSlotsRootTest, SandboxesRunAsDifferentHostUidsAndCannotWriteEachOthersFiles) {
  auto a = New(*driver_);
  auto b = New(*driver_);
  ASSERT_TRUE(a && b);
  const uint32_t ua = HostUid(*a), ub = HostUid(*b);
  EXPECT_EQ(ua, kBase + 1 * 65536);  // slot 0 is the store's
  EXPECT_EQ(ub, kBase + 2 * 65536);
  // The image's files still belong to root inside (idmapped layers), and
  // what a sandbox writes belongs to its own range on the host.
  EXPECT_EQ(Trim(Run(*a, {"sh", "-c", "stat -c %u:%g /bin/busybox /etc; id -u"}).stdout_data),
            "0:0\n0:0\n0");
  ASSERT_EQ(Run(*a, {"sh", "-c", "echo secret > /root/f && chmod 0644 /root/f"}).exit.exit_code, 0);
  const std::string f = "/proc/" + std::to_string(a->host_pid()) + "/root/root/f";
  struct stat st;
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ua);
  // B's root, on the host, opens A's file for writing: refused.
  UniqueFd path(::open(f.c_str(), O_PATH | O_CLOEXEC));
  ASSERT_TRUE(path);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::syscall(SYS_setresgid, ub, ub, ub) != 0 || ::syscall(SYS_setresuid, ub, ub, ub) != 0)
      ::_exit(2);
    const std::string self = "/proc/self/fd/" + std::to_string(path.get());
    int fd = ::open(self.c_str(), O_WRONLY);
    ::_exit(fd < 0 && errno == EACCES ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_F(UidSlotsRootTest, AdoptedSandboxKeepsItsSlotAndDestroyFreesIt) {
  auto a = New(*driver_);
  ASSERT_TRUE(a);
  const uint32_t ua = HostUid(*a);
  ASSERT_EQ(ua, kBase + 65536);
  AdoptSpec spec;
  spec.dir = a->host_dir();
  spec.image = "probe";
  spec.pid = a->host_pid();
  spec.start_time = ProcessStartTime(spec.pid);
  a->Abandon();
  a.reset();
  // The next daemon: a new driver on the same state dir.
  driver_.reset();
  driver_ = Open(kSlots);
  ASSERT_TRUE(driver_);
  auto adopted = driver_->Adopt(spec);
  ASSERT_OK(adopted);
  EXPECT_EQ(HostUid(**adopted), ua);
  EXPECT_EQ(Trim(Run(**adopted, {"id", "-u"}).stdout_data), "0");
  auto b = New(*driver_);
  ASSERT_TRUE(b);
  EXPECT_EQ(HostUid(*b), kBase + 2 * 65536) << "slot 1 is still the adopted sandbox's";
  ASSERT_OK((*adopted)->Destroy());
  // Still our child (this test spawned it): an adopted process is reaped by
  // its parent, as a daemon's is by init.
  ::waitpid(spec.pid, nullptr, 0);
  auto c = New(*driver_);
  ASSERT_TRUE(c);
  EXPECT_EQ(HostUid(*c), ua) << "freed by destroy";
}

}  // namespace
}  // namespace wb
