// VM snapshot templates and their copy-on-write clones, for real (QEMU, TCG
// on CI). Boots are few: two templates, four clones and one cold boot in all.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <optional>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/sandbox_dir.h"
#include "sandbox/vm/vm_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"
#include "tests/vm_fixture.h"

namespace wb {
namespace {

using proto::ExecRequest;

using wb::testing::Entries;
using wb::testing::QemuPids;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kVmSnapshotTest);

std::string VmProbe() {
  if (std::string why = wb::testing::VmProbe(); !why.empty()) return why;
  if (!PathExists("/dev/shm")) return "no /dev/shm";
  return "";
}

// FNV-1a over a whole file: enough to see a changed byte.
uint64_t Checksum(const std::string& path) {
  auto t = ReadFile(path);
  EXPECT_TRUE(t.ok());
  uint64_t h = 1469598103934665603ull;
  if (t.ok()) {
    for (unsigned char c : *t) {
      h ^= c;
      h *= 1099511628211ull;
    }
  }
  return h;
}

class VmSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = VmProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    env_.emplace("vmsnap", kBase);
    state_ = env_->state;
    shm_ = "/dev/shm/wb-vmsnap-test-" + std::to_string(::getpid());
    ASSERT_TRUE(MkdirAll(shm_, 0700).ok());
  }
  void TearDown() override {
    if (!shm_.empty()) (void)RemoveTree(shm_);
    env_.reset();  // the store, the state dir, the (empty) parents of our cgroups
  }
  std::unique_ptr<vm::VmDriver> Driver(int max_failures = 3) {
    vm::VmDriverOptions o = env_->Options();
    o.snapshot = true;
    o.shm_dir = shm_;
    o.template_max_failures = max_failures;
    auto d = vm::VmDriver::Open(o, env_->store.get());
    EXPECT_OK(d);
    return d.ok() ? std::move(*d) : nullptr;
  }
  static ExecOutcome Sh(Sandbox& sb, const std::string& script) {
    return wb::testing::ShIn(sb, script);
  }
  std::vector<std::string> RamFiles() const { return Entries(shm_); }

  std::optional<wb::testing::VmEnv> env_;
  std::string state_, shm_;
};

