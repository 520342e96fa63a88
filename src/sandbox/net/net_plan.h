// Networking of a sandbox, the pure half (docs/network.md): the mode and the
// egress policy as given (--network, --allow-out, --deny-out, -p), parsed
// into what enforces it: the nftables text of the sandbox's chains and sets,
// the argv of slirp4netns (user-mode networking into the sandbox's netns) and
// of dnsmasq (the sandbox's resolver). Applying it is net_attach.h.
//
// The model: the sandbox's own network namespace gets one interface, served
// by a slirp4netns process in the daemon's namespace, so every connection of
// the sandbox becomes a socket of that process. It runs with a group id of
// its own per sandbox (spawned with it), and warmbox's nftables table
// (`inet warmbox`) matches those sockets (`meta skgid`) in its output hook:
// the policy lives where nothing in the sandbox can reach it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb {

enum class NetworkMode { kNone, kEgress };
const char* NetworkModeName(NetworkMode m);
// "none" or "egress"; what: the option or field named in the error.
[[nodiscard]] Result<NetworkMode> ParseNetworkMode(std::string_view s,
                                                   const std::string& what = "--network");

// A TCP port of the sandbox published on the host: [HOSTADDR:]HOSTPORT:PORT.
struct PublishedPort {
  std::string host_addr = "127.0.0.1";
  uint16_t host_port = 0;
  uint16_t port = 0;
  bool operator==(const PublishedPort&) const = default;
};
// "[HOSTADDR:]HOSTPORT:PORT" (an IPv6 HOSTADDR in brackets).
[[nodiscard]] Result<PublishedPort> ParsePublishedPort(std::string_view s,
                                                       const std::string& what = "-p");

// What a caller asks for (the CLI's and the APIs' fields).
struct NetworkSpec {
  NetworkMode mode = NetworkMode::kNone;
  std::vector<std::string> allow_out;  // IPs, CIDRs, names, *.names
  std::vector<std::string> deny_out;
  std::vector<PublishedPort> ports;
  bool operator==(const NetworkSpec&) const = default;
};

// Published ports are the daemon's (daemon/published_ports.h: a listener on
// the host relayed through the agent's port tunnel), for live sandboxes only:
// a driver's network (and `warmbox run`) refuses them by name, so no caller
// believes a port is open.
[[nodiscard]] Result<void> CheckNetworkSupported(const NetworkSpec& s);

struct Cidr {
  bool v6 = false;
  uint8_t addr[16] = {};
  int prefix = 0;
  // "192.0.2.0/24", "2001:db8::/32", a host without its /32 or /128.
  std::string ToString() const;
  bool Contains(const Cidr& other) const;
  bool operator==(const Cidr& o) const;
};
// An IP or CIDR; the host bits of a CIDR must be zero (10.0.0.1/8 is refused
// as ambiguous, naming 10.0.0.0/8).
[[nodiscard]] Result<Cidr> ParseCidr(std::string_view s, const std::string& what);

// A domain rule: "example.com" (that name and every name under it, as DNS
// delegation works) or "*.example.com" (only the names under it).
struct DomainRule {
  std::string domain;  // lower case, no trailing dot, no "*."
  bool subdomains_only = false;
  // Whether name (lower case) is covered by this rule.
  bool Covers(std::string_view name) const;
  std::string ToString() const { return (subdomains_only ? "*." : "") + domain; }
};

// The parsed policy.
struct NetPolicy {
  std::vector<Cidr> allow_cidrs, deny_cidrs;
  std::vector<DomainRule> allow_domains, deny_domains;
  // No allow entry at all: every public address (and name) is allowed; the
  // default denies and --deny-out still apply. With any allow entry, only
  // what the entries cover.
  bool open() const { return allow_cidrs.empty() && allow_domains.empty(); }
};
// Each entry is an IP, a CIDR, a name or "*.name"; an error names the entry
// and the list ("--allow-out 10.0.0.1/8: ...").
[[nodiscard]] Result<NetPolicy> ParseNetPolicy(const std::vector<std::string>& allow_out,
                                               const std::vector<std::string>& deny_out,
                                               const std::string& allow_what = "--allow-out",
                                               const std::string& deny_what = "--deny-out");

// The ranges refused in egress mode unless an --allow-out CIDR covers them
// (besides every address of the host itself, matched with `fib daddr type
// local`): loopback, "this network", link-local (cloud metadata), the
// private and shared ranges, multicast and broadcast; fc00::/7, fe80::/10.
const std::vector<std::string>& DefaultDeniedRanges();

// The default of NetTableIds::dns_ttl_s; dnsmasq caps its cache TTL floor at
// one hour, so at most 3600.
inline constexpr uint32_t kDnsTtlSeconds = 300;

