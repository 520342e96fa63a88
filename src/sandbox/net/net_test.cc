// --network egress for real (root): the ns driver's sandboxes reach a small
// "internet" built here, and nothing else.
//
// No packet leaves this test's own namespaces: tests/net_internet.h (D, the
// test process's own namespace, "the host"; I, "the internet").
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/cgroup.h"
#include "sandbox/net/net_attach.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/sandbox_dir.h"
#include "tests/assert_ok.h"
#include "tests/net_internet.h"
#include "tests/test_internet.h"
#include "tests/test_util.h"
#include "tests/uid_ranges.h"

namespace wb {
namespace {

using proto::ExecRequest;
using wb::testing::Eventually;
using wb::testing::RunProcess;

constexpr uint32_t kBase = wb::testing::UidBase(wb::testing::UidUser::kNetTest);
const char* kTable = "warmbox_test";

class NetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    ASSERT_OK(wb::testing::SuiteInternet::Start("wb-net-test"));
  }
  static void TearDownTestSuite() { wb::testing::SuiteInternet::Stop(); }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, nftables)";
    std::string why = wb::testing::SandboxProbe();
    if (!why.empty()) GTEST_SKIP() << why;
    for (const char* tool : {"/usr/bin/slirp4netns", "/usr/sbin/nft", "/usr/sbin/dnsmasq"}) {
      if (!PathExists(tool)) GTEST_SKIP() << tool << " missing: run scripts/setup";
    }
    state_ = wb::testing::MakeTempDir("wb-net-state");
    store_ = std::make_unique<ImageStore>(state_, kBase);
    auto drv = NsDriver::Open(Options(), store_.get());
    ASSERT_OK(drv);
    driver_ = std::move(*drv);
  }
  NsDriverOptions Options() const {
    NsDriverOptions o;
    o.uid_base = kBase;
    o.cgroup_parent = cgroup_parent_;
    o.state_dir = state_;
    o.agent_path = wb::testing::BuildDir() + "/warmbox-agent";
    o.net.table = kTable;
    o.net.dns_upstreams = {"198.51.100.53"};
    // Short, so that a test sees a name's address expire (every test's
    // resolve-then-connect takes far less).
    o.net.dns_ttl_s = 10;
    return o;
  }
  void TearDown() override {
    driver_.reset();
    if (!state_.empty()) (void)RemoveTree(state_);
    if (auto layout = HostCgroupLayout(); layout.ok()) {
      for (const auto& p : PlanSandboxCgroup(*layout, "x", Limits{}, cgroup_parent_).parents)
        ::rmdir(p.c_str());
    }
  }

  static bool Connects(const char* ip, int port) { return wb::testing::Connects(ip, port); }

  std::unique_ptr<Sandbox> Egress(std::vector<std::string> allow, std::vector<std::string> deny,
                                  std::vector<PublishedPort> ports = {}) {
    SandboxSpec spec;
    spec.network.mode = NetworkMode::kEgress;
    spec.network.allow_out = std::move(allow);
    spec.network.deny_out = std::move(deny);
    spec.network.ports = std::move(ports);
    auto sb = driver_->Create(spec);
    EXPECT_OK(sb);
    return sb.ok() ? std::move(*sb) : nullptr;
  }

  static ExecOutcome Sh(Sandbox& sb, const std::string& script) {
    return wb::testing::InternetSh(sb, script);
  }
  static std::string Get(Sandbox& sb, const std::string& url) {
    return wb::testing::InternetGet(sb, url);
  }
  static bool Resolves(Sandbox& sb, const std::string& name) {
    return wb::testing::InternetResolves(sb, name);
  }
  static std::string Tables() {
    auto r = RunProcess({"/usr/sbin/nft", "list", "tables"});
    return r.out;
  }

  std::string state_;
  const std::string cgroup_parent_ = "/warmbox-net-test-" + std::to_string(::getpid());
  std::unique_ptr<ImageStore> store_;
  std::unique_ptr<NsDriver> driver_;
};

