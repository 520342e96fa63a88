#include "agent/server.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include "agent/caps.h"
#include "agent/identity.h"
#include "agent/users.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "proto/agent_proto.h"

namespace wb::agent {
namespace {

using proto::FrameType;

constexpr size_t kReadChunk = 64 * 1024;
// Stop reading a command's output while this much is queued for the host:
// backpressure instead of unbounded buffering.
constexpr size_t kConnHighWater = 1 << 20;
// Stop reading stdin frames while this much is queued for the command.
constexpr size_t kStdinHighWater = 1 << 20;
constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

enum Kind : uint64_t { kListen = 1, kSignal, kConn, kOut, kErr, kIn, kTimer, kGrace };

uint64_t Tag(Kind k, uint64_t id) { return (uint64_t{k} << 56) | id; }

// An fd plus the epoll interest currently registered for it.
struct Watched {
  UniqueFd fd;
  uint32_t events = 0;
  bool added = false;
  // Edge-triggered: for a virtio-serial port, which polls readable (read
  // returns 0) for as long as no host is connected; level-triggered, an idle
  // agent would spin. Each host connect, disconnect and data arrival wakes
  // the port's waitqueue, so no edge that matters is lost.
  bool edge = false;
};

struct Exec {
  uint64_t conn = 0;  // 0 once the connection is gone
  pid_t pid = -1;
  Watched in, out, err, timer;
  std::string stdin_buf;
  bool stdin_close = false;
  uint64_t cap = proto::kDefaultOutputCap;
  uint64_t out_n = 0, err_n = 0;
  bool out_trunc = false, err_trunc = false;
  uint64_t timeout_ms = 0;
  bool timed_out = false;
  std::string start_error;
};

struct Conn {
  Watched sock;
  proto::FrameDecoder dec;
  std::string out;
  size_t out_off = 0;
  bool peer_closed = false;
  bool close_after_flush = false;
  uint64_t exec = 0;
  bool port = false;  // the virtio-serial port (ServerOptions::port_fd): never closed
  size_t pending() const { return out.size() - out_off; }
};

class ServerImpl : public Server {
 public:
  explicit ServerImpl(ServerOptions opts) : opts_(std::move(opts)) {}
  Result<void> Init();
  Result<int> Run() override;

 private:
  void SetInterest(Watched& w, uint64_t tag, uint32_t wanted);
  void Unwatch(Watched& w);
  void UpdateInterest();

  void OnAccept();
  void OnSignal();
  void OnConnReadable(uint64_t id);
  void OnPortReadable(uint64_t id);
  void OnConnWritable(uint64_t id);
  void OnFrame(uint64_t id, Conn& c, proto::Frame f);
  void OnOutput(uint64_t exec_id, bool is_err);
  void OnStdinWritable(uint64_t exec_id);
  void OnTimer(uint64_t exec_id);
  void OnGrace();

  void StartExec(uint64_t conn_id, Conn& c, const proto::ExecRequest& req);
  void ReapAll();
  void DropIdentityCaps() {
    if (!opts_.identity_caps) return;
    // Failing to drop leaves the agent (not its commands: the bounding set
    // lacks them) more privileged than needed; nothing to report it to.
    (void)DropOwnCaps(opts_.identity_caps);
    opts_.identity_caps = 0;
  }
  void FinishExec(uint64_t exec_id, int wait_status);
  // Reads what is readable now; returns false at EOF or error.
  bool DrainOutput(Exec& e, bool is_err, bool until_eagain);
  void Send(uint64_t conn_id, FrameType t, std::string_view payload);
  void CloseConn(uint64_t id);
  static ssize_t WriteConn(const Conn& c, const char* data, size_t len);
  void KillGroup(const Exec& e);
  void BeginTerminate();

