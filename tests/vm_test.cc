// The vm driver, for real: QEMU microVMs with Debian's guest kernel (TCG where
// the CPU has no vmx/svm, as on CI). Few boots, many checks per boot: one VM
// serves every exec check, one QEMU cannot start, one guest panics, and a
// pool boots three.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>

#include "agent/live_test_util.h"
#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox_dir.h"
#include "sandbox/vm/vm_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"
#include "tests/vm_fixture.h"

namespace wb {
namespace {

using proto::ExecRequest;
using wb::testing::Eventually;

using wb::testing::Entries;
using wb::testing::QemuPids;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kVmTest);
constexpr int kBootMs = wb::testing::kVmBootMs;

class VmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!wb::testing::VmProbe().empty()) return;
    env_ = new wb::testing::VmEnv("vm", kBase);
  }
  static void TearDownTestSuite() {
    delete sandbox_;
    sandbox_ = nullptr;
    delete driver_;
    driver_ = nullptr;
    delete env_;  // the store, the state dir, the (empty) parents of our cgroups
    env_ = nullptr;
  }
  void SetUp() override {
    std::string why = wb::testing::VmProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    ASSERT_NE(env_, nullptr);
  }

  static vm::VmDriverOptions Options() { return env_->Options(); }  // cgroups of our own
  static const std::string& CgroupParent() { return env_->cgroup_parent; }
  static const std::string& State() { return env_->state; }
  static ImageStore* Store() { return env_->store.get(); }

  // The one VM of the exec checks, booted on first use.
  static Sandbox* Vm() {
    if (!sandbox_) {
      if (!driver_) {
        auto d = vm::VmDriver::Open(Options(), Store());
        EXPECT_OK(d);
        if (!d.ok()) return nullptr;
        driver_ = d->release();
      }
      SandboxSpec spec;
      spec.limits.memory_bytes = 256u << 20;
      auto sb = driver_->Create(spec);
      EXPECT_OK(sb);
      if (!sb.ok()) return nullptr;
      sandbox_ = sb->release();
    }
    return sandbox_;
  }

  static ExecOutcome Run(ExecRequest req, const std::string* in = nullptr) {
    Sandbox* sb = Vm();
    if (!sb) return {};
    return wb::testing::ExecIn(*sb, req, in);
  }
  static ExecOutcome Sh(const std::string& script, uint64_t timeout_ms = 0) {
    Sandbox* sb = Vm();
    if (!sb) return {};
    return wb::testing::ShIn(*sb, script, timeout_ms);
  }

  static wb::testing::VmEnv* env_;
  static vm::VmDriver* driver_;
  static Sandbox* sandbox_;
};

wb::testing::VmEnv* VmTest::env_ = nullptr;
vm::VmDriver* VmTest::driver_ = nullptr;
Sandbox* VmTest::sandbox_ = nullptr;

