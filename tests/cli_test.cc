// End-to-end tests of the warmbox binary: what a user types, what they get.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "base/child.h"
#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using wb::testing::Eventually;
using wb::testing::ProcResult;

constexpr uint32_t kOwnBase = wb::testing::UidBase(wb::testing::UidUser::kCliTest);

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = wb::testing::SandboxProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    state_ = wb::testing::MakeTempDir("wb-cli-test");
    ASSERT_FALSE(state_.empty());
  }
  void TearDown() override {
    if (!state_.empty()) (void)RemoveTree(state_);
  }
  ProcResult Warmbox(std::vector<std::string> args, const std::string* stdin_data = nullptr) {
    args.insert(args.begin(), wb::testing::BuildDir() + "/warmbox");
    // The binary's own uid range (not the default one of a daemon on the host).
    return wb::testing::RunProcess(
        args, {"WARMBOX_STATE_DIR=" + state_, "WARMBOX_USERNS_BASE=" + std::to_string(kOwnBase)},
        stdin_data);
  }
  std::string state_;
};

TEST_F(CliTest, RunReturnsOutputAndExitCode) {
  auto r = Warmbox({"run", "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err, "oops\n");
}

TEST_F(CliTest, MissingProgramIs127WithTheAgentsMessage) {
  auto r = Warmbox({"run", "--", "no-such-program"});
  EXPECT_EQ(r.code, 127);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, wb::testing::kMissingProgramStderr);
  // No command and no Cmd in the image: the run policy's refusal, as on every path.
  auto none = Warmbox({"run"});
  EXPECT_EQ(none.code, 125);
  EXPECT_EQ(none.err, std::string("warmbox: ") + wb::testing::kMissingCommandError + "\n");
}

TEST_F(CliTest, StdinIsPassedThrough) {
  std::string input(300000, 'z');
  input += std::string("\0end", 4);
  auto r = Warmbox({"run", "--", "cat"}, &input);
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, input);
}

TEST_F(CliTest, OptionsReachTheCommand) {
  auto r = Warmbox({"run", "-e", "A=1", "-e", "B=two words", "-w", "/tmp", "-u", "user", "--memory",
                    "128m", "--pids", "64", "--", "sh", "-c", "echo \"$A|$B|$(pwd)|$(id -u)\""});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1|two words|/tmp|1000\n");
  // A repeatable option right before "--" takes one value, not the command.
  auto e = Warmbox({"run", "-e", "A=1", "--", "sh", "-c", "echo $A"});
  EXPECT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.out, "1\n");
  auto n = Warmbox({"run", "--nofile", "64", "--security-opt", "seccomp=unconfined", "--", "sh",
                    "-c", "ulimit -n; grep Seccomp: /proc/self/status"});
  EXPECT_EQ(n.code, 0) << n.err;
  EXPECT_EQ(n.out, "64\nSeccomp:\t0\n");
  auto oom = Warmbox(
      {"run", "--memory", "32m", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
  EXPECT_EQ(oom.code, 137);
  EXPECT_NE(oom.err.find("ran out of memory"), std::string::npos) << oom.err;
  auto t = Warmbox({"run", "--timeout", "0.2", "--", "sleep", "100"});
  EXPECT_EQ(t.code, 137);
  EXPECT_NE(t.err.find("timed out"), std::string::npos) << t.err;
}

TEST_F(CliTest, OwnErrorsExit125WithOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  std::vector<Case> cases = {
      {{"run", "--image", "nope", "--", "true"}, "no such image"},
      {{"run", "--memory", "lots", "--", "true"}, "--memory(lots)"},
      {{"run", "--pids", "-3", "--", "true"}, "--pids"},
      {{"run", "--timeout", "soon", "--", "true"}, "--timeout(soon)"},
      {{"run", "--security-opt", "seccomp=/no/such.json", "--", "true"}, "no such seccomp profile"},
      {{"run", "--security-opt", "apparmor=x", "--", "true"}, "seccomp="},
      {{"run", "--nofile", "0", "--", "true"}, "--nofile"},
      {{"run"}, "missing command"},
      {{"run", "--no-such-flag", "--", "true"}, "no-such-flag"},
      {{"frobnicate"}, "frobnicate"},
      {{"image", "import-dir", "x", "/no/such/dir"}, "/no/such/dir"},
  };
  for (const auto& c : cases) {
    auto r = Warmbox(c.args);
    EXPECT_EQ(r.code, 125) << c.args[0] << " " << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.rfind("warmbox: ", 0), 0u) << r.err;
  }
}