  ServerOptions opts_;
  UniqueFd epoll_;
  Watched listen_, signal_, grace_;
  std::map<uint64_t, Conn> conns_;
  std::map<uint64_t, Exec> execs_;
  std::map<pid_t, uint64_t> exec_by_pid_;
  uint64_t next_id_ = 1;
  bool terminating_ = false;
  bool any_exec_ = false;  // a command has started: the identity is fixed from then on
};

Result<void> ServerImpl::Init() {
  epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return Errno("epoll_create1", "");
  // These signals are consumed through the signalfd only.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return Errno("sigprocmask", "");
  // Writes to a command's closed stdin must fail with EPIPE, not kill us.
  ::signal(SIGPIPE, SIG_IGN);
  signal_.fd = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_.fd) return Errno("signalfd", "");
  if (!opts_.pid1) {
    // Outside a pid namespace (tests), become the reaper of our orphans.
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return Errno("prctl", "PR_SET_CHILD_SUBREAPER");
  }
  // The host's socket (or port) came to us without close-on-exec: set it, so
  // no command ever holds it (a command holding it could answer the host's
  // heartbeats). Accepted connections are born close-on-exec.
  for (int fd : {opts_.port_fd, opts_.listen_fd}) {
    if (fd >= 0 && ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return Errno("fcntl(F_SETFD)", "");
  }
  if (opts_.port_fd >= 0) {
    WB_RETURN_IF_ERROR(SetNonBlocking(opts_.port_fd));
    uint64_t id = next_id_++;
    Conn& c = conns_[id];
    c.sock.fd = UniqueFd(opts_.port_fd);
    c.sock.edge = true;
    c.port = true;
  } else {
    WB_RETURN_IF_ERROR(SetNonBlocking(opts_.listen_fd));
    listen_.fd = UniqueFd(opts_.listen_fd);
    SetInterest(listen_, Tag(kListen, 0), EPOLLIN);
  }
  SetInterest(signal_, Tag(kSignal, 0), EPOLLIN);
  // Children exited before the signalfd existed.
  ReapAll();
  return Ok();
}

void ServerImpl::SetInterest(Watched& w, uint64_t tag, uint32_t wanted) {
  if (!w.fd) return;
  if (w.added && w.events == wanted) return;
  epoll_event ev{};
  ev.events = wanted | (w.edge ? uint32_t{EPOLLET} : 0u);
  ev.data.u64 = tag;
  if (!w.added) {
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, w.fd.get(), &ev) == 0) w.added = true;
  } else {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, w.fd.get(), &ev);
  }
  w.events = wanted;
}

void ServerImpl::Unwatch(Watched& w) {
  if (w.fd && w.added) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, w.fd.get(), nullptr);
  w.fd.reset();
  w.added = false;
  w.events = 0;
}

void ServerImpl::UpdateInterest() {
  // Connections that are done, their last frame already written (Send may
  // have written it at once, so no EPOLLOUT event will come to close them).
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn& c = it->second;
    if (c.port) {
      // The port's "connection" goes on: the next exchange follows.
      c.close_after_flush = false;
      ++it;
      continue;
    }
    if (c.close_after_flush && !c.pending() && !c.exec) {
      Unwatch(c.sock);
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [id, c] : conns_) {
    uint32_t ev = 0;
    bool stdin_full = false;
    if (c.exec) {
      auto it = execs_.find(c.exec);
      stdin_full = it != execs_.end() && it->second.stdin_buf.size() > kStdinHighWater;
    }
    if (!c.peer_closed && !stdin_full) ev |= EPOLLIN;
    if (c.pending()) ev |= EPOLLOUT;
    SetInterest(c.sock, Tag(kConn, id), ev);
  }
  for (auto& [id, e] : execs_) {
    bool host_full = false;
    if (e.conn) {
      auto it = conns_.find(e.conn);
      host_full = it != conns_.end() && it->second.pending() > kConnHighWater;
    }
    SetInterest(e.out, Tag(kOut, id), host_full ? 0u : uint32_t{EPOLLIN});
    SetInterest(e.err, Tag(kErr, id), host_full ? 0u : uint32_t{EPOLLIN});
    SetInterest(e.in, Tag(kIn, id), e.stdin_buf.empty() ? 0u : uint32_t{EPOLLOUT});
  }
}