TEST_F(NetTest, NoneModeHasOnlyLoopback) {
  auto sb = driver_->Create(SandboxSpec{});
  ASSERT_OK(sb);
  EXPECT_EQ(Sh(**sb, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").stdout_data, "lo\n");
  EXPECT_EQ(Get(**sb, "http://198.51.100.10/"), "");
  EXPECT_EQ(Tables().find(kTable), std::string::npos) << "none mode makes no nft objects";
  auto up = (*sb)->UpdateNetwork({"198.51.100.10"}, {});
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kFailedPrecondition);
}

TEST_F(NetTest, AllowedNameAndCidrOnlyAndTeardownLeavesNothing) {
  auto sb = Egress({"allowed.test", "203.0.113.0/24"}, {"203.0.113.66"});
  ASSERT_TRUE(sb);
  // Its rules are in place once the create returns (the transaction that
  // ran while its helper started has ended).
  auto chain = RunProcess({"/usr/sbin/nft", "list", "chain", "inet", kTable, "out_" + sb->id()});
  EXPECT_EQ(chain.code, 0) << chain.err;
  EXPECT_NE(chain.out.find("@deny4_" + sb->id()), std::string::npos) << chain.out;
  // An interface besides lo, a default route, warmbox's resolver.
  EXPECT_NE(Sh(*sb, "ip route").stdout_data.find("default via"), std::string::npos);
  EXPECT_EQ(Sh(*sb, "cat /etc/resolv.conf | grep nameserver").stdout_data,
            std::string("nameserver ") + kSandboxResolver + "\n");
  // Allowed: a name, and a CIDR.
  EXPECT_EQ(Get(*sb, "http://allowed.test/"), "hello from 198.51.100.10\n");
  // A bulk answer after the client's half-close (nc shuts its sending side
  // at the end of its input) arrives whole, and ends (header 44 bytes).
  EXPECT_EQ(Sh(*sb,
               "printf 'GET /bytes/4194304 HTTP/1.0\\r\\n\\r\\n' | timeout 10 nc "
               "198.51.100.10 8080 | wc -c")
                .stdout_data,
            "4194348\n");
  EXPECT_EQ(Get(*sb, "http://203.0.113.10/"), "hello from 203.0.113.10\n");
  // A connection the policy refuses fails at once, as refused (a reset
  // reaches the sandbox), not by the client's timeout.
  auto refused = Sh(*sb, "timeout 10 nc 198.51.100.11 80 </dev/null; echo rc=$?");
  EXPECT_NE(refused.stderr_data.find("Connection refused"), std::string::npos)
      << refused.stdout_data << refused.stderr_data;
  // Denied inside the allowed CIDR: deny beats allow.
  EXPECT_EQ(Get(*sb, "http://203.0.113.66/"), "");
  // Names not allowed get no answer; the allowed name's neighbour by IP
  // gets nothing.
  EXPECT_FALSE(Resolves(*sb, "neighbour.test"));
  EXPECT_FALSE(Resolves(*sb, "denied.test"));
  EXPECT_TRUE(Resolves(*sb, "allowed.test"));
  EXPECT_EQ(Get(*sb, "http://198.51.100.11/"), "");
  // Default denies: metadata, private ranges, the host's own address.
  for (const char* ip :
       {"169.254.169.254", "10.1.2.3", "172.16.5.5", "192.168.7.7", "100.64.1.1"}) {
    EXPECT_EQ(Get(*sb, std::string("http://") + ip + "/"), "") << ip;
  }
  auto ctr = sb->NetworkCounters();
  ASSERT_OK(ctr);
  EXPECT_GE(ctr->refused, 7u);
  EXPECT_GT(ctr->bytes_out, 0u);
  EXPECT_GT(ctr->bytes_in, 0u);

  // The sandbox cannot change its network: no CAP_NET_ADMIN for commands
  // (and the rules are not in its namespace at all).
  auto route = Sh(*sb, "ip route del default; echo rc=$?");
  EXPECT_NE(route.stdout_data.find("rc=2"), std::string::npos) << route.stdout_data;
  EXPECT_NE(route.stderr_data.find("Operation not permitted"), std::string::npos)
      << route.stderr_data;
  EXPECT_NE(Sh(*sb, "ip link set lo down; echo rc=$?").stdout_data.find("rc=0"), 0u);
  EXPECT_EQ(Get(*sb, "http://allowed.test/"), "hello from 198.51.100.10\n");

  // Teardown: no chain, set, table, helper process or interface is left.
  pid_t agent = sb->host_pid();
  ASSERT_GT(agent, 0);
  std::vector<pid_t> helpers = wb::testing::ProcessesMentioning("slirp4netns");
  auto dns = wb::testing::ProcessesMentioning("--listen-address=127.0.0.1");
  helpers.insert(helpers.end(), dns.begin(), dns.end());
  EXPECT_EQ(helpers.size(), 2u);
  EXPECT_NE(Tables().find(kTable), std::string::npos);
  ASSERT_OK(sb->Destroy());
  // The table stays for the driver's next sandboxes, without any object of
  // this one; it goes with the driver.
  auto left = RunProcess({"/usr/sbin/nft", "list", "table", "inet", kTable});
  EXPECT_EQ(left.out.find(sb->id()), std::string::npos) << left.out;
  EXPECT_NE(left.out.find("helper_gids"), std::string::npos) << left.out;
  driver_.reset();
  EXPECT_EQ(Tables().find(kTable), std::string::npos) << Tables();
  for (pid_t p : helpers) EXPECT_FALSE(PathExists("/proc/" + std::to_string(p))) << p;
  auto links = RunProcess({"/sbin/ip", "-br", "link"});
  EXPECT_EQ(links.out.find("tap"), std::string::npos) << links.out;
  EXPECT_EQ(Split(Trim(links.out), '\n').size(), 2u) << links.out;  // lo, wbn0
}

// The network comes up while the sandbox boots (Create starts the rules and
// the resolver first, slirp4netns once the agent is cloned, and awaits them
// last): a helper that fails gives one error naming it, and the half-made
// sandbox leaves nothing: no process, chain, dir or sandbox process.
TEST_F(NetTest, AHelperThatFailsLeavesNothing) {
  driver_.reset();
  NsDriverOptions o = Options();
  o.net.slirp_path = "/bin/false";  // exits 1 at once, configures nothing
  auto drv = NsDriver::Open(o, store_.get());
  ASSERT_OK(drv);
  driver_ = std::move(*drv);
  const auto dns_before = wb::testing::ProcessesMentioning("--listen-address=127.0.0.1");
  SandboxSpec spec;
  spec.network.mode = NetworkMode::kEgress;
  spec.network.allow_out = {"allowed.test"};
  auto sb = driver_->Create(spec);
  ASSERT_FALSE(sb.ok());
  EXPECT_EQ(sb.error().code, ErrorCode::kUnavailable) << sb.error().ToString();
  EXPECT_NE(sb.error().ToString().find("slirp4netns"), std::string::npos) << sb.error().ToString();
  EXPECT_NE(sb.error().ToString().find("exit"), std::string::npos) << sb.error().ToString();
  EXPECT_EQ(wb::testing::ProcessesMentioning("--listen-address=127.0.0.1"), dns_before);
  EXPECT_TRUE(wb::testing::SandboxRootPids(kBase).empty());
  auto table = RunProcess({"/usr/sbin/nft", "list", "table", "inet", kTable});
  EXPECT_EQ(table.out.find("chain out_"), std::string::npos) << table.out;
  EXPECT_TRUE(wb::testing::Entries(SandboxesDir(state_)).empty());

  // The same driver's next sandbox, with a working helper, is fine.
  driver_.reset();
  drv = NsDriver::Open(Options(), store_.get());
  ASSERT_OK(drv);
  driver_ = std::move(*drv);
  auto ok = Egress({"allowed.test"}, {});
  ASSERT_TRUE(ok);
  EXPECT_EQ(Get(*ok, "http://allowed.test/"), "hello from 198.51.100.10\n");
}

// The daemon's driver makes a network ahead when an egress sandbox goes
// (NsDriverOptions::spare_network): the next sandbox with that policy gets
// it (its resolver and rules were made before its create), one with another
// policy makes its own, a spare whose resolver died is not handed out, and
// the driver's end takes the spare with it.
TEST_F(NetTest, ANetworkMadeAheadServesTheNextSandboxOfItsPolicy) {
  driver_.reset();
  NsDriverOptions o = Options();
  o.spare_network = true;
  auto drv = NsDriver::Open(o, store_.get());
  ASSERT_OK(drv);
  driver_ = std::move(*drv);
  // Our children only: dnsmasq serves each TCP connection (the driver's
  // probe of it included) in a child of its own.
  auto resolvers = [] {
    return wb::testing::ChildrenMentioning(::getpid(), "--listen-address=127.0.0.1");
  };
  const auto before = resolvers();

  auto a = Egress({"allowed.test"}, {"denied.test"});
  ASSERT_TRUE(a);
  const auto a_resolver = resolvers();
  ASSERT_EQ(a_resolver.size(), before.size() + 1);
  ASSERT_OK(a->Destroy());
  a.reset();
  // One network made ahead: a fresh resolver of its own, a dir with an owner
  // record (for gc, if this process dies), a chain.
  auto spare = resolvers();
  ASSERT_EQ(spare.size(), before.size() + 1);
  EXPECT_NE(spare, a_resolver);
  EXPECT_EQ(wb::testing::Entries(SandboxesDir(state_)).size(), 1u);

  // Same policy: handed out (no resolver started), and it works as made at
  // the create: the allowed name resolves and connects, the denied does not.
  auto b = Egress({"allowed.test"}, {"denied.test"});
  ASSERT_TRUE(b);
  EXPECT_EQ(resolvers(), spare);
  EXPECT_EQ(Get(*b, "http://allowed.test/"), "hello from 198.51.100.10\n");
  EXPECT_FALSE(Resolves(*b, "denied.test"));
  EXPECT_EQ(Get(*b, "http://198.51.100.11/"), "");
  EXPECT_NE(Sh(*b, "cat /etc/resolv.conf").stdout_data.find("nameserver 169.254.0.53"),
            std::string::npos);
  auto ctr = b->NetworkCounters();
  ASSERT_OK(ctr);
  EXPECT_GT(ctr->bytes_out, 0u);

  // Another policy, while b lives: a network of its own.
  auto c = Egress({"203.0.113.0/24"}, {});
  ASSERT_TRUE(c);
  EXPECT_EQ(resolvers().size(), before.size() + 2);
  EXPECT_EQ(Get(*c, "http://203.0.113.66/"), "hello from 203.0.113.66\n");
  EXPECT_EQ(Get(*c, "http://198.51.100.10/"), "");
  ASSERT_OK(c->Destroy());  // leaves a spare for c's policy
  c.reset();
  ASSERT_OK(b->Destroy());  // replaces it with one for b's
  b.reset();
  spare = resolvers();
  ASSERT_EQ(spare.size(), before.size() + 1);

  // A spare whose resolver died is not handed out: the create makes its own.
  pid_t dead = 0;
  for (pid_t p : spare) {
    if (std::find(before.begin(), before.end(), p) == before.end()) dead = p;
  }
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::kill(dead, SIGKILL), 0);
  ASSERT_TRUE(Eventually(
      [&] {
        auto st = ReadFile("/proc/" + std::to_string(dead) + "/stat");
        return !st.ok() || st->find(") Z") != std::string::npos;
      },
      5000));
  auto d = Egress({"allowed.test"}, {"denied.test"});
  ASSERT_TRUE(d);
  EXPECT_EQ(Get(*d, "http://allowed.test/"), "hello from 198.51.100.10\n");
  ASSERT_OK(d->Destroy());
  d.reset();

  // The driver's end: no resolver, dir, chain or table is left.
  driver_.reset();
  EXPECT_EQ(resolvers(), before);
  EXPECT_TRUE(wb::testing::Entries(SandboxesDir(state_)).empty());
  EXPECT_EQ(Tables().find(kTable), std::string::npos) << Tables();
}

