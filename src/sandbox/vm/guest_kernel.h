// The guest kernel of the vm driver: an uncompressed ELF vmlinux (PVH direct
// boot on QEMU's microvm machine) and the few modules the guest init loads.
// scripts/setup unpacks Debian's linux-image package into
// KERNEL_ROOT/<version>/ (vmlinux, modules/, modules.dep) and points
// KERNEL_ROOT/current at it; KERNEL_ROOT is /var/lib/warmbox/kernel unless
// $WARMBOX_KERNEL_ROOT says otherwise.
#pragma once

#include <string>
#include <vector>

#include "base/error.h"

namespace wb::vm {

inline constexpr const char* kDefaultKernelRoot = "/var/lib/warmbox/kernel";

struct GuestKernel {
  std::string version;  // e.g. 6.1.0-57-amd64; "custom" for --kernel
  std::string vmlinux;
  // Absolute paths of the modules to load, dependencies first.
  std::vector<std::string> modules;
};

// modules.dep ("a.ko: b.ko c.ko" per line, paths relative to the modules
// dir) -> every listed module once, each after all it depends on. Fails on a
// cycle or a dependency that has no line of its own.
[[nodiscard]] Result<std::vector<std::string>> ModuleLoadOrder(const std::string& modules_dep);

// The kernel root in use: $WARMBOX_KERNEL_ROOT or the default.
std::string KernelRoot();

// KERNEL_ROOT/current (or kernel_override with the modules of current, which
// a custom kernel must match or have built in).
[[nodiscard]] Result<GuestKernel> FindGuestKernel(const std::string& kernel_root,
                                                  const std::string& kernel_override);

}  // namespace wb::vm
