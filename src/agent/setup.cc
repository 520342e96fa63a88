#include "agent/setup.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "base/fs.h"

namespace wb::agent {
namespace {

Result<void> Mount(const std::string& src, const std::string& target, const char* type,
                   unsigned long flags, const std::string& data) {
  if (::mount(src.empty() ? nullptr : src.c_str(), target.c_str(), type, flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    return Errno(std::string("mount ") + (type ? type : "bind"),
                 src + " -> " + target + (data.empty() ? "" : " [" + data + "]"));
  }
  return Ok();
}

Result<void> MkdirP(const std::string& path, mode_t mode) { return MkdirAll(path, mode); }

Result<void> Touch(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return Errno("create", path);
  return Ok();
}

Result<void> Symlink(const char* target, const std::string& link) {
  if (::symlink(target, link.c_str()) != 0 && errno != EEXIST) return Errno("symlink", link);
  return Ok();
}

}  // namespace

// A minimal /dev: the safe character devices bind-mounted from the host
// (mknod is not permitted in a user namespace, and a tmpfs mounted there is
// nodev anyway), a private devpts instance and a /dev/shm.
Result<void> SetUpDev(const std::string& dev) {
  WB_RETURN_IF_ERROR(Mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k"));
  for (const char* name : {"null", "zero", "full", "random", "urandom", "tty"}) {
    std::string target = dev + "/" + name;
    WB_RETURN_IF_ERROR(Touch(target));
    WB_RETURN_IF_ERROR(Mount(std::string("/dev/") + name, target, nullptr, MS_BIND, ""));
  }
  WB_RETURN_IF_ERROR(MkdirP(dev + "/pts", 0755));
  WB_RETURN_IF_ERROR(Mount("devpts", dev + "/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                           "newinstance,ptmxmode=0666,mode=620"));
  WB_RETURN_IF_ERROR(Symlink("pts/ptmx", dev + "/ptmx"));
  WB_RETURN_IF_ERROR(MkdirP(dev + "/shm", 01777));
  WB_RETURN_IF_ERROR(
      Mount("shm", dev + "/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=64m"));
  WB_RETURN_IF_ERROR(Symlink("/proc/self/fd", dev + "/fd"));
  WB_RETURN_IF_ERROR(Symlink("/proc/self/fd/0", dev + "/stdin"));
  WB_RETURN_IF_ERROR(Symlink("/proc/self/fd/1", dev + "/stdout"));
  WB_RETURN_IF_ERROR(Symlink("/proc/self/fd/2", dev + "/stderr"));
  return Ok();
}

Result<void> LoopbackUp() {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return Errno("socket", "AF_INET");
  ifreq ifr;
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return Errno("ioctl(SIOCGIFFLAGS)", "lo");
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return Errno("ioctl(SIOCSIFFLAGS)", "lo");
  return Ok();
}

// Docker's masks: kernel memory, keys and timers hidden behind /dev/null or an
// empty read-only tmpfs; kernel knobs read-only. Most of these are already
// closed to a user namespace, but a mistake in one kernel check should not be
// all that stands in the way. The command cannot undo them: it has no
// CAP_SYS_ADMIN and its seccomp filter denies mount and umount.
Result<void> MaskProc(const std::string& proc) {
  for (const char* f :
       {"kcore", "keys", "latency_stats", "timer_list", "timer_stats", "sched_debug"}) {
    std::string p = proc + "/" + f;
    if (!PathExists(p)) continue;
    WB_RETURN_IF_ERROR(Mount("/dev/null", p, nullptr, MS_BIND, ""));
  }
  for (const char* d : {"acpi", "asound", "scsi"}) {
    std::string p = proc + "/" + d;
    if (!PathExists(p)) continue;
    WB_RETURN_IF_ERROR(
        Mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0"));
  }
  for (const char* r : {"sys", "sysrq-trigger", "irq", "bus", "fs"}) {
    std::string p = proc + "/" + r;
    if (!PathExists(p)) continue;
    WB_RETURN_IF_ERROR(Mount(p, p, nullptr, MS_BIND | MS_REC, ""));
    WB_RETURN_IF_ERROR(Mount(
        p, p, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  }
  return Ok();
}

// Per sandbox, counted per uid inside the sandbox's user namespace. The
// kernel charges every count also to the namespace's owner one level up
// (kernel/ucount.c), which is the sandbox's own slot root (the host's
// sandbox/ns/uid_slots.h), capped there by the host's per-user limits
// (fs.inotify.max_user_*, user.max_*): so no sandbox can take another's or
// host root's. These inner limits keep one uid inside from taking all of its
// sandbox's share and bound nesting: the kernel's per-user inotify defaults
// (128 instances; watches as on small hosts, 64Ki: about 64 MiB of kernel
// memory at worst, charged to the sandbox's memory cgroup), and at most 64
// nested namespaces of each kind (the agent's own cgroup namespace is one).
// A new user namespace starts at INT_MAX for every one of them.
const UsernsLimit kUsernsLimits[] = {
    {"max_inotify_instances", 128}, {"max_inotify_watches", 65536}, {"max_fanotify_groups", 128},
    {"max_fanotify_marks", 65536},  {"max_user_namespaces", 64},    {"max_mnt_namespaces", 64},
    {"max_pid_namespaces", 64},     {"max_net_namespaces", 64},     {"max_ipc_namespaces", 64},
    {"max_uts_namespaces", 64},     {"max_cgroup_namespaces", 64},  {"max_time_namespaces", 64},
};
const size_t kUsernsLimitCount = sizeof kUsernsLimits / sizeof kUsernsLimits[0];

namespace {

Result<void> SetUsernsLimits() {
  for (size_t i = 0; i < kUsernsLimitCount; ++i) {
    const std::string path = std::string("/proc/sys/user/") + kUsernsLimits[i].name;
    if (!PathExists(path)) continue;  // an older kernel without that count
    WB_RETURN_IF_ERROR(WriteFile(path, std::to_string(kUsernsLimits[i].value)));
  }
  return Ok();
}

// Attaches each detached idmapped layer mount (an inherited fd) at
// dir/<i>: overlayfs takes its layers as paths in our mount namespace (it
// refuses, with EPERM, a detached mount that host root made: the mount's
// anonymous namespace is owned by the host's user namespace, where we hold no
// capability). move_mount needs CAP_SYS_ADMIN only over our own namespace.
Result<std::vector<std::string>> AttachLayers(const std::vector<int>& fds, const std::string& dir) {
  std::vector<std::string> paths;
  WB_RETURN_IF_ERROR(MkdirP(dir, 0700));
  for (size_t i = 0; i < fds.size(); ++i) {
    const std::string target = dir + "/" + std::to_string(i);
    WB_RETURN_IF_ERROR(MkdirP(target, 0700));
    if (::syscall(SYS_move_mount, fds[i], "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) !=
        0) {
      return Errno("move_mount", "overlay lower layer " + std::to_string(i) + " (fd " +
                                     std::to_string(fds[i]) + ") -> " + target);
    }
    ::close(fds[i]);  // no command may inherit it
    paths.push_back(target);
  }
  return paths;
}

}  // namespace

Result<void> SetUpNamespaceSandbox(const NsSetup& s) {
  // First, while nothing else of ours counts yet: the user namespace's limits.
  WB_RETURN_IF_ERROR(SetUsernsLimits());
  // The host placed us in our cgroups before releasing us; a cgroup namespace
  // made now is rooted there, so the sandbox sees "/" as its own cgroup in
  // every hierarchy (v1 included, which clone3 cannot target).
  if (::unshare(CLONE_NEWCGROUP) != 0) return Errno("unshare", "CLONE_NEWCGROUP");

  // Nothing we mount may propagate back to the host (or from it).
  WB_RETURN_IF_ERROR(Mount("", "/", nullptr, MS_REC | MS_PRIVATE, ""));

  // The writable layer: a size-capped tmpfs that exists only in our mount
  // namespace, so it (and every byte written in the sandbox) is gone when the
  // namespace dies, with nothing for the host to unmount.
  const std::string& top = s.scratch_dir;
  WB_RETURN_IF_ERROR(Mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV,
                           "mode=0755,size=" + std::to_string(s.tmpfs_bytes)));
  const std::string upper = top + "/upper", work = top + "/work", root = top + "/root";
  for (const auto& d : {upper, work, root}) WB_RETURN_IF_ERROR(MkdirP(d, 0755));

  std::vector<std::string> lower_dirs = s.lower_dirs;
  if (!s.lower_fds.empty()) lower_dirs = WB_TRY(AttachLayers(s.lower_fds, top + "/l"));
  std::string lower;
  for (const auto& l : lower_dirs) lower += (lower.empty() ? "" : ":") + l;
  // userxattr: overlay metadata goes to user.overlay.* xattrs, which a user
  // namespace may set on its own tmpfs.
  WB_RETURN_IF_ERROR(
      Mount("overlay", root, "overlay", MS_NOSUID,
            "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work + ",userxattr"));

  for (const char* d : {"/proc", "/dev", "/tmp", "/sys"}) {
    WB_RETURN_IF_ERROR(MkdirP(root + d, 0755));
  }
  if (::chmod((root + "/tmp").c_str(), 01777) != 0) return Errno("chmod", root + "/tmp");
  // proc must be mounted while the host's /proc is still visible in this
  // mount namespace: the kernel refuses a new proc mount in a user namespace
  // unless a fully visible one exists (mount_too_revealing).
  WB_RETURN_IF_ERROR(Mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  WB_RETURN_IF_ERROR(MaskProc(root + "/proc"));
  WB_RETURN_IF_ERROR(SetUpDev(root + "/dev"));
  // No sysfs: an empty read-only tmpfs, so nothing of the host's shows and
  // nothing can be written there.
  WB_RETURN_IF_ERROR(Mount("sysfs-none", root + "/sys", "tmpfs",
                           MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=0555"));

  // crun's sequence: pivot_root(".", ".") stacks the old root under the new
  // one at "/", and the detached unmount drops it, so no path to the host's
  // filesystem is left.
  if (::chdir(root.c_str()) != 0) return Errno("chdir", root);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return Errno("pivot_root", root);
  if (::umount2(".", MNT_DETACH) != 0) return Errno("umount2", "old root");
  if (::chdir("/") != 0) return Errno("chdir", "/");

  if (::sethostname(s.hostname.data(), s.hostname.size()) != 0) {
    return Errno("sethostname", s.hostname);
  }
  WB_RETURN_IF_ERROR(LoopbackUp());
  return Ok();
}

}  // namespace wb::agent
