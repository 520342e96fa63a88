#include "sandbox/net/net_plan.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "base/json.h"
#include "base/strings.h"

namespace wb {

const char* NetworkModeName(NetworkMode m) { return m == NetworkMode::kEgress ? "egress" : "none"; }

Result<NetworkMode> ParseNetworkMode(std::string_view s, const std::string& what) {
  if (s == "none") return NetworkMode::kNone;
  if (s == "egress") return NetworkMode::kEgress;
  return Fail(ErrorCode::kInvalidArgument, what, std::string(s), "expected none or egress");
}

namespace {

Result<uint16_t> ParsePort(std::string_view s, const std::string& what, const std::string& whole) {
  if (s.empty() || s.size() > 5) {
    return Fail(ErrorCode::kInvalidArgument, what, whole, "expected a port 1-65535");
  }
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return Fail(ErrorCode::kInvalidArgument, what, whole, "expected a port 1-65535");
    }
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v == 0 || v > 65535) {
    return Fail(ErrorCode::kInvalidArgument, what, whole, "expected a port 1-65535");
  }
  return static_cast<uint16_t>(v);
}

bool ValidLabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// A domain name as a rule: labels of [a-z0-9-_], at least two of them (a
// rule on a whole top-level domain is a mistake more often than a wish).
Result<DomainRule> ParseDomain(std::string_view entry, const std::string& what) {
  DomainRule r;
  std::string s = Lower(entry);
  if (StartsWith(s, "*.")) {
    r.subdomains_only = true;
    s = s.substr(2);
  }
  if (!s.empty() && s.back() == '.') s.pop_back();
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, what, std::string(entry), why);
  };
  if (s.empty() || s.size() > 253) return bad("expected an IP, a CIDR, a name or *.name");
  auto labels = Split(s, '.');
  if (labels.size() < 2) {
    return bad(
        "a name needs at least two labels (example.com); a bare top-level domain is refused");
  }
  for (const auto& l : labels) {
    if (l.empty() || l.size() > 63) return bad("empty or over-long label");
    for (char c : l) {
      if (!ValidLabelChar(c)) {
        return bad(c == '*' ? "a wildcard is only allowed as a leading *."
                            : std::string("invalid character '") + c + "' in a name");
      }
    }
    if (l.front() == '-' || l.back() == '-') return bad("a label cannot start or end with '-'");
  }
  r.domain = s;
  return r;
}

bool LooksLikeIp(std::string_view s) {
  if (s.find(':') != std::string_view::npos) return true;
  // Digits, dots and a '/' only: meant as an IPv4 address or CIDR.
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == '/')) return false;
  }
  return !s.empty();
}

void AppendElems(std::string& out, const std::vector<Cidr>& cidrs, bool v6) {
  bool first = true;
  for (const auto& c : cidrs) {
    if (c.v6 != v6) continue;
    out += first ? "" : ", ";
    out += c.ToString();
    first = false;
  }
}

std::string SetElementsText(const std::string& table, const std::string& set,
                            const std::vector<Cidr>& cidrs, bool v6) {
  std::string elems;
  AppendElems(elems, cidrs, v6);
  if (elems.empty()) return "";
  return "add element inet " + table + " " + set + " { " + elems + " }\n";
}

}  // namespace

Result<PublishedPort> ParsePublishedPort(std::string_view s, const std::string& what) {
  const std::string whole(s);
  PublishedPort p;
  std::string_view rest = s;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return Fail(ErrorCode::kInvalidArgument, what, whole, "expected [HOSTADDR:]HOSTPORT:PORT");
    }
    p.host_addr = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 2);
  } else {
    size_t colons = 0;
    for (char c : rest) colons += c == ':';
    if (colons == 2) {
      size_t first = rest.find(':');
      p.host_addr = std::string(rest.substr(0, first));
      rest = rest.substr(first + 1);
    } else if (colons != 1) {
      return Fail(ErrorCode::kInvalidArgument, what, whole,
                  "expected [HOSTADDR:]HOSTPORT:PORT (an IPv6 HOSTADDR in brackets)");
    }
  }
  if (!p.host_addr.empty()) {
    auto c = ParseCidr(p.host_addr, what);
    if (!c.ok() || p.host_addr.find('/') != std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, what, whole,
                  "HOSTADDR " + p.host_addr + " is not an IP address");
    }
  } else {
    p.host_addr = "127.0.0.1";
  }
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument, what, whole, "expected [HOSTADDR:]HOSTPORT:PORT");
  }
  p.host_port = WB_TRY(ParsePort(rest.substr(0, colon), what, whole));
  p.port = WB_TRY(ParsePort(rest.substr(colon + 1), what, whole));
  return p;
}

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(v6 ? AF_INET6 : AF_INET, addr, buf, sizeof buf);
  std::string s = buf;
  if (prefix != (v6 ? 128 : 32)) s += "/" + std::to_string(prefix);
  return s;
}