Result<int> ServerImpl::Run() {
  epoll_event events[64];
  for (;;) {
    if (terminating_ && execs_.empty()) {
      // With SIGTERM pending: done once no child is left.
      errno = 0;
      if (::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD) return 0;
    }
    UpdateInterest();
    int n = ::epoll_wait(epoll_.get(), events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("epoll_wait", "");
    }
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      uint64_t id = tag & ((uint64_t{1} << 56) - 1);
      uint32_t ev = events[i].events;
      switch (static_cast<Kind>(tag >> 56)) {
        case kListen:
          OnAccept();
          break;
        case kSignal:
          OnSignal();
          break;
        case kConn:
          if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnConnReadable(id);
          if (ev & EPOLLOUT) OnConnWritable(id);
          break;
        case kOut:
          OnOutput(id, false);
          break;
        case kErr:
          OnOutput(id, true);
          break;
        case kIn:
          OnStdinWritable(id);
          break;
        case kTimer:
          OnTimer(id);
          break;
        case kGrace:
          OnGrace();
          break;
      }
    }
  }
}

void ServerImpl::OnAccept() {
  for (;;) {
    int fd = ::accept4(listen_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;  // EAGAIN, or a transient error: wait for the next event
    uint64_t id = next_id_++;
    conns_[id].sock.fd = UniqueFd(fd);
  }
}

void ServerImpl::OnSignal() {
  signalfd_siginfo si;
  bool child = false;
  while (::read(signal_.fd.get(), &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGCHLD)
      child = true;
    else
      BeginTerminate();
  }
  if (child) ReapAll();
}

void ServerImpl::ReapAll() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    auto it = exec_by_pid_.find(pid);
    if (it == exec_by_pid_.end()) continue;  // an orphan: reaped, nothing else to do
    uint64_t id = it->second;
    exec_by_pid_.erase(it);
    FinishExec(id, status);
  }
}

void ServerImpl::BeginTerminate() {
  if (terminating_) return;
  terminating_ = true;
  Unwatch(listen_);
  if (opts_.pid1) {
    ::kill(-1, SIGTERM);  // every process of the namespace but us
  } else {
    for (auto& [id, e] : execs_) ::kill(-e.pid, SIGTERM);
  }
  grace_.fd = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  itimerspec its{};
  its.it_value.tv_sec = opts_.term_grace_ms / 1000;
  its.it_value.tv_nsec = (opts_.term_grace_ms % 1000) * 1000000L;
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  ::timerfd_settime(grace_.fd.get(), 0, &its, nullptr);
  SetInterest(grace_, Tag(kGrace, 0), EPOLLIN);
}

void ServerImpl::OnGrace() {
  Unwatch(grace_);
  if (opts_.pid1) {
    ::kill(-1, SIGKILL);
  } else {
    for (auto& [id, e] : execs_) ::kill(-e.pid, SIGKILL);
  }
}

void ServerImpl::OnPortReadable(uint64_t id) {
  // Edge-triggered: read until the port has nothing more (EAGAIN, or 0 while
  // no host is connected, which is no end: a host connects again later), or
  // until stdin backpressure stops reading (UpdateInterest re-arms the port,
  // and re-arming reports data that is already there).
  char buf[kReadChunk];
  for (;;) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    if (c.exec) {
      auto e = execs_.find(c.exec);
      if (e != execs_.end() && e->second.stdin_buf.size() > kStdinHighWater) return;
    }
    ssize_t n = ::read(c.sock.fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    if (auto r = c.dec.Feed(std::string_view(buf, static_cast<size_t>(n))); !r.ok()) {
      // The stream cannot be resynchronised: say so, and start afresh (the
      // host's health check fails and it replaces the sandbox).
      Send(id, FrameType::kFailure, r.error().ToString());
      c.dec = proto::FrameDecoder();
      return;
    }
    while (auto f = c.dec.Next()) {
      OnFrame(id, c, std::move(*f));
      if (!conns_.count(id)) return;
    }
  }
}

