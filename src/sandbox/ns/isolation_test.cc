// Attacks on the ns driver that must fail, each beside a control that must
// work. The sandbox runs warmbox-probe (tests/probe.cc) for raw syscalls.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "agent/caps.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "image/default_image.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using proto::ExecRequest;
using wb::testing::Eventually;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kIsolationTest);

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = wb::testing::SandboxProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    state_ = wb::testing::MakeTempDir("wb-iso-test");
    ASSERT_FALSE(state_.empty());
    store_ = std::make_unique<ImageStore>(state_, kBase);
    // An image: the default busybox tree plus the probe and a setuid-root id.
    std::string src = state_ + "/src";
    auto built = BuildDefaultImage(src, 0);
    ASSERT_OK(built);
    CopyBinary(wb::testing::BuildDir() + "/warmbox-probe", src + "/bin/probe", 0755);
    CopyBinary("/bin/busybox", src + "/usr/local/bin/id", 04755);
    ASSERT_TRUE(store_->ImportDir("probe", src).ok());
    ASSERT_TRUE(RemoveTree(src).ok());
    NsDriverOptions o;
    o.state_dir = state_;
    o.agent_path = wb::testing::BuildDir() + "/warmbox-agent";
    o.uid_base = kBase;
    o.cgroup_parent = "/warmbox-iso-" + std::to_string(::getpid());
    cgroup_parent_ = o.cgroup_parent;
    auto d = NsDriver::Open(o, store_.get());
    ASSERT_OK(d);
    driver_ = std::move(*d);
  }
  void TearDown() override {
    driver_.reset();
    if (!state_.empty()) (void)RemoveTree(state_);
    if (auto layout = HostCgroupLayout(); layout.ok() && !cgroup_parent_.empty()) {
      for (const auto& p : PlanSandboxCgroup(*layout, "x", Limits{}, cgroup_parent_).parents)
        ::rmdir(p.c_str());
    }
  }

  static void CopyBinary(const std::string& from, const std::string& to, mode_t mode) {
    ASSERT_TRUE(MkdirAll(to.substr(0, to.rfind('/'))).ok());
    {
      std::ifstream in(from, std::ios::binary);
      std::ofstream out(to, std::ios::binary);
      out << in.rdbuf();
    }
    ASSERT_EQ(::chmod(to.c_str(), mode), 0);
  }

  std::unique_ptr<Sandbox> New(SandboxSpec spec = {}) {
    spec.image = "probe";
    auto sb = driver_->Create(spec);
    EXPECT_OK(sb);
    return sb.ok() ? std::move(*sb) : nullptr;
  }

  static ExecOutcome Run(Sandbox& sb, std::vector<std::string> argv, const std::string& user = "",
                         uint64_t timeout_ms = 10000) {
    ExecRequest req;
    req.argv = std::move(argv);
    req.user = user;
    req.timeout_ms = timeout_ms;
    ExecIo io;
    auto r = sb.Exec(req, io);
    EXPECT_OK(r);
    return r.ok() ? std::move(*r) : ExecOutcome{};
  }
  static ExecOutcome Sh(Sandbox& sb, const std::string& script, uint64_t timeout_ms = 10000) {
    return Run(sb, {"sh", "-c", script}, "", timeout_ms);
  }
  static std::string Probe(Sandbox& sb, std::vector<std::string> args) {
    args.insert(args.begin(), "probe");
    return std::string(Trim(Run(sb, args).stdout_data));
  }

  std::string state_, cgroup_parent_;
  std::unique_ptr<ImageStore> store_;
  std::unique_ptr<NsDriver> driver_;
};

