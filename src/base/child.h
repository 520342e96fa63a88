// ChildProcess: the one careful spawn path of warmbox (clone3 + pidfd).
//
// The host may be multi-threaded (the pool daemon), so the child between
// clone3 and execve only makes raw syscalls on data prepared before the clone:
// no allocation, no locks, no glibc wrappers that touch thread state (setxid
// broadcasts). Failures before exec are reported through a close-on-exec pipe
// as (step, errno); a clean EOF on that pipe means execve succeeded.
//
// A ChildProcess that is destroyed without having been reaped is killed with
// SIGKILL and reaped, so no process outlives its owner by accident.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/fd.h"

namespace wb {

// One step of building a jail (SpawnOptions::jail), in order: parents first.
struct JailEntry {
  // kDevDir: a dir with a tmpfs of its own that may hold device nodes (the
  // jail's root may not). kDevice: a character device node like the host's
  // `source` (its major and minor), made in a kDevDir, owned by the jail's
  // uid:gid, mode 0600: the host's node may be root's only (/dev/kvm is on
  // some hosts), and this one is the jail's alone.
  enum class Kind { kDir, kBind, kSymlink, kDevDir, kDevice };
  Kind kind = Kind::kDir;
  std::string path;  // inside the jail, absolute ("/vm/kernel")
  std::string
      source;  // kBind: the host's file or dir; kSymlink: the link's text; kDevice: the host's node
  // kBind: the mount's flags. Without them it is read-only, nodev, noexec
  // (and always nosuid).
  bool writable = false;
  bool devices = false;
  bool exec = false;
};

// A minimal root for the program: in its own mount namespace, a small tmpfs
// mounted on `root` (an empty host dir) holds exactly `entries` (bind mounts
// of host files and dirs, dirs, symlinks, device nodes), is made read-only
// (the device tmpfs too) and becomes the
// program's root (pivot_root; the host's root is detached). Then the program
// runs as uid:gid without supplementary groups, with no capabilities (the
// bounding set emptied too) and no_new_privs. The program's path is looked up
// inside the jail. A jail implies CLONE_NEWNS.
struct Jail {
  std::string root;
  std::vector<JailEntry> entries;
  uint32_t uid = 0;  // both non-zero
  uint32_t gid = 0;
};

struct SpawnOptions {
  std::string path;               // absolute path of the program
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // "K=V"
  uint64_t clone_flags = 0;       // CLONE_NEW* flags
  int cgroup_fd = -1;             // CLONE_INTO_CGROUP target (cgroup v2 dir fd)
  // {fd in parent, fd number in the child}. Child fds 0-2 not listed are
  // /dev/null; every other fd is closed at exec. Targets must be < 64.
  std::vector<std::pair<int, int>> fds;
  int pdeath_signal = 0;             // PR_SET_PDEATHSIG, 0 = none
  bool hold_until_released = false;  // child waits for Release() before exec
  // False: Spawn returns once the child is cloned, without waiting for its
  // exec; the caller calls ConfirmExec() before relying on the program
  // (the exec then happens while the caller goes on). Not with
  // hold_until_released (Release waits for it).
  bool await_exec = true;
  // In a new user namespace: setgroups([]), setresgid(0), setresuid(0) so that
  // execve gives the program the full capability set of that namespace.
  bool become_userns_root = false;
  // Nonzero: setgroups([]) and setresgid(gid) before exec, the uid kept; the
  // parent-death signal is set after it, so it survives (a program that
  // changes its own group ids later, as `--runas`, clears it). Not with
  // become_userns_root or a jail (they set their own groups).
  uint32_t gid = 0;
  // With CLONE_NEWUSER: the host euid that creates the new user namespace,
  // so becomes its owner, whom the kernel charges the namespace's counts to
  // in the parent namespace (kernel/ucount.c: inotify instances and watches,
  // mqueue bytes, namespaces, processes). 0 = our own euid. Needs euid 0.
  // With cgroup_fd, the clone keeps fsuid 0 (and with it the file
  // capabilities) for the kernel's write check on the cgroup; the child's
  // fsuid becomes its euid at exec (or when it sets its ids before).
  uint32_t userns_owner = 0;
  // v1 cgroups to be born in: fds of their "tasks" files (open for writing),
  // and of the spawning thread's own, to go back to. The thread writes "0"
  // (itself) to each before the clone and to each of its own after: a
  // thread that moves itself takes no global lock, where writing another
  // process's pid to cgroup.procs waits for an RCU grace period (about
  // 8 ms here) unless another such move ran just before. Between the two,
  // nothing allocates: the thread is charged to the sandbox's memory.
  std::vector<int> clone_in_tasks_fds, clone_out_tasks_fds;
  // RLIMIT_FSIZE of the program, with SIGXFSZ ignored: writes beyond it fail
  // (EFBIG) instead of killing it. 0 = inherited. Caps files that an
  // untrusted party fills through the program (a VM's console log).
  uint64_t file_size_limit = 0;
  // Set: the program runs jailed (Jail); not with become_userns_root.
  std::optional<Jail> jail;
};

struct ExitStatus {
  int code = 0;    // exit code when exited normally
  int signal = 0;  // terminating signal, 0 if exited
  // Shell convention: the code, or 128+signal.
  int ShellCode() const { return signal ? 128 + signal : code; }
  std::string Describe() const;
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(ChildProcess&& o) noexcept { *this = std::move(o); }
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  [[nodiscard]] static Result<ChildProcess> Spawn(const SpawnOptions& opts);

  // For hold_until_released: lets the child go on and waits until it has
  // exec'd (or reports why it could not).
  [[nodiscard]] Result<void> Release();
  // For await_exec = false: waits until the child has exec'd, or reports
  // why it could not (then it is killed and reaped). Once done, Ok.
  [[nodiscard]] Result<void> ConfirmExec();

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }
  bool running() const { return pid_ > 0 && !reaped_; }

  [[nodiscard]] Result<void> Signal(int sig);
  // Blocks until the child exits and reaps it.
  [[nodiscard]] Result<ExitStatus> Wait();
  // Reaps the child if it has exited.
  [[nodiscard]] Result<std::optional<ExitStatus>> TryWait();
  // SIGKILL and reap (idempotent). An adopted process (not our child) is
  // waited for through its pidfd instead: its parent reaps it.
  void KillAndReap();

  // A process that is not our child (a live sandbox's agent left by an
  // earlier daemon): a pidfd on pid. The caller checks that it is still the
  // process it expects (its start time) after this call, as the pidfd pins it.
  [[nodiscard]] static Result<ChildProcess> Adopt(pid_t pid);
  // Lets the process go on without us: neither killed nor reaped when this
  // object is destroyed (a live sandbox left for the next daemon).
  void Abandon();

 private:
  [[nodiscard]] Result<void> AwaitExec();

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd release_fd_;  // write end: one byte lets a held child go on
  UniqueFd error_fd_;    // read end: (step, errno) or EOF at exec
  std::string path_;
  std::vector<std::string> jail_paths_;  // names a jail step's entry in errors
  bool reaped_ = false;
  bool adopted_ = false;  // not our child: waitid does not apply
  bool held_ = false;     // hold_until_released, not Released yet
};

}  // namespace wb
