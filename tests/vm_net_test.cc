// --network egress for the vm driver (root, QEMU): a VM's virtio-net device
// is served by a passt on the host, run as the sandbox's own group, so the
// ns driver's nftables chain and per-sandbox resolver apply to it
// (docs/network.md, "The vm driver"). The VMs reach only the private
// internet of tests/net_internet.h; no packet leaves the test's namespaces.
#include <gtest/gtest.h>
#include <unistd.h>

#include <optional>
#include <string>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/net/net_plan.h"
#include "sandbox/vm/guest_kernel.h"
#include "sandbox/vm/vm_driver.h"
#include "tests/assert_ok.h"
#include "tests/net_internet.h"
#include "tests/test_internet.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"
#include "tests/vm_fixture.h"

namespace wb {
namespace {

using wb::testing::InternetGet;
using wb::testing::InternetResolves;
using wb::testing::InternetSh;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kVmNetTest);
const char* kTable = "warmbox_vmtest";

std::string Why() {
  std::string why = wb::testing::VmProbe();
  if (!why.empty()) return why;
  for (const char* tool : {"/usr/bin/passt", "/usr/sbin/nft", "/usr/sbin/dnsmasq"}) {
    if (!PathExists(tool)) return std::string(tool) + " missing: run scripts/setup";
  }
  auto dep = ReadFile(vm::KernelRoot() + "/current/modules.dep");
  if (!dep.ok() || dep->find("virtio_net.ko") == std::string::npos) {
    return "the guest kernel in " + vm::KernelRoot() +
           " has no virtio_net module: run scripts/setup again";
  }
  return "";
}

class VmNetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!Why().empty()) return;
    ASSERT_OK(wb::testing::SuiteInternet::Start("wb-vm-net-test"));
  }
  static void TearDownTestSuite() { wb::testing::SuiteInternet::Stop(); }
  void SetUp() override {
    std::string why = Why();
    if (!why.empty()) GTEST_SKIP() << why;
    ASSERT_TRUE(wb::testing::SuiteInternet::up());
    env_.emplace("vmnet", kBase);
    vm::VmDriverOptions o = env_->Options();
    o.net.table = kTable;
    o.net.dns_upstreams = {"198.51.100.53"};
    o.net_gid_base = kBase + wb::testing::kRangeIds;
    auto drv = vm::VmDriver::Open(o, env_->store.get());
    ASSERT_OK(drv);
    driver_ = std::move(*drv);
  }
  void TearDown() override {
    driver_.reset();
    env_.reset();
  }
  static std::string Tables() { return RunProcess({"/usr/sbin/nft", "list", "tables"}).out; }

  std::optional<wb::testing::VmEnv> env_;
  std::unique_ptr<vm::VmDriver> driver_;
};

TEST_F(VmNetTest, NoneModeHasOnlyLoopback) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 128u << 20;
  auto sb = driver_->Create(spec);
  ASSERT_OK(sb);
  EXPECT_EQ(InternetSh(**sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout_data,
            "lo\n");
  EXPECT_EQ(InternetGet(**sb, "http://198.51.100.10/"), "");
  EXPECT_EQ(Tables().find(kTable), std::string::npos) << "none mode makes no nft objects";
  // No NIC can be added to a running VM (the live claim's path).
  NetworkSpec egress;
  egress.mode = NetworkMode::kEgress;
  auto attach = (*sb)->AttachNetwork(egress);
  ASSERT_FALSE(attach.ok());
  EXPECT_EQ(attach.error().code, ErrorCode::kFailedPrecondition);
  EXPECT_NE(attach.error().ToString().find("at boot"), std::string::npos);
  ASSERT_OK((*sb)->Destroy());
}

