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
#include "agent/server_impl.h"
#include "agent/spawn.h"
#include "agent/users.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "proto/agent_proto.h"
#include "proto/mux.h"

namespace wb::agent {

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
    port_conn_ = id;
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
  if (!channels_.empty()) PumpChannels();
  std::vector<uint64_t> done;
  for (auto& [id, c] : conns_) {
    if (c.port) {
      // The port's "connection" goes on: the next exchange follows.
      c.close_after_flush = false;
      continue;
    }
    if (c.close_after_flush && !c.pending() && !c.exec) done.push_back(id);
  }
  for (uint64_t id : done) CloseConn(id);
  for (auto& [id, c] : conns_) {
    uint32_t ev = 0;
    bool stdin_full = InputFull(c);
    if (c.exec) {
      auto it = execs_.find(c.exec);
      stdin_full = it != execs_.end() && it->second.stdin_buf.size() > kStdinHighWater;
    }
    if (!c.peer_closed && !stdin_full) ev |= EPOLLIN;
    if (c.pending()) ev |= EPOLLOUT;
    SetInterest(c.sock, Tag(kConn, id), ev);
    if (c.tunnel) TunnelInterest(id, c);
    if (c.file && c.file->kind == FileXfer::kWatch) {
      // Events wait in the kernel's queue while the host is slow.
      SetInterest(c.file->inotify, Tag(kInotify, id),
                  c.pending() > kConnHighWater ? 0u : uint32_t{EPOLLIN});
    }
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
  for (auto& [pid, k] : kept_) {
    // Listeners attached: the slowest may lag at most half a ring, so the
    // ring never overwrites what one of them has not had (docs/protocol.md,
    // "Backpressure"). None: the ring overwrites its oldest bytes.
    const bool blocked = !k.listeners.empty() && MaxLag(k) > k.ring.capacity() / 2;
    const uint64_t tag = static_cast<uint64_t>(pid);
    SetInterest(k.out, Tag(kKeptOut, tag), blocked ? 0u : uint32_t{EPOLLIN});
    SetInterest(k.err, Tag(kKeptErr, tag), blocked ? 0u : uint32_t{EPOLLIN});
    SetInterest(k.in, Tag(kKeptIn, tag), k.stdin_buf.empty() ? 0u : uint32_t{EPOLLOUT});
  }
}

Result<int> ServerImpl::Run() {
  epoll_event events[64];
  for (;;) {
    bool kept_running = false;
    for (const auto& [pid, k] : kept_) kept_running = kept_running || !k.reaped;
    if (terminating_ && execs_.empty() && !kept_running) {
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
        case kKeptOut:
          OnKeptOutput(static_cast<pid_t>(id), false);
          break;
        case kKeptErr:
          OnKeptOutput(static_cast<pid_t>(id), true);
          break;
        case kKeptIn:
          OnKeptStdin(static_cast<pid_t>(id));
          break;
        case kKeptTimer:
          OnKeptTimer(static_cast<pid_t>(id));
          break;
        case kInotify:
          OnInotify(id);
          break;
        case kTunnel:
          OnTunnel(id, ev);
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
    if (auto k = kept_.find(pid); k != kept_.end() && !k->second.reaped) {
      OnKeptReaped(k->second, status);
      continue;
    }
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
    for (auto& [pid, k] : kept_) {
      if (!k.reaped) ::kill(-pid, SIGTERM);
    }
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
    for (auto& [pid, k] : kept_) {
      if (!k.reaped) ::kill(-pid, SIGKILL);
    }
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
    if (n == 0 && port_dec_.strict()) {
      // 0: no host is connected. Once the port carries channels, its one
      // host is a bridge that stays for the VM's life, so this is that host
      // gone (its daemon killed): its channels are hung up now, as a
      // socket's EOF would. (Only that: the highest channel stays, so the
      // rest of a Y it left half-written is dropped as a closed channel's
      // late bytes once the next host's padding completes it; and what is
      // queued or buffered may already be the next host's, whose bytes can
      // reach the guest before it hears that the old one left: QEMU reports
      // both on the control queue, data comes on the port's own. Nothing is
      // written meanwhile: the port does not take writes without a host.)
      HangUpAllChannels();
      return;
    }
    if (n <= 0) return;
    port_dec_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    if (port_dec_.TakeSkipped() > 0) {
      // Out of step: said once per run of skipped bytes. (A pool's host
      // fails its next health check and replaces the sandbox; a bridge
      // resynchronises with its Q.)
      if (!port_out_of_step_) Send(id, FrameType::kFailure, "the port's stream is out of step");
      port_out_of_step_ = true;
    }
    while (auto f = port_dec_.Next()) {
      port_out_of_step_ = false;
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
  if (c.port && OnMuxFrame(id, f)) return;
  if (OnLiveFrame(id, c, f)) return;
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
      if (c.busy() || terminating_) {
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
      if (req->keep) {
        if (c.port) {
          Send(id, FrameType::kFailure, "live operations over the VM port travel in channels (Y)");
          c.close_after_flush = true;
          return;
        }
        StartKept(id, c, *req);
      } else {
        StartExec(id, c, *req);
      }
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
  if (!c.pending() && c.close_after_flush && !c.exec && !c.port) {
    CloseConn(id);
    return;
  }
  OnConnDrained(id, c);
}

void ServerImpl::Send(uint64_t conn_id, FrameType t, std::string_view payload) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  const bool idle = c.pending() == 0;
  proto::AppendFrame(c.out, t, payload);
  if (c.channel) return FlushChannel(conn_id);
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
  Conn& c = it->second;
  ReleaseConn(id, c);
  Unwatch(c.sock);
  if (c.channel) {
    // The agent's close of a channel is a Z (after all its output: callers
    // close once nothing is pending); the host's close needs none.
    auto port = conns_.find(port_conn_);
    if (!c.host_closed && port != conns_.end()) {
      const bool was_idle = port->second.pending() == 0;
      proto::AppendChannelClose(port->second.out, c.channel);
      WritePortNow(was_idle);
    }
    channels_.erase(c.channel);
  }
  conns_.erase(it);
}

void ServerImpl::ReleaseConn(uint64_t id, Conn& c) {
  // A kept process is never killed by a hang-up; it loses a listener.
  if (c.attached) Detach(id, c);
  if (c.file) {
    AbortUpload(*c.file);
    Unwatch(c.file->inotify);
    c.file.reset();
  }
  // The service sees the connection end (EOF, or a reset if it had unread
  // bytes) as it would any client's.
  if (c.tunnel) {
    Unwatch(c.tunnel->sock);
    c.tunnel.reset();
  }
}

void ServerImpl::OnConnDrained(uint64_t id, Conn& c) {
  if (c.attached) {
    auto k = kept_.find(c.attached);
    if (k != kept_.end()) PumpListener(k->second, id);
  } else if (c.file && c.file->kind == FileXfer::kRead) {
    PumpFileRead(id, c);
  }
}

void ServerImpl::SendOpError(uint64_t conn_id, const Error& err) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  // Undone before it is reported (an upload's partial file): the host may
  // act on the answer at once.
  ReleaseConn(conn_id, it->second);
  Send(conn_id, FrameType::kOpError, proto::ToJson(proto::ToOpError(err)));
  // Nothing more is read from it: what the host still sends is moot. (The
  // port's own stream is read on: the next exchange follows.)
  it->second.close_after_flush = true;
  if (!it->second.port) it->second.peer_closed = true;
}

void ServerImpl::DropIdentityCaps() {
  if (!opts_.identity_caps) return;
  // Failing to drop leaves the agent (not its commands: the bounding set
  // lacks them) more privileged than needed; nothing to report it to.
  (void)DropOwnCaps(opts_.identity_caps);
  opts_.identity_caps = 0;
}

Result<Credentials> ServerImpl::Resolve(const std::string& user) const {
  // An image without these files still has root.
  auto passwd = ReadFile(opts_.passwd_path);
  auto group = ReadFile(opts_.group_path);
  auto cred = ResolveUser(user, passwd.ok() ? passwd.value() : "", group.ok() ? group.value() : "");
  if (!cred.ok()) return cred.error().WithCode(ErrorCode::kInvalidArgument);
  return cred;
}

std::vector<std::string> ServerImpl::CommandEnv(const Credentials& cred,
                                                const std::vector<std::string>& req_env) const {
  std::vector<std::string> env = {std::string("PATH=") + kDefaultPath, "HOME=" + cred.home};
  if (!opts_.hostname.empty()) env.push_back("HOSTNAME=" + opts_.hostname);
  return MergeEnv(std::move(env), {&claim_env_, &req_env});
}

void ServerImpl::KillGroup(const Exec& e) {
  // The command leads its own session and process group.
  if (e.pid > 0) ::kill(-e.pid, SIGKILL);
}

proto::ExecExit ExitOfStatus(int wait_status) {
  proto::ExecExit x;
  if (WIFEXITED(wait_status)) {
    x.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    x.signal = WTERMSIG(wait_status);
    x.exit_code = 128 + x.signal;
  }
  return x;
}

std::string TimeoutMessage(uint64_t timeout_ms) {
  std::string secs = std::to_string(timeout_ms / 1000);
  if (timeout_ms % 1000) {
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03u", static_cast<unsigned>(timeout_ms % 1000));
    secs += frac;
  }
  return "timed out after " + secs + "s; the command's process group was killed";
}

Result<std::unique_ptr<Server>> CreateServer(const ServerOptions& opts) {
  auto s = std::make_unique<ServerImpl>(opts);
  WB_RETURN_IF_ERROR(s->Init());
  return std::unique_ptr<Server>(std::move(s));
}

}  // namespace wb::agent
