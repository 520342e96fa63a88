// Networking of a sandbox, the applying half (docs/network.md): the nft
// transactions of net_plan.h run with `nft -f`, slirp4netns attached to the
// sandbox's netns and a dnsmasq as the sandbox's resolver, both owned child
// processes of the daemon (they die with it), and a teardown that removes
// every chain, set, counter and process again.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/child.h"
#include "base/error.h"
#include "base/fd.h"
#include "sandbox/net/net_plan.h"

namespace wb {

struct NetHostOptions {
  std::string table = "warmbox";
  std::string nft_path = "/usr/sbin/nft";
  std::string slirp_path = "/usr/bin/slirp4netns";  // the ns driver's
  std::string passt_path = "/usr/bin/passt";        // the vm driver's
  std::string dnsmasq_path = "/usr/sbin/dnsmasq";
  // The resolvers dnsmasq forwards allowed names to; empty: the host's
  // /etc/resolv.conf.
  std::vector<std::string> dns_upstreams;
  // How long a name's address stays admitted (NetTableIds::dns_ttl_s).
  uint32_t dns_ttl_s = kDnsTtlSeconds;
  // The driver's helper group ids (first..last): the table refuses their
  // sockets unless a sandbox's chain is mapped for them, so a sandbox's
  // rules can be added while its helper starts. 0: not known, every attach
  // adds its rules before its helper starts.
  uint32_t helper_gid_first = 0, helper_gid_last = 0;
};

struct NetAttachOptions {
  NetHostOptions host;
  std::string dir;        // the sandbox's host dir (dnsmasq's pid file goes there)
  std::string tag;        // names the sandbox's chains and sets: [a-z0-9_]
  uint32_t gid = 0;       // the helper's group, unique among the host's sandboxes
  uint32_t root_uid = 0;  // the sandbox's root on the host (owner of resolv.conf)
};

// A tool started, not waited for yet (SpawnTool, FinishTool).
struct RunningTool {
  ChildProcess process;
  UniqueFd out, err;
  std::string what, arg;  // argv[0], argv[1]: the error names them
};
// input_fd (if >= 0) is its fd 3. Returns once it is cloned; its exec is
// confirmed by FinishTool.
[[nodiscard]] Result<RunningTool> SpawnTool(const std::vector<std::string>& argv,
                                            int input_fd = -1);
// Its stdout, or an error naming it with its stderr and exit status.
[[nodiscard]] Result<std::string> FinishTool(RunningTool& t);

class SandboxNetwork;
// The vm driver's attachment: the network, and the fd of a connection to its
// passt, for QEMU (-netdev stream,addr.type=fd): QEMU, jailed in its own
// mount and network namespaces, needs no path to the socket.
struct VmNetwork {
  std::unique_ptr<SandboxNetwork> net;
  UniqueFd qemu_end;
};

class SandboxNetwork {
 public:
  // Attaches egress networking to the netns of pid (the sandbox's agent):
  // the sandbox's chains and sets, dnsmasq, slirp4netns, /etc/resolv.conf in its
  // root. On failure whatever was made is removed. Begin, StartHelper and
  // Finish in one.
  [[nodiscard]] static Result<std::unique_ptr<SandboxNetwork>> Attach(const NetAttachOptions& o,
                                                                      const NetworkSpec& spec,
                                                                      pid_t pid);
  // The same in three steps, so that a sandbox being created boots while its
  // network comes up (the ns driver's Create): Begin, before there is a
  // sandbox process, starts the sandbox's nft transaction and its resolver;
  // StartHelper, once pid (the agent) has its netns, starts slirp4netns on
  // it; Finish, once the agent has made its root, awaits all three and
  // writes /etc/resolv.conf there. Nothing is awaited before Finish. The
  // sandbox's traffic is refused until its rules hold (fail-closed: the
  // table refuses the helper group's sockets until its chain is mapped).
  // On failure (or if Finish is never called) the object's Destroy removes
  // whatever was made.
  [[nodiscard]] static Result<std::unique_ptr<SandboxNetwork>> Begin(const NetAttachOptions& o,
                                                                     const NetworkSpec& spec);
  [[nodiscard]] Result<void> StartHelper(pid_t pid);
  [[nodiscard]] Result<void> Finish(pid_t pid);
  // The same rules and resolver for a VM not started yet: passt
  // listening on o.dir/passt.sock, run as the same group, and one
  // connection to it. The guest configures its side itself (kVmGuestAddr,
  // kVmGateway, kSandboxResolver). On failure whatever was made is removed.
  [[nodiscard]] static Result<VmNetwork> AttachVm(const NetAttachOptions& o,
                                                  const NetworkSpec& spec);
  // Settle awaits what Begin started (the rules, the resolver listening):
  // Finish and AttachVm end with it, and a network made ahead (Begin alone,
  // for a sandbox not known yet; the ns driver's spare) is settled before it
  // is handed out, so that nothing of it runs then;
  // CanServe says whether it can be handed to a sandbox asking for spec (the
  // same policy, no helper yet, its resolver still running); Hand gives it
  // that sandbox's root uid (the owner of resolv.conf), before StartHelper.
  [[nodiscard]] Result<void> Settle();
  [[nodiscard]] bool CanServe(const NetworkSpec& spec);
  void Hand(uint32_t root_uid) { opts_.root_uid = root_uid; }
  // Whether Finish (or AttachVm) completed: the network served a sandbox.
  bool attached() const { return attached_; }
  ~SandboxNetwork();  // Destroy(), errors logged
  SandboxNetwork(const SandboxNetwork&) = delete;
  SandboxNetwork& operator=(const SandboxNetwork&) = delete;