void ServerImpl::OnConnReadable(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.port) return OnPortReadable(id);
  char buf[kReadChunk];
  ssize_t n = ::read(c.sock.fd.get(), buf, sizeof buf);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    n = 0;  // ECONNRESET and friends: treat as a hang-up
  }
  if (n == 0) {
    c.peer_closed = true;
    if (c.exec) {
      // The host went away mid-run: the command must not outlive it.
      auto e = execs_.find(c.exec);
      if (e != execs_.end()) {
        e->second.conn = 0;
        KillGroup(e->second);
      }
    }
    CloseConn(id);
    return;
  }
  if (auto r = c.dec.Feed(std::string_view(buf, static_cast<size_t>(n))); !r.ok()) {
    Send(id, FrameType::kFailure, r.error().ToString());
    c.close_after_flush = true;
    c.peer_closed = true;  // stop reading garbage
    return;
  }
  while (auto f = c.dec.Next()) {
    OnFrame(id, c, std::move(*f));
    if (!conns_.count(id)) return;
  }
}

void ServerImpl::OnFrame(uint64_t id, Conn& c, proto::Frame f) {
  switch (f.type) {
    case FrameType::kHeartbeat:
      Send(id, FrameType::kHeartbeatReply,
           "{\"pid\":" + std::to_string(::getpid()) +
               ",\"ready\":true,\"setup_us\":" + std::to_string(opts_.setup_us) +
               (opts_.heartbeat_extra.empty() ? "" : "," + opts_.heartbeat_extra) + "}");
      return;
    case FrameType::kIdentity: {
      // Only in a VM (the guest's clock and CRNG are the VM's own; in a
      // namespace sandbox they are the host's), and only before the first
      // command, so no command ever ran with the template's identity.
      Result<void> r = Ok();
      if (opts_.port_fd < 0) {
        r = Fail("identity", "", "only a VM guest agent takes an identity");
      } else if (any_exec_) {
        r = Fail("identity", "", "a command has already run");
      } else {
        auto ident = ParseIdentity(f.payload);
        if (!ident.ok()) {
          r = ident.error();
        } else {
          r = ApplyIdentity(*ident);
          if (r.ok()) opts_.hostname = ident->hostname;
          DropIdentityCaps();
        }
      }
      if (r.ok()) {
        Send(id, FrameType::kIdentityReply, "{\"ok\":true}");
      } else {
        Send(id, FrameType::kFailure, r.error().ToString());
      }
      return;
    }
    case FrameType::kExec: {
      any_exec_ = true;
      DropIdentityCaps();
      if (c.exec || terminating_) {
        Send(id, FrameType::kFailure,
             terminating_ ? "agent is shutting down" : "one exec per connection");
        c.close_after_flush = true;
        return;
      }
      auto req = proto::ParseExecRequest(f.payload);
      if (!req.ok()) {
        Send(id, FrameType::kFailure, req.error().ToString());
        c.close_after_flush = true;
        return;
      }
      StartExec(id, c, *req);
      return;
    }
    case FrameType::kStdin:
    case FrameType::kStdinClose: {
      auto e = execs_.find(c.exec);
      if (e == execs_.end()) return;  // the command already finished
      if (f.type == FrameType::kStdin) {
        if (e->second.in.fd && !e->second.stdin_close) e->second.stdin_buf += f.payload;
      } else {
        e->second.stdin_close = true;
        if (e->second.stdin_buf.empty()) Unwatch(e->second.in);
      }
      return;
    }
    default:
      Send(id, FrameType::kFailure,
           std::string("unexpected frame type ") + static_cast<char>(f.type));
      c.close_after_flush = true;
      return;
  }
}

