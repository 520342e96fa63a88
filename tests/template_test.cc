// Templates built from Debian packages (image/debian_template.h): `warmbox
// template build-debian base` end to end (mmdebstrap, the import, the account
// user, the image config), its cache, its errors, and the daemon building
// `base` on a live sandbox's first use.
//
// mmdebstrap runs once for the whole test suite: every build here (and in any
// test that sets it) goes through $WARMBOX_TEMPLATE_CACHE = BUILD/template-cache,
// where the helper keeps the root filesystem tar per package list; each test's
// state dir imports it (a few seconds) under its own uid range.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "base/fs.h"
#include "base/strings.h"
#include "tests/assert_ok.h"
#include "tests/daemon_fixture.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using nlohmann::json;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kTemplateTest);

bool HaveMmdebstrap() {
  for (const char* d : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    if (::access((std::string(d) + "/mmdebstrap").c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string CacheEnv() {
  return "WARMBOX_TEMPLATE_CACHE=" + wb::testing::BuildDir() + "/template-cache";
}

class TemplateTest : public wb::testing::DaemonFixture {
 protected:
  TemplateTest() : DaemonFixture("wb-template-test", kBase) {}
  void SetUp() override {
    DaemonFixture::SetUp();
    if (IsSkipped()) return;
    if (!HaveMmdebstrap())
      GTEST_SKIP() << "mmdebstrap is not installed (scripts/setup installs it)";
  }
};

// What every template must have, checked inside a sandbox of it.
constexpr const char* kCheckScript =
    "set -e; id -un; pwd; id user; stat -c '%u:%g:%U' /home/user; "
    "python3 -c 'import sys; print(\"py\", sys.version_info[0])'; "
    "bash -c 'echo bash $BASH_VERSINFO'; command -v ps; "
    "test -s /etc/ssl/certs/ca-certificates.crt && echo certs; cat /etc/hostname; echo $PATH";

void ExpectTemplateContent(const std::string& out) {
  auto lines = Split(std::string(Trim(out)), '\n');
  ASSERT_EQ(lines.size(), 10u) << out;
  EXPECT_EQ(lines[0], "user");        // the image config's User
  EXPECT_EQ(lines[1], "/home/user");  // ... and WorkingDir
  EXPECT_EQ(lines[2], "uid=1000(user) gid=1000(user) groups=1000(user)");
  EXPECT_EQ(lines[3], "1000:1000:user");
  EXPECT_EQ(lines[4], "py 3");
  EXPECT_EQ(lines[5], "bash 5");
  EXPECT_EQ(lines[6], "/usr/bin/ps");
  EXPECT_EQ(lines[7], "certs");
  EXPECT_EQ(lines[8], "localhost");  // not the build host's name
  EXPECT_EQ(lines[9], "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

TEST_F(TemplateTest, BuildDebianBaseThenUpToDate) {
  auto b = RunProcess(Cli({"template", "build-debian", "base"}), {CacheEnv()});
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(Trim(b.out), "base");

  auto ins = RunProcess(Cli({"image", "inspect", "base"}));
  ASSERT_EQ(ins.code, 0) << ins.err;
  json img = json::parse(ins.out);
  EXPECT_EQ(img["name"], "base");  // stored under its own name, not docker.io/library/base
  EXPECT_EQ(img["config"]["User"], "user");
  EXPECT_EQ(img["config"]["WorkingDir"], "/home/user");
  EXPECT_EQ(img["config"]["Env"][0],
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  EXPECT_EQ(img["source"],
            "debian-template v1 suite=bookworm variant=apt "
            "packages=bash,ca-certificates,coreutils,passwd,procps,python3");

  auto run = RunProcess(Cli({"run", "--image", "base", "--", "bash", "-c", kCheckScript}));
  ASSERT_EQ(run.code, 0) << run.err << run.out;
  ExpectTemplateContent(run.out);
  // The run's own user wins over the image's.
  auto root = RunProcess(Cli({"run", "--image", "base", "-u", "root", "--", "id", "-u"}));
  EXPECT_EQ(Trim(root.out), "0") << root.err;

  // Again: a no-op (same key), whatever the cache holds.
  auto again = RunProcess(Cli({"template", "build-debian", "base"}));
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.err.find("up to date"), std::string::npos) << again.err;
  auto ins2 = RunProcess(Cli({"image", "inspect", "base"}));
  EXPECT_EQ(json::parse(ins2.out)["created"], img["created"]);
}

TEST_F(TemplateTest, ErrorsNameTheTemplateAndTheCommand) {
  // Bad input is refused before anything runs.
  auto bad = RunProcess(Cli({"template", "build-debian", "x", "--packages", "ok,Not_A_Package"}));
  EXPECT_EQ(bad.code, 125);
  EXPECT_NE(bad.err.find("package name(Not_A_Package)"), std::string::npos) << bad.err;
  // No mmdebstrap on the PATH.
  std::string empty = state_ + "/empty-path";
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  auto missing = RunProcess(Cli({"template", "build-debian", "x"}), {"PATH=" + empty});
  EXPECT_EQ(missing.code, 125);
  EXPECT_NE(missing.err.find("template x: run(mmdebstrap): mmdebstrap is not installed"),
            std::string::npos)
      << missing.err;
  // mmdebstrap fails (as when apt cannot find a package): the command and
  // the last lines of its output. A stand-in, so that no index is downloaded.
  std::string bin = state_ + "/bin";
  ASSERT_EQ(::mkdir(bin.c_str(), 0755), 0);
  ASSERT_OK(WriteFileAtomic(bin + "/mmdebstrap",
                            "#!/bin/sh\n"
                            "echo 'I: running apt-get update...' >&2\n"
                            "echo 'E: Unable to locate package wb-no-such-package'\n"
                            "echo 'E: apt-get --yes install failed' >&2\n"
                            "exit 100\n",
                            0755));
  auto apt = RunProcess(
      Cli({"template", "build-debian", "x", "--quiet", "--packages", "wb-no-such-package"}),
      {"PATH=" + bin + ":/usr/bin:/bin"});
  EXPECT_EQ(apt.code, 125);
  EXPECT_NE(apt.err.find("template x: run(mmdebstrap --variant=apt --include=bash,ca-certificates,"
                         "coreutils,passwd,procps,python3,wb-no-such-package "),
            std::string::npos)
      << apt.err;
  EXPECT_NE(apt.err.find("100: I: running apt-get update... | E: Unable to locate package "
                         "wb-no-such-package | E: apt-get --yes install failed"),
            std::string::npos)
      << apt.err;
  EXPECT_EQ(RunProcess(Cli({"image", "inspect", "x"})).code, 125);
  EXPECT_TRUE(wb::testing::Entries(state_ + "/tmp").empty());
}

TEST_F(TemplateTest, DaemonBuildsBaseOnFirstUseOnce) {
  daemon_env_ = {CacheEnv()};
  StartDaemon({"--size", "1"});
  // Two creates and a pool run at once: one build, each gets a sandbox of it.
  // Live sandboxes take their default user and cwd from the request (as
  // E2B's control plane gives them, from the image config); a pool run takes
  // the image config's.
  wb::testing::ProcResult a, b, r;
  auto create = [&](wb::testing::ProcResult& out) {
    out = RunProcess(Cli({"sandbox", "create", "--socket", sock_, "--image", "base", "--no-main",
                          "-u", "user", "-w", "/home/user"}));
  };
  std::thread ta(create, std::ref(a)), tb(create, std::ref(b));
  std::thread tr([&] {
    r = RunProcess(Cli(
        {"pool", "run", "--socket", sock_, "--image", "base", "--", "sh", "-c", "id -un; pwd"}));
  });
  ta.join();
  tb.join();
  tr.join();
  ASSERT_EQ(a.code, 0) << a.err << Log();
  ASSERT_EQ(b.code, 0) << b.err << Log();
  EXPECT_EQ(r.code, 0) << r.err << Log();
  EXPECT_EQ(r.out, "user\n/home/user\n");
  std::string id(Trim(a.out));
  auto ex = RunProcess(Cli({"exec", "--socket", sock_, id, "--", "bash", "-c", kCheckScript}));
  ASSERT_EQ(ex.code, 0) << ex.err << ex.out;
  ExpectTemplateContent(ex.out);
  std::string log = Log();
  size_t first = log.find("building template image base");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("building template image base", first + 1), std::string::npos) << log;
}

TEST_F(TemplateTest, DaemonReportsAFailedBuild) {
  // No cache and no mmdebstrap on the daemon's PATH.
  std::string empty = state_ + "/empty-path";
  ASSERT_EQ(::mkdir(empty.c_str(), 0755), 0);
  daemon_env_ = {"PATH=" + empty};
  StartDaemon({"--size", "1"});
  auto c =
      RunProcess(Cli({"sandbox", "create", "--socket", sock_, "--image", "base", "--no-main"}));
  EXPECT_EQ(c.code, 125);
  EXPECT_NE(c.err.find("building the template from Debian packages failed"), std::string::npos)
      << c.err;
  EXPECT_NE(c.err.find("template base: run(mmdebstrap): mmdebstrap is not installed"),
            std::string::npos)
      << c.err;
}

}  // namespace
}  // namespace wb
