#include "base/child.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace wb {
namespace {

// Fds of the handshake pipes are moved at or above this number so the child's
// fd remapping (targets < 64) can never clobber them.
constexpr int kHighFd = 64;

enum Step : int {
  kStepSignals = 1,
  kStepDupFds,
  kStepPdeathsig,
  kStepRelease,
  kStepSetgroups,
  kStepSetresgid,
  kStepSetresuid,
  kStepExecve,
  kStepRlimit,
  kStepJailPrivate,
  kStepJailTmpfs,
  kStepJailEntry,  // the detail names the entry
  kStepJailSeal,
  kStepJailPivot,
  kStepCapbset,
  kStepCapset,
  kStepNoNewPrivs,
};

const char* StepName(int step) {
  switch (step) {
    case kStepSignals:
      return "reset signals";
    case kStepDupFds:
      return "set up fds";
    case kStepPdeathsig:
      return "prctl(PR_SET_PDEATHSIG)";
    case kStepRelease:
      return "wait for release";
    case kStepSetgroups:
      return "setgroups";
    case kStepSetresgid:
      return "setresgid";
    case kStepSetresuid:
      return "setresuid";
    case kStepExecve:
      return "execve";
    case kStepRlimit:
      return "setrlimit(RLIMIT_FSIZE)";
    case kStepJailPrivate:
      return "jail: mount(/, MS_REC|MS_PRIVATE)";
    case kStepJailTmpfs:
      return "jail: mount(tmpfs)";
    case kStepJailEntry:
      return "jail: entry";
    case kStepJailSeal:
      return "jail: remount read-only";
    case kStepJailPivot:
      return "jail: pivot_root";
    case kStepCapbset:
      return "prctl(PR_CAPBSET_DROP)";
    case kStepCapset:
      return "capset";
    case kStepNoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS)";
  }
  return "spawn";
}

// One jail entry as the child applies it: host paths, prepared by the parent.
struct ChildJailOp {
  int kind;            // JailEntry::Kind, with kBind split into file and dir
  const char* target;  // root + path
  const char* source;
  unsigned long remount_flags;
  unsigned long long rdev;  // kOpDevice
};
constexpr int kOpDir = 0, kOpBindFile = 1, kOpBindDir = 2, kOpSymlink = 3, kOpDevDir = 4,
              kOpDevice = 5;
// The flags of a device tmpfs (kOpDevDir): devices, nothing executable.
constexpr unsigned long kDevDirFlags = MS_NOSUID | MS_NOEXEC;

struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const int* src;
  const int* dst;
  int nfds;
  int stdio_mapped[3];
  int pdeath_signal;
  bool hold;
  bool become_root;
  uint32_t gid;  // 0: unchanged
  uint64_t file_size_limit;
  const char* jail_root;  // null: no jail
  const ChildJailOp* jail_ops;
  int jail_nops;
  uint32_t jail_uid;
  uint32_t jail_gid;
  int release_fd;
  int error_fd;
  // The parent's ends of the two pipes, copied into the child by the clone:
  // closed first, or a parent that dies would never be noticed (the child
  // itself would hold the write end it waits on).
  int parent_release_fd;
  int parent_error_fd;
};

// The child between clone3 and execve calls the kernel directly, never a
// libc wrapper: clone3 bypasses libc's fork, so a wrapper that a sanitizer
// intercepts (sigaction, close, _exit ...) can take a lock that another
// thread of the parent held at the clone, and hang the child forever (seen
// under TSan: sigaction's interceptor spinning on its allocator's lock).
namespace raw {
long Close(int fd) { return ::syscall(SYS_close, fd); }
long Dup3(int from, int to, int flags) { return ::syscall(SYS_dup3, from, to, flags); }
long Fcntl(int fd, int cmd, long arg) { return ::syscall(SYS_fcntl, fd, cmd, arg); }
long Write(int fd, const void* buf, size_t n) { return ::syscall(SYS_write, fd, buf, n); }
long Read(int fd, void* buf, size_t n) { return ::syscall(SYS_read, fd, buf, n); }
[[noreturn]] void Exit(int code) {
  for (;;) ::syscall(SYS_exit_group, code);
}
// The kernel's struct sigaction (x86_64 and the generic layout of arm64),
// not libc's: handler, flags, restorer, then a 64-bit mask.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};
static_assert(sizeof(void*) == 8, "the kernel sigaction layout above is the 64-bit one");
long SetDisposition(int sig, void (*handler)(int)) {
  KernelSigaction ks{handler, 0, nullptr, 0};
  return ::syscall(SYS_rt_sigaction, sig, &ks, nullptr, sizeof ks.mask);
}
}  // namespace raw

