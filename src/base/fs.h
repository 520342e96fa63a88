// Small filesystem helpers returning Result.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/error.h"
#include "base/fd.h"

namespace wb {

Result<std::string> ReadFile(const std::string& path);
// One write(2) of data to an existing file (sysfs/procfs/cgroupfs semantics:
// the kernel acts on each write, so the content must go in one call).
Result<void> WriteFile(const std::string& path, const std::string& data);
// Writes to path.tmp-RANDOM, fsyncs nothing (state, not data), renames over path.
Result<void> WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode = 0644);
// mkdir -p; existing directories are fine.
Result<void> MkdirAll(const std::string& path, mode_t mode = 0755);
// rm -rf that never follows symlinks and does not cross mount points.
Result<void> RemoveTree(const std::string& path);
bool PathExists(const std::string& path);
// n random bytes from getrandom(2), as 2n lowercase hex digits.
Result<std::string> RandomHex(size_t n);
// Opens (creating) path and takes flock(LOCK_EX or LOCK_SH) on it, waiting.
// The lock lives as long as the returned fd (and dies with the process).
Result<UniqueFd> LockPath(const std::string& path, bool exclusive);
// The directory holding the running executable (readlink /proc/self/exe).
Result<std::string> SelfDir();

}  // namespace wb