TEST_F(VmNetTest, EgressReachesAllowedRefusesDeniedAndTearsDownClean) {
  SandboxSpec spec;
  spec.limits.memory_bytes = 128u << 20;
  spec.network.mode = NetworkMode::kEgress;
  spec.network.allow_out = {"allowed.test", "203.0.113.0/24"};
  spec.network.deny_out = {"203.0.113.66"};
  auto created = driver_->Create(spec);
  ASSERT_OK(created);
  Sandbox& sb = **created;
  EXPECT_EQ(sb.network(), spec.network);
  // One NIC besides lo, a default route, warmbox's resolver.
  EXPECT_EQ(InternetSh(sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort").stdout_data,
            "eth0\nlo\n");
  EXPECT_NE(InternetSh(sb, "ip route").stdout_data.find(std::string("default via ") + kVmGateway),
            std::string::npos);
  EXPECT_EQ(InternetSh(sb, "grep nameserver /etc/resolv.conf").stdout_data,
            std::string("nameserver ") + kSandboxResolver + "\n");
  // Allowed: a name and a CIDR.
  EXPECT_EQ(InternetGet(sb, "http://allowed.test/"), "hello from 198.51.100.10\n");
  EXPECT_EQ(InternetGet(sb, "http://203.0.113.10/"), "hello from 203.0.113.10\n");
  // Refused: deny beats allow; a name not allowed; the allowed name's
  // neighbour by IP; the metadata address and a private range.
  EXPECT_EQ(InternetGet(sb, "http://203.0.113.66/"), "");
  EXPECT_FALSE(InternetResolves(sb, "neighbour.test"));
  EXPECT_EQ(InternetGet(sb, "http://198.51.100.11/"), "");
  EXPECT_EQ(InternetGet(sb, "http://169.254.169.254/"), "");
  EXPECT_EQ(InternetGet(sb, "http://10.1.2.3/"), "");
  auto ctr = sb.NetworkCounters();
  ASSERT_OK(ctr);
  EXPECT_GE(ctr->refused, 3u);
  EXPECT_GT(ctr->bytes_out, 0u);
  EXPECT_GT(ctr->bytes_in, 0u);

  // The guest cannot change the policy: whatever it does to its own
  // interface and routes (as the guest's root, or refused), every packet
  // still becomes a socket of the host's passt, under the host's rules.
  auto tamper = InternetSh(sb,
                           "ip route add 198.51.100.11/32 via 10.0.2.2 dev eth0; "
                           "ip link set eth0 mtu 1400; "
                           "echo nameserver 198.51.100.53 > /etc/resolv.conf; echo done");
  EXPECT_NE(tamper.stdout_data.find("done"), std::string::npos);
  EXPECT_EQ(InternetGet(sb, "http://198.51.100.11/"), "");
  EXPECT_FALSE(InternetResolves(sb, "neighbour.test"));  // 198.51.100.53 is not reachable either
  EXPECT_EQ(InternetGet(sb, "http://203.0.113.66/"), "");
  EXPECT_EQ(InternetGet(sb, "http://203.0.113.10/"), "hello from 203.0.113.10\n");

  // The host can: a runtime update opens the neighbour.
  ASSERT_OK(sb.UpdateNetwork({"198.51.100.11"}, {}));
  EXPECT_EQ(InternetGet(sb, "http://198.51.100.11/"), "hello from 198.51.100.11\n");
  EXPECT_EQ(InternetGet(sb, "http://203.0.113.10/"), "");

  // Teardown: no passt, dnsmasq, socket, chain or table is left.
  std::vector<pid_t> helpers = wb::testing::ProcessesMentioning("passt.sock");
  auto dns = wb::testing::ProcessesMentioning("--listen-address=127.0.0.1");
  helpers.insert(helpers.end(), dns.begin(), dns.end());
  EXPECT_EQ(helpers.size(), 2u);
  const std::string sock = sb.host_dir() + "/passt.sock";
  EXPECT_TRUE(PathExists(sock));
  EXPECT_NE(Tables().find(kTable), std::string::npos);
  ASSERT_OK(sb.Destroy());
  // The table stays for the driver's next VMs, without any object of this
  // one; it goes with the driver.
  auto left = RunProcess({"/usr/sbin/nft", "list", "table", "inet", kTable});
  EXPECT_EQ(left.out.find(sb.id()), std::string::npos) << left.out;
  for (pid_t p : helpers) EXPECT_FALSE(PathExists("/proc/" + std::to_string(p))) << p;
  EXPECT_FALSE(PathExists(sock));
  EXPECT_TRUE(wb::testing::QemuPids(kBase).empty());
  created->reset();
  driver_.reset();
  EXPECT_EQ(Tables().find(kTable), std::string::npos) << Tables();
}

TEST_F(VmNetTest, SnapshotDriverBootsEgressVmsCold) {
  // Templates carry no NIC: an egress VM of a snapshot driver is a cold
  // boot, and no template is made for it.
  driver_.reset();
  vm::VmDriverOptions o = env_->Options();
  o.net.table = kTable;
  o.net.dns_upstreams = {"198.51.100.53"};
  o.net_gid_base = kBase + wb::testing::kRangeIds;
  o.snapshot = true;
  auto drv = vm::VmDriver::Open(o, env_->store.get());
  ASSERT_OK(drv);
  SandboxSpec spec;
  spec.limits.memory_bytes = 128u << 20;
  spec.network.mode = NetworkMode::kEgress;
  spec.network.allow_out = {"198.51.100.10"};
  auto sb = (*drv)->Create(spec);
  ASSERT_OK(sb);
  EXPECT_EQ((*drv)->template_status().state, vm::TemplateState::kNone);
  EXPECT_EQ(InternetGet(**sb, "http://198.51.100.10/"), "hello from 198.51.100.10\n");
  ASSERT_OK((*sb)->Destroy());
}

}  // namespace
}  // namespace wb
