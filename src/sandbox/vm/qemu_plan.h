// The QEMU command line of one microVM, planned as data: a QemuPlan says what
// the VM is, QemuArgv() says how QEMU is told. Pure (no syscalls), so every
// choice is unit-tested, and the snapshot work (templates and clones) adds a
// field here rather than editing argv strings.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::vm {

enum class Accel { kTcg, kKvm };

struct QemuDisk {
  std::string path;    // a raw image, attached read-only
  std::string serial;  // how the guest finds it (/sys/block/vdX/serial)
};

// Guest RAM in a file (instead of anonymous memory), for snapshot templates
// and their clones: -object memory-backend-file + -M ...,memory-backend=.
// Note: VmDriver starts QEMU with RLIMIT_FSIZE = its console cap (1 MiB), which
// applies to every file QEMU writes or extends: a RAM file (and a migration
// stream written by a child) needs VmDriverOptions::console_cap = 0 or a cap
// applied another way.
struct MemoryBackend {
  std::string mem_path;  // e.g. /dev/shm/<template>
  bool share =
      false;  // on: the template writes the file; off: a clone's private copy-on-write view
};

struct QemuPlan {
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  Accel accel = Accel::kTcg;
  uint32_t tcg_tb_mib =
      64;  // TCG translation cache: QEMU's default is 1 GiB of (mostly untouched) RAM
  uint32_t vcpus = 1;
  uint64_t memory_mib = 512;
  std::string kernel;  // ELF vmlinux
  std::string initrd;
  std::vector<std::string> kernel_args;  // the kernel's own parameters
  std::vector<std::string> init_args;    // after "--": /init's argv
  std::vector<QemuDisk> disks;
  // Listening Unix sockets QEMU inherits (fd numbers in QEMU): the agent's
  // virtio-serial port and the QMP monitor. Bound by the host beforehand, so
  // the host can connect before QEMU is up.
  int agent_fd = -1;
  int qmp_fd = -1;
  // A connected stream socket to the VM's passt (--network egress): a
  // virtio-net device on virtio-mmio behind -netdev stream on that fd.
  int net_fd = -1;
  std::string console_path;  // the guest's serial console, a file
  // Instead of console_path: a ring buffer of this many bytes in QEMU's
  // memory (the templates and clones, which QEMU runs without RLIMIT_FSIZE:
  // their RAM file and the migration stream need it, so a file console would
  // be unbounded).
  uint32_t console_ringbuf_bytes = 0;
  std::optional<MemoryBackend> memory_backend;
  // QEMU's own seccomp sandbox (-sandbox on: no privilege changes, no
  // spawning, no obsolete syscalls). Migration to "exec:" needs spawn.
  bool seccomp_sandbox = true;
  bool allow_spawn = false;
  std::vector<std::string> extra;  // appended as given (e.g. -incoming defer)
};

// Kernel parameters for a quick, quiet boot on microvm. Under TCG the TSC
// must be told, not calibrated (docs/architecture.md, "The vm driver").
std::vector<std::string> DefaultKernelArgs(Accel accel);

// A value inside a QEMU option list: ',' is doubled.
std::string QemuEscape(std::string_view v);

std::vector<std::string> QemuArgv(const QemuPlan& p);

// "auto", "kvm" or "tcg" against what the host offers.
[[nodiscard]] Result<Accel> ResolveAccel(std::string_view choice, bool kvm_usable);
// KVM is used only where it can run a guest at full speed: /dev/kvm opens and
// the CPU shows vmx or svm (a nested, paravirtual KVM without them emulates
// instructions and dies; see docs/architecture.md).
bool CpuinfoHasVirtualization(std::string_view cpuinfo);
bool KvmUsable();

// vCPUs for a CPU quota in cores (0: unlimited -> 1; 1.5 -> 2), at most host_cpus.
uint32_t VcpusFor(double cpus, uint32_t host_cpus);

}  // namespace wb::vm