bool Cidr::operator==(const Cidr& o) const {
  return v6 == o.v6 && prefix == o.prefix && std::memcmp(addr, o.addr, 16) == 0;
}

bool Cidr::Contains(const Cidr& other) const {
  if (v6 != other.v6 || other.prefix < prefix) return false;
  for (int bit = 0; bit < prefix; ++bit) {
    const int byte = bit / 8, mask = 0x80 >> (bit % 8);
    if ((addr[byte] & mask) != (other.addr[byte] & mask)) return false;
  }
  return true;
}

Result<Cidr> ParseCidr(std::string_view s, const std::string& what) {
  const std::string whole(s);
  Cidr c;
  std::string ip = whole;
  int prefix = -1;
  if (size_t slash = whole.find('/'); slash != std::string::npos) {
    ip = whole.substr(0, slash);
    std::string p = whole.substr(slash + 1);
    if (p.empty() || p.size() > 3) {
      return Fail(ErrorCode::kInvalidArgument, what, whole, "bad prefix length");
    }
    prefix = 0;
    for (char ch : p) {
      if (ch < '0' || ch > '9') {
        return Fail(ErrorCode::kInvalidArgument, what, whole, "bad prefix length");
      }
      prefix = prefix * 10 + (ch - '0');
    }
  }
  if (::inet_pton(AF_INET, ip.c_str(), c.addr) == 1) {
    c.v6 = false;
  } else if (::inet_pton(AF_INET6, ip.c_str(), c.addr) == 1) {
    c.v6 = true;
  } else {
    return Fail(ErrorCode::kInvalidArgument, what, whole, "not an IP address or CIDR");
  }
  const int max = c.v6 ? 128 : 32;
  if (prefix < 0) prefix = max;
  if (prefix > max) {
    return Fail(ErrorCode::kInvalidArgument, what, whole,
                "prefix length over " + std::to_string(max));
  }
  c.prefix = prefix;
  Cidr masked = c;
  for (int bit = prefix; bit < max; ++bit) masked.addr[bit / 8] &= ~(0x80 >> (bit % 8));
  if (!(masked == c)) {
    return Fail(ErrorCode::kInvalidArgument, what, whole,
                "host bits set; did you mean " + masked.ToString() + "?");
  }
  return c;
}

bool DomainRule::Covers(std::string_view name) const {
  if (name == domain) return !subdomains_only;
  return name.size() > domain.size() && name.substr(name.size() - domain.size()) == domain &&
         name[name.size() - domain.size() - 1] == '.';
}

Result<NetPolicy> ParseNetPolicy(const std::vector<std::string>& allow_out,
                                 const std::vector<std::string>& deny_out,
                                 const std::string& allow_what, const std::string& deny_what) {
  NetPolicy p;
  auto parse = [](const std::vector<std::string>& list, const std::string& what,
                  std::vector<Cidr>& cidrs, std::vector<DomainRule>& domains) -> Result<void> {
    for (const auto& raw : list) {
      std::string_view e = Trim(raw);
      if (e.empty()) {
        return Fail(ErrorCode::kInvalidArgument, what, raw, "empty entry");
      }
      if (LooksLikeIp(e)) {
        cidrs.push_back(WB_TRY(ParseCidr(e, what)));
      } else {
        domains.push_back(WB_TRY(ParseDomain(e, what)));
      }
    }
    return Ok();
  };
  WB_RETURN_IF_ERROR(parse(allow_out, allow_what, p.allow_cidrs, p.allow_domains));
  WB_RETURN_IF_ERROR(parse(deny_out, deny_what, p.deny_cidrs, p.deny_domains));
  // Deny beats allow: an allowed name that a denied rule covers entirely is
  // dropped here, so the resolver never forwards it (dnsmasq would prefer
  // the longer, allowed, pattern). A denied name under an allowed one is
  // the longer pattern there and wins by itself.
  std::vector<DomainRule> kept;
  for (const auto& a : p.allow_domains) {
    bool covered = false;
    for (const auto& d : p.deny_domains) {
      // Every name a covers is covered by d: a sits strictly under d, or on
      // d itself when d also takes the name (or a does not).
      const bool under =
          a.domain.size() > d.domain.size() && DomainRule{d.domain, true}.Covers(a.domain);
      covered |= under || (a.domain == d.domain && (!d.subdomains_only || a.subdomains_only));
    }
    if (!covered) kept.push_back(a);
  }
  // All allowed names gone to denies: the policy stays closed (not open).
  if (kept.empty() && !p.allow_domains.empty() && p.allow_cidrs.empty()) {
    p.allow_domains = {DomainRule{"invalid.invalid", false}};  // a closed, empty allow list
  } else {
    p.allow_domains = std::move(kept);
  }
  return p;
}