void ServerImpl::OnConnWritable(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  while (c.pending()) {
    ssize_t n = WriteConn(c, c.out.data() + c.out_off, c.pending());
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      if (c.port) {
        // The port went away (ENODEV: unplugged): nothing can be delivered.
        c.out.clear();
        c.out_off = 0;
        return;
      }
      // The host is gone; the read side will see it too.
      c.out.clear();
      c.out_off = 0;
      if (c.exec) {
        auto e = execs_.find(c.exec);
        if (e != execs_.end()) {
          e->second.conn = 0;
          KillGroup(e->second);
        }
      }
      CloseConn(id);
      return;
    }
    c.out_off += static_cast<size_t>(n);
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1 << 20)) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
  if (!c.pending() && c.close_after_flush && !c.exec && !c.port) CloseConn(id);
}

void ServerImpl::Send(uint64_t conn_id, FrameType t, std::string_view payload) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  const bool idle = c.pending() == 0;
  proto::AppendFrame(c.out, t, payload);
  // Write at once when nothing is queued (the usual case): a heartbeat's
  // answer must not wait behind the fork of the command it precedes, and
  // every frame saves a trip through epoll. Errors and short writes are left
  // to the EPOLLOUT path, which owns closing the connection.
  if (!idle) return;
  ssize_t n = WriteConn(c, c.out.data() + c.out_off, c.pending());
  if (n > 0) c.out_off += static_cast<size_t>(n);
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  }
}