TEST_F(IsolationTest, DeniedSyscallsFailWithEperm) {
  auto sb = New();
  ASSERT_TRUE(sb);
  for (const char* name :
       {"mount", "umount", "unshare-user", "clone-newuser", "init_module", "finit_module",
        "kexec_load", "bpf", "perf_event_open", "keyctl", "add_key", "reboot", "swapon",
        "clock_settime", "tiocsti", "tiocsti-high", "userfaultfd", "io_uring_setup", "setns"}) {
    EXPECT_EQ(Probe(*sb, {"syscall", name}), "EPERM") << name;
  }
  // Controls: ordinary calls still work.
  EXPECT_EQ(Probe(*sb, {"syscall", "getpid"}), "OK");
  EXPECT_EQ(Probe(*sb, {"syscall", "unshare-files"}), "OK");
  EXPECT_EQ(Sh(*sb, "echo child | cat").stdout_data, "child\n");  // fork (clone without NEWUSER)
  // The same attacks through busybox, as a user would type them.
  EXPECT_NE(Sh(*sb, "mount -t tmpfs none /mnt").exit.exit_code, 0);
  EXPECT_NE(Sh(*sb, "umount /proc").exit.exit_code, 0);
  EXPECT_NE(Sh(*sb, "unshare -U true").exit.exit_code, 0);
}

// Security review finding 7: `image rm` of a running sandbox's image (and
// then `image prune`) deleted the files under it (its /bin went from 274
// entries to 0). Removal now keeps what a sandbox mounts until it is gone.
TEST_F(IsolationTest, RemovingTheImageOfARunningSandboxKeepsItsFiles) {
  auto sb = New();
  ASSERT_TRUE(sb);
  const std::string before = Sh(*sb, "ls /bin | wc -l").stdout_data;
  ASSERT_GT(std::stoi(before), 10);
  auto rm = store_->Remove("probe");
  ASSERT_OK(rm);
  EXPECT_FALSE(*rm) << "deleted at once although a sandbox mounts it";
  EXPECT_FALSE(store_->Exists("probe"));
  auto rep = store_->Prune();
  ASSERT_OK(rep);
  EXPECT_EQ(rep->in_use, 1u);
  EXPECT_EQ(Sh(*sb, "ls /bin | wc -l").stdout_data, before);
  EXPECT_EQ(Sh(*sb, "echo still-here | cat").stdout_data, "still-here\n");
  // A new sandbox of the removed image is refused by name.
  SandboxSpec spec;
  spec.image = "probe";
  auto refused = driver_->Create(spec);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().ToString().find("no such image"), std::string::npos)
      << refused.error().ToString();
  // Once the sandbox is gone, the next prune deletes the tree.
  sb.reset();
  auto after = store_->Prune();
  ASSERT_OK(after);
  EXPECT_EQ(after->in_use, 0u);
  EXPECT_EQ(::rmdir(store_->TrashDir().c_str()), 0) << "trash/ is not empty";
}

TEST_F(IsolationTest, Pid1CannotBeTracedAndOutsideIsInvisible) {
  auto sb = New();
  ASSERT_TRUE(sb);
  EXPECT_EQ(Probe(*sb, {"syscall", "ptrace-pid1"}), "EPERM");
  EXPECT_NE(Sh(*sb, "cat /proc/1/environ").exit.exit_code, 0);
  // The test process itself, by its host pid: not in the sandbox's pid namespace.
  EXPECT_EQ(Probe(*sb, {"ptrace", std::to_string(::getpid())}), "ESRCH");
  EXPECT_EQ(Probe(*sb, {"kill", std::to_string(::getpid())}), "ESRCH");
}