// Where one sandbox's rules sit in the table.
struct NetTableIds {
  std::string table = "warmbox";  // table inet <table>
  std::string tag;                // per sandbox: [a-z0-9_], names its chains and sets
  uint32_t gid = 0;               // the helper's group: `meta skgid`
  uint16_t dns_port = 0;          // the sandbox's dnsmasq on 127.0.0.1
  // How long an allowed name's address stays admitted after its resolution
  // (the dns4/dns6 sets' timeout) and, the same, how long the sandbox's
  // resolver keeps and hands out the answer (dnsmasq's cache and answer
  // TTLs pinned to it): dnsmasq's --nftset carries no per-record TTL, so
  // cache and set agree on one value instead (docs/network.md, "Names").
  uint32_t dns_ttl_s = kDnsTtlSeconds;
};
// dns_ttl_s within what dnsmasq accepts: 1 to 3600.
uint32_t EffectiveDnsTtl(const NetTableIds& ids);
// The resolver address the sandbox's /etc/resolv.conf names; its queries (to
// port 53, UDP and TCP) are redirected to the sandbox's dnsmasq.
inline constexpr const char* kSandboxResolver = "169.254.0.53";

// nft -f text that makes the table and its base chains when missing (add is
// idempotent): filter output and input, nat output, each dispatching on the
// socket's group through a verdict map.
std::string NftBaseText(const std::string& table);
// nft -f text that adds one sandbox: its sets, counters and chains, and its
// entries in the dispatch maps. One transaction.
std::string NftSandboxText(const NetTableIds& ids, const NetPolicy& policy);
// One transaction that replaces the sandbox's policy sets and verdict of the
// open/closed default (a runtime update): flush, then refill.
std::string NftUpdateText(const NetTableIds& ids, const NetPolicy& policy);
// Removes every object of the sandbox (map entries first: a chain that is
// still referenced cannot go).
std::string NftRemoveText(const NetTableIds& ids);

// The sandbox's counters, from `nft -j list counters table inet <table>`.
struct NetCounters {
  uint64_t bytes_out = 0, bytes_in = 0;
  uint64_t refused = 0;  // packets refused by the policy (connection attempts)
};
// Every sandbox's counters in that listing, by tag (a counter named
// bytes_out_<tag>, bytes_in_<tag> or refused_<tag>).
[[nodiscard]] Result<std::map<std::string, NetCounters>> ParseNftCountersByTag(
    std::string_view json);
// One sandbox's of them: zeros when the listing has none of its counters.
NetCounters CountersOf(const std::map<std::string, NetCounters>& by_tag, const std::string& tag);
// Where a sandbox's counters are read: its table (by the nft at nft_path)
// and its tag there. Empty table: the sandbox has no network.
struct NetCounterSource {
  std::string nft_path, table, tag;
};

// slirp4netns's argv (Debian's, libslirp): it creates the tap interface
// (kSlirpIfname) in the netns open at its own fd netns_fd, configures address
// and default route there (10.0.2.100/24 via 10.0.2.2), writes "1" to
// ready_fd once done, and quits when exit_fd becomes readable (the daemon
// holds the other end: it closes when the daemon dies, however it dies).
// Its group is set by the spawn (SpawnOptions::gid), not by itself.
inline constexpr const char* kSlirpIfname = "eth0";
struct SlirpPlan {
  std::string path = "/usr/bin/slirp4netns";
  int netns_fd = 3;
  int ready_fd = 4;
  int exit_fd = 5;
};
std::vector<std::string> SlirpArgv(const SlirpPlan& p);

// The vm driver's guest side of passt (docs/network.md, "The vm driver"):
// the same address, gateway and resolver in every VM (each VM has its own
// passt, so nothing is shared). 10.0.2.0/24 is in 10/8, which the default
// denies refuse as a destination anyway.
inline constexpr const char* kVmGuestAddr = "10.0.2.15";
inline constexpr int kVmGuestPrefix = 24;
inline constexpr const char* kVmGateway = "10.0.2.2";

// passt's argv (user-mode networking for VMs): it listens on socket_path for one
// QEMU (-netdev stream) and quits when that QEMU goes (--one-off).
struct PasstPlan {
  std::string path = "/usr/bin/passt";
  uint32_t gid = 0;
  std::string socket_path;
  std::vector<PublishedPort> ports;
};
std::vector<std::string> PasstArgv(const PasstPlan& p);

// dnsmasq's argv: listening on 127.0.0.1:port, forwarding only names the
// policy allows to the upstreams, adding what they resolve to to the
// sandbox's sets, answering NXDOMAIN for denied names and REFUSED for others.
struct DnsmasqPlan {
  std::string path = "/usr/sbin/dnsmasq";
  uint16_t port = 0;
  std::vector<std::string> upstreams;  // IPs (port 53)
  std::string pid_file;                // "" = none
};
std::vector<std::string> DnsmasqArgv(const DnsmasqPlan& d, const NetTableIds& ids,
                                     const NetPolicy& policy);
// The nameservers of a resolv.conf text, in order.
std::vector<std::string> ParseResolvConf(std::string_view text);

}  // namespace wb