ssize_t ServerImpl::WriteConn(const Conn& c, const char* data, size_t len) {
  // A port is a character device (send() would fail with ENOTSOCK); SIGPIPE
  // is ignored, and every connection fd is non-blocking.
  if (c.port) return ::write(c.sock.fd.get(), data, len);
  return ::send(c.sock.fd.get(), data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

void ServerImpl::CloseConn(uint64_t id) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Unwatch(it->second.sock);
  conns_.erase(it);
}

void ServerImpl::KillGroup(const Exec& e) {
  // The command leads its own session and process group.
  if (e.pid > 0) ::kill(-e.pid, SIGKILL);
}

// ---------------------------------------------------------------------------
// Starting a command.

std::optional<std::string> LookupEnv(const std::vector<std::string>& env, std::string_view key) {
  for (auto it = env.rbegin(); it != env.rend(); ++it) {
    if (it->size() > key.size() && it->compare(0, key.size(), key) == 0 &&
        (*it)[key.size()] == '=') {
      return it->substr(key.size() + 1);
    }
  }
  return std::nullopt;
}

// execvp's search, done before fork so the child only calls execve and the
// "not found" case is reported without starting anything.
Result<std::string> ResolveProgram(const std::string& name, const std::vector<std::string>& env) {
  if (name.empty()) return Fail("exec", name, "empty program name");
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
  if (last_err == EACCES) return Fail("exec", name, "found in $PATH but not executable");
  return Fail("exec", name, "executable file not found in $PATH");
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

void ServerImpl::StartExec(uint64_t conn_id, Conn& c, const proto::ExecRequest& req) {
  uint64_t id = next_id_++;
  Exec& e = execs_[id];
  c.exec = id;
  e.conn = conn_id;
  e.cap = req.output_cap;
  e.timeout_ms = req.timeout_ms;

  auto fail_start = [&](const std::string& msg) {
    // Not started: report 127 at once, as a shell would.
    Send(conn_id, FrameType::kStderr, "warmbox: " + msg + "\n");
    proto::ExecExit x;
    x.exit_code = 127;
    x.error = msg;
    Send(conn_id, FrameType::kExit, proto::ToJson(x));
    execs_.erase(id);
    c.exec = 0;
    c.close_after_flush = true;
  };

  // An image without these files still has root.
  auto passwd = ReadFile(opts_.passwd_path);
  auto group = ReadFile(opts_.group_path);
  auto cred =
      ResolveUser(req.user, passwd.ok() ? passwd.value() : "", group.ok() ? group.value() : "");
  if (!cred.ok()) return fail_start(cred.error().ToString());

  std::vector<std::string> env = {std::string("PATH=") + kDefaultPath, "HOME=" + cred->home};
  if (!opts_.hostname.empty()) env.push_back("HOSTNAME=" + opts_.hostname);
  for (const auto& kv : req.env) {
    std::string key = kv.substr(0, kv.find('='));
    std::erase_if(
        env, [&](const std::string& s) { return s.compare(0, key.size() + 1, key + "=") == 0; });
    env.push_back(kv);
  }
  auto prog = ResolveProgram(req.argv[0], env);
  if (!prog.ok()) return fail_start(prog.error().ToString());
  std::string cwd = req.cwd.empty() ? "/" : req.cwd;

  auto in = MakePipe(), out = MakePipe(), err = MakePipe(), status = MakePipe();
  for (auto* p : {&in, &out, &err, &status}) {
    if (!p->ok()) return fail_start(p->error().ToString());
  }

  // Everything the child needs is prepared here; after fork it makes only
  // syscalls (the agent is single-threaded, so fork itself is safe).
  std::vector<char*> argv, envp;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& kv : env) envp.push_back(const_cast<char*>(kv.c_str()));
  envp.push_back(nullptr);
  const char* path = prog->c_str();
  const char* dir = cwd.c_str();
  const Credentials& cr = *cred;
  int child_in = in->read.get(), child_out = out->write.get(), child_err = err->write.get();
  int status_w = status->write.get();
  rlimit cur{};
  ::getrlimit(RLIMIT_NOFILE, &cur);
  // The agent's fds are all below its limit (it never lowers it).
  const int max_fd = static_cast<int>(std::min<rlim_t>(cur.rlim_cur, 1 << 20));
  const uint64_t want = req.nofile ? req.nofile : opts_.nofile;
  rlimit nofile{std::min<rlim_t>(want, cur.rlim_max), std::min<rlim_t>(want, cur.rlim_max)};
  sock_fprog filter{static_cast<unsigned short>(opts_.seccomp.size()),
                    const_cast<sock_filter*>(opts_.seccomp.data())};

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
    if (::dup2(child_in, 0) < 0 || ::dup2(child_out, 1) < 0 || ::dup2(child_err, 2) < 0)
      die(kCStepFds);
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
  if (pid < 0) return fail_start(Errno("fork", req.argv[0]).ToString());
  // Registered before the loop can call waitpid again: never stolen.
  e.pid = pid;
  exec_by_pid_[pid] = id;

  status->write.reset();
  int msg[2];
  ssize_t n;
  do {
    n = ::read(status->read.get(), msg, sizeof msg);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof msg) {
    e.start_error =
        ErrnoValue(msg[1], ChildStepName(msg[0]), msg[0] == kCStepChdir ? cwd : req.argv[0])
            .ToString();
  }

  e.in.fd = std::move(in->write);
  e.out.fd = std::move(out->read);
  e.err.fd = std::move(err->read);
  for (Watched* w : {&e.in, &e.out, &e.err}) (void)SetNonBlocking(w->fd.get());
  if (!req.stdin) Unwatch(e.in);  // the command sees EOF at once
  if (req.timeout_ms) {
    e.timer.fd = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(req.timeout_ms / 1000);
    its.it_value.tv_nsec = static_cast<long>(req.timeout_ms % 1000) * 1000000L;
    ::timerfd_settime(e.timer.fd.get(), 0, &its, nullptr);
    SetInterest(e.timer, Tag(kTimer, id), EPOLLIN);
  }
}

bool ServerImpl::DrainOutput(Exec& e, bool is_err, bool until_eagain) {
  Watched& w = is_err ? e.err : e.out;
  if (!w.fd) return false;
  char buf[kReadChunk];
  do {
    ssize_t n = ::read(w.fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      Unwatch(w);
      return false;
    }
    if (n == 0) {
      Unwatch(w);
      return false;
    }
    uint64_t& sent = is_err ? e.err_n : e.out_n;
    bool& trunc = is_err ? e.err_trunc : e.out_trunc;
    uint64_t room = sent < e.cap ? e.cap - sent : 0;
    uint64_t take = std::min<uint64_t>(room, static_cast<uint64_t>(n));
    if (take < static_cast<uint64_t>(n)) trunc = true;  // keep draining, drop the rest
    if (take && e.conn) {
      Send(e.conn, is_err ? FrameType::kStderr : FrameType::kStdout,
           std::string_view(buf, static_cast<size_t>(take)));
    }
    sent += take;
  } while (until_eagain);
  return true;
}

void ServerImpl::OnOutput(uint64_t exec_id, bool is_err) {
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) return;
  DrainOutput(it->second, is_err, false);
}