[[noreturn]] void ChildFail(const ChildPlan& p, int step, int detail = -1) {
  int msg[3] = {step, errno, detail};
  // Best effort: if the parent is gone there is nobody to tell.
  (void)raw::Write(p.error_fd, msg, sizeof msg);
  raw::Exit(127);
}

// The jail (Jail in child.h), in the child's own mount namespace (the clone
// made it). Raw syscalls on the parent's prepared ops only.
void EnterJail(const ChildPlan& p) {
  // Nothing done below may reach the host's namespace through shared mounts.
  if (::syscall(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    ChildFail(p, kStepJailPrivate);
  // The new root: a tiny tmpfs that holds only the mount points and links.
  if (::syscall(SYS_mount, "tmpfs", p.jail_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "mode=0755,size=64k,nr_inodes=256") != 0)
    ChildFail(p, kStepJailTmpfs);
  for (int i = 0; i < p.jail_nops; ++i) {
    const ChildJailOp& op = p.jail_ops[i];
    long r = 0;
    switch (op.kind) {
      case kOpDir:
        r = ::syscall(SYS_mkdirat, AT_FDCWD, op.target, 0755);
        break;
      case kOpSymlink:
        r = ::syscall(SYS_symlinkat, op.source, AT_FDCWD, op.target);
        break;
      case kOpDevDir:
        r = ::syscall(SYS_mkdirat, AT_FDCWD, op.target, 0755);
        if (r == 0)
          r = ::syscall(SYS_mount, "tmpfs", op.target, "tmpfs", kDevDirFlags,
                        "mode=0755,size=16k,nr_inodes=64");
        break;
      case kOpDevice:
        // The node is the jail user's: made as root, then given away.
        r = ::syscall(SYS_mknodat, AT_FDCWD, op.target, S_IFCHR | 0600, op.rdev);
        if (r == 0)
          r = ::syscall(SYS_fchownat, AT_FDCWD, op.target, p.jail_uid, p.jail_gid,
                        AT_SYMLINK_NOFOLLOW);
        break;
      case kOpBindFile:
      case kOpBindDir: {
        if (op.kind == kOpBindDir) {
          r = ::syscall(SYS_mkdirat, AT_FDCWD, op.target, 0755);
        } else {
          r = ::syscall(SYS_openat, AT_FDCWD, op.target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                        0600);
          if (r >= 0) r = raw::Close(static_cast<int>(r));
        }
        if (r == 0)
          r = ::syscall(SYS_mount, op.source, op.target, nullptr, MS_BIND | MS_REC, nullptr);
        // A bind mount takes its flags only from a remount of itself.
        if (r == 0)
          r = ::syscall(SYS_mount, nullptr, op.target, nullptr,
                        MS_BIND | MS_REMOUNT | op.remount_flags, nullptr);
        break;
      }
    }
    if (r < 0) ChildFail(p, kStepJailEntry, i);
  }
  // Read-only from now on: the device tmpfs (its nodes still open read-write:
  // a read-only mount stops writes to files, not to devices), then the root.
  for (int i = 0; i < p.jail_nops; ++i) {
    if (p.jail_ops[i].kind != kOpDevDir) continue;
    if (::syscall(SYS_mount, nullptr, p.jail_ops[i].target, nullptr,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | kDevDirFlags, nullptr) != 0)
      ChildFail(p, kStepJailSeal, i);
  }
  if (::syscall(SYS_mount, nullptr, p.jail_root, nullptr,
                MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    ChildFail(p, kStepJailSeal);
  // pivot_root(".", "."): the old root ends up stacked on the new one, and
  // detaching it leaves the jail as all there is (no directory of the host
  // stays reachable, unlike with chroot).
  if (::syscall(SYS_chdir, p.jail_root) != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::syscall(SYS_umount2, ".", MNT_DETACH) != 0 || ::syscall(SYS_chdir, "/") != 0)
    ChildFail(p, kStepJailPivot);
  // The bounding set first: dropping it needs CAP_SETPCAP, which the uid
  // change below takes away. Then no capability can come back by exec.
  for (int cap = 0; cap < 64; ++cap) {
    if (::syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
    if (errno == EINVAL) break;  // past the kernel's last capability
    ChildFail(p, kStepCapbset, cap);
  }
  // Groups, then gid, then uid (the uid last: it ends the right to change the
  // others). All uids non-zero clears the permitted and effective sets.
  if (::syscall(SYS_setgroups, 0, nullptr) != 0) ChildFail(p, kStepSetgroups);
  if (::syscall(SYS_setresgid, p.jail_gid, p.jail_gid, p.jail_gid) != 0)
    ChildFail(p, kStepSetresgid);
  if (::syscall(SYS_setresuid, p.jail_uid, p.jail_uid, p.jail_uid) != 0)
    ChildFail(p, kStepSetresuid);
  // The inheritable set too, so that no set of the process shows a bit.
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (::syscall(SYS_capset, &hdr, none) != 0) ChildFail(p, kStepCapset);
  if (::syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ChildFail(p, kStepNoNewPrivs);
}

// Runs in the child between clone3 and execve: raw syscalls only (raw::).
[[noreturn]] void ChildMain(const ChildPlan& p) {
  raw::Close(p.parent_release_fd);
  raw::Close(p.parent_error_fd);
  // Handlers of the parent must not run here; reset every disposition, then
  // unblock (the parent blocked all signals around clone3).
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    raw::SetDisposition(sig, SIG_DFL);
  }
  if (p.file_size_limit) {
    // SIG_IGN survives execve: the program sees EFBIG past the limit.
    if (raw::SetDisposition(SIGXFSZ, SIG_IGN) != 0) ChildFail(p, kStepSignals);
    struct rlimit rl = {p.file_size_limit, p.file_size_limit};
    if (::syscall(SYS_prlimit64, 0, RLIMIT_FSIZE, &rl, nullptr) != 0) ChildFail(p, kStepRlimit);
  }
  const uint64_t none = 0;
  if (::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none) != 0) {
    ChildFail(p, kStepSignals);
  }

  // Two passes so a source fd can never be overwritten before it is copied:
  // first duplicate every source above all targets, then move into place.
  int tmp[64];
  for (int i = 0; i < p.nfds; ++i) {
    tmp[i] = static_cast<int>(raw::Fcntl(p.src[i], F_DUPFD_CLOEXEC, kHighFd + 8));
    if (tmp[i] < 0) ChildFail(p, kStepDupFds);
  }
  // Everything inherited without O_CLOEXEC (from whoever started us) must not
  // reach the program: mark all fds from 3 up close-on-exec, then create the
  // targets, which dup3(..., 0) makes inheritable.
  ::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
  for (int i = 0; i < p.nfds; ++i) {
    if (raw::Dup3(tmp[i], p.dst[i], 0) < 0) ChildFail(p, kStepDupFds);
  }
  for (int s = 0; s < 3; ++s) {
    if (p.stdio_mapped[s]) continue;
    int null = static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC));
    if (null < 0) ChildFail(p, kStepDupFds);
    if (null == s) {
      if (raw::Fcntl(null, F_SETFD, 0) < 0) ChildFail(p, kStepDupFds);
      continue;
    }
    if (raw::Dup3(null, s, 0) < 0) ChildFail(p, kStepDupFds);
    raw::Close(null);
  }

  if (p.hold) {
    char c;
    ssize_t n;
    do {
      n = raw::Read(p.release_fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      errno = n == 0 ? EPIPE : errno;  // parent gone or gave up
      ChildFail(p, kStepRelease);
    }
  }
  if (p.jail_root) EnterJail(p);
  if (p.become_root) {
    // Raw syscalls: glibc's wrappers would try to broadcast the change to
    // threads that exist only in the parent.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) ChildFail(p, kStepSetgroups);
    if (::syscall(SYS_setresgid, 0, 0, 0) != 0) ChildFail(p, kStepSetresgid);
    if (::syscall(SYS_setresuid, 0, 0, 0) != 0) ChildFail(p, kStepSetresuid);
  }
  if (p.gid != 0) {
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) ChildFail(p, kStepSetgroups);
    if (::syscall(SYS_setresgid, p.gid, p.gid, p.gid) != 0) ChildFail(p, kStepSetresgid);
  }
  // After the credential change: changing the euid clears the parent-death
  // signal. (Set before the release wait too, so a parent that dies while we
  // wait is noticed: read() returns 0.)
  if (p.pdeath_signal != 0) {
    if (::syscall(SYS_prctl, PR_SET_PDEATHSIG, p.pdeath_signal, 0, 0, 0) != 0)
      ChildFail(p, kStepPdeathsig);
    // The parent keeps the write end of the release pipe until we have
    // exec'd, so a hang-up here means it died before prctl took effect.
    struct pollfd pfd = {p.release_fd, 0, 0};
    const struct timespec now = {0, 0};
    if (::syscall(SYS_ppoll, &pfd, 1, &now, nullptr, 0) == 1 && (pfd.revents & POLLHUP)) {
      errno = ESRCH;
      ChildFail(p, kStepPdeathsig);
    }
  }
  ::syscall(SYS_execve, p.path, p.argv, p.envp);
  ChildFail(p, kStepExecve);
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

Result<UniqueFd> MoveHigh(UniqueFd fd) {
  int high = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, kHighFd);
  if (high < 0) return Errno("fcntl(F_DUPFD_CLOEXEC)", std::to_string(fd.get()));
  return UniqueFd(high);
}

}  // namespace

std::string ExitStatus::Describe() const {
  if (signal) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exited with code " + std::to_string(code);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    KillAndReap();
    pid_ = std::exchange(o.pid_, -1);
    pidfd_ = std::move(o.pidfd_);
    release_fd_ = std::move(o.release_fd_);
    held_ = std::exchange(o.held_, false);
    error_fd_ = std::move(o.error_fd_);
    path_ = std::move(o.path_);
    jail_paths_ = std::move(o.jail_paths_);
    reaped_ = std::exchange(o.reaped_, false);
    adopted_ = std::exchange(o.adopted_, false);
  }
  return *this;
}

