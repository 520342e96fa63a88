// QEMU's jail (sandbox/vm/qemu_jail.h, docs/security.md "The vm driver"):
// a cold VM's and a snapshot clone's QEMU run as an unprivileged user without
// capabilities, with no_new_privs, in a root that holds only the VM's files,
// and the VMs still boot, run commands and clone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <optional>
#include <set>
#include <string>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/sandbox_dir.h"
#include "sandbox/vm/vm_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"
#include "tests/vm_fixture.h"

namespace wb {
namespace {

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kVmJailTest);
constexpr uint32_t kJailId = kBase + kUidCount - 1;

// The pid behind a pidfd (its fdinfo).
pid_t PidOf(int pidfd) {
  auto info = ReadFile("/proc/self/fdinfo/" + std::to_string(pidfd));
  if (!info.ok()) return -1;
  for (const auto& line : Split(*info, '\n')) {
    if (!StartsWith(line, "Pid:")) continue;
    auto v = ParseUint(Trim(line.substr(4)), "pid");
    return v.ok() ? static_cast<pid_t>(*v) : -1;
  }
  return -1;
}

std::string ReadLink(const std::string& p) {
  char b[256];
  ssize_t n = ::readlink(p.c_str(), b, sizeof b);
  return n > 0 ? std::string(b, static_cast<size_t>(n)) : "";
}

// "Key:\tvalue" lines of /proc/PID/status.
std::map<std::string, std::string> Status(pid_t pid) {
  std::map<std::string, std::string> m;
  auto s = ReadFile("/proc/" + std::to_string(pid) + "/status");
  EXPECT_TRUE(s.ok());
  if (!s.ok()) return m;
  for (const auto& line : Split(*s, '\n')) {
    size_t c = line.find(':');
    if (c != std::string::npos) m[line.substr(0, c)] = Trim(line.substr(c + 1));
  }
  return m;
}

std::set<std::string> EntrySet(const std::string& dir) {
  auto v = wb::testing::Entries(dir);
  return {v.begin(), v.end()};
}

// What every jailed QEMU shows; vm_files: its /vm.
void ExpectJailed(Sandbox& sb, const std::string& state, std::set<std::string> vm_files,
                  size_t disks) {
  for (size_t i = 0; i < disks; ++i) vm_files.insert("disk" + std::to_string(i));
  const pid_t pid = PidOf(sb.endpoint().liveness_fd);
  ASSERT_GT(pid, 0);
  const std::string proc = "/proc/" + std::to_string(pid);
  auto st = Status(pid);
  const std::string id = std::to_string(kJailId);
  EXPECT_EQ(st["Uid"], id + "\t" + id + "\t" + id + "\t" + id);
  EXPECT_EQ(st["Gid"], id + "\t" + id + "\t" + id + "\t" + id);
  EXPECT_EQ(st["Groups"], "");
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(st[cap], "0000000000000000") << cap;
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["Seccomp"], "2") << "QEMU's own -sandbox";
  // Its own namespaces: it sees no host process and no host mount.
  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts"}) {
    const std::string mine = ReadLink(std::string("/proc/self/ns/") + ns);
    const std::string its = ReadLink(proc + "/ns/" + ns);
    ASSERT_FALSE(mine.empty() || its.empty()) << ns;
    EXPECT_NE(mine, its) << ns;
  }
  EXPECT_EQ(st["NSpid"].substr(st["NSpid"].find('\t') + 1), "1");
  // Its root: the system dirs and links, /dev and /vm, nothing else of the host.
  const std::string root = proc + "/root";
  auto top = EntrySet(root);
  for (const char* host : {"etc", "root", "var", "tmp", "home", "proc", "sys", "run"})
    EXPECT_EQ(top.count(host), 0u) << host;
  EXPECT_EQ(top.count("usr"), 1u);
  EXPECT_EQ(top.count("vm"), 1u);
  EXPECT_EQ(top.count("dev"), 1u);
  EXPECT_FALSE(PathExists(root + "/etc/shadow"));
  EXPECT_FALSE(PathExists(root + "/var/lib/warmbox"));
  EXPECT_FALSE(PathExists(root + "/root"));
  EXPECT_FALSE(PathExists(root + state));
  EXPECT_EQ(EntrySet(root + "/dev"), (std::set<std::string>{"null", "urandom", "zero"}));
  EXPECT_EQ(EntrySet(root + "/vm"), vm_files);
  // Its command line names no host path of the VM.
  auto cmdline = ReadFile(proc + "/cmdline");
  ASSERT_TRUE(cmdline.ok());
  EXPECT_EQ(cmdline->find(state), std::string::npos);
  EXPECT_NE(cmdline->find("-sandbox"), std::string::npos);
  // Read-only: even root cannot add a file to it, or write the kernel.
  UniqueFd f(::open((root + "/planted").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  EXPECT_FALSE(f.valid());
  EXPECT_EQ(errno, EROFS);
  UniqueFd k(::open((root + "/vm/kernel").c_str(), O_WRONLY | O_CLOEXEC));
  EXPECT_FALSE(k.valid());
  EXPECT_EQ(errno, EROFS);
  // And the VM works.
  EXPECT_EQ(wb::testing::ShIn(sb, "echo jailed").stdout_data, "jailed\n");
}

class VmJailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = wb::testing::VmProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    env_.emplace("vmjail", kBase);
    shm_ = "/dev/shm/wb-vmjail-test-" + std::to_string(::getpid());
    ASSERT_OK(MkdirAll(shm_, 0700));
  }
  void TearDown() override {
    if (!shm_.empty()) (void)RemoveTree(shm_);
    env_.reset();
  }
  size_t Layers(const SandboxSpec& spec) {
    auto img = env_->store->Get(spec.image);
    EXPECT_OK(img);
    return img.ok() ? img->lower_dirs.size() : 0;
  }
  std::optional<wb::testing::VmEnv> env_;
  std::string shm_;
};