const std::vector<std::string>& DefaultDeniedRanges() {
  static const std::vector<std::string> r = {
      "0.0.0.0/8",     "10.0.0.0/8",     "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
      "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4",   "240.0.0.0/4", "::/128",
      "::1/128",       "::ffff:0:0/96",  "fc00::/7",      "fe80::/10",   "ff00::/8"};
  return r;
}

uint32_t EffectiveDnsTtl(const NetTableIds& ids) {
  return std::clamp<uint32_t>(ids.dns_ttl_s, 1, 3600);
}

std::string NftBaseText(const std::string& t) {
  // The maps dispatch on the group of the socket's file (`meta skgid`):
  // the helper's (slirp4netns or passt), one per sandbox. Input sees the socket only once the
  // kernel has matched the packet to it (established TCP, connected UDP): enough for counting bytes
  // in.
  std::string def4, def6;
  for (const auto& r : DefaultDeniedRanges()) {
    std::string& d = r.find(':') != std::string::npos ? def6 : def4;
    d += (d.empty() ? "" : ", ") + r;
  }
  // The ranges no sandbox reaches by default, one named set per family for
  // every sandbox's chain (not an anonymous set per rule per sandbox: each
  // costs the transaction that adds a sandbox).
  return "add table inet " + t + "\n" + "add set inet " + t +
         " defaults4 { type ipv4_addr; flags interval; elements = { " + def4 + " }; }\n" +
         "add set inet " + t + " defaults6 { type ipv6_addr; flags interval; elements = { " + def6 +
         " }; }\n"
         "add map inet " +
         t + " out_by_gid { type gid : verdict; }\n" + "add map inet " + t +
         " in_by_gid { type gid : verdict; }\n" + "add map inet " + t +
         " nat_by_gid { type gid : verdict; }\n" + "add chain inet " + t +
         " output { type filter hook output priority 0; policy accept; meta skgid vmap "
         "@out_by_gid; }\n" +
         "add chain inet " + t +
         " input { type filter hook input priority 0; policy accept; meta skgid vmap @in_by_gid; "
         "}\n" +
         "add chain inet " + t +
         " nat_output { type nat hook output priority -100; policy accept; meta skgid vmap "
         "@nat_by_gid; }\n" +
         // Fail-closed: a socket of a helper group that the map does not
         // send to a sandbox's chain (yet) is refused. Every sandbox chain
         // ends in a verdict, so a mapped group never gets here.
         "add set inet " + t + " helper_gids { type gid; flags interval; }\n" + "add rule inet " +
         t + " output meta skgid @helper_gids meta l4proto tcp reject with tcp reset\n" +
         "add rule inet " + t + " output meta skgid @helper_gids reject\n";
}