TEST_F(IsolationTest, ProcAndSysAreMaskedOrReadOnly) {
  auto sb = New();
  ASSERT_TRUE(sb);
  if (PathExists("/proc/kcore")) {
    EXPECT_EQ(Sh(*sb, "head -c 1 /proc/kcore | wc -c").stdout_data, "0\n");
  }
  auto sysrq = Sh(*sb, "echo h > /proc/sysrq-trigger");
  EXPECT_NE(sysrq.exit.exit_code, 0);
  auto host = Sh(*sb, "echo evil > /proc/sys/kernel/hostname");
  EXPECT_NE(host.exit.exit_code, 0);
  EXPECT_NE(host.stderr_data.find("Read-only"), std::string::npos) << host.stderr_data;
  EXPECT_NE(Sh(*sb, "echo 1 > /proc/sys/vm/drop_caches").exit.exit_code, 0);
  EXPECT_EQ(Sh(*sb, "ls /sys | wc -l").stdout_data, "0\n")
      << "/sys is empty: nothing of the host's";
  auto sys = Sh(*sb, "mkdir /sys/kernel");
  EXPECT_NE(sys.exit.exit_code, 0);
  EXPECT_NE(sys.stderr_data.find("Read-only"), std::string::npos) << sys.stderr_data;
  // Control: the sandbox's own proc works.
  EXPECT_EQ(Sh(*sb, "cat /proc/self/status | grep -c ^Pid").stdout_data, "1\n");
}

TEST_F(IsolationTest, NoNewPrivilegesAndTheDocumentedCapabilities) {
  auto sb = New();
  ASSERT_TRUE(sb);
  auto st = Sh(*sb, "grep -E '^(NoNewPrivs|CapBnd|CapEff|CapAmb|Seccomp):' /proc/self/status")
                .stdout_data;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(agent::DefaultKeepCaps()));
  EXPECT_NE(st.find("NoNewPrivs:\t1"), std::string::npos) << st;
  EXPECT_NE(st.find(std::string("CapBnd:\t") + hex), std::string::npos) << st;
  EXPECT_NE(st.find(std::string("CapEff:\t") + hex), std::string::npos) << st;
  EXPECT_NE(st.find("CapAmb:\t0000000000000000"), std::string::npos) << st;
  EXPECT_NE(st.find("Seccomp:\t2"), std::string::npos) << st;
  // A setuid-root binary run by a user does not make it root.
  EXPECT_EQ(Run(*sb, {"/usr/local/bin/id", "-u"}, "user").stdout_data, "1000\n");
  auto user = Run(*sb, {"sh", "-c", "grep CapEff /proc/self/status"}, "user").stdout_data;
  EXPECT_NE(user.find("CapEff:\t0000000000000000"), std::string::npos) << user;
}

TEST_F(IsolationTest, ForkBombStopsAtThePidsLimitAndOthersRun) {
  SandboxSpec bomb_spec;
  bomb_spec.limits.pids = 64;
  auto bomb = New(bomb_spec);
  auto other = New();
  ASSERT_TRUE(bomb && other);
  std::atomic<bool> done{false};
  ExecOutcome bomb_out;
  std::thread t([&] {
    bomb_out = Sh(*bomb, "f() { f | f & }; f; sleep 1; echo still-here", 3000);
    done = true;
  });
  // A concurrent run in another sandbox completes normally meanwhile.
  auto ok = Sh(*other, "echo fine");
  EXPECT_EQ(ok.stdout_data, "fine\n");
  t.join();
  EXPECT_TRUE(done);
  EXPECT_NE(bomb_out.stderr_data.find("fork"), std::string::npos)
      << bomb_out.stderr_data.substr(0, 200);
  // The run ended (by itself or at its timeout; either way its whole process
  // group is killed), and the sandbox survives its bomb and still serves.
  EXPECT_TRUE(Eventually([&] { return Sh(*bomb, "echo after").stdout_data == "after\n"; }));
}

TEST_F(IsolationTest, MemoryLimitKillsWithOomReported) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 32 << 20;
  auto sb = New(spec);
  ASSERT_TRUE(sb);
  auto r = Sh(*sb, "dd if=/dev/zero of=/dev/null bs=64M count=1");
  EXPECT_EQ(r.exit.exit_code, 137);
  EXPECT_TRUE(r.exit.oom_killed);
  // Control: below the limit works, in the same sandbox, and is no OOM.
  auto small = Sh(*sb, "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null; echo ok");
  EXPECT_EQ(small.stdout_data, "ok\n");
  EXPECT_FALSE(small.exit.oom_killed);
}

