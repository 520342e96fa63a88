#include "sandbox/net/net_plan.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace wb {
namespace {

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(NetPlan, Mode) {
  EXPECT_EQ(*ParseNetworkMode("none"), NetworkMode::kNone);
  EXPECT_EQ(*ParseNetworkMode("egress"), NetworkMode::kEgress);
  auto bad = ParseNetworkMode("bridge");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.error().ToString(), "--network(bridge): expected none or egress");
}

TEST(NetPlan, Cidrs) {
  EXPECT_EQ(ParseCidr("198.51.100.7", "x")->ToString(), "198.51.100.7");
  EXPECT_EQ(ParseCidr("203.0.113.0/24", "x")->ToString(), "203.0.113.0/24");
  EXPECT_EQ(ParseCidr("2001:db8::/32", "x")->ToString(), "2001:db8::/32");
  auto host_bits = ParseCidr("10.0.0.1/8", "--allow-out");
  ASSERT_FALSE(host_bits.ok());
  EXPECT_EQ(host_bits.error().ToString(),
            "--allow-out(10.0.0.1/8): host bits set; did you mean 10.0.0.0/8?");
  EXPECT_FALSE(ParseCidr("10.0.0.0/33", "x").ok());
  EXPECT_FALSE(ParseCidr("1.2.3", "x").ok());
  EXPECT_FALSE(ParseCidr("10.0.0.0/", "x").ok());
  EXPECT_TRUE(ParseCidr("10.0.0.0/8", "x")->Contains(*ParseCidr("10.9.8.7", "x")));
  EXPECT_FALSE(ParseCidr("10.0.0.0/8", "x")->Contains(*ParseCidr("11.0.0.1", "x")));
}

TEST(NetPlan, PolicyEntriesAndErrorsNameTheEntry) {
  auto p = ParseNetPolicy({"198.51.100.0/24", "Example.COM.", "*.pypi.org", "2001:db8::1"},
                          {"203.0.113.9", "bad.example.com"});
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  ASSERT_EQ(p->allow_cidrs.size(), 2u);
  ASSERT_EQ(p->allow_domains.size(), 2u);
  EXPECT_EQ(p->allow_domains[0].ToString(), "example.com");
  EXPECT_EQ(p->allow_domains[1].ToString(), "*.pypi.org");
  EXPECT_FALSE(p->open());
  EXPECT_TRUE(ParseNetPolicy({}, {"10.0.0.0/8"})->open());

  auto e = ParseNetPolicy({"ok.example.com", "exa mple.com"}, {});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(e.error().ToString(), "--allow-out(exa mple.com): invalid character ' ' in a name");
  e = ParseNetPolicy({}, {"com"});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().ToString().find("--deny-out(com): a name needs at least two labels"),
            std::string::npos);
  e = ParseNetPolicy({"a.*.example.com"}, {});
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().detail.find("only allowed as a leading *."), std::string::npos);
  EXPECT_FALSE(ParseNetPolicy({""}, {}).ok());
}

TEST(NetPlan, DomainRules) {
  DomainRule all{"example.com", false}, sub{"example.com", true};
  EXPECT_TRUE(all.Covers("example.com"));
  EXPECT_TRUE(all.Covers("a.b.example.com"));
  EXPECT_FALSE(all.Covers("badexample.com"));
  EXPECT_FALSE(sub.Covers("example.com"));
  EXPECT_TRUE(sub.Covers("www.example.com"));
}

TEST(NetPlan, DenyBeatsAllowForNames) {
  // Denied whole: the allowed name under it is dropped, and the policy
  // stays closed (not open) when nothing allowed is left.
  auto p = ParseNetPolicy({"api.example.com"}, {"example.com"});
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->open());
  for (const auto& d : p->allow_domains) EXPECT_FALSE(DomainRule({"example.com"}).Covers(d.domain));
  // A denied name under an allowed one stays beside it (dnsmasq's longer
  // pattern wins there by itself).
  p = ParseNetPolicy({"example.com"}, {"bad.example.com"});
  ASSERT_EQ(p->allow_domains.size(), 1u);
  // *.example.com denied: example.com itself stays allowed.
  p = ParseNetPolicy({"example.com"}, {"*.example.com"});
  ASSERT_EQ(p->allow_domains.size(), 1u);
  p = ParseNetPolicy({"*.example.com"}, {"*.example.com"});
  EXPECT_FALSE(p->open());
}