namespace {

// The sets' contents and the chain's last verdict: what an update replaces.
std::string PolicyElementsText(const NetTableIds& ids, const NetPolicy& policy) {
  const std::string& t = ids.table;
  std::string out;
  out += SetElementsText(t, "allow4_" + ids.tag, policy.allow_cidrs, false);
  out += SetElementsText(t, "allow6_" + ids.tag, policy.allow_cidrs, true);
  out += SetElementsText(t, "deny4_" + ids.tag, policy.deny_cidrs, false);
  out += SetElementsText(t, "deny6_" + ids.tag, policy.deny_cidrs, true);
  return out;
}

std::string PolicyChainText(const NetTableIds& ids, const NetPolicy& policy) {
  const std::string& t = ids.table;
  const std::string& g = ids.tag;
  std::string c = "add chain inet " + t + " out_" + g + "\n";
  auto rule = [&](const std::string& r) {
    c += "add rule inet " + t + " out_" + g + " " + r + "\n";
  };
  // A refusal, counted: TCP with a reset (the helper's connect fails with
  // ECONNREFUSED, which slirp4netns turns into a reset to the sandbox: its
  // connect fails at once; an ICMP error would leave it retrying its SYN),
  // anything else with an ICMP error. One chain, jumped to.
  auto refuse = [&](const std::string& match) { rule(match + "jump refuse_" + g); };
  rule("counter name bytes_out_" + g);
  // Replies of connections already admitted, and of published ports.
  rule("ct state established,related accept");
  // The sandbox's resolver (nat_output redirected port 53 of kSandboxResolver here).
  rule("ip daddr 127.0.0.1 meta l4proto { tcp, udp } th dport " + std::to_string(ids.dns_port) +
       " accept");
  // Deny beats allow.
  refuse("ip daddr @deny4_" + g + " ");
  refuse("ip6 daddr @deny6_" + g + " ");
  // An explicit --allow-out CIDR lifts the default denies below.
  rule("ip daddr @allow4_" + g + " accept");
  rule("ip6 daddr @allow6_" + g + " accept");
  // The host itself (every local address, loopback included), then the
  // ranges no sandbox reaches by default.
  refuse("fib daddr type local ");
  refuse("ip daddr @defaults4 ");
  refuse("ip6 daddr @defaults6 ");
  // Addresses an allowed name resolved to (filled by the sandbox's dnsmasq).
  rule("ip daddr @dns4_" + g + " accept");
  rule("ip6 daddr @dns6_" + g + " accept");
  if (policy.open()) {
    rule("accept");
  } else {
    refuse("");
  }
  return c;
}

}  // namespace

std::string NftSandboxText(const NetTableIds& ids, const NetPolicy& policy) {
  const std::string& t = ids.table;
  const std::string& g = ids.tag;
  const std::string gid = std::to_string(ids.gid);
  std::string out;
  for (const char* c : {"bytes_out_", "bytes_in_", "refused_"}) {
    out += "add counter inet " + t + " " + c + g + "\n";
  }
  for (const char* fam : {"4", "6"}) {
    const std::string type = fam[0] == '4' ? "ipv4_addr" : "ipv6_addr";
    out += "add set inet " + t + " allow" + fam + "_" + g + " { type " + type +
           "; flags interval; }\n";
    out +=
        "add set inet " + t + " deny" + fam + "_" + g + " { type " + type + "; flags interval; }\n";
    // Names' addresses: dnsmasq adds them when an answer comes from
    // upstream; they expire when its cached answer does (DnsmasqArgv).
    out += "add set inet " + t + " dns" + fam + "_" + g + " { type " + type +
           "; flags timeout; timeout " + std::to_string(EffectiveDnsTtl(ids)) + "s; }\n";
  }
  out += PolicyElementsText(ids, policy);
  out += "add chain inet " + t + " refuse_" + g + "\n";
  out += "add rule inet " + t + " refuse_" + g + " meta l4proto tcp counter name refused_" + g +
         " reject with tcp reset\n";
  out += "add rule inet " + t + " refuse_" + g + " counter name refused_" + g + " reject\n";
  out += PolicyChainText(ids, policy);
  out += "add chain inet " + t + " in_" + g + "\n";
  out += "add rule inet " + t + " in_" + g + " counter name bytes_in_" + g + "\n";
  out += "add chain inet " + t + " nat_" + g + "\n";
  for (const char* proto : {"udp", "tcp"}) {
    out += "add rule inet " + t + " nat_" + g + " ip daddr " + kSandboxResolver + " " + proto +
           " dport 53 dnat ip to 127.0.0.1:" + std::to_string(ids.dns_port) + "\n";
  }
  out += "add element inet " + t + " out_by_gid { " + gid + " : jump out_" + g + " }\n";
  out += "add element inet " + t + " in_by_gid { " + gid + " : jump in_" + g + " }\n";
  out += "add element inet " + t + " nat_by_gid { " + gid + " : jump nat_" + g + " }\n";
  return out;
}