TEST_F(VmSnapshotTest, ClonesAreUniqueIsolatedAndLeaveTheTemplateUnchanged) {
  auto drv = Driver();
  ASSERT_NE(drv, nullptr);
  SandboxSpec spec;
  spec.limits.memory_bytes = 192u << 20;
  auto a = drv->Create(spec);
  ASSERT_OK(a);
  auto st = drv->template_status();
  EXPECT_STREQ(vm::TemplateStateName(st.state), "ready") << st.last_error;
  EXPECT_EQ(st.clones, 1u);
  auto ram = RamFiles();
  ASSERT_EQ(ram.size(), 1u);
  const std::string ram_path = shm_ + "/" + ram[0];
  const uint64_t sum = Checksum(ram_path);
  struct stat rst;
  ASSERT_EQ(::stat(ram_path.c_str(), &rst), 0);
  EXPECT_EQ(rst.st_mode & 0777, 0600u) << "the template's memory must be QEMU's user's only";
  EXPECT_EQ(rst.st_uid, kBase + kUidCount - 1) << "owned by the jailed QEMUs' user";
  auto b = drv->Create(spec);
  ASSERT_OK(b);
  EXPECT_EQ(drv->template_status().clones, 2u);
  EXPECT_EQ(drv->template_status().failures, 0);
  Sandbox& A = **a;
  Sandbox& B = **b;
  EXPECT_NE(A.id(), B.id());

  // Identity: hostnames are the ids, random bytes differ, clocks are the host's.
  auto ha = Sh(A, "hostname; echo $HOSTNAME"), hb = Sh(B, "hostname; echo $HOSTNAME");
  EXPECT_EQ(ha.stdout_data, A.id() + "\n" + A.id() + "\n");
  EXPECT_EQ(hb.stdout_data, B.id() + "\n" + B.id() + "\n");
  auto ra = Sh(A, "head -c 32 /dev/urandom | od -An -tx1"),
       rb = Sh(B, "head -c 32 /dev/urandom | od -An -tx1");
  EXPECT_EQ(ra.exit.exit_code, 0);
  EXPECT_FALSE(ra.stdout_data.empty());
  EXPECT_NE(ra.stdout_data, rb.stdout_data);
  for (Sandbox* s : {&A, &B}) {
    auto d = Sh(*s, "date +%s");
    timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    auto guest = ParseUint(std::string(Trim(d.stdout_data)), "date");
    ASSERT_TRUE(guest.ok()) << d.stdout_data << d.stderr_data;
    EXPECT_LE(std::llabs(static_cast<long long>(*guest) - static_cast<long long>(now.tv_sec)), 2)
        << "guest clock " << *guest << " host " << now.tv_sec;
  }

  // Exit codes and byte-exact output, as for cold VMs.
  EXPECT_EQ(Sh(A, "exit 3").exit.exit_code, 3);
  auto big = Sh(B, "yes 0123456789abcdef | head -c 200000");
  std::string want;
  while (want.size() < 200000) want += "0123456789abcdef\n";
  want.resize(200000);
  EXPECT_TRUE(big.stdout_data == want) << big.stdout_data.size() << " bytes";

  // Private memory: a file written in A is not in B, nor in the RAM file.
  const std::string marker = "wbmark" + *RandomHex(8);
  EXPECT_EQ(Sh(A, "echo " + marker + " > /tmp/m; cat /tmp/m").stdout_data, marker + "\n");
  EXPECT_NE(Sh(B, "cat /tmp/m").exit.exit_code, 0);
  auto ram_text = ReadFile(ram_path);
  ASSERT_TRUE(ram_text.ok());
  EXPECT_EQ(ram_text->find(marker), std::string::npos)
      << "a clone's write reached the template file";
  EXPECT_EQ(Checksum(ram_path), sum) << "the template RAM file changed";

  // Teardown: only the pre-started QEMU of the next clone is left (it goes
  // with the driver, below), and only the template's RAM file.
  EXPECT_TRUE(A.Destroy().ok());
  EXPECT_TRUE(B.Destroy().ok());
  a->reset();
  b->reset();
  EXPECT_LE(QemuPids(kBase).size(), 1u);
  EXPECT_LE(Entries(SandboxesDir(state_)).size(), 1u);
  EXPECT_EQ(RamFiles(), ram);

  // A new key (memory) builds a new template and removes the unused one.
  spec.limits.memory_bytes = 160u << 20;
  auto c = drv->Create(spec);
  ASSERT_OK(c);
  EXPECT_EQ(Sh(**c, "hostname").stdout_data, (*c)->id() + "\n");
  auto ram2 = RamFiles();
  ASSERT_EQ(ram2.size(), 1u);
  EXPECT_NE(ram2[0], ram[0]);
  EXPECT_EQ(Entries(state_ + "/vm/templates").size(), 2u);  // the new one and its lock
  EXPECT_TRUE((*c)->Destroy().ok());
  c->reset();
  drv.reset();
  EXPECT_TRUE(QemuPids(kBase).empty());
  EXPECT_TRUE(Entries(SandboxesDir(state_)).empty());
  EXPECT_EQ(RamFiles(), ram2);  // the template's RAM file stays for the next start
}

TEST_F(VmSnapshotTest, CorruptStateFallsBackToColdBoots) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 128u << 20;
  {
    auto drv = Driver();
    ASSERT_NE(drv, nullptr);
    auto a = drv->Create(spec);  // builds the template
    ASSERT_OK(a);
    EXPECT_TRUE((*a)->Destroy().ok());
  }
  auto keys = Entries(state_ + "/vm/templates");
  std::string state_file;
  for (const auto& k : keys) {
    if (k.size() == 16) state_file = state_ + "/vm/templates/" + k + "/state";
  }
  ASSERT_TRUE(PathExists(state_file));
  ASSERT_TRUE(WriteFile(state_file, std::string(4096, 'x')).ok());
  auto drv = Driver(/*max_failures=*/1);
  ASSERT_NE(drv, nullptr);
  auto b = drv->Create(spec);  // the clone fails; a cold boot serves
  ASSERT_OK(b);
  auto st = drv->template_status();
  EXPECT_STREQ(vm::TemplateStateName(st.state), "fallback");
  EXPECT_EQ(st.failures, 1);
  EXPECT_EQ(st.clone_failures, 1u);
  EXPECT_NE(st.last_error.find("restore"), std::string::npos) << st.last_error;
  EXPECT_EQ(Sh(**b, "hostname").stdout_data, (*b)->id() + "\n");
  EXPECT_TRUE((*b)->Destroy().ok());
  b->reset();
  drv.reset();
  EXPECT_TRUE(QemuPids(kBase).empty());
  EXPECT_TRUE(Entries(SandboxesDir(state_)).empty());
  EXPECT_TRUE(RamFiles().empty());  // the invalid template is gone
}

}  // namespace
}  // namespace wb