  // Replaces the policy (one nft transaction; the resolver restarted with
  // the new names). The published ports stay.
  [[nodiscard]] Result<void> Update(const std::vector<std::string>& allow_out,
                                    const std::vector<std::string>& deny_out);
  [[nodiscard]] Result<NetCounters> Counters() const;
  // Where Counters reads them (ReadNetCounters reads many sandboxes' at once).
  NetCounterSource counter_source() const {
    return NetCounterSource{opts_.host.nft_path, ids_.table, ids_.tag};
  }
  const NetworkSpec& spec() const { return spec_; }
  // slirp4netns's (ns driver) or passt's (vm driver).
  pid_t helper_pid() const { return helper_.running() ? helper_.pid() : 0; }
  pid_t dnsmasq_pid() const { return dnsmasq_.running() ? dnsmasq_.pid() : 0; }
  // Kills slirp4netns (or passt, and removes its socket) and dnsmasq, removes the sandbox's nft
  // objects, and the table when this was the process's last sandbox. Idempotent.
  [[nodiscard]] Result<void> Destroy();

 private:
  SandboxNetwork() = default;
  // The resolver: spawned, then awaited (listening), so that it starts
  // while the network helper does.
  [[nodiscard]] Result<void> SpawnDnsmasq();
  [[nodiscard]] Result<void> AwaitDnsmasq();
  [[nodiscard]] Result<void> Nft(const std::string& what, const std::string& text) const;
  [[nodiscard]] Result<RunningTool> StartNft(const std::string& what,
                                             const std::string& text) const;
  [[nodiscard]] Result<void> FinishNft(const std::string& what, RunningTool& t) const;
  // The sandbox's own transaction, if Begin left it running: finished.
  [[nodiscard]] Result<void> AwaitRules();

  NetAttachOptions opts_;
  NetworkSpec spec_;
  NetPolicy policy_;
  NetTableIds ids_;
  std::vector<std::string> upstreams_;
  ChildProcess helper_, dnsmasq_;   // helper_: slirp4netns or passt
  UniqueFd dnsmasq_err_;            // its stderr until it listens
  bool dnsmasq_listening_ = false;  // AwaitDnsmasq saw it listen
  std::optional<RunningTool> pending_nft_;
  // slirp4netns's exit fd, the other end: it quits when this closes (the
  // daemon's death included).
  UniqueFd helper_exit_;
  // Between StartHelper and Finish: slirp4netns's ready fd (the read end),
  // its log (for the error if it fails) and the netns path it was given.
  UniqueFd helper_ready_, helper_log_;
  std::string helper_ns_;
  std::string socket_path_;  // passt's, removed by Destroy
  bool rules_added_ = false, counted_ = false, destroyed_ = false, attached_ = false;
};

// A dead daemon's resolver of the sandbox in dir, if one still runs: dnsmasq
// drops to nobody, which clears its parent-death signal, so it can outlive a
// daemon that was killed. Found by its pid file (dir/dnsmasq.pid), checked
// by its command line (it names that pid file), killed and waited for.
// Called before a sandbox's network is attached (a sandbox taken over) and
// by the gc of a dead daemon's sandbox dirs.
void KillStaleResolver(const std::string& dir);

// Every sandbox's counters in a table, by tag: one nft run for all of them
// (the metrics read every live sandbox's at each scrape).
[[nodiscard]] Result<std::map<std::string, NetCounters>> ReadNetCounters(
    const std::string& nft_path, const std::string& table);

// Runs a program to completion: its stdout, or an error naming it with its
// stderr and exit status.
[[nodiscard]] Result<std::string> RunTool(const std::vector<std::string>& argv);

// The process's table (host.table) outlives its sandboxes, for the next
// ones; its owner (a driver) releases it when it goes: removed unless a
// sandbox of this process still has rules in it.
void ReleaseNetTable(const NetHostOptions& host);

}  // namespace wb