std::string NftUpdateText(const NetTableIds& ids, const NetPolicy& policy) {
  const std::string& t = ids.table;
  const std::string& g = ids.tag;
  std::string out;
  for (const char* s : {"allow4_", "allow6_", "deny4_", "deny6_", "dns4_", "dns6_"}) {
    out += "flush set inet " + t + " " + s + g + "\n";
  }
  out += PolicyElementsText(ids, policy);
  // The chain is rebuilt whole (its last verdict depends on the policy).
  out += "flush chain inet " + t + " out_" + g + "\n";
  std::string chain = PolicyChainText(ids, policy);
  // PolicyChainText starts with "add chain" (idempotent): keep it.
  out += chain;
  return out;
}

std::string NftRemoveText(const NetTableIds& ids) {
  const std::string& t = ids.table;
  const std::string& g = ids.tag;
  const std::string gid = std::to_string(ids.gid);
  std::string out;
  out += "delete element inet " + t + " out_by_gid { " + gid + " }\n";
  out += "delete element inet " + t + " in_by_gid { " + gid + " }\n";
  out += "delete element inet " + t + " nat_by_gid { " + gid + " }\n";
  // refuse_ after out_, whose rules jump to it.
  for (const char* c : {"out_", "in_", "nat_", "refuse_"})
    out += "delete chain inet " + t + " " + c + g + "\n";
  for (const char* s : {"allow4_", "allow6_", "deny4_", "deny6_", "dns4_", "dns6_"}) {
    out += "delete set inet " + t + " " + s + g + "\n";
  }
  for (const char* c : {"bytes_out_", "bytes_in_", "refused_"}) {
    out += "delete counter inet " + t + " " + c + g + "\n";
  }
  return out;
}

Result<std::map<std::string, NetCounters>> ParseNftCountersByTag(std::string_view text) {
  std::map<std::string, NetCounters> out;
  auto j = ParseJsonBounded(text, "nft -j list counters");
  if (!j.ok()) return j.error().Wrap("nft counters");
  const nlohmann::json& root = *j;
  if (!root.is_object() || !root.contains("nftables") || !root["nftables"].is_array()) {
    return Fail("nft counters", "nft -j list counters", "no nftables array in nft -j output");
  }
  for (const auto& item : root["nftables"]) {
    if (!item.is_object() || !item.contains("counter")) continue;
    const auto& ctr = item["counter"];
    if (!ctr.is_object() || !ctr.contains("name") || !ctr["name"].is_string()) continue;
    const std::string name = ctr["name"].get<std::string>();
    const auto number = [&ctr](const char* key) {
      return ctr.contains(key) && ctr[key].is_number_unsigned() ? ctr[key].get<uint64_t>() : 0;
    };
    // Bytes for the traffic counters, packets (connection attempts) for refusals.
    struct Kind {
      const char* prefix;
      uint64_t NetCounters::*field;
      const char* unit;
    };
    for (const Kind& k : {Kind{"bytes_out_", &NetCounters::bytes_out, "bytes"},
                          Kind{"bytes_in_", &NetCounters::bytes_in, "bytes"},
                          Kind{"refused_", &NetCounters::refused, "packets"}}) {
      const size_t n = std::strlen(k.prefix);
      if (name.size() <= n || name.compare(0, n, k.prefix) != 0) continue;
      out[name.substr(n)].*k.field = number(k.unit);
    }
  }
  return out;
}

NetCounters CountersOf(const std::map<std::string, NetCounters>& by_tag, const std::string& tag) {
  auto it = by_tag.find(tag);
  return it == by_tag.end() ? NetCounters{} : it->second;
}

std::vector<std::string> SlirpArgv(const SlirpPlan& p) {
  return {
      p.path,
      // Address, default route and MTU set inside by slirp4netns itself.
      "--configure",
      "--mtu=65520",
      // 10.0.2.2 is only the gateway: no mapping of it to the host's loopback.
      "--disable-host-loopback",
      // No built-in resolver at 10.0.2.3 (it would ask the host's upstreams
      // for any name): the sandbox's resolver is its dnsmasq, by policy.
      "--disable-dns",
      // Its own mount namespace and no capability but binding low ports once
      // the interface is up; a syscall filter.
      "--enable-sandbox",
      "--enable-seccomp",
      "--ready-fd=" + std::to_string(p.ready_fd),
      "--exit-fd=" + std::to_string(p.exit_fd),
      // The daemon's fd of the sandbox's netns, as its own: /proc/self needs
      // no ptrace access to the agent.
      "--netns-type=path",
      "/proc/self/fd/" + std::to_string(p.netns_fd),
      kSlirpIfname,
  };
}