// One boot for every check of a running VM (ctest runs each test in a
// process of its own, so the checks share a test, not a fixture).
TEST_F(VmTest, BootExecAndTeardown) {
  ASSERT_NE(Vm(), nullptr);
  // --- ExitCodes
  {
    EXPECT_EQ(Sh("exit 0").exit.exit_code, 0);
    EXPECT_EQ(Sh("exit 3").exit.exit_code, 3);
    ExecRequest missing;
    missing.argv = {"no-such-program"};
    auto m = Run(missing);
    EXPECT_EQ(m.exit.exit_code, 127);
    EXPECT_NE(m.stderr_data.find("not found"), std::string::npos) << m.stderr_data;
    // The same words as the ns driver's, on both paths (cli_test, pool_test).
    EXPECT_EQ(m.stderr_data, wb::testing::kMissingProgramStderr);
    // No command at all: the run policy's refusal, the ns driver's too.
    ExecIo io;
    auto none = Vm()->Exec(ExecRequest{}, io);
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().ToString(), wb::testing::kMissingCommandError);
    auto t = Sh("sleep 30", 500);
    EXPECT_EQ(t.exit.exit_code, 137);
    EXPECT_TRUE(t.exit.timed_out);
  }
  // --- OutputStdinEnvCwd
  {
    // 1 MiB of stdout, byte-exact through the virtio-serial port.
    auto big = Sh("yes 0123456789abcdef | head -c 1048576");
    std::string want;
    while (want.size() < 1048576) want += "0123456789abcdef\n";
    want.resize(1048576);
    EXPECT_EQ(big.exit.exit_code, 0);
    EXPECT_EQ(big.stdout_data.size(), want.size());
    EXPECT_TRUE(big.stdout_data == want) << "1 MiB of stdout differs";

    std::string in;
    for (int i = 0; i < 70000; ++i) in += static_cast<char>(i * 7 + i / 256);
    ExecRequest cat;
    cat.argv = {"cat"};
    auto echoed = Run(cat, &in);
    EXPECT_EQ(echoed.exit.exit_code, 0);
    EXPECT_TRUE(echoed.stdout_data == in)
        << "stdin came back different (" << echoed.stdout_data.size() << " bytes)";

    ExecRequest env;
    env.argv = {"sh", "-c", "echo $GREETING; pwd"};
    env.env = {"GREETING=hello vm"};
    env.cwd = "/tmp";
    auto e = Run(env);
    EXPECT_EQ(e.stdout_data, "hello vm\n/tmp\n");
  }
  // --- GuestHasItsOwnKernelProcessesAndNetwork
  {
    auto u = Sh("uname -r");
    EXPECT_EQ(u.stdout_data, driver_->info().kernel.version + "\n");
    utsname host;
    ASSERT_EQ(::uname(&host), 0);
    EXPECT_NE(u.stdout_data, std::string(host.release) + "\n");
    // PID 1 is the agent, started by the guest kernel as /init.
    auto init = Sh("tr '\\0' ' ' < /proc/1/cmdline");
    EXPECT_EQ(init.stdout_data.rfind("/init --guest", 0), 0u) << init.stdout_data;
    // No host process is visible: the test's own pid, if the guest has one,
    // is some other process.
    auto mine = Sh("cat /proc/" + std::to_string(::getpid()) + "/cmdline 2>/dev/null; true");
    EXPECT_EQ(mine.stdout_data.find("vm_test"), std::string::npos);
    auto procs = Sh("ps -o comm | grep -v -e '^\\[' -e COMMAND | sort | uniq | tr '\\n' ' '");
    EXPECT_EQ(procs.stdout_data.find("qemu"), std::string::npos) << procs.stdout_data;
    EXPECT_EQ(Sh("ls /sys/class/net").stdout_data, "lo\n");
    // The image's files keep their own owners (root), not the host's uid range.
    EXPECT_EQ(Sh("stat -c %u:%g /bin/busybox").stdout_data, "0:0\n");
    // The root is an overlay with a writable tmpfs upper.
    EXPECT_EQ(Sh("echo x > /new-file && cat /new-file").stdout_data, "x\n");
    EXPECT_EQ(Sh("hostname").stdout_data, sandbox_->id() + "\n");
  }
  // --- GuestKernelKnobsAndDevicesAreClosed (security review finding 6):
  // guest root wrote kernel.core_pattern (a program the kernel runs as full
  // root) and reached /dev/userfaultfd. Commands now get the ns driver's
  // /proc masks, a read-only /sys and the minimal /dev.
  {
    const std::string pattern = Sh("cat /proc/sys/kernel/core_pattern").stdout_data;
    ASSERT_FALSE(pattern.empty());
    EXPECT_NE(Sh("echo '|/tmp/x' > /proc/sys/kernel/core_pattern").exit.exit_code, 0);
    EXPECT_EQ(Sh("cat /proc/sys/kernel/core_pattern").stdout_data, pattern);
    EXPECT_NE(Sh("echo /tmp/x > /sys/kernel/uevent_helper").exit.exit_code, 0);
    EXPECT_EQ(Sh("ls /dev | tr '\\n' ' '").stdout_data,
              "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero ");
    for (const char* dev : {"userfaultfd", "kmsg", "mem", "vda", "console"}) {
      EXPECT_NE(Sh(std::string("test -e /dev/") + dev).exit.exit_code, 0) << dev;
    }
    // Controls: the devices a program needs still work.
    EXPECT_EQ(Sh("head -c 16 /dev/urandom | wc -c").stdout_data, "16\n");
    EXPECT_EQ(Sh("echo gone > /dev/null && echo ok").stdout_data, "ok\n");
    EXPECT_EQ(Sh("echo shm > /dev/shm/x && cat /dev/shm/x").stdout_data, "shm\n");
  }
  // --- Live: claimed, then every operation a connection of its own to
  // live.sock, each relayed as a channel over the VM's one port
  // (sandbox/vm/mux_bridge.h), pause and resume by QMP.
  {
    using live_test::Wire;
    using proto::FrameType;
    Sandbox* sb = Vm();
    ASSERT_NE(sb, nullptr);
    ASSERT_OK(AgentRequest(sb->endpoint(), FrameType::kClaim,
                           R"({"env":["LIVE=yes"],"persist":false})", FrameType::kClaimReply,
                           kBootMs));
    ASSERT_OK(sb->ServeLive());
    ASSERT_OK(sb->ServeLive());  // idempotent
    const std::string live = sb->live_endpoint().socket_path;
    EXPECT_EQ(live, SandboxesDir(State()) + "/" + sb->id() + "/live.sock");
    auto exec = [](bool keep, const std::string& script) {
      ExecRequest r;
      r.argv = {"sh", "-c", script};
      r.keep = keep;
      return proto::ToJson(r);
    };
    // An exec: output, exit code, the claim's env.
    {
      Wire w(live);
      ASSERT_TRUE(w.ok());
      w.Send(FrameType::kExec, exec(false, "echo $LIVE; echo oops >&2; exit 5"));
      auto o = w.UntilExit(kBootMs);
      EXPECT_EQ(o.out, "yes\n");
      EXPECT_EQ(o.err, "oops\n");
      ASSERT_TRUE(o.exit);
      EXPECT_EQ(o.exit->exit_code, 5);
    }
    // Two at once: the first waits for the second's file.
    {
      Wire a(live), b(live);
      a.Send(FrameType::kExec,
             exec(false, "while [ ! -e /tmp/flag ]; do sleep 0.05; done; echo a"));
      b.Send(FrameType::kExec, exec(false, "touch /tmp/flag; echo b"));
      EXPECT_EQ(b.UntilExit(kBootMs).out, "b\n");
      EXPECT_EQ(a.UntilExit(kBootMs).out, "a\n");
    }
    // A background process outlives its client and is attached again.
    int64_t pid = 0;
    {
      Wire k(live);
      k.Send(FrameType::kExec,
             exec(true, "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done"));
      auto s = k.Expect(FrameType::kStarted, kBootMs);
      ASSERT_TRUE(s) << k.last_unexpected();
      pid = proto::ParseStarted(*s)->pid;
      ASSERT_TRUE(k.UntilOutput("tick 0\n", nullptr, kBootMs));
    }
    Wire at(live);
    at.Send(FrameType::kAttach, proto::ToJson(proto::AttachRequest{pid, 0}));
    ASSERT_TRUE(at.Expect(FrameType::kStarted, kBootMs)) << at.last_unexpected();
    std::string ticks;
    ASSERT_TRUE(at.UntilOutput("tick 0\ntick 1\ntick 2\n", &ticks, kBootMs)) << ticks;
    // A file written, then read back.
    {
      Wire w(live);
      proto::FileRequest r;
      r.op = "write";
      r.path = "/tmp/dir/f.txt";
      w.Send(FrameType::kFile, proto::ToJson(r));
      w.Send(FrameType::kStdin, "hello ");
      w.Send(FrameType::kStdin, "file\n");
      w.Send(FrameType::kStdinClose);
      auto st = w.Expect(FrameType::kFileReply, kBootMs);
      ASSERT_TRUE(st) << w.last_unexpected();
      EXPECT_EQ(proto::ParseFileStat(*st)->size, 11u);
      Wire rd(live);
      r.op = "read";
      rd.Send(FrameType::kFile, proto::ToJson(r));
      ASSERT_TRUE(rd.Expect(FrameType::kFileReply, kBootMs)) << rd.last_unexpected();
      EXPECT_EQ(rd.Expect(FrameType::kStdout, kBootMs).value_or(""), "hello file\n");
      EXPECT_TRUE(rd.Expect(FrameType::kFileEnd, kBootMs)) << rd.last_unexpected();
    }
    // Paused: nothing runs (no tick, no answer); resumed: both go on.
    ASSERT_OK(sb->Pause(true));
    while (auto f = at.Next(500)) ticks += f->payload;  // what was on its way
    Wire p(live);
    p.Send(FrameType::kExec, exec(false, "echo after"));
    EXPECT_FALSE(at.Next(1500)) << "output while paused";
    EXPECT_FALSE(p.Next(10)) << "an answer while paused";
    ASSERT_OK(sb->Pause(false));
    EXPECT_EQ(p.UntilExit(kBootMs).out, "after\n");
    ASSERT_TRUE(at.UntilOutput("tick", nullptr, kBootMs));
    Wire kill(live);
    kill.Send(FrameType::kSignal, proto::ToJson(proto::SignalRequest{pid, 9}));
    EXPECT_TRUE(kill.Expect(FrameType::kSignalReply, kBootMs)) << kill.last_unexpected();
    auto x = at.UntilExit(kBootMs);
    ASSERT_TRUE(x.exit);
    EXPECT_EQ(x.exit->signal, 9);
  }
  // --- TeardownLeavesNothing
  {
    Sandbox* sb = Vm();
    ASSERT_NE(sb, nullptr);
    const std::string dir = SandboxesDir(State()) + "/" + sb->id();
    ASSERT_TRUE(PathExists(dir + "/agent.sock"));
    // QEMU runs in the sandbox's own cgroups.
    auto rec = ReadSandboxRecord(dir);
    ASSERT_OK(rec);
    ASSERT_FALSE(rec->cgroups.empty());
    for (const auto& cg : rec->cgroups) {
      EXPECT_NE(cg.find(CgroupParent()), std::string::npos) << cg;
      auto procs = ReadFile(cg + "/cgroup.procs");
      ASSERT_TRUE(procs.ok()) << cg;
      EXPECT_FALSE(Trim(*procs).empty()) << cg << " holds no process";
    }
    UniqueFd pidfd(::fcntl(sb->endpoint().liveness_fd, F_DUPFD_CLOEXEC, 0));
    ASSERT_TRUE(pidfd.valid());
    ASSERT_FALSE(QemuPids(kBase).empty()) << "QEMU should be running";
    ASSERT_TRUE(sb->Destroy().ok());
    pollfd p{pidfd.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 0), 1) << "QEMU still runs";
    EXPECT_FALSE(PathExists(dir));
    for (const auto& cg : rec->cgroups) EXPECT_FALSE(PathExists(cg)) << cg;
    EXPECT_TRUE(Entries(SandboxesDir(State())).empty());
    EXPECT_TRUE(QemuPids(kBase).empty());
    delete sandbox_;
    sandbox_ = nullptr;
  }
}

