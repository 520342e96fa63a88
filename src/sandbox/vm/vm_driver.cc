#include "sandbox/vm/vm_driver.h"

#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/ns/uid_slots.h"
#include "sandbox/sandbox_dir.h"
#include "sandbox/vm/initramfs.h"
#include "sandbox/vm/vm_sandbox.h"

// The driver: what it boots (ResolveVmInfo), opening it, and the choice
// between a clone of the snapshot template and a cold boot. The parts:
// vm_boot.cc (one VM), vm_template.cc (templates and clones),
// vm_sandbox.cc (the sandbox), vm_logs.cc (failed boots' logs).
namespace wb::vm {

VmDriver::~VmDriver() {
  // The nft table its VMs shared goes with it (kept between them).
  if (net_gids_) ReleaseNetTable(opts_.net);
}

Result<VmInfo> ResolveVmInfo(const VmDriverOptions& opts) {
  VmInfo info;
  const std::string root = opts.kernel_root.empty() ? KernelRoot() : opts.kernel_root;
  info.kernel = WB_TRY(FindGuestKernel(root, opts.kernel));
  info.kvm_usable = KvmUsable();
  info.accel = WB_TRY(ResolveAccel(opts.accel, info.kvm_usable));
  if (!opts.initrd.empty()) {
    if (!PathExists(opts.initrd)) return Fail("--initrd", opts.initrd, "no such file");
    info.initrd = opts.initrd;
  } else {
    if (!PathExists(opts.agent_path)) {
      return Fail("vm driver", opts.agent_path,
                  "warmbox-agent not found (build it, or set WARMBOX_AGENT)");
    }
    info.initrd =
        WB_TRY(EnsureInitramfs(VmDir(opts.state_dir) + "/initrd", opts.agent_path, info.kernel));
  }
  return info;
}

Result<std::unique_ptr<VmDriver>> VmDriver::Open(VmDriverOptions opts, ImageStore* store) {
  if (::geteuid() != 0) {
    return Fail("vm driver", "uid " + std::to_string(::geteuid()),
                "needs root (it builds image disks in the sandboxes' uid range); run as root");
  }
  if (!PathExists(opts.qemu))
    return Fail("vm driver", opts.qemu, "QEMU not found (scripts/setup installs qemu-system-x86)");
  // The image disks are built in the sandboxes' uid range (layer_disk.h),
  // which must be able to walk to the cache: searchable, not readable.
  WB_RETURN_IF_ERROR(
      MakeWalkableDirs({opts.state_dir, VmDir(opts.state_dir), VmDir(opts.state_dir) + "/disks",
                        SandboxesDir(opts.state_dir)}));
  auto drv = std::unique_ptr<VmDriver>(new VmDriver());
  drv->info_ = WB_TRY(ResolveVmInfo(opts));
  drv->host_system_ = HostSystemLayout();
  drv->opts_ = std::move(opts);
  drv->store_ = store;
  drv->layout_ = std::make_shared<CgroupLayoutHolder>();
  drv->layout_->layout = WB_TRY(PrepareSandboxHost(drv->opts_.state_dir, drv->opts_.cgroup_parent));
  drv->net_gids_ = std::make_shared<NetGids>();
  drv->net_gid_base_ = drv->opts_.net_gid_base
                           ? drv->opts_.net_gid_base
                           : SlotBase(store->uid_base(), kDefaultUidSlots + 1) + kVmNetGidOffset;
  return drv;
}

namespace {

// The guest RAM (MiB) of a running QEMU, from its "-m N" argument; 0 if
// unknown.
uint64_t QemuMemoryMib(pid_t pid) {
  auto cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  if (!cmdline.ok()) return 0;
  std::vector<std::string> argv;
  for (size_t pos = 0; pos < cmdline->size();) {
    size_t end = cmdline->find('\0', pos);
    if (end == std::string::npos) end = cmdline->size();
    argv.push_back(cmdline->substr(pos, end - pos));
    pos = end + 1;
  }
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] != "-m") continue;
    auto v = ParseUint(argv[i + 1], "-m");
    return v.ok() ? *v : 0;
  }
  return 0;
}

}  // namespace

Result<std::unique_ptr<Sandbox>> VmDriver::Adopt(const AdoptSpec& spec) {
  auto sb = std::make_unique<VmSandbox>();
  sb->image_ = WB_TRY(store_->Get(spec.image));
  // The dir, its owner record (now naming this process), the cgroups, and a
  // pidfd on QEMU checked against the recorded start time. QEMU's listening
  // sockets (agent.sock, qmp.sock) are its own: they are there as long as
  // it is.
  WB_RETURN_IF_ERROR(sb->AdoptHome(spec));
  sb->adopted_ = true;
  sb->memory_mib_ = QemuMemoryMib(spec.pid);
  if (sb->memory_mib_ == 0) sb->memory_mib_ = MemoryMibOf(spec.limits);
  spdlog::debug("{}: adopted (qemu pid {}, {} MiB)", sb->id_, spec.pid, sb->memory_mib_);
  return std::unique_ptr<Sandbox>(std::move(sb));
}

Result<std::unique_ptr<Sandbox>> VmDriver::Create(const SandboxSpec& spec) {
  // A VM with a network is booted cold: templates carry no NIC, and a
  // clone cannot add one after the restore (docs/network.md, "The vm
  // driver").
  if (opts_.snapshot && spec.network.mode == NetworkMode::kNone) {
    bool fallback;
    {
      std::lock_guard<std::mutex> l(tmpl_mu_);
      fallback = tmpl_.state == TemplateState::kFallback;
    }
    if (!fallback) {
      auto c = CreateClone(spec);
      if (c.ok()) return c;
      // Counted (and the template invalidated) in CreateClone; this sandbox
      // is booted cold so that the pool's refill still gets one.
    }
  }
  return Boot(spec, Mode::kCold, nullptr);
}

}  // namespace wb::vm