std::vector<std::string> PasstArgv(const PasstPlan& p) {
  std::string tcp;
  for (const auto& port : p.ports) {
    tcp += (tcp.empty() ? "" : ",") + port.host_addr + "/" + std::to_string(port.host_port) + ":" +
           std::to_string(port.port);
  }
  return {
      p.path,
      "--foreground",
      "--quiet",
      // The group is what the policy matches (meta skgid).
      "--runas",
      "0:" + std::to_string(p.gid),
      "--socket",
      p.socket_path,
      // One QEMU, then gone: a VM that exits takes its passt along.
      "--one-off",
      // The guest's view, fixed: the guest agent configures the same
      // statically (no DHCP client in the guest).
      "--address",
      kVmGuestAddr,
      "--netmask",
      std::to_string(kVmGuestPrefix),
      "--gateway",
      kVmGateway,
      // The gateway is not the host: no mapping of it to the host's loopback.
      "--no-map-gw",
      // Nothing forwarded inward but the published ports.
      "-t",
      tcp.empty() ? "none" : tcp,
      "-u",
      "none",
  };
}

std::vector<std::string> DnsmasqArgv(const DnsmasqPlan& d, const NetTableIds& ids,
                                     const NetPolicy& policy) {
  std::vector<std::string> a = {d.path,
                                "--keep-in-foreground",
                                "--conf-file=/dev/null",
                                "--no-resolv",
                                "--no-hosts",
                                "--no-poll",
                                "--bind-interfaces",
                                "--listen-address=127.0.0.1",
                                "--port=" + std::to_string(d.port),
                                "--cache-size=1000",
                                "--log-facility=/dev/null"};
  // Every answer lives exactly dns_ttl_s in the cache (shorter TTLs raised,
  // longer ones cut) and is handed out with at most that TTL. dnsmasq adds
  // to the sets only for answers from upstream, which come once the cached
  // one has expired: the set's element (timeout dns_ttl_s from the same
  // moment) expires with it, and the sandbox never holds an address longer
  // than the set admits it. dnsmasq refuses a floor over one hour.
  const std::string ttl = std::to_string(EffectiveDnsTtl(ids));
  a.push_back("--min-cache-ttl=" + ttl);
  a.push_back("--max-cache-ttl=" + ttl);
  a.push_back("--max-ttl=" + ttl);
  a.push_back(d.pid_file.empty() ? "--pid-file" : "--pid-file=" + d.pid_file);
  auto pattern = [](const DomainRule& r) { return "/" + r.ToString() + "/"; };
  const std::string sets =
      "4#inet#" + ids.table + "#dns4_" + ids.tag + ",6#inet#" + ids.table + "#dns6_" + ids.tag;
  if (policy.open()) {
    for (const auto& u : d.upstreams) a.push_back("--server=" + u);
  } else {
    for (const auto& r : policy.allow_domains) {
      for (const auto& u : d.upstreams) a.push_back("--server=" + pattern(r) + u);
      a.push_back("--nftset=" + pattern(r) + sets);
    }
  }
  // Denied names: NXDOMAIN (an --address without an address).
  for (const auto& r : policy.deny_domains) a.push_back("--address=" + pattern(r));
  return a;
}

std::vector<std::string> ParseResolvConf(std::string_view text) {
  std::vector<std::string> out;
  for (const auto& line : Split(text, '\n')) {
    std::string_view l = Trim(line);
    if (!StartsWith(l, "nameserver") || l.size() < 12 || (l[10] != ' ' && l[10] != '\t')) continue;
    std::string_view rest = Trim(l.substr(10));
    size_t end = rest.find_first_of(" \t#");
    out.emplace_back(rest.substr(0, end));
  }
  return out;
}

Result<void> CheckNetworkSupported(const NetworkSpec& s) {
  if (s.ports.empty()) return {};
  const PublishedPort& p = s.ports.front();
  return Fail(ErrorCode::kInvalidArgument, "-p",
              p.host_addr + ":" + std::to_string(p.host_port) + ":" + std::to_string(p.port),
              "ports are published by the daemon for live sandboxes only (warmbox sandbox "
              "create -p); a run or a sandbox of the driver alone cannot publish");
}

}  // namespace wb
