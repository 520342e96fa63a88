// Guest mode: warmbox-agent as /init of a microVM's initramfs (the vm
// driver). It turns a bare kernel into a sandbox: loads the virtio, erofs and
// overlay modules, opens the virtio-serial port to the host, mounts the
// image's layers from read-only virtio-blk disks under an overlay with a
// size-capped tmpfs upper, switches root into it and mounts /proc, /sys,
// /dev, /tmp. Then the agent serves the port (ServerOptions::port_fd).
// See docs/architecture.md ("The vm driver").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fd.h"

namespace wb::agent {

inline constexpr const char* kGuestPortName = "warmbox.agent";
// Layer disks carry the serial "wbl<N>", N = 0 for the top layer.
inline constexpr const char* kGuestDiskSerialPrefix = "wbl";
// Modules in the initramfs, loaded in the order of their file names.
inline constexpr const char* kGuestModulesDir = "/lib/modules";

struct GuestSetup {
  uint64_t tmpfs_bytes = 1ull << 30;  // writable-layer cap
  std::string hostname;
  int layers = 1;       // disks wbl0..wbl<layers-1>
  int wait_ms = 30000;  // for the port and disks to appear (and the NIC)
  // --network egress (--net): "ADDR/PREFIX,GATEWAY,RESOLVER". The one NIC
  // (virtio-net, served by the host's passt) gets the address and the
  // default route, /etc/resolv.conf the resolver. "" = only lo.
  std::string net;
};

// Guest clock (CLOCK_BOOTTIME, µs since the kernel started) at each phase's end.
struct GuestTimings {
  uint64_t init_us = 0;        // the kernel has started /init
  uint64_t modules_us = 0;     // modules loaded
  uint64_t port_us = 0;        // the host channel is open
  uint64_t rootfs_us = 0;      // root switched, /proc /sys /dev /tmp mounted
  std::string ToJson() const;  // "\"boot\":{...}" (a member for the heartbeat)
};

struct GuestResult {
  UniqueFd port;
  GuestTimings timings;
};

[[nodiscard]] Result<GuestResult> SetUpGuest(const GuestSetup& s);

struct GuestNet {
  std::string addr;  // dotted IPv4
  int prefix = 0;
  std::string gateway, resolver;
};
// "10.0.2.15/24,10.0.2.2,169.254.0.53"; an error names what was wrong.
[[nodiscard]] Result<GuestNet> ParseGuestNet(std::string_view s);

// "virtio_mmio.device=512@0xfeb00e00:12 quiet" and "virtio_mmio" ->
// "device=512@0xfeb00e00:12": what modprobe would pass the module from the
// kernel command line (the kernel applies such parameters itself only to
// built-in code). '-' and '_' in names are the same. Words after "--" count:
// QEMU appends a microvm's virtio_mmio.device= entries at the very end.
std::string ModuleParamsFromCmdline(std::string_view cmdline, std::string_view module);

}  // namespace wb::agent
