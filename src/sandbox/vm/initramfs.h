// The guest's initramfs: warmbox-agent as /init, the modules it loads and the
// few nodes the kernel needs before /init runs, as an uncompressed cpio
// "newc" archive (the kernel unpacks it without a decompressor). Built once
// per agent build and kernel, and cached.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "sandbox/vm/guest_kernel.h"

namespace wb::vm {

struct CpioEntry {
  std::string name;   // relative, e.g. "init" or "lib/modules/00-virtio_ring.ko"
  uint32_t mode = 0;  // file type and permission bits (S_IFREG | 0755, ...)
  std::string data;   // regular files only
  uint32_t rdev_major = 0, rdev_minor = 0;  // device nodes
};

// The archive, trailer included.
std::string CpioNewc(const std::vector<CpioEntry>& entries);

// The entries of the guest's initramfs (files read from disk).
[[nodiscard]] Result<std::vector<CpioEntry>> InitramfsEntries(const std::string& agent_path,
                                                              const GuestKernel& k);

// CACHE_DIR/initrd-<hash of agent and modules>.cpio, built if missing.
[[nodiscard]] Result<std::string> EnsureInitramfs(const std::string& cache_dir,
                                                  const std::string& agent_path,
                                                  const GuestKernel& k);

}  // namespace wb::vm