ChildProcess::~ChildProcess() { KillAndReap(); }

Result<ChildProcess> ChildProcess::Spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) return Fail("spawn", opts.path, "empty argv");
  if (opts.fds.size() > 32) return Fail("spawn", opts.path, "too many fds");
  std::vector<int> src, dst;
  ChildPlan plan{};
  for (auto [s, d] : opts.fds) {
    if (d < 0 || d >= kHighFd) return Fail("spawn", opts.path, "fd target out of range");
    src.push_back(s);
    dst.push_back(d);
    if (d < 3) plan.stdio_mapped[d] = 1;
  }
  auto argv = CStrings(opts.argv);
  auto envp = CStrings(opts.env);
  // The jail's steps as host paths, all made here: the child allocates nothing.
  std::vector<std::string> jail_targets;
  std::vector<ChildJailOp> jail_ops;
  if (opts.jail) {
    const Jail& j = *opts.jail;
    if (opts.become_userns_root) return Fail("spawn", opts.path, "a jail and become_userns_root");
    if (opts.gid != 0) return Fail("spawn", opts.path, "a jail and a gid");
    if (j.uid == 0 || j.gid == 0)
      return Fail(ErrorCode::kInvalidArgument, "spawn", opts.path,
                  "the jail's uid and gid must not be 0");
    if (j.root.empty() || j.root[0] != '/')
      return Fail(ErrorCode::kInvalidArgument, "spawn", j.root,
                  "the jail root must be an absolute path");
    jail_targets.reserve(j.entries.size());
    for (const auto& e : j.entries) {
      if (e.path.size() < 2 || e.path[0] != '/' || e.path.find("..") != std::string::npos)
        return Fail(ErrorCode::kInvalidArgument, "jail", e.path,
                    "not an absolute path inside the jail");
      jail_targets.push_back(j.root + e.path);
    }
    for (size_t i = 0; i < j.entries.size(); ++i) {
      const JailEntry& e = j.entries[i];
      ChildJailOp op{kOpDir, jail_targets[i].c_str(), e.source.c_str(), MS_NOSUID, 0};
      if (e.kind == JailEntry::Kind::kSymlink) op.kind = kOpSymlink;
      if (e.kind == JailEntry::Kind::kDevDir) op.kind = kOpDevDir;
      if (e.kind == JailEntry::Kind::kDevice) {
        struct stat st;
        if (::stat(e.source.c_str(), &st) != 0)
          return Errno("stat", e.source + " (jail entry " + e.path + ")");
        if (!S_ISCHR(st.st_mode))
          return Fail(ErrorCode::kInvalidArgument, "jail", e.source, "not a character device");
        op.kind = kOpDevice;
        op.rdev = st.st_rdev;
      }
      if (e.kind == JailEntry::Kind::kBind) {
        struct stat st;
        if (::stat(e.source.c_str(), &st) != 0)
          return Errno("stat", e.source + " (jail entry " + e.path + ")");
        op.kind = S_ISDIR(st.st_mode) ? kOpBindDir : kOpBindFile;
        if (!e.writable) op.remount_flags |= MS_RDONLY;
        if (!e.devices) op.remount_flags |= MS_NODEV;
        if (!e.exec) op.remount_flags |= MS_NOEXEC;
      }
      jail_ops.push_back(op);
    }
  }

  Pipe release = WB_TRY(MakePipe());
  Pipe error = WB_TRY(MakePipe());
  release.read = WB_TRY(MoveHigh(std::move(release.read)));
  error.write = WB_TRY(MoveHigh(std::move(error.write)));

  plan.path = opts.path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.src = src.data();
  plan.dst = dst.data();
  plan.nfds = static_cast<int>(src.size());
  plan.pdeath_signal = opts.pdeath_signal;
  plan.hold = opts.hold_until_released;
  plan.become_root = opts.become_userns_root;
  if (opts.gid != 0 && opts.become_userns_root)
    return Fail(ErrorCode::kInvalidArgument, "spawn", opts.path, "become_userns_root and a gid");
  plan.gid = opts.gid;
  plan.file_size_limit = opts.file_size_limit;
  if (opts.jail) {
    plan.jail_root = opts.jail->root.c_str();
    plan.jail_ops = jail_ops.data();
    plan.jail_nops = static_cast<int>(jail_ops.size());
    plan.jail_uid = opts.jail->uid;
    plan.jail_gid = opts.jail->gid;
  }
  plan.release_fd = release.read.get();
  plan.error_fd = error.write.get();
  plan.parent_release_fd = release.write.get();
  plan.parent_error_fd = error.read.get();

  int pidfd = -1;
  struct clone_args args;
  std::memset(&args, 0, sizeof args);
  args.flags = opts.clone_flags | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = SIGCHLD;
  if (opts.userns_owner != 0 && !(opts.clone_flags & CLONE_NEWUSER)) {
    return Fail(ErrorCode::kInvalidArgument, "spawn", opts.path,
                "userns_owner needs CLONE_NEWUSER");
  }
  // A jail is built in the child's own mount namespace, never the host's.
  if (opts.jail) args.flags |= CLONE_NEWNS;
  if (opts.cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(opts.cgroup_fd);
  }

  // Block every signal across clone3 so no handler of ours runs in the child
  // before it has reset the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // Into the child's v1 cgroups, this thread alone (as root: a write to
  // "tasks" checks the writer's euid), and out again below. Nothing from
  // here to the way out allocates (the thread is charged to their memory).
  auto go_back = [&opts] {
    for (int fd : opts.clone_out_tasks_fds) {
      // Left in a sandbox's cgroups, this thread would share its limits
      // and keep its cgroups from being removed: nothing sane can follow.
      if (::write(fd, "0", 1) != 1) std::abort();
    }
  };
  for (int fd : opts.clone_in_tasks_fds) {
    if (::write(fd, "0", 1) != 1) {
      int e = errno;
      go_back();
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return ErrnoValue(e, "enter the child's cgroups (write tasks)", opts.path);
    }
  }
  // The owner of a user namespace is the euid of the thread that creates it.
  // Credentials are per thread and the raw syscall (unlike glibc's wrapper,
  // which broadcasts to every thread) changes only this one's, for the clone
  // alone: the real and saved uids stay 0, so the euid can come back.
  // setresuid also sets the fsuid and drops the effective capabilities; a
  // CLONE_INTO_CGROUP is checked as a write to cgroup.procs files owned by
  // root, so fsuid 0 comes back for it (which raises the file capabilities
  // again). The child inherits it only until its exec (or its own
  // setresuid, become_userns_root), both of which set fsuid to euid; only
  // our code runs in between.
  if (opts.userns_owner != 0) {
    if (::syscall(SYS_setresuid, -1, static_cast<uid_t>(opts.userns_owner), -1) != 0) {
      int e = errno;
      go_back();
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return ErrnoValue(e, "setresuid(euid " + std::to_string(opts.userns_owner) + ")", opts.path);
    }
    // setfsuid answers the previous fsuid, never an error: ask again.
    if (opts.cgroup_fd >= 0 &&
        (::syscall(SYS_setfsuid, 0), ::syscall(SYS_setfsuid, static_cast<uid_t>(-1)) != 0)) {
      int e = errno;
      if (::syscall(SYS_setresuid, -1, 0, -1) != 0) std::abort();
      go_back();
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return ErrnoValue(e ? e : EPERM, "setfsuid(0)", opts.path);
    }
  }
  long pid = ::syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) ChildMain(plan);
  int clone_errno = errno;
  if (opts.userns_owner != 0 && ::syscall(SYS_setresuid, -1, 0, -1) != 0) {
    // This thread would go on without root: nothing sane can follow.
    std::abort();
  }
  go_back();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) {
    return ErrnoValue(clone_errno, "clone3", opts.path);
  }

  ChildProcess child;
  child.pid_ = static_cast<pid_t>(pid);
  child.pidfd_ = UniqueFd(pidfd);
  child.path_ = opts.path;
  if (opts.jail) {
    for (const auto& e : opts.jail->entries) child.jail_paths_.push_back(e.path);
  }
  child.release_fd_ = std::move(release.write);
  child.error_fd_ = std::move(error.read);
  // Our copies of the child's ends must go, or EOF never comes.
  release.read.reset();
  error.write.reset();
  child.held_ = opts.hold_until_released;
  // The write end of the release pipe stays open until the exec is seen:
  // the child takes its hang-up for our death (ChildMain).
  if (!opts.hold_until_released && opts.await_exec) WB_RETURN_IF_ERROR(child.ConfirmExec());
  return child;
}

