// The vm driver: a sandbox is a QEMU microVM with its own guest kernel.
// warmbox-agent is the guest's /init (agent/guest.h); the host reaches it
// through a virtio-serial port whose QEMU end is a Unix socket the host bound
// beforehand, so the rest of warmbox (the CLI, the pool) speaks the same agent
// protocol as with the ns driver. See docs/architecture.md ("The vm driver").
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "image/store.h"
#include "sandbox/driver.h"
#include "sandbox/net/net_attach.h"
#include "sandbox/vm/guest_kernel.h"
#include "sandbox/vm/qemu_jail.h"
#include "sandbox/vm/qemu_plan.h"
#include "sandbox/vm/vm_template.h"

namespace wb::vm {

struct VmDriverOptions {
  std::string state_dir;
  std::string agent_path;      // the static warmbox-agent, the guest's /init
  std::string kernel_root;     // "" = KernelRoot()
  std::string kernel;          // --kernel: a vmlinux instead of the installed one
  std::string initrd;          // --initrd: instead of the one warmbox assembles
  std::string accel = "auto";  // auto, kvm or tcg
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  int ready_total_ms = 120000;      // boot to agent-ready cap (TCG under load is slow)
  uint64_t console_cap = 1u << 20;  // bytes of console log (and of QEMU's stderr)
  std::string cgroup_parent;        // as the ns driver's ("" = default placement)
  // QEMU's own memory beside the guest's RAM (the kernel's ROM copy, the TCG
  // cache, its heap): the cgroup's memory limit is guest RAM + this.
  uint64_t qemu_overhead_bytes = 512ull << 20;
  // QEMU without PR_SET_PDEATHSIG (the daemon: a live VM outlives it). A
  // VM the owner never handed out then outlives a killed owner too, until
  // the next start or `warmbox gc` on the state dir kills it (its owner
  // record names a dead process and it has no live.json). Off (warmbox run):
  // the VM dies with its process. Template builds always die with it.
  bool outlive_owner = false;
  // Snapshot templates (docs/architecture.md, "VM snapshot templates"):
  // sandboxes are copy-on-write clones of one template VM per key.
  bool snapshot = false;
  std::string shm_dir = "/dev/shm";  // where templates' RAM files live (tmpfs)
  int template_max_failures = 3;     // then cold boots (fallback)
  // QEMU's user and group in its jail (qemu_jail.h). 0 = the top id of the
  // image's uid range (a host id no sandbox process has: the guests' files
  // on the layer disks map into the range from its base).
  uint32_t jail_uid = 0;
  uint32_t jail_gid = 0;
  // --network egress (docs/network.md, "The vm driver"): the tools and the
  // table, and the group ids of the VMs' passt processes, net_gid_base + n,
  // one n per egress VM (kVmNetGids of them). 0: kVmNetGidOffset above the
  // ns driver's default base for the store's range, so the two drivers'
  // group ids never meet.
  NetHostOptions net;
  uint32_t net_gid_base = 0;
};

// The ns driver takes the first 4096 group ids above the sandbox ranges
// (NsDriver::NetSlots::kSlots); the vm driver the next kVmNetGids.
inline constexpr uint32_t kVmNetGidOffset = 4096;
inline constexpr uint32_t kVmNetGids = 4096;

// The template state of a driver with snapshot on (pool status).
struct TemplateStatus {
  std::string key;  // the current pool key's hash ("" = none yet)
  TemplateState state = TemplateState::kNone;
  int failures = 0;     // template builds or clone restores that failed
  uint64_t clones = 0;  // clones handed out
  uint64_t clone_failures = 0;
  std::string last_error;
};

class VmSandbox;

// What the driver boots (warmbox vm kernel).
struct VmInfo {
  GuestKernel kernel;
  std::string initrd;
  Accel accel = Accel::kTcg;
  bool kvm_usable = false;
};

class VmDriver : public Driver {
 public:
  [[nodiscard]] static Result<std::unique_ptr<VmDriver>> Open(VmDriverOptions opts,
                                                              ImageStore* store);
  // Profile files are read by the agent from the host's filesystem, which a
  // guest does not see; QEMU boots a kernel.
  static constexpr DriverCapabilities kCapabilities{.seccomp_profile_files = false,
                                                    .boots_kernel = true};
  DriverKind kind() const override { return DriverKind::kVm; }
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  // A live VM an earlier daemon left running (its QEMU, by pid and start
  // time; its cgroups; its dir with agent.sock and qmp.sock). ServeLive then
  // starts a bridge that resynchronises the port.
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Adopt(const AdoptSpec& spec) override;
  // With snapshot on: the template status (template_state, clones, ...).
  void AnnotateStat(proto::ImageStat& stat) const override;
  const VmInfo& info() const { return info_; }
  struct NetGids;  // the passt group ids in use (vm_sandbox.h)
  TemplateStatus template_status() const;
  ~VmDriver() override;

 private:
  VmDriver() = default;
  enum class Mode { kCold, kTemplate, kClone };
  struct TemplatePaths;
  struct Spawned;
  [[nodiscard]] Result<std::unique_ptr<Spawned>> Spawn(const SandboxSpec& spec, Mode mode,
                                                       const TemplatePaths* t);
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Finish(const SandboxSpec& spec, Mode mode,
                                                        const TemplatePaths* t,
                                                        std::unique_ptr<Spawned> sp);
  // Finish's steps (vm_boot.cc).
  [[nodiscard]] Result<void> RestoreClone(Spawned& sp, const TemplatePaths& t);
  [[nodiscard]] Result<std::string> AwaitAgent(const SandboxSpec& spec, Spawned& sp);
  [[nodiscard]] Result<void> SendIdentity(Spawned& sp);
  void WarmUp(Spawned& sp);
  // One clone QEMU started ahead (-incoming defer) for the current key, so a
  // clone costs only the restore and resume (guarded by tmpl_mu_).
  std::unique_ptr<Spawned> prestarted_;
  // --network egress of a cold boot: a group id, the rules, the resolver
  // and passt, owned by sb; conn: the connection QEMU gets.
  [[nodiscard]] Result<void> AttachVmNetwork(const SandboxSpec& spec, VmSandbox& sb,
                                             UniqueFd& conn);
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> Boot(const SandboxSpec& spec, Mode mode,
                                                      const TemplatePaths* t);
  [[nodiscard]] Result<std::unique_ptr<Sandbox>> CreateClone(const SandboxSpec& spec);
  [[nodiscard]] Result<void> EnsureTemplate(const SandboxSpec& spec, const TemplatePaths& t);
  void NoteTemplateFailure(const std::string& key, const Error& e);
  mutable std::mutex tmpl_mu_;
  std::mutex build_mu_;  // one build at a time in this process (the flock: across processes)
  TemplateStatus tmpl_;
  VmDriverOptions opts_;
  ImageStore* store_ = nullptr;
  VmInfo info_;
  HostSystem host_system_;  // what of the host's root QEMU's jails bind
  struct CgroupLayoutHolder;
  std::shared_ptr<CgroupLayoutHolder> layout_;
  std::shared_ptr<NetGids> net_gids_;
  uint32_t net_gid_base_ = 0;
};

// Resolves kernel, initrd and accelerator without booting anything.
[[nodiscard]] Result<VmInfo> ResolveVmInfo(const VmDriverOptions& opts);

// Where failed VMs' console logs are kept (the newest few).
std::string FailedLogsDir(const std::string& state_dir);

}  // namespace wb::vm