TEST_F(IsolationTest, NoNetworkOut) {
  // A listener on the host's loopback must be unreachable from inside.
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(l.valid());
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(l.get(), 1), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(l.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string port = std::to_string(ntohs(addr.sin_port));
  auto sb = New();
  ASSERT_TRUE(sb);
  EXPECT_EQ(Probe(*sb, {"connect", "127.0.0.1", port}), "ECONNREFUSED")
      << "the sandbox's lo is its own";
  EXPECT_EQ(Probe(*sb, {"connect", "10.0.0.1", "80"}), "ENETUNREACH");
  EXPECT_EQ(Probe(*sb, {"connect", "8.8.8.8", "53"}), "ENETUNREACH");
  EXPECT_NE(Sh(*sb, "ping -c 1 -W 1 8.8.8.8").exit.exit_code, 0);
}

TEST_F(IsolationTest, SandboxesCannotReachEachOther) {
  // Every sandbox has its own uid range (uid_slots.h): the whole span.
  const uint32_t hi = kBase + UidSpan(kDefaultUidSlots);
  auto before = wb::testing::PidsWithUidIn(kBase, hi);
  auto a = New();
  auto b_sb = New();
  ASSERT_TRUE(a && b_sb);
  auto after = wb::testing::PidsWithUidIn(kBase, hi);
  ASSERT_EQ(after.size(), before.size() + 2);
  // B's files.
  ASSERT_EQ(Sh(*b_sb, "echo b-secret > /tmp/secret && echo b-secret > /root/secret").exit.exit_code,
            0);
  EXPECT_EQ(
      Sh(*a, "grep -rl b-secret /tmp /root /home /etc /var /run 2>/dev/null | wc -l").stdout_data,
      "0\n");
  EXPECT_EQ(Sh(*b_sb, "grep -rl b-secret /tmp /root | wc -l").stdout_data, "2\n") << "control";
  // B's processes, by their host pids: invisible, unsignalable, untraceable.
  for (pid_t pid : after) {
    if (before.count(pid)) continue;
    EXPECT_EQ(Probe(*a, {"kill", std::to_string(pid)}), "ESRCH");
    EXPECT_EQ(Probe(*a, {"ptrace", std::to_string(pid)}), "ESRCH");
  }
  EXPECT_EQ(Sh(*a, "ls /proc | grep -c '^[0-9]'").stdout_data.size() <= 2, true);
  // An abstract Unix socket of B (network namespaces keep them apart).
  ExecRequest listen;
  listen.argv = {"probe", "listen-abstract", "wb-isolation", "2"};
  ExecIo io;
  std::atomic<bool> listening{false};
  io.has_stdin_data = false;
  io.on_stdout = [&](std::string_view d) {
    if (d.find("LISTENING") != std::string_view::npos) listening = true;
  };
  listen.timeout_ms = 3000;
  std::thread t([&] { (void)b_sb->Exec(listen, io); });
  ASSERT_TRUE(Eventually([&] { return listening.load(); }, 3000));
  EXPECT_EQ(Probe(*b_sb, {"connect-abstract", "wb-isolation"}), "OK")
      << "control: B reaches its own";
  EXPECT_EQ(Probe(*a, {"connect-abstract", "wb-isolation"}), "ECONNREFUSED");
  t.join();
}

// Issue 19, finding 9: a command held the agent's host-facing socket (fd 3)
// and could answer the host's heartbeats. Commands start with stdio only.
TEST_F(IsolationTest, CommandsHoldNoAgentSocket) {
  auto sb = New();
  ASSERT_TRUE(sb);
  // Busybox's ls may run inside the shell (and list its own directory fd):
  // the probe lists its fds without the one it reads them with.
  EXPECT_EQ(Probe(*sb, {"fds"}), "0\n1\n2");
  EXPECT_EQ(Sh(*sb, "ls -l /proc/$$/fd | grep -c socket:").stdout_data, "0\n");
}

}  // namespace
}  // namespace wb