void ServerImpl::OnStdinWritable(uint64_t exec_id) {
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) return;
  Exec& e = it->second;
  while (!e.stdin_buf.empty() && e.in.fd) {
    ssize_t n = ::write(e.in.fd.get(), e.stdin_buf.data(), e.stdin_buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      // EPIPE: the command closed its stdin; what is left is dropped.
      e.stdin_buf.clear();
      Unwatch(e.in);
      return;
    }
    e.stdin_buf.erase(0, static_cast<size_t>(n));
  }
  if (e.stdin_buf.empty() && e.stdin_close) Unwatch(e.in);
}

void ServerImpl::OnTimer(uint64_t exec_id) {
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) return;
  Unwatch(it->second.timer);
  it->second.timed_out = true;
  KillGroup(it->second);
}

void ServerImpl::FinishExec(uint64_t exec_id, int wait_status) {
  auto it = execs_.find(exec_id);
  if (it == execs_.end()) return;
  Exec& e = it->second;
  // The command is done; what is left of its process group goes with it.
  // Output written before it exited is still in the pipes: drain it.
  KillGroup(e);
  DrainOutput(e, false, true);
  DrainOutput(e, true, true);

  proto::ExecExit x;
  if (WIFEXITED(wait_status)) {
    x.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    x.signal = WTERMSIG(wait_status);
    x.exit_code = 128 + x.signal;
  }
  x.stdout_truncated = e.out_trunc;
  x.stderr_truncated = e.err_trunc;
  if (!e.start_error.empty()) {
    x.exit_code = 127;
    x.signal = 0;
    x.error = e.start_error;
    Send(e.conn, FrameType::kStderr, "warmbox: " + e.start_error + "\n");
  } else if (e.timed_out) {
    x.timed_out = true;
    x.exit_code = 137;
    std::string secs = std::to_string(e.timeout_ms / 1000);
    if (e.timeout_ms % 1000) {
      char frac[8];
      std::snprintf(frac, sizeof frac, ".%03u", static_cast<unsigned>(e.timeout_ms % 1000));
      secs += frac;
    }
    x.error = "timed out after " + secs + "s; the command's process group was killed";
    Send(e.conn, FrameType::kStderr, "warmbox: command " + x.error + "\n");
  }
  uint64_t conn_id = e.conn;
  Unwatch(e.in);
  Unwatch(e.out);
  Unwatch(e.err);
  Unwatch(e.timer);
  execs_.erase(it);
  auto c = conns_.find(conn_id);
  if (c != conns_.end()) {
    Send(conn_id, FrameType::kExit, proto::ToJson(x));
    c->second.exec = 0;
    c->second.close_after_flush = true;
  }
}

}  // namespace

Result<std::unique_ptr<Server>> CreateServer(const ServerOptions& opts) {
  auto s = std::make_unique<ServerImpl>(opts);
  WB_RETURN_IF_ERROR(s->Init());
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace wb::agent