TEST_F(VmTest, QemuThatCannotStartFailsClearlyAndLeavesNothing) {
  // A kernel path that is missing: refused before QEMU runs.
  auto o = Options();
  o.kernel = State() + "/no-such-vmlinux";
  auto none = vm::VmDriver::Open(o, Store());
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().ToString().find("no-such-vmlinux): no such file"), std::string::npos)
      << none.error().ToString();
  // A file that is no kernel: QEMU itself fails, and says why.
  o.kernel = State() + "/not-a-kernel";
  ASSERT_TRUE(WriteFileAtomic(o.kernel, "this is not a kernel\n").ok());
  auto d = vm::VmDriver::Open(o, Store());
  ASSERT_OK(d);
  auto t0 = std::chrono::steady_clock::now();
  auto sb = (*d)->Create(SandboxSpec{});
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(sb.ok());
  const std::string msg = sb.error().ToString();
  EXPECT_NE(msg.find("qemu exited with code 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("qemu stderr: "), std::string::npos) << msg;
  EXPECT_LT(secs, 30) << msg;
  EXPECT_TRUE(Entries(SandboxesDir(State())).empty());
  EXPECT_TRUE(QemuPids(kBase).empty());
}

TEST_F(VmTest, GuestPanicFailsClearlyAndLeavesNothing) {
  // An initramfs that is junk: the kernel finds no /init and no root, and panics.
  auto o = Options();
  o.initrd = State() + "/junk-initrd";
  ASSERT_TRUE(WriteFileAtomic(o.initrd, std::string(4096, 'j')).ok());
  auto d = vm::VmDriver::Open(o, Store());
  ASSERT_OK(d);
  auto sb = (*d)->Create(SandboxSpec{});
  ASSERT_FALSE(sb.ok());
  const std::string msg = sb.error().ToString();
  EXPECT_NE(msg.find("Kernel panic"), std::string::npos) << msg;
  EXPECT_NE(msg.find("qemu exited"), std::string::npos) << msg;
  EXPECT_TRUE(Entries(SandboxesDir(State())).empty());
  EXPECT_TRUE(QemuPids(kBase).empty());
  // The console log of the failed VM is kept for the operator.
  EXPECT_FALSE(Entries(vm::FailedLogsDir(State())).empty());
}

TEST_F(VmTest, CliRunAndKernel) {
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> full = {wb::testing::BuildDir() + "/warmbox", "--state-dir", State(),
                                     "--userns-base", std::to_string(kBase)};
    full.insert(full.end(), args.begin(), args.end());
    return full;
  };
  auto kernel = vm::FindGuestKernel(vm::KernelRoot(), "");
  ASSERT_OK(kernel);
  auto info = wb::testing::RunProcess(cli({"vm", "kernel"}));
  EXPECT_EQ(info.code, 0) << info.err;
  EXPECT_NE(info.out.find("version      " + kernel->version + "\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("virtio_console.ko"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find(vm::KvmUsable() ? "accel        kvm" : "accel        tcg"),
            std::string::npos)
      << info.out;

  // One boot through the CLI: the command's exit code and stdin pass through.
  const std::string in = "from the host\n";
  auto run = wb::testing::RunProcess(
      cli({"run", "--driver", "vm", "--memory", "256m", "--", "sh", "-c", "cat; uname -r; exit 7"}),
      {}, &in);
  EXPECT_EQ(run.code, 7) << run.err;
  EXPECT_EQ(run.out, in + kernel->version + "\n");

  // Bad choices are one clear line and exit 125, before anything boots.
  auto bad = wb::testing::RunProcess(cli({"run", "--driver", "xen", "--", "true"}));
  EXPECT_EQ(bad.code, 125);
  EXPECT_NE(bad.err.find("--driver(xen): expected ns or vm"), std::string::npos) << bad.err;
  auto accel =
      wb::testing::RunProcess(cli({"run", "--driver", "vm", "--accel", "hvf", "--", "true"}));
  EXPECT_EQ(accel.code, 125);
  EXPECT_NE(accel.err.find("expected auto, kvm or tcg"), std::string::npos) << accel.err;
  auto ns_kernel = wb::testing::RunProcess(cli({"run", "--kernel", "/x", "--", "true"}));
  EXPECT_EQ(ns_kernel.code, 125);
  EXPECT_NE(ns_kernel.err.find("only the vm driver boots a kernel"), std::string::npos)
      << ns_kernel.err;
  EXPECT_TRUE(Entries(SandboxesDir(State())).empty());
  EXPECT_TRUE(QemuPids(kBase).empty());
}

TEST_F(VmTest, PoolWithTheVmDriver) {
  const std::string sock = State() + "/pool.sock";
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> full = {wb::testing::BuildDir() + "/warmbox", "--state-dir", State(),
                                     "--userns-base", std::to_string(kBase)};
    full.insert(full.end(), args.begin(), args.end());
    return full;
  };
  SpawnOptions o;
  o.argv =
      cli({"pool", "start", "--socket", sock, "--driver", "vm", "--size", "1", "--memory", "256m"});
  o.path = o.argv[0];
  UniqueFd log(::open((State() + "/daemon.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  o.fds = {{log.get(), 2}};
  auto daemon = ChildProcess::Spawn(o);
  ASSERT_OK(daemon);
  auto daemon_log = [&] {
    return ReadFile(State() + "/daemon.log").ok() ? *ReadFile(State() + "/daemon.log") : "";
  };
  auto idle = [&] {
    auto st = daemon::PoolClient(sock).Status();
    return st.ok() && !st->empty() && (*st)[0].idle == 1;
  };
  ASSERT_TRUE(Eventually(idle, kBootMs)) << daemon_log();

  auto r1 = wb::testing::RunProcess(cli({"pool", "run", "--socket", sock, "--", "uname", "-r"}));
  EXPECT_EQ(r1.code, 0) << r1.err;
  auto kernel = vm::FindGuestKernel(vm::KernelRoot(), "");
  ASSERT_TRUE(kernel.ok());
  EXPECT_EQ(r1.out, kernel->version + "\n");
  const std::string in = "via the pool\n";
  auto r2 = wb::testing::RunProcess(
      cli({"pool", "run", "--socket", sock, "--", "sh", "-c", "cat; exit 4"}), {}, &in);
  EXPECT_EQ(r2.code, 4) << r2.err;
  EXPECT_EQ(r2.out, "via the pool\n");
  // A missing program through the daemon: 127 and the same words as every path.
  auto r3 =
      wb::testing::RunProcess(cli({"pool", "run", "--socket", sock, "--", "no-such-program"}));
  EXPECT_EQ(r3.code, 127);
  EXPECT_EQ(r3.err, wb::testing::kMissingProgramStderr);

  auto status = wb::testing::RunProcess(cli({"pool", "status", "--socket", sock}));
  EXPECT_EQ(status.code, 0);
  EXPECT_NE(status.out.find("DRIVER"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find(" vm "), std::string::npos) << status.out;
  auto st = daemon::PoolClient(sock).Status();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->size(), 1u);
  EXPECT_EQ((*st)[0].driver, "vm");
  EXPECT_EQ((*st)[0].total_acquired, 3u);
  EXPECT_EQ((*st)[0].failed_creations, 0u);

  auto stop = wb::testing::RunProcess(cli({"pool", "stop", "--socket", sock}));
  EXPECT_EQ(stop.code, 0) << stop.err;
  auto ended = daemon->Wait();
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->code, 0) << daemon_log();
  EXPECT_TRUE(Entries(SandboxesDir(State())).empty());
  EXPECT_TRUE(QemuPids(kBase).empty());
}

}  // namespace
}  // namespace wb
