#include "agent/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/strings.h"

namespace wb::agent {

std::optional<std::string> LookupEnv(const std::vector<std::string>& env, std::string_view key) {
  for (auto it = env.rbegin(); it != env.rend(); ++it) {
    if (it->size() > key.size() && it->compare(0, key.size(), key) == 0 &&
        (*it)[key.size()] == '=') {
      return it->substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

std::vector<std::string> MergeEnv(std::vector<std::string> base,
                                  const std::vector<const std::vector<std::string>*>& layers) {
  for (const auto* layer : layers) {
    for (const auto& kv : *layer) {
      std::string key = kv.substr(0, kv.find('=') + 1);  // "KEY="
      std::erase_if(base, [&](const std::string& s) { return s.compare(0, key.size(), key) == 0; });
      base.push_back(kv);
    }
  }
  return base;
}

namespace {

// execvp's search, done before fork so the child only calls execve and the
// "not found" case is reported without starting anything.
Result<std::string> ResolveProgram(const std::string& name, const std::vector<std::string>& env) {
  if (name.empty()) return Fail(ErrorCode::kInvalidArgument, "exec", name, "empty program name");
  if (name.find('/') != std::string::npos) return name;
  std::string path = LookupEnv(env, "PATH").value_or(kDefaultPath);
  int last_err = ENOENT;
  for (const auto& dir : Split(path, ':')) {
    std::string cand = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st;
    if (::stat(cand.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::access(cand.c_str(), X_OK) != 0) {
      last_err = EACCES;
      continue;
    }
    return cand;
  }
  if (last_err == EACCES) {
    return Fail(ErrorCode::kPermissionDenied, "exec", name, "found in $PATH but not executable");
  }
  return Fail(ErrorCode::kNotFound, "exec", name, "executable file not found in $PATH");
}

// Closes every fd >= 3 but keep (run in the vfork child: syscalls only).
// close_range needs Linux 5.9; before it, one close per possible fd.
int CloseFdsFrom3Except(int keep, int max_fd) {
  auto close_span = [&](unsigned lo, unsigned hi) -> int {
    if (lo > hi) return 0;
    if (::syscall(SYS_close_range, lo, hi, 0) == 0) return 0;
    if (errno != ENOSYS) return -1;
    for (unsigned fd = lo; fd <= hi && fd < static_cast<unsigned>(max_fd); ++fd)
      ::close(static_cast<int>(fd));
    return 0;
  };
  if (keep < 3) return close_span(3, ~0U);
  if (close_span(3, static_cast<unsigned>(keep) - 1) != 0) return -1;
  return close_span(static_cast<unsigned>(keep) + 1, ~0U);
}

enum ChildStep : int {
  kCStepSetsid = 1,
  kCStepTty,
  kCStepFds,
  kCStepCloseFds,
  kCStepRlimit,
  kCStepGroups,
  kCStepGid,
  kCStepUid,
  kCStepChdir,
  kCStepNnp,
  kCStepSeccomp,
  kCStepExec
};

const char* ChildStepName(int s) {
  switch (s) {
    case kCStepSetsid:
      return "setsid";
    case kCStepTty:
      return "ioctl(TIOCSCTTY)";
    case kCStepFds:
      return "dup2";
    case kCStepCloseFds:
      return "close_range";
    case kCStepGroups:
      return "setgroups";
    case kCStepGid:
      return "setresgid";
    case kCStepUid:
      return "setresuid";
    case kCStepChdir:
      return "chdir";
    case kCStepRlimit:
      return "setrlimit(RLIMIT_NOFILE)";
    case kCStepNnp:
      return "prctl(PR_SET_NO_NEW_PRIVS)";
    case kCStepSeccomp:
      return "seccomp(SECCOMP_SET_MODE_FILTER)";
    case kCStepExec:
      return "execve";
  }
  return "start";
}

struct Terminal {
  UniqueFd master, slave;
};

// A new pseudo-terminal from the sandbox's own devpts (/dev/ptmx inside the
// sandbox's mount namespace: never the host's).
Result<Terminal> OpenTerminal(const SpawnSpec& spec) {
  Terminal t;
  // O_NOCTTY: the agent (PID 1, a session leader) must never acquire it.
  t.master = UniqueFd(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!t.master) return Errno("open", "/dev/ptmx");
  int unlock = 0;
  if (::ioctl(t.master.get(), TIOCSPTLCK, &unlock) != 0) return Errno("ioctl(TIOCSPTLCK)", "");
  // TIOCGPTPEER opens the peer through the master itself, so the slave is
  // that master's even when /dev/pts is not the devpts /dev/ptmx belongs to
  // (no path lookup to race or to confuse). Before Linux 4.13: by number.
  int fd = ::ioctl(t.master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    unsigned n = 0;
    if (::ioctl(t.master.get(), TIOCGPTN, &n) != 0) return Errno("ioctl(TIOCGPTN)", "");
    std::string path = "/dev/pts/" + std::to_string(n);
    fd = ::open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return Errno("open", path);
  }
  t.slave = UniqueFd(fd);
  winsize ws{};
  ws.ws_row = spec.rows ? spec.rows : 24;
  ws.ws_col = spec.cols ? spec.cols : 80;
  if (::ioctl(t.master.get(), TIOCSWINSZ, &ws) != 0) return Errno("ioctl(TIOCSWINSZ)", "");
  // The command's user owns its terminal, as login(1) does (best effort: an
  // unprivileged agent in tests cannot, and nothing depends on it).
  if (::fchown(t.slave.get(), spec.cred.uid, static_cast<gid_t>(-1)) != 0) errno = 0;
  return t;
}

}  // namespace

// GCC (at -O1, as the sanitizer builds compile) warns that the locals of a
// function that calls vfork "might be clobbered": the child shares this
// frame. It is not: the child only makes syscalls on values prepared before
// the vfork and leaves through execve or _exit, never returning into it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wclobbered"
Result<Spawned> SpawnCommand(const SpawnSpec& spec) {
  if (spec.argv.empty()) return Fail(ErrorCode::kInvalidArgument, "exec", "", "empty command");
  std::string prog = WB_TRY(ResolveProgram(spec.argv[0], spec.env));
  std::string cwd = spec.cwd.empty() ? "/" : spec.cwd;

  Spawned s;
  Pipe in, out, err;
  Terminal term;
  if (spec.tty) {
    term = WB_TRY(OpenTerminal(spec));
  } else {
    in = WB_TRY(MakePipe());
    out = WB_TRY(MakePipe());
    err = WB_TRY(MakePipe());
  }
  Pipe status = WB_TRY(MakePipe());

  // Everything the child needs is prepared here; after fork it makes only
  // syscalls (the agent is single-threaded, so fork itself is safe).
  std::vector<char*> argv, envp;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& kv : spec.env) envp.push_back(const_cast<char*>(kv.c_str()));
  envp.push_back(nullptr);
  const char* path = prog.c_str();
  const char* dir = cwd.c_str();
  const Credentials& cr = spec.cred;
  // In memory, not registers (which vfork's child may clobber): the
  // terminal (or -1), then the child's stdin, stdout and stderr.
  int fds[4] = {-1, in.read.get(), out.write.get(), err.write.get()};
  if (spec.tty) fds[0] = fds[1] = fds[2] = fds[3] = term.slave.get();
  int status_w = status.write.get();
  rlimit cur{};
  ::getrlimit(RLIMIT_NOFILE, &cur);
  // The agent's fds are all below its limit (it never lowers it).
  const int max_fd = static_cast<int>(std::min<rlim_t>(cur.rlim_cur, 1 << 20));
  rlimit nofile{std::min<rlim_t>(spec.nofile, cur.rlim_max),
                std::min<rlim_t>(spec.nofile, cur.rlim_max)};
  static const std::vector<sock_filter> kNoFilter;
  const auto& prog_filter = spec.seccomp ? *spec.seccomp : kNoFilter;
  sock_fprog filter{static_cast<unsigned short>(prog_filter.size()),
                    const_cast<sock_filter*>(prog_filter.data())};

  // vfork: the child shares our memory until it execs (no page-table copy),
  // which is safe because it only makes syscalls on data prepared above.
  pid_t pid = ::vfork();
  if (pid == 0) {
    auto die = [&](int step) {
      int msg[2] = {step, errno};
      ssize_t ignored = ::write(status_w, msg, sizeof msg);
      (void)ignored;
      ::_exit(127);
    };
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    // Own session and process group: a timeout or hang-up kills the whole group.
    if (::setsid() < 0) die(kCStepSetsid);
    // The terminal becomes the new session's controlling terminal: only a
    // session leader without one may take it, so after setsid, and before
    // the credentials change (TIOCSCTTY on a terminal that is nobody's
    // needs no privilege, but the order keeps it independent of the user).
    if (fds[0] >= 0 && ::ioctl(fds[0], TIOCSCTTY, 0) != 0) die(kCStepTty);
    if (::dup2(fds[1], 0) < 0 || ::dup2(fds[2], 1) < 0 || ::dup2(fds[3], 2) < 0) die(kCStepFds);
    // A command starts with its stdio only: close-on-exec is the rule, but an
    // fd the agent inherited or one opened without it must not reach a
    // command either. The status pipe stays open (it is close-on-exec: EOF
    // tells the agent that execve succeeded).
    if (CloseFdsFrom3Except(status_w, max_fd) != 0) die(kCStepCloseFds);
    // The agent is shielded from the OOM killer by the host; its commands are
    // not (best effort: a sandbox without /proc keeps the agent's value).
    int oom = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
      ssize_t ignored = ::write(oom, "0", 1);
      (void)ignored;
      ::close(oom);
    }
    if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) die(kCStepRlimit);
    if (::setgroups(cr.groups.size(), cr.groups.data()) != 0) die(kCStepGroups);
    if (::setresgid(cr.gid, cr.gid, cr.gid) != 0) die(kCStepGid);
    if (::setresuid(cr.uid, cr.uid, cr.uid) != 0) die(kCStepUid);
    if (::chdir(dir) != 0) die(kCStepChdir);
    // No set-id or file-capability gains from here on; required by seccomp.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(kCStepNnp);
    // The filter goes last: from here the command's own policy applies.
    if (filter.len && ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0)
      die(kCStepSeccomp);
    ::execve(path, argv.data(), envp.data());
    die(kCStepExec);
  }
  if (pid < 0) return Errno("fork", spec.argv[0]);
  s.pid = pid;

  status.write.reset();
  int msg[2];
  ssize_t n;
  do {
    n = ::read(status.read.get(), msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof msg) {
    s.start_error =
        ErrnoValue(msg[1], ChildStepName(msg[0]), msg[0] == kCStepChdir ? cwd : spec.argv[0])
            .ToString();
  }
  if (spec.tty) {
    // Our copy of the slave must go, or the master never reads EIO (end)
    // once the command and its descendants have closed theirs.
    term.slave.reset();
    s.in = UniqueFd(::fcntl(term.master.get(), F_DUPFD_CLOEXEC, 0));
    s.out = std::move(term.master);
  } else {
    s.in = std::move(in.write);
    s.out = std::move(out.read);
    s.err = std::move(err.read);
  }
  for (UniqueFd* fd : {&s.in, &s.out, &s.err}) {
    if (fd->valid()) (void)SetNonBlocking(fd->get());
  }
  return s;
}
#pragma GCC diagnostic pop

}  // namespace wb::agent