Result<void> ChildProcess::Release() {
  if (!held_) return Fail("release", path_, "child is not held");
  char c = 1;
  if (::write(release_fd_.get(), &c, 1) != 1) return Errno("write", "release pipe of " + path_);
  held_ = false;
  return ConfirmExec();
}

Result<void> ChildProcess::ConfirmExec() {
  if (held_) return Fail("confirm exec", path_, "child is held: Release it");
  if (!error_fd_) return Ok();
  auto r = AwaitExec();
  release_fd_.reset();
  return r;
}

Result<void> ChildProcess::AwaitExec() {
  int msg[3];
  ssize_t n;
  do {
    n = ::read(error_fd_.get(), msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  error_fd_.reset();
  if (n < 0) return Errno("read", "exec status pipe of " + path_);
  if (n == 0) return Ok();  // closed by execve: the program runs
  KillAndReap();
  if (n != sizeof msg) return Fail("spawn", path_, "short status from child");
  std::string step = StepName(msg[0]);
  if ((msg[0] == kStepJailEntry || msg[0] == kStepJailSeal) && msg[2] >= 0 &&
      static_cast<size_t>(msg[2]) < jail_paths_.size())
    step += " " + jail_paths_[static_cast<size_t>(msg[2])];
  else if (msg[0] == kStepCapbset)
    step += " " + std::to_string(msg[2]);
  return ErrnoValue(msg[1], step, path_);
}

Result<ChildProcess> ChildProcess::Adopt(pid_t pid) {
  if (pid <= 0) return Fail(ErrorCode::kInvalidArgument, "adopt", std::to_string(pid), "bad pid");
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return Errno("pidfd_open", std::to_string(pid));
  ChildProcess c;
  c.pid_ = pid;
  c.pidfd_ = UniqueFd(fd);
  c.path_ = "pid " + std::to_string(pid);
  c.adopted_ = true;
  return c;
}

void ChildProcess::Abandon() {
  reaped_ = true;
  pidfd_.reset();
}

Result<void> ChildProcess::Signal(int sig) {
  if (!running()) return Fail("signal", path_, "process already reaped");
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0) {
    return Errno("pidfd_send_signal", std::to_string(pid_));
  }
  return Ok();
}

namespace {
ExitStatus FromSiginfo(const siginfo_t& info) {
  ExitStatus st;
  if (info.si_code == CLD_EXITED) {
    st.code = info.si_status;
  } else {
    st.signal = info.si_status;
  }
  return st;
}
}  // namespace

Result<ExitStatus> ChildProcess::Wait() {
  if (reaped_ || pid_ <= 0) return Fail("wait", path_, "no process to wait for");
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  for (;;) {
    if (::waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info, WEXITED) == 0) break;
    if (errno != EINTR) return Errno("waitid", std::to_string(pid_));
  }
  reaped_ = true;
  return FromSiginfo(info);
}

Result<std::optional<ExitStatus>> ChildProcess::TryWait() {
  if (reaped_ || pid_ <= 0) return Fail("wait", path_, "no process to wait for");
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  if (::waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info, WEXITED | WNOHANG) != 0) {
    return Errno("waitid", std::to_string(pid_));
  }
  if (info.si_pid == 0) return std::optional<ExitStatus>();
  reaped_ = true;
  return std::optional<ExitStatus>(FromSiginfo(info));
}

void ChildProcess::KillAndReap() {
  if (pid_ <= 0 || reaped_) return;
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  if (adopted_) {
    // Not ours to reap: the pidfd turns readable once the process is gone.
    pollfd p{pidfd_.get(), POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return;
  }
  siginfo_t info;
  for (;;) {
    if (::waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info, WEXITED) == 0) break;
    if (errno == EINTR) continue;
    // A pidfd whose file description was made non-blocking (a watcher's
    // event loop does that to its own fd, and O_NONBLOCK is shared) makes
    // waitid answer EAGAIN while the child is still dying: wait for it.
    if (errno != EAGAIN) break;
    pollfd p{pidfd_.get(), POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
  }
  reaped_ = true;
}

}  // namespace wb
