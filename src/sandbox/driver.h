// The Driver interface: how warmbox makes and uses a sandbox, whatever
// isolates it (namespaces today, microVMs later).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "proto/agent_proto.h"
#include "sandbox/net/net_plan.h"

namespace wb {

namespace proto {
struct ImageStat;
}

// The drivers warmbox has. Code above the drivers asks a driver's
// capabilities (below), never its kind.
enum class DriverKind { kNs, kVm };
// "ns" or "vm" (the --driver value and the status/metrics label).
const char* DriverKindName(DriverKind k);
// what: the option or field named in the error ("--driver", "driver").
[[nodiscard]] Result<DriverKind> ParseDriverKind(std::string_view name,
                                                 const std::string& what = "driver");

// What a driver can do, declared by the driver (kCapabilities of each
// driver class) so the daemon and the CLI can check a request before any
// driver is opened.
struct DriverCapabilities {
  bool seccomp_profile_files = false;  // --security-opt seccomp=PROFILE.json
  bool boots_kernel = false;           // --kernel, --initrd
};
DriverCapabilities CapabilitiesOf(DriverKind k);

// Where the host reaches a sandbox's agent.
struct AgentEndpoint {
  std::string socket_path;
  // A pidfd of the agent (or its VM): readable when it dies, which ends any
  // wait at once instead of at a timeout. -1: none.
  int liveness_fd = -1;
};

struct Limits {
  uint64_t memory_bytes = 512ull << 20;  // RAM (and no swap beyond it)
  uint64_t pids = 1024;
  double cpus = 0;                   // CPU quota in cores, 0 = unlimited
  uint64_t disk_bytes = 1ull << 30;  // writable layer (tmpfs upper)
};

struct SecurityOptions {
  std::string seccomp = "default";  // "default", "unconfined" or a profile file
  uint64_t nofile = 1024;           // RLIMIT_NOFILE of commands
  bool profile_file() const { return seccomp != "default" && seccomp != "unconfined"; }
};

struct ResourceUsage {
  uint64_t memory_bytes = 0;  // memory.current (v2), memory.usage_in_bytes (v1)
  uint64_t cpu_usage_us = 0;  // cpu.stat usage_usec (v2), cpuacct.usage / 1000 (v1)
  uint64_t pids = 0;          // pids.current
  // The writable layer (ns: the sandbox's size-capped tmpfs); 0 when unknown.
  uint64_t disk_used_bytes = 0, disk_total_bytes = 0;
};

// A live sandbox left running by an earlier daemon, to be taken over
// (Driver::Adopt): its dir, and the host process that must still be the one
// it recorded (pid and /proc start time).
struct AdoptSpec {
  std::string dir;
  std::string image;
  pid_t pid = 0;
  uint64_t start_time = 0;
  Limits limits;
};

struct SandboxSpec {
  std::string image = "busybox";
  Limits limits;
  SecurityOptions security;
  // --network none (only lo) or egress with a policy (docs/network.md).
  NetworkSpec network;
};

// Where a command's stdin comes from and where its output goes.
struct ExecIo {
  int stdin_fd = -1;       // streamed until EOF; -1: empty stdin
  std::string stdin_data;  // used when stdin_fd < 0 and has_stdin_data
  bool has_stdin_data = false;
  // When readable (e.g. a signalfd), the run is abandoned: the connection is
  // dropped, so the agent kills the command. -1: none.
  int cancel_fd = -1;
  // Called as output arrives; when unset, output is collected in ExecOutcome.
  std::function<void(std::string_view)> on_stdout, on_stderr;
};

struct ExecOutcome {
  proto::ExecExit exit;
  std::string stdout_data, stderr_data;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;  // destroys the sandbox if still up
  virtual const std::string& id() const = 0;
  // For asynchronous clients (the pool daemon) that speak the protocol themselves.
  virtual AgentEndpoint endpoint() const = 0;
  // The per-run policy (sandbox/run_policy.h) applied to a request: what
  // the agent is sent, on every path (Exec, and the daemon's own connection).
  [[nodiscard]] virtual Result<proto::ExecRequest> PrepareExec(
      const proto::ExecRequest& req) const = 0;
  // PrepareExec, then one command; the outcome's oom_killed set by OomWatch.
  [[nodiscard]] virtual Result<ExecOutcome> Exec(const proto::ExecRequest& req, ExecIo& io) = 0;
  // Changes the memory, pids and CPU limits of a running sandbox (a run's own
  // limits on a pre-booted sandbox). The disk limit is fixed at creation.
  [[nodiscard]] virtual Result<void> SetLimits(const Limits& limits) = 0;
  // OOM kills counted by the sandbox's memory cgroup so far.
  virtual uint64_t OomKills() const { return 0; }
  // --- live sandboxes (docs/live-sandboxes.md) ---
  // The sandbox's host dir (STATE/sandboxes/<id>), "" when none.
  virtual std::string host_dir() const { return ""; }
  // The one host process that is the sandbox (the ns agent, the vm's QEMU).
  virtual pid_t host_pid() const { return 0; }
  // What the sandbox's cgroups count now (zeros where unknown).
  virtual ResourceUsage Usage() const { return {}; }
  // Leaves the sandbox running when this object goes (a live sandbox kept
  // for the next daemon): its process, cgroups and dir stay.
  virtual void Abandon() {}
  // The socket a live sandbox's operations connect to, one connection per
  // operation (docs/live-sandboxes.md): the agent's own (ns), or the bridge
  // that relays each connection as a channel over a VM's one port (vm:
  // sandbox/vm/mux_bridge.h, STATE/sandboxes/<id>/live.sock), once
  // ServeLive has started it.
  virtual AgentEndpoint live_endpoint() const { return endpoint(); }
  // Makes live_endpoint() serve: the vm driver starts its bridge (a
  // connection to the agent's port, a reset of its channels, a thread);
  // blocking, bounded (seconds). Idempotent; again after the bridge ended.
  // After the claim: from then on the pool's one-exchange-at-a-time
  // endpoint() is not used for this sandbox.
  [[nodiscard]] virtual Result<void> ServeLive() { return Ok(); }
  // Stops (paused true) or resumes every process of the sandbox: the ns
  // driver freezes its cgroup, the vm driver stops its vCPUs (QMP).
  [[nodiscard]] virtual Result<void> Pause(bool paused) {
    (void)paused;
    return Fail(ErrorCode::kFailedPrecondition, "pause", id(), "not supported by this driver");
  }
  // --- networking (docs/network.md) ---
  // Gives a running sandbox that has none its network (spec.mode egress):
  // how the driver's Create does it, and how a live sandbox claimed from a
  // warm pool (made without) gets the one its create asked for.
  [[nodiscard]] virtual Result<void> AttachNetwork(const NetworkSpec& spec) {
    if (spec.mode == NetworkMode::kNone) return Ok();
    return Fail(ErrorCode::kFailedPrecondition, "create sandbox", "--network egress",
                "this driver has no network yet (docs/network.md); use --driver ns");
  }
  // The mode, policy and ports the sandbox was created with (or updated to).
  virtual NetworkSpec network() const { return {}; }
  // Replaces the egress policy of a running sandbox in egress mode (one nft
  // transaction); the mode and the published ports stay.
  [[nodiscard]] virtual Result<void> UpdateNetwork(const std::vector<std::string>& allow_out,
                                                   const std::vector<std::string>& deny_out) {
    (void)allow_out;
    (void)deny_out;
    return Fail(ErrorCode::kFailedPrecondition, "update network", id(),
                "the sandbox has no network (--network none)");
  }
  // Bytes out and in, connections refused; zeros without a network.
  [[nodiscard]] virtual Result<NetCounters> NetworkCounters() const { return NetCounters{}; }
  // Where NetworkCounters reads them, for a caller that reads many
  // sandboxes' with one nft run (ReadNetCounters); empty table: no network.
  virtual NetCounterSource network_counter_source() const { return {}; }
  // Kills everything inside and removes every trace on the host.
  [[nodiscard]] virtual Result<void> Destroy() = 0;
};

// Whether a sandbox's OOM killer struck between the watch's construction
// and Fired(): the oom_killed flag of a run, on every exec path.
class OomWatch {
 public:
  explicit OomWatch(const Sandbox& sb) : sb_(sb), before_(sb.OomKills()) {}
  bool Fired() const { return sb_.OomKills() > before_; }

 private:
  const Sandbox& sb_;
  uint64_t before_;
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual DriverKind kind() const = 0;
  DriverCapabilities capabilities() const { return CapabilitiesOf(kind()); }
  // Returns a sandbox whose agent has answered a heartbeat.
  [[nodiscard]] virtual Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) = 0;
  // Takes over a live sandbox an earlier daemon left running (its process,
  // cgroups and agent socket); its owner record then names this process.
  [[nodiscard]] virtual Result<std::unique_ptr<Sandbox>> Adopt(const AdoptSpec& spec) {
    return Fail(ErrorCode::kFailedPrecondition, "adopt", spec.dir,
                std::string("the ") + DriverKindName(kind()) +
                    " driver cannot adopt a sandbox left by an earlier daemon");
  }
  // Adds the driver's own status to a pool's stats (the vm driver's snapshot
  // template); the daemon calls it for every pool of this driver.
  virtual void AnnotateStat(proto::ImageStat& stat) const { (void)stat; }
};

}  // namespace wb