TEST_F(CliTest, ImageImportDirAndRunIt) {
  std::string src = wb::testing::MakeTempDir("wb-cli-img");
  ASSERT_TRUE(MkdirAll(src + "/bin").ok());
  ASSERT_EQ(::link("/bin/busybox", (src + "/bin/busybox").c_str()) == 0 ||
                ::symlink("/bin/busybox", (src + "/bin/nothing").c_str()) == 0,
            true);
  // A copy, not a link to the host file.
  (void)RemoveTree(src + "/bin/busybox");
  {
    std::ifstream in("/bin/busybox", std::ios::binary);
    std::ofstream out(src + "/bin/busybox", std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(::chmod((src + "/bin/busybox").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("busybox", (src + "/bin/sh").c_str()), 0);
  { std::ofstream(src + "/hello.txt") << "from my image\n"; }

  auto imp = Warmbox({"image", "import-dir", "mine:1", src});
  EXPECT_EQ(imp.code, 0) << imp.err;
  auto ls = Warmbox({"image", "ls"});
  EXPECT_EQ(ls.code, 0);
  EXPECT_NE(ls.out.find("mine:1"), std::string::npos) << ls.out;
  auto r =
      Warmbox({"run", "--image", "mine:1", "--", "/bin/sh", "-c", "/bin/busybox cat /hello.txt"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "from my image\n");
  (void)RemoveTree(src);
}

// If warmbox is killed, its sandbox dies with it, and gc removes what is left.
TEST_F(CliTest, KilledWarmboxLeavesNothingAfterGc) {
  SpawnOptions o;
  o.path = wb::testing::BuildDir() + "/warmbox";
  // A uid range of its own, so sandboxes of tests running in parallel do not count.
  o.argv = {"warmbox", "--state-dir", state_,  "--userns-base", std::to_string(kOwnBase),
            "run",     "--",          "sleep", "1000"};
  auto child = ChildProcess::Spawn(o);
  ASSERT_TRUE(child.ok());
  const uint32_t lo = kOwnBase, hi = kOwnBase + UidSpan(kDefaultUidSlots);
  // The sleep runs once a process of the sandbox range exists twice (agent + sleep).
  ASSERT_TRUE(Eventually([&] { return wb::testing::PidsWithUidIn(lo, hi).size() >= 2; }, 10000));
  std::string sandboxes = state_ + "/sandboxes";
  ASSERT_EQ(wb::testing::DirsBelow(sandboxes).size(), 2u);  // <id> and <id>/scratch
  ASSERT_TRUE(child->Signal(SIGKILL).ok());
  ASSERT_TRUE(child->Wait().ok());
  EXPECT_TRUE(Eventually([&] { return wb::testing::PidsWithUidIn(lo, hi).empty(); }, 2000))
      << "sandbox processes outlived warmbox";
  auto gc = Warmbox({"--userns-base", std::to_string(kOwnBase), "gc"});
  EXPECT_EQ(gc.code, 0) << gc.err;
  EXPECT_NE(gc.out.find("removed 1 "), std::string::npos) << gc.out;
  EXPECT_TRUE(wb::testing::DirsBelow(sandboxes).empty());
}

TEST_F(CliTest, InterruptedRunCleansUp) {
  SpawnOptions o;
  o.path = wb::testing::BuildDir() + "/warmbox";
  // A uid range of its own, so sandboxes of tests running in parallel do not count.
  o.argv = {"warmbox", "--state-dir", state_,  "--userns-base", std::to_string(kOwnBase),
            "run",     "--",          "sleep", "1000"};
  auto child = ChildProcess::Spawn(o);
  ASSERT_TRUE(child.ok());
  const uint32_t lo = kOwnBase, hi = kOwnBase + UidSpan(kDefaultUidSlots);
  ASSERT_TRUE(Eventually([&] { return wb::testing::PidsWithUidIn(lo, hi).size() >= 2; }, 10000));
  ASSERT_TRUE(child->Signal(SIGINT).ok());
  auto st = child->Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 128 + SIGINT);
  EXPECT_TRUE(wb::testing::PidsWithUidIn(lo, hi).empty());
  EXPECT_TRUE(wb::testing::DirsBelow(state_ + "/sandboxes").empty());
}

}  // namespace
}  // namespace wb