TEST_F(NetTest, OpenPolicyStillRefusesDefaultsAndDeniedNames) {
  auto sb = Egress({}, {"denied.test", "198.51.100.11"});
  ASSERT_TRUE(sb);
  EXPECT_EQ(Get(*sb, "http://allowed.test/"), "hello from 198.51.100.10\n");
  EXPECT_EQ(Get(*sb, "http://203.0.113.66/"), "hello from 203.0.113.66\n");
  EXPECT_FALSE(Resolves(*sb, "denied.test"));
  EXPECT_EQ(Get(*sb, "http://198.51.100.11/"), "");
  // A name resolving to a private address does not open it.
  EXPECT_TRUE(Resolves(*sb, "private.test"));
  EXPECT_EQ(Get(*sb, "http://private.test/"), "");
  for (const char* ip : {"169.254.169.254", "10.1.2.3"}) {
    EXPECT_EQ(Get(*sb, std::string("http://") + ip + "/"), "") << ip;
  }
  // The host's own services: another address of D, and its loopback
  // (slirp4netns maps nothing of it: --disable-host-loopback).
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(80);
  ::inet_pton(AF_INET, "192.0.2.3", &a.sin_addr);
  ASSERT_EQ(::bind(l.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
  ASSERT_EQ(::listen(l.get(), 8), 0);
  UniqueFd lo(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(8081);
  ASSERT_EQ(::bind(lo.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << strerror(errno);
  ASSERT_EQ(::listen(lo.get(), 8), 0);
  EXPECT_EQ(Get(*sb, "http://192.0.2.3/"), "");
  EXPECT_EQ(Get(*sb, "http://192.0.2.1:8081/"), "");
  EXPECT_EQ(Get(*sb, "http://127.0.0.1:8081/"), "");
  EXPECT_EQ(Get(*sb, "http://10.0.2.2:8081/"), "");  // slirp4netns's gateway
  EXPECT_LT(::accept(l.get(), nullptr, nullptr), 0);
  EXPECT_LT(::accept(lo.get(), nullptr, nullptr), 0);
}

TEST_F(NetTest, ExplicitAllowOpensAPrivateAddress) {
  auto sb = Egress({"10.1.2.3", "192.0.2.3"}, {});
  ASSERT_TRUE(sb);
  EXPECT_EQ(Get(*sb, "http://10.1.2.3/"), "hello from 10.1.2.3\n");
  EXPECT_EQ(Get(*sb, "http://203.0.113.10/"), "");
  EXPECT_EQ(Get(*sb, "http://172.16.5.5/"), "");
}

TEST_F(NetTest, UpdateTakesEffectOnARunningSandbox) {
  auto sb = Egress({"198.51.100.10"}, {});
  ASSERT_TRUE(sb);
  EXPECT_EQ(Get(*sb, "http://198.51.100.10/"), "hello from 198.51.100.10\n");
  EXPECT_EQ(Get(*sb, "http://203.0.113.10/"), "");
  EXPECT_FALSE(Resolves(*sb, "allowed.test"));
  ASSERT_OK(sb->UpdateNetwork({"203.0.113.0/24", "allowed.test"}, {"203.0.113.66"}));
  EXPECT_EQ(sb->network().allow_out, (std::vector<std::string>{"203.0.113.0/24", "allowed.test"}));
  EXPECT_EQ(Get(*sb, "http://203.0.113.10/"), "hello from 203.0.113.10\n");
  EXPECT_EQ(Get(*sb, "http://203.0.113.66/"), "");
  EXPECT_EQ(Get(*sb, "http://allowed.test/"), "hello from 198.51.100.10\n");
  EXPECT_EQ(Get(*sb, "http://198.51.100.11/"), "");
  // A bad entry is refused by name, and the policy in force stays.
  auto bad = sb->UpdateNetwork({"10.0.0.1/8"}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.error().ToString().find("10.0.0.1/8"), std::string::npos);
  EXPECT_EQ(Get(*sb, "http://203.0.113.10/"), "hello from 203.0.113.10\n");
}

// A name's address is admitted while the resolver's answer lives (the
// set's timeout and the cache's TTL are one value, 10 s here), then no
// longer, until the name is resolved again.
TEST_F(NetTest, NamesAddressesExpireWithTheResolversAnswer) {
  auto sb = Egress({"allowed.test"}, {});
  ASSERT_TRUE(sb);
  EXPECT_EQ(Get(*sb, "http://allowed.test/"), "hello from 198.51.100.10\n");
  auto table = [] { return RunProcess({"/usr/sbin/nft", "list", "table", "inet", kTable}).out; };
  EXPECT_NE(table().find("timeout 10s"), std::string::npos) << table();  // the set's
  EXPECT_NE(table().find("198.51.100.10 expires"), std::string::npos) << table();
  EXPECT_TRUE(Eventually([&] { return table().find("198.51.100.10") == std::string::npos; }, 30000))
      << table();
  EXPECT_EQ(Get(*sb, "http://198.51.100.10/"), "");
  EXPECT_EQ(Get(*sb, "http://allowed.test/"), "hello from 198.51.100.10\n");
}

}  // namespace
}  // namespace wb
