// The vm driver's sandbox and what its parts (vm_driver.cc, vm_boot.cc,
// vm_template.cc) share. Internal to the vm driver.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sandbox/agent_args.h"
#include "sandbox/cgroup.h"
#include "sandbox/sandbox_base.h"
#include "sandbox/vm/mux_bridge.h"
#include "sandbox/vm/vm_driver.h"

namespace wb::vm {

constexpr const char* kTemplateHostname = "warmbox-template";

// A QEMU microVM: the sandbox's process is QEMU.
class VmSandbox : public SandboxBase {
  friend class VmDriver;  // its creation fills it in

 public:
  VmSandbox();
  // The guest's OOM kills happen in the guest kernel; the host cgroup holds
  // QEMU, whose own kill ends the sandbox: none is reported as a command's.
  uint64_t OomKills() const override { return 0; }
  // QMP stop / cont: the vCPUs stop, QEMU's own threads (and the agent
  // socket's backlog) stay.
  Result<void> Pause(bool paused) override;
  // Live operations: live.sock, served by the bridge (mux_bridge.h), one
  // channel over the agent's port per connection.
  AgentEndpoint live_endpoint() const override;
  Result<void> ServeLive() override;
  // The NIC is made at boot (no hot-plug on microvm's virtio-mmio): only
  // VmDriver::Create gives one; a VM booted without cannot get one later.
  Result<void> AttachNetwork(const NetworkSpec& spec) override;

 private:
  void StopBridge();
  std::mutex bridge_mu_;
  std::unique_ptr<MuxBridge> bridge_;
  // Taken over from an earlier daemon (VmDriver::Adopt): the port may hold
  // a frame that daemon's bridge left half-written, so the first bridge
  // resynchronises it.
  bool adopted_ = false;
  // Only a check: RAM and vCPUs are fixed at boot.
  Result<void> ApplyLimits(const Limits& limits) override;
  uint64_t memory_mib_ = 0;
};

struct VmDriver::TemplatePaths {
  std::string key, key_text, dir, state, lock, ram, templates;
  uint32_t jail_uid = 0, jail_gid = 0;  // the template QEMU's (JailIdsOf)
};

struct VmDriver::CgroupLayoutHolder {
  CgroupLayout layout;
};

// The group ids of the passt processes of this driver's VMs: a slot is
// taken per egress VM and given back when the sandbox object goes.
struct VmDriver::NetGids {
  std::mutex mu;
  std::vector<bool> used = std::vector<bool>(kVmNetGids, false);
};

// A QEMU started but not yet waited for (a clone's: waiting in -incoming defer).
struct VmDriver::Spawned {
  std::unique_ptr<VmSandbox> sb;
  int64_t t0 = 0, t_disks = 0, t_spawn = 0;
  std::string console, qemu_log;
  std::string key;  // a pre-started clone's template key, and its limits
  uint64_t pids = 0;
  double cpus = 0;
};

// The guest agent's arguments for a spec: the boot's init arguments and,
// through KeyArgs(), the template key's.
AgentArgs GuestAgentArgs(const SandboxSpec& spec, size_t layers, std::string hostname);

// The guest's vCPUs and RAM (MiB) for a spec's limits.
uint32_t VcpusOf(const Limits& limits);
uint64_t MemoryMibOf(const Limits& limits);

// QEMU's uid and gid in its jail (VmDriverOptions::jail_uid) for an image
// of the uid range at uid_base.
std::pair<uint32_t, uint32_t> JailIdsOf(const VmDriverOptions& opts, uint32_t uid_base);

int64_t NowUs();
// "6.1 ms" etc. from microseconds.
std::string Ms(double us);
std::string VmDir(const std::string& state_dir);

}  // namespace wb::vm