TEST_F(VmJailTest, ColdVmQemuIsJailed) {
  auto drv = vm::VmDriver::Open(env_->Options(), env_->store.get());
  ASSERT_OK(drv);
  SandboxSpec spec;
  spec.limits.memory_bytes = 128u << 20;
  auto sb = (*drv)->Create(spec);
  ASSERT_OK(sb);
  // The console file belongs to QEMU's user (QEMU writes it by path).
  struct stat cst;
  ASSERT_EQ(::stat((SandboxesDir(env_->state) + "/" + (*sb)->id() + "/console.log").c_str(), &cst),
            0);
  EXPECT_EQ(cst.st_uid, kJailId);
  EXPECT_EQ(cst.st_mode & 0777, 0600u);
  // busybox: one layer.
  ExpectJailed(**sb, env_->state, {"console", "initrd", "kernel"}, Layers(spec));
  ASSERT_OK((*sb)->Destroy());
  sb->reset();
  drv->reset();
  EXPECT_TRUE(wb::testing::QemuPids(kBase).empty());
}

TEST_F(VmJailTest, SnapshotClonesAreJailed) {
  auto o = env_->Options();
  o.snapshot = true;
  o.shm_dir = shm_;
  auto drv = vm::VmDriver::Open(o, env_->store.get());
  ASSERT_OK(drv);
  SandboxSpec spec;
  spec.limits.memory_bytes = 128u << 20;
  auto a = (*drv)->Create(spec);
  ASSERT_OK(a);
  auto st = (*drv)->template_status();
  ASSERT_STREQ(vm::TemplateStateName(st.state), "ready") << st.last_error;
  EXPECT_EQ(st.clones, 1u);
  // The template's state, written by its jailed QEMU, is its user's.
  struct stat sst;
  ASSERT_EQ(::stat((env_->state + "/vm/templates/" + st.key + "/state").c_str(), &sst), 0);
  EXPECT_EQ(sst.st_uid, kJailId);
  EXPECT_GT(sst.st_size, 0);
  ExpectJailed(**a, env_->state, {"initrd", "kernel", "ram", "state"}, Layers(spec));
  EXPECT_EQ(wb::testing::ShIn(**a, "hostname").stdout_data, (*a)->id() + "\n");
  ASSERT_OK((*a)->Destroy());
  a->reset();
  drv->reset();
  EXPECT_TRUE(wb::testing::QemuPids(kBase).empty());
}

}  // namespace
}  // namespace wb
