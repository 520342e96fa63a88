// Per-sandbox state on the host: STATE/sandboxes/<id>/ holds the agent's
// socket, the mount point of the sandbox's tmpfs (mounted only inside the
// sandbox's own mount namespace) and owner.json, which names the owning host
// process and the sandbox's cgroups so that leftovers of a crash can be found
// and removed (warmbox gc, and at every start).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/error.h"

namespace wb {

struct SandboxRecord {
  std::string id;
  pid_t owner_pid = 0;
  uint64_t owner_start = 0;  // /proc/<pid>/stat starttime: pid reuse guard
  std::vector<std::string> cgroups;
};

std::string SandboxesDir(const std::string& state_dir);

// Start time of a live process, 0 if it does not exist.
uint64_t ProcessStartTime(pid_t pid);

[[nodiscard]] Result<void> WriteSandboxRecord(const std::string& dir, const SandboxRecord& rec);
[[nodiscard]] Result<SandboxRecord> ReadSandboxRecord(const std::string& dir);

// Whether dir holds a live sandbox's record (live.json, written by the
// daemon's live registry) naming a host process that is still the same
// process (pid and start time): such a sandbox outlives the daemon that made
// it, and start-up and gc leave it (and its cgroups) for the next daemon.
bool LiveSandboxAlive(const std::string& dir);

struct GcReport {
  int removed = 0;
  int kept = 0;  // owned by a live process
  std::vector<std::string> errors;
};

// Removes every sandbox dir whose owner is gone (and that is not a living
// live sandbox, LiveSandboxAlive): kills its cgroups' processes,
// removes the cgroups and the dir.
GcReport CollectGarbage(const std::string& state_dir);

}  // namespace wb