TEST(NetPlan, PublishedPorts) {
  EXPECT_EQ(*ParsePublishedPort("8080:80"), (PublishedPort{"127.0.0.1", 8080, 80}));
  EXPECT_EQ(*ParsePublishedPort("0.0.0.0:8080:80"), (PublishedPort{"0.0.0.0", 8080, 80}));
  EXPECT_EQ(*ParsePublishedPort("[::1]:8080:80"), (PublishedPort{"::1", 8080, 80}));
  for (const char* bad : {"80", "x:80", "8080:0", "8080:70000", "a.b:1:2", "1:2:3:4", "[::1]8:8"}) {
    auto r = ParsePublishedPort(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().arg, bad);
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(NetPlan, SandboxRulesetText) {
  NetTableIds ids{"warmbox", "abc123", 1065536, 5353};
  auto p = ParseNetPolicy({"198.51.100.0/24", "allowed.test"}, {"198.51.100.66"});
  ASSERT_TRUE(p.ok());
  std::string t = NftSandboxText(ids, *p);
  // Sets, chains and the dispatch entries are the sandbox's own.
  EXPECT_NE(t.find("add set inet warmbox allow4_abc123 { type ipv4_addr; flags interval; }"),
            std::string::npos);
  EXPECT_NE(t.find("add element inet warmbox allow4_abc123 { 198.51.100.0/24 }"),
            std::string::npos);
  EXPECT_NE(t.find("add element inet warmbox deny4_abc123 { 198.51.100.66 }"), std::string::npos);
  EXPECT_NE(t.find("add element inet warmbox out_by_gid { 1065536 : jump out_abc123 }"),
            std::string::npos);
  EXPECT_NE(t.find("dnat ip to 127.0.0.1:5353"), std::string::npos);
  // Order: deny before allow, allow before the default denies, the names'
  // addresses after them, and a closed policy ends in a refusal.
  size_t deny = t.find("ip daddr @deny4_abc123"), allow = t.find("ip daddr @allow4_abc123"),
         local = t.find("fib daddr type local"), defaults = t.find("@defaults4"),
         names = t.find("ip daddr @dns4_abc123");
  ASSERT_NE(deny, std::string::npos);
  EXPECT_LT(deny, allow);
  EXPECT_LT(allow, local);
  EXPECT_LT(local, defaults);
  EXPECT_LT(defaults, names);
  // A refusal is a reset for TCP (the sandbox's connect fails at once), an
  // ICMP error otherwise; both counted, in the sandbox's refuse chain.
  EXPECT_NE(t.find("add rule inet warmbox refuse_abc123 meta l4proto tcp counter name "
                   "refused_abc123 reject with tcp reset\nadd rule inet warmbox refuse_abc123 "
                   "counter name refused_abc123 reject\n"),
            std::string::npos);
  EXPECT_NE(t.find("out_abc123 ip daddr @deny4_abc123 jump refuse_abc123\n"), std::string::npos);
  EXPECT_NE(t.find("out_abc123 ip daddr @defaults4 jump refuse_abc123\n"), std::string::npos);
  // A closed policy ends in a refusal.
  EXPECT_NE(t.find("out_abc123 jump refuse_abc123\n"), std::string::npos);
  // The default denies are the table's, shared by every sandbox's chain.
  std::string base = NftBaseText("warmbox");
  EXPECT_NE(base.find("add set inet warmbox defaults4 { type ipv4_addr; flags interval; "
                      "elements = { 0.0.0.0/8, 10.0.0.0/8"),
            std::string::npos)
      << base;
  EXPECT_NE(base.find("169.254.0.0/16"), std::string::npos);
  EXPECT_NE(base.find("fe80::/10"), std::string::npos);
  // An open policy ends in accept.
  std::string open = NftSandboxText(ids, *ParseNetPolicy({}, {}));
  EXPECT_NE(open.find("add rule inet warmbox out_abc123 accept\n"), std::string::npos);
  // Removal names every object that was added.
  std::string rm = NftRemoveText(ids);
  for (const char* o : {"chain inet warmbox out_abc123", "chain inet warmbox nat_abc123",
                        "set inet warmbox dns6_abc123", "counter inet warmbox refused_abc123",
                        "element inet warmbox nat_by_gid { 1065536 }"}) {
    EXPECT_NE(rm.find(std::string("delete ") + o), std::string::npos) << o;
  }
  // An update flushes and refills in one text.
  std::string up = NftUpdateText(ids, *ParseNetPolicy({"203.0.113.0/24"}, {}));
  EXPECT_NE(up.find("flush set inet warmbox allow4_abc123"), std::string::npos);
  EXPECT_NE(up.find("flush chain inet warmbox out_abc123"), std::string::npos);
  EXPECT_NE(up.find("add element inet warmbox allow4_abc123 { 203.0.113.0/24 }"),
            std::string::npos);
}

TEST(NetPlan, SlirpArgvMapsNothingOfTheHostAndHasNoResolverOfItsOwn) {
  SlirpPlan p;
  auto a = SlirpArgv(p);
  EXPECT_EQ(a[0], "/usr/bin/slirp4netns");
  // 10.0.2.2 is no way to the host's loopback; 10.0.2.3 asks no upstream.
  EXPECT_TRUE(Has(a, "--disable-host-loopback"));
  EXPECT_TRUE(Has(a, "--disable-dns"));
  EXPECT_TRUE(Has(a, "--enable-sandbox"));
  EXPECT_TRUE(Has(a, "--ready-fd=4"));
  EXPECT_TRUE(Has(a, "--exit-fd=5"));
  // The netns as its own fd, then the interface's name, last.
  ASSERT_GE(a.size(), 2u);
  EXPECT_EQ(a[a.size() - 2], "/proc/self/fd/3");
  EXPECT_EQ(a.back(), kSlirpIfname);
  // No port forwarding option exists in its argv: it forwards nothing inward
  // without its API socket, which it is not given.
  for (const auto& arg : a) EXPECT_EQ(arg.find("--api-socket"), std::string::npos) << arg;
}

TEST(NetPlan, PasstArgvServesOneVmWithTheFixedGuestView) {
  PasstPlan p;
  p.gid = 78;
  p.socket_path = "/run/x/passt.sock";
  auto a = PasstArgv(p);
  EXPECT_EQ(a[0], "/usr/bin/passt");
  EXPECT_TRUE(Has(a, "0:78"));
  EXPECT_TRUE(Has(a, "--one-off"));
  EXPECT_TRUE(Has(a, "--no-map-gw"));
  auto after = [&](const char* flag) {
    auto it = std::find(a.begin(), a.end(), flag);
    return it == a.end() || it + 1 == a.end() ? std::string("(missing)") : *(it + 1);
  };
  EXPECT_EQ(after("--socket"), "/run/x/passt.sock");
  EXPECT_EQ(after("--address"), kVmGuestAddr);
  EXPECT_EQ(after("--netmask"), "24");
  EXPECT_EQ(after("--gateway"), kVmGateway);
  EXPECT_EQ(after("-t"), "none");
  EXPECT_EQ(after("-u"), "none");
}

TEST(NetPlan, DnsmasqArgv) {
  NetTableIds ids{"warmbox", "abc", 9, 5353};
  DnsmasqPlan d;
  d.port = 5353;
  d.upstreams = {"198.51.100.53"};
  auto closed = DnsmasqArgv(d, ids, *ParseNetPolicy({"allowed.test", "*.wild.test"}, {"no.test"}));
  EXPECT_TRUE(Has(closed, "--server=/allowed.test/198.51.100.53"));
  EXPECT_TRUE(Has(closed, "--server=/*.wild.test/198.51.100.53"));
  EXPECT_TRUE(
      Has(closed, "--nftset=/allowed.test/4#inet#warmbox#dns4_abc,6#inet#warmbox#dns6_abc"));
  EXPECT_TRUE(Has(closed, "--address=/no.test/"));
  EXPECT_FALSE(Has(closed, "--server=198.51.100.53"));  // no default upstream: others REFUSED
  auto open = DnsmasqArgv(d, ids, *ParseNetPolicy({}, {"no.test"}));
  EXPECT_TRUE(Has(open, "--server=198.51.100.53"));
}

// A name's address is admitted as long as the resolver hands it out: the
// cache's TTLs (floor and ceiling), the answers' TTL and the set's timeout
// are one value.
TEST(NetPlan, NamesLiveAsLongInTheCacheAsInTheSet) {
  NetTableIds ids{"warmbox", "abc", 9, 5353};
  EXPECT_EQ(ids.dns_ttl_s, kDnsTtlSeconds);
  ids.dns_ttl_s = 120;
  DnsmasqPlan d;
  d.port = 5353;
  d.upstreams = {"198.51.100.53"};
  auto a = DnsmasqArgv(d, ids, *ParseNetPolicy({"allowed.test"}, {}));
  for (const char* opt : {"--min-cache-ttl=120", "--max-cache-ttl=120", "--max-ttl=120"}) {
    EXPECT_TRUE(Has(a, opt)) << opt;
  }
  const std::string text = NftSandboxText(ids, *ParseNetPolicy({"allowed.test"}, {}));
  EXPECT_NE(text.find("dns4_abc { type ipv4_addr; flags timeout; timeout 120s; }"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dns6_abc { type ipv6_addr; flags timeout; timeout 120s; }"),
            std::string::npos);
  ids.dns_ttl_s = 7200;  // dnsmasq's limit, for both
  EXPECT_TRUE(
      Has(DnsmasqArgv(d, ids, *ParseNetPolicy({"allowed.test"}, {})), "--min-cache-ttl=3600"));
  EXPECT_NE(NftSandboxText(ids, *ParseNetPolicy({"allowed.test"}, {})).find("timeout 3600s"),
            std::string::npos);
}

TEST(NetPlan, ResolvConfAndCounters) {
  EXPECT_EQ(
      ParseResolvConf("# x\nnameserver 10.0.0.1\nsearch a\nnameserver\t::1 # c\nnameserverX 1\n"),
      (std::vector<std::string>{"10.0.0.1", "::1"}));
  auto listed = ParseNftCountersByTag(
      R"({"nftables":[{"metainfo":{}},)"
      R"({"counter":{"family":"inet","name":"bytes_out_abc","table":"warmbox","packets":3,"bytes":300}},)"
      R"({"counter":{"family":"inet","name":"refused_abc","table":"warmbox","packets":2,"bytes":120}},)"
      R"({"counter":{"family":"inet","name":"refused_other","table":"warmbox","packets":9,"bytes":9}}]})");
  ASSERT_TRUE(listed.ok());
  NetCounters c = CountersOf(*listed, "abc");
  EXPECT_EQ(c.bytes_out, 300u);
  EXPECT_EQ(c.refused, 2u);
  EXPECT_EQ(c.bytes_in, 0u);
  EXPECT_EQ(CountersOf(*listed, "absent").refused, 0u) << "a tag without counters: zeros";
  EXPECT_FALSE(ParseNftCountersByTag("[").ok());
  // Every sandbox's at once (the metrics' one nft run per table); a counter
  // of no sandbox (a bare prefix) and other objects are skipped.
  auto all = ParseNftCountersByTag(
      R"({"nftables":[{"metainfo":{}},)"
      R"({"counter":{"family":"inet","name":"bytes_out_abc","table":"warmbox","packets":3,"bytes":300}},)"
      R"({"counter":{"family":"inet","name":"bytes_in_abc","table":"warmbox","packets":4,"bytes":400}},)"
      R"({"counter":{"family":"inet","name":"refused_def","table":"warmbox","packets":9,"bytes":9}},)"
      R"({"counter":{"family":"inet","name":"refused_","table":"warmbox","packets":1,"bytes":1}},)"
      R"({"set":{"family":"inet","name":"bytes_out_x","table":"warmbox"}}]})");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ(all->at("abc").bytes_out, 300u);
  EXPECT_EQ(all->at("abc").bytes_in, 400u);
  EXPECT_EQ(all->at("abc").refused, 0u);
  EXPECT_EQ(all->at("def").refused, 9u);
  EXPECT_EQ(all->at("def").bytes_out, 0u);
  auto bad = ParseNftCountersByTag(R"({"other":[]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("no nftables array"), std::string::npos);
}

}  // namespace
TEST(NetPlan, PublishedPortsAreRefusedByTheDriverByName) {
  NetworkSpec s;
  s.mode = NetworkMode::kEgress;
  EXPECT_TRUE(CheckNetworkSupported(s).ok());
  s.ports.push_back(*ParsePublishedPort("8080:80"));
  auto r = CheckNetworkSupported(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().ToString().find("127.0.0.1:8080:80"), std::string::npos)
      << r.error().ToString();
  EXPECT_NE(r.error().ToString().find("sandbox create -p"), std::string::npos);
}

}  // namespace wb
