// What every driver's sandbox shares: its id and host dir (with the owner
// record gc reads), the image, the one host process that is the sandbox (the
// ns driver's agent, the vm driver's QEMU) in the sandbox's own cgroups, the
// per-run policy and the OOM flag of Exec, renice once ready, and teardown
// (also from the destructor). A driver's sandbox adds only what differs: how
// the process is spawned and stopped, and which limits can change.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/child.h"
#include "image/store.h"
#include "sandbox/cgroup.h"
#include "sandbox/driver.h"
#include "sandbox/net/net_attach.h"

namespace wb {

class SandboxBase : public Sandbox {
 public:
  ~SandboxBase() override;  // Destroy(), errors logged at debug
  const std::string& id() const final { return id_; }
  AgentEndpoint endpoint() const final;
  Result<proto::ExecRequest> PrepareExec(const proto::ExecRequest& req) const final;
  Result<ExecOutcome> Exec(const proto::ExecRequest& req, ExecIo& io) final;
  Result<void> SetLimits(const Limits& limits) final;
  // The sandbox cgroup's count (Cgroup::OomKills).
  uint64_t OomKills() const override { return cgroup_.OomKills(); }
  std::string host_dir() const override { return dir_; }
  pid_t host_pid() const override { return process_.running() ? process_.pid() : 0; }
  ResourceUsage Usage() const override { return cgroup_.Usage(); }
  // Freezes the sandbox's cgroups (Cgroup::Freeze); the vm driver overrides.
  Result<void> Pause(bool paused) override;
  // A live sandbox left for the next daemon: its process, cgroups and dir
  // stay when this object goes.
  void Abandon() override;
  NetworkSpec network() const override { return net_ ? net_->spec() : NetworkSpec{}; }
  Result<void> UpdateNetwork(const std::vector<std::string>& allow_out,
                             const std::vector<std::string>& deny_out) override;
  Result<NetCounters> NetworkCounters() const override;
  NetCounterSource network_counter_source() const override;
  // Stops the process (stop_hook_ first, then SIGKILL and reap), the
  // network's helpers and rules, removes the cgroups, then the dir.
  // Idempotent.
  Result<void> Destroy() final;

  // --- creation steps, in this order, for the drivers ---
  // A fresh random id; the dir is SANDBOXES/<id>.
  [[nodiscard]] Result<void> AssignId(const std::string& state_dir);
  // Makes the dir (mode), writes the owner record naming the plan's cgroups,
  // and makes them. From here on Destroy (and so the destructor) removes
  // whatever exists.
  [[nodiscard]] Result<void> MakeHome(mode_t mode, const CgroupPlan& plan);
  // Re-adoption (Driver::Adopt): the dir of an earlier daemon's sandbox, its
  // owner record rewritten to name this process, its cgroups, and a pidfd on
  // its process, checked to be the one recorded (pid and start time).
  [[nodiscard]] Result<void> AdoptHome(const AdoptSpec& spec);
  // Once ready: a creation at a lower priority (the pool's refills run at
  // nice 10) hands the process, every thread of it, back the normal priority.
  void RestoreNormalPriority();

  const std::string& dir() const { return dir_; }
  const Image& image() const { return image_; }
  ChildProcess& process() { return process_; }
  Cgroup& cgroup() { return cgroup_; }

 protected:
  // SetLimits of a live sandbox: the driver's own (cgroup files, or a check).
  [[nodiscard]] virtual Result<void> ApplyLimits(const Limits& limits) = 0;

  std::string id_;
  std::string home_;  // the dir AssignId chose
  std::string dir_;   // home_ once MakeHome made it ("" before: never removed)
  Image image_;
  ChildProcess process_;
  Cgroup cgroup_;
  // Called by Destroy while the process still runs, before SIGKILL (a
  // member, not a virtual: the destructor calls Destroy, when the driver's
  // part of the object is gone).
  std::function<void(SandboxBase&)> stop_hook_;
  // Called by Destroy once the process is gone and the cgroups removed,
  // before the dir goes (the ns driver gives back the sandbox's uid slot).
  std::function<Result<void>()> release_hook_;
  // Called by Destroy at its end, with the policy of the network the
  // sandbox had, when it had one that served it and was removed cleanly (the
  // ns driver makes a network for that policy ahead, for its next sandbox).
  std::function<void(const NetworkSpec&)> network_gone_hook_;
  // Egress networking (nullptr: none), and what reserved its group id
  // (released when the sandbox object goes).
  std::unique_ptr<SandboxNetwork> net_;
  std::shared_ptr<void> net_slot_;
  bool destroyed_ = false;
};

// The thread ids of a process.
std::vector<pid_t> ListTasks(pid_t pid);

// For the drivers' Open: dirs the sandboxes' uid range must walk through are
// made (0711) and made searchable (not readable) by others.
[[nodiscard]] Result<void> MakeWalkableDirs(const std::vector<std::string>& dirs);
// The host's cgroup layout, once the leftovers of crashed warmbox processes
// (sandbox dirs, orphaned sandbox cgroups) are removed.
[[nodiscard]] Result<CgroupLayout> PrepareSandboxHost(const std::string& state_dir,
                                                      const std::string& cgroup_parent);

}  // namespace wb
