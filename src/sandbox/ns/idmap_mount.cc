#include "sandbox/ns/idmap_mount.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/child.h"
#include "base/fs.h"
#include "sandbox/ns/uid_slots.h"

namespace wb {

Result<UniqueFd> MakeIdmapUserns(const std::string& helper_path, uint32_t from, uint32_t to,
                                 uint32_t count) {
  // A user namespace exists only with a process in it (or an fd on it): a
  // child is cloned into a new one and held before exec; host root writes
  // its maps (any range: we hold CAP_SETUID in the parent namespace), opens
  // the namespace, and kills the child. The fd keeps the namespace alive.
  SpawnOptions o;
  o.path = helper_path;
  o.argv = {helper_path};
  o.clone_flags = CLONE_NEWUSER;
  o.hold_until_released = true;
  o.pdeath_signal = SIGKILL;
  ChildProcess child = WB_TRY(ChildProcess::Spawn(o));
  const std::string proc = "/proc/" + std::to_string(child.pid());
  const std::string map =
      std::to_string(from) + " " + std::to_string(to) + " " + std::to_string(count) + "\n";
  Result<UniqueFd> out = Fail("idmap userns", proc, "not made");
  if (auto w = WriteFile(proc + "/uid_map", map); !w.ok()) {
    out = w.error();
  } else if (auto g = WriteFile(proc + "/gid_map", map); !g.ok()) {
    out = g.error();
  } else {
    UniqueFd fd(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (fd) {
      out = std::move(fd);
    } else {
      out = Errno("open", proc + "/ns/user");
    }
  }
  child.KillAndReap();
  return out;
}

Result<UniqueFd> IdmappedClone(const std::string& dir, int userns_fd) {
  // open_tree(OPEN_TREE_CLONE) makes a detached copy of the mount at dir (in
  // an anonymous mount namespace): only a mount that was never attached may
  // be given an idmapping (the kernel refuses to change the ownership view of
  // a mount others already see). mount_setattr then sets the idmap and, in
  // the same call, read-only/nosuid/nodev: overlayfs never writes its lower
  // layers, so the sandbox's copy of a layer cannot be written either.
  UniqueFd tree(static_cast<int>(
      ::syscall(SYS_open_tree, AT_FDCWD, dir.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)));
  if (!tree) return Errno("open_tree", dir);
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  attr.userns_fd = static_cast<uint64_t>(userns_fd);
  if (::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    return Errno("mount_setattr(MOUNT_ATTR_IDMAP)", dir);
  }
  return tree;
}

Result<int> IdmapUsernsCache::Get(uint32_t slot) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = fds_.find(slot);
  if (it != fds_.end()) return it->second.get();
  UniqueFd fd = WB_TRY(MakeIdmapUserns(helper_, SlotBase(base_, 0), SlotBase(base_, slot), 65536));
  int raw = fd.get();
  fds_.emplace(slot, std::move(fd));
  return raw;
}

}  // namespace wb
