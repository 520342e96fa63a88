// The jail of one QEMU (docs/security.md, "The vm driver"): which host files
// the VM needs, where they appear in its minimal root, and the QEMU plan
// rewritten to those paths. Pure (no syscalls but HostSystemLayout), so every
// choice is unit-tested; ChildProcess::Spawn (base/child.h, Jail) applies it
// in the child before QEMU is executed.
//
// The model is Firecracker's jailer: the privileged parent sets up what needs
// privilege (cgroups, the RAM file, the listening sockets, /dev/kvm) and
// hands QEMU only those, as an unprivileged user without capabilities.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/child.h"
#include "base/error.h"
#include "sandbox/vm/qemu_plan.h"

namespace wb::vm {

// Where the VM's files appear inside the jail.
inline constexpr const char* kJailVmDir = "/vm";
inline constexpr const char* kJailState = "/vm/state";

// The part of the host's root QEMU's binary, libraries, modules and firmware
// come from: dirs bound read-only (with exec), and the top-level symlinks of
// a merged /usr (/lib -> usr/lib) reproduced as they are.
struct HostSystem {
  std::vector<std::string> dirs;                           // "/usr"
  std::vector<std::pair<std::string, std::string>> links;  // {"/lib64", "usr/lib64"}
};

// /usr, and /bin, /sbin, /lib, /lib32, /lib64, /libx32 as the host has them
// (symlinks copied; real dirs bound).
HostSystem HostSystemLayout();

struct JailInput {
  std::string root;  // an empty host dir, the jail's mount point
  uint32_t uid = 0;  // QEMU's user and group (non-zero)
  uint32_t gid = 0;
  // The migration stream's file (snapshot templates): written by the
  // template's QEMU, read by a clone's. "" = none.
  std::string state_path;
  bool state_writable = false;
};

struct JailedQemu {
  QemuPlan plan;  // its paths are the jail's
  Jail jail;
};

// The jail of a plan: the system dirs, /dev with its own nodes of /dev/null,
// /dev/zero, /dev/urandom (and /dev/kvm under KVM), then the VM's files under /vm: the kernel,
// initrd and disks read-only; the console file and the RAM file (template
// and clone: QEMU 7.2 opens it read-write even for a private mapping) and a
// template's state file writable. QEMU's own binary is run from the bound
// system dirs, or bound as /vm/qemu when it lies elsewhere. Fails on a
// relative path or uid/gid 0.
[[nodiscard]] Result<JailedQemu> PlanQemuJail(QemuPlan plan, const HostSystem& sys,
                                              const JailInput& in);

}  // namespace wb::vm
