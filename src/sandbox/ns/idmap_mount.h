// Idmapped mounts of image layers for a sandbox on its own uid slot
// (uid_slots.h). Layers on disk are owned by slot 0's range; a sandbox's user
// namespace maps 0-65535 inside to its own slot. An idmapped mount of a layer
// shows the sandbox each file owned by slot0+u as owned by slotk+u, i.e. by
// u inside, without touching the disk.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "base/error.h"
#include "base/fd.h"

namespace wb {

// A user namespace (its /proc/PID/ns/user fd) whose uid and gid maps take
// [from, from+count) inside to [to, to+count) outside: the mapping an
// idmapped mount applies (MOUNT_ATTR_IDMAP). helper_path is any executable:
// the helper process is never released to exec it (killed once the fd is
// open; the namespace lives as long as the fd).
[[nodiscard]] Result<UniqueFd> MakeIdmapUserns(const std::string& helper_path, uint32_t from,
                                               uint32_t to, uint32_t count);

// A detached, read-only, nosuid, nodev clone of dir's mount at dir, idmapped
// through userns_fd. Needs host root. The returned fd is what the sandbox's
// agent move_mount()s into its own mount namespace (agent/setup.cc).
[[nodiscard]] Result<UniqueFd> IdmappedClone(const std::string& dir, int userns_fd);

// The idmap user namespaces of a driver, one per sandbox slot, made on first
// use and kept: slot 0's range onto slot k's. Thread-safe.
class IdmapUsernsCache {
 public:
  IdmapUsernsCache(std::string helper_path, uint32_t uid_base)
      : helper_(std::move(helper_path)), base_(uid_base) {}
  // The fd (owned by the cache) of slot's namespace.
  [[nodiscard]] Result<int> Get(uint32_t slot);

 private:
  std::string helper_;
  uint32_t base_;
  std::mutex mu_;
  std::map<uint32_t, UniqueFd> fds_;
};

}  // namespace wb
