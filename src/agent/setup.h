// Turns the fresh namespaces the host cloned us into into a sandbox: the
// agent runs this as PID 1 before it serves anything. See
// docs/architecture.md ("life of a sandbox") for the order and its reasons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb::agent {

struct NsSetup {
  std::string scratch_dir;              // host dir to mount the sandbox's tmpfs on
  std::vector<std::string> lower_dirs;  // image layers, top first
  // Or: the layers as inherited fds of detached idmapped mounts, top first
  // (the host's sandbox/ns/idmap_mount.h), attached here before the overlay.
  std::vector<int> lower_fds;
  uint64_t tmpfs_bytes = 0;  // writable-layer cap
  std::string hostname;
};

[[nodiscard]] Result<void> SetUpNamespaceSandbox(const NsSetup& s);
// The limits of the sandbox's own user namespace (/proc/sys/user/*, written
// from inside: each user namespace sees and, with CAP_SYS_RESOURCE in it,
// sets only its own). name, value pairs; see setup.cc for the why.
struct UsernsLimit {
  const char* name;
  uint64_t value;
};
extern const UsernsLimit kUsernsLimits[];
extern const size_t kUsernsLimitCount;
// Brings the loopback interface up (the sandbox's only interface).
[[nodiscard]] Result<void> LoopbackUp();
// Masks and read-only binds inside a freshly mounted proc (part of the setup).
[[nodiscard]] Result<void> MaskProc(const std::string& proc);
// A minimal /dev at dev: a tmpfs holding null, zero, full, random, urandom
// and tty bind-mounted from the current /dev, a private devpts, /dev/shm and
// the fd links. Both drivers' commands see this /dev and nothing else.
[[nodiscard]] Result<void> SetUpDev(const std::string& dev);

}  // namespace wb::agent
