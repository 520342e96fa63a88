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
  uint64_t tmpfs_bytes = 0;             // writable-layer cap
  std::string hostname;
};

[[nodiscard]] Result<void> SetUpNamespaceSandbox(const NsSetup& s);
// Brings the loopback interface up (the sandbox's only interface).
[[nodiscard]] Result<void> LoopbackUp();
// Masks and read-only binds inside a freshly mounted proc (part of the setup).
[[nodiscard]] Result<void> MaskProc(const std::string& proc);
// A minimal /dev at dev: a tmpfs holding null, zero, full, random, urandom
// and tty bind-mounted from the current /dev, a private devpts, /dev/shm and
// the fd links. Both drivers' commands see this /dev and nothing else.
[[nodiscard]] Result<void> SetUpDev(const std::string& dev);

}  // namespace wb::agent
