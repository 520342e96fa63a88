// Kept processes of live sandboxes (docs/protocol.md, "Kept processes"):
// start (E keep:true), attach (A), stdin from any attached connection,
// resize (W), signal (K), list (P), claim (M), retention of exited ones.
//
// Output flows process -> ring -> listeners: every byte read goes into the
// process's ring first, and each attached connection is fed from the ring
// at its own offset. A slow connection therefore never holds memory of its
// own beyond kListenerHighWater; the ring is the buffer, and backpressure
// (UpdateInterest) stops reading the process before the ring would
// overwrite a byte an attached listener has not had.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "agent/server_impl.h"
#include "agent/spawn.h"

namespace wb::agent {
namespace {

int64_t WallMs() {
  timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool IsLiveOnly(FrameType t) {
  switch (t) {
    case FrameType::kAttach:
    case FrameType::kResize:
    case FrameType::kSignal:
    case FrameType::kList:
    case FrameType::kClaim:
    case FrameType::kFile:
    case FrameType::kTunnel:
      return true;
    default:
      return false;
  }
}

}  // namespace

bool ServerImpl::OnLiveFrame(uint64_t id, Conn& c, proto::Frame& f) {
  // Stdin of an attached process, or the bytes of a file being written.
  if (f.type == FrameType::kStdin || f.type == FrameType::kStdinClose) {
    if (c.tunnel) {
      TunnelFrame(c, f);
      return true;
    }
    if (c.attached) {
      KeptStdinFrame(c, f);
      return true;
    }
    if (c.file) {
      FileWriteFrame(id, c, f);
      return true;
    }
    return false;  // a pool run's (or none: ignored there)
  }
  if (f.type == FrameType::kResize && c.attached) {
    auto req = proto::ParseResizeRequest(f.payload);
    if (!req.ok()) {
      SendOpError(id, req.error());
      return true;
    }
    auto k = kept_.find(c.attached);
    // Only a terminal has a size; a resize of anything else (or of a process
    // that has exited) changes nothing and must not end the attachment.
    if (k != kept_.end() && k->second.info.tty && !k->second.reaped && k->second.out.fd) {
      winsize ws{};
      ws.ws_row = static_cast<unsigned short>(req->rows);
      ws.ws_col = static_cast<unsigned short>(req->cols);
      // On the master: the kernel sends SIGWINCH to the terminal's
      // foreground process group.
      ::ioctl(k->second.out.fd.get(), TIOCSWINSZ, &ws);
    }
    return true;
  }
  if (!IsLiveOnly(f.type)) return false;
  // Each of these starts an operation: one per connection, none while
  // shutting down. On the VM port's own stream only the claim (M, made on
  // the pool's connection before any channel exists); the others travel in
  // channels (port_mux.cc), which are connections like a socket's.
  const bool port_refused = c.port && f.type != FrameType::kClaim;
  if (port_refused || c.busy() || terminating_) {
    Send(id, FrameType::kFailure,
         port_refused   ? "live operations over the VM port travel in channels (Y)"
         : terminating_ ? "agent is shutting down"
                        : std::string("unexpected frame type ") + static_cast<char>(f.type));
    // Closed once written (a pool run's connection once its command ends;
    // it is still read, so its hang-up still cancels the command).
    c.close_after_flush = true;
    return true;
  }
  switch (f.type) {
    case FrameType::kAttach: {
      auto req = proto::ParseAttachRequest(f.payload);
      if (!req.ok()) return SendOpError(id, req.error()), true;
      Attach(id, c, *req);
      return true;
    }
    case FrameType::kResize:
      SendOpError(id, Fail(ErrorCode::kInvalidArgument, "resize", "",
                           "no process on this connection (send E or A first)"));
      return true;
    case FrameType::kSignal: {
      auto req = proto::ParseSignalRequest(f.payload);
      if (!req.ok()) return SendOpError(id, req.error()), true;
      auto k = kept_.find(static_cast<pid_t>(req->pid));
      if (k == kept_.end()) {
        return SendOpError(id, Fail(ErrorCode::kNotFound, "signal", std::to_string(req->pid),
                                    "no such kept process")),
               true;
      }
      if (k->second.reaped) {
        return SendOpError(id, Fail(ErrorCode::kNotFound, "signal", std::to_string(req->pid),
                                    "the process has exited")),
               true;
      }
      // The process group: the process leads its own (setsid in the child),
      // so its children get the signal too, as a terminal's ^C would.
      if (::kill(-k->first, req->signal) != 0) {
        return SendOpError(id, Errno("kill", std::to_string(-k->first))), true;
      }
      Send(id, FrameType::kSignalReply, "{}");
      c.close_after_flush = true;
      return true;
    }
    case FrameType::kList: {
      std::vector<const Kept*> order;
      for (const auto& [pid, k] : kept_) order.push_back(&k);
      std::sort(order.begin(), order.end(),
                [](const Kept* a, const Kept* b) { return a->seq < b->seq; });
      std::vector<proto::ProcessInfo> list;
      for (const Kept* k : order) {
        proto::ProcessInfo p = k->info;
        p.running = !k->exit.has_value();
        p.exit = k->exit;
        list.push_back(std::move(p));
      }
      Send(id, FrameType::kListReply, proto::ToJson(list));
      c.close_after_flush = true;
      return true;
    }
    case FrameType::kClaim: {
      auto req = proto::ParseClaimRequest(f.payload);
      if (!req.ok()) return SendOpError(id, req.error()), true;
      claim_env_ = std::move(req->env);
      // The host spawned us with a parent-death signal, so a sandbox dies
      // with the daemon that made it; a live sandbox must outlive it.
      if (req->persist && ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) != 0) {
        return SendOpError(id, Errno("prctl", "PR_SET_PDEATHSIG")), true;
      }
      Send(id, FrameType::kClaimReply, "{}");
      c.close_after_flush = true;
      return true;
    }
    case FrameType::kFile: {
      auto req = proto::ParseFileRequest(f.payload);
      if (!req.ok()) return SendOpError(id, req.error()), true;
      OnFileRequest(id, c, *req);
      return true;
    }
    case FrameType::kTunnel: {
      auto req = proto::ParseTunnelRequest(f.payload);
      if (!req.ok()) return SendOpError(id, req.error()), true;
      StartTunnel(id, c, *req);
      return true;
    }
    default:
      return false;
  }
}

void ServerImpl::StartKept(uint64_t conn_id, Conn& c, const proto::ExecRequest& req) {
  // Nothing is kept when the process cannot start: the answer is e, not S.
  auto cred = Resolve(req.user);
  if (!cred.ok()) return SendOpError(conn_id, cred.error());
  SpawnSpec spec;
  spec.argv = req.argv;
  spec.env = CommandEnv(*cred, req.env);
  if (req.tty && !LookupEnv(spec.env, "TERM")) spec.env.push_back("TERM=xterm");
  spec.cwd = req.cwd;
  spec.cred = std::move(*cred);
  spec.nofile = req.nofile ? req.nofile : opts_.nofile;
  spec.seccomp = &opts_.seccomp;
  spec.tty = req.tty;
  spec.rows = static_cast<uint16_t>(req.rows ? req.rows : 24);
  spec.cols = static_cast<uint16_t>(req.cols ? req.cols : 80);
  auto started = SpawnCommand(spec);
  if (!started.ok()) return SendOpError(conn_id, started.error());
  pid_t pid = started->pid;
  if (!started->start_error.empty()) {
    // The child failed before execve and exits 127; ReapAll reaps it as an
    // orphan (it is in no table).
    ::kill(pid, SIGKILL);
    Error err = Fail(ErrorCode::kFailedPrecondition, "start", req.argv[0], started->start_error);
    if (started->start_error.find("No such file") != std::string::npos) {
      err = err.WithCode(ErrorCode::kNotFound);
    } else if (started->start_error.find("Permission denied") != std::string::npos) {
      err = err.WithCode(ErrorCode::kPermissionDenied);
    }
    return SendOpError(conn_id, err);
  }
  // A pid of a retained exited process may come back: the new one wins.
  if (auto old = kept_.find(pid); old != kept_.end()) {
    for (auto& [lid, off] : old->second.listeners) {
      auto lc = conns_.find(lid);
      if (lc != conns_.end()) {
        lc->second.attached = 0;
        lc->second.close_after_flush = true;
      }
    }
    kept_.erase(old);
    std::erase(exited_, pid);
  }
  Kept& k = kept_.try_emplace(pid, req.ring_bytes ? req.ring_bytes : proto::kDefaultRingBytes)
                .first->second;
  k.seq = next_id_++;
  k.pid = pid;
  k.info.pid = pid;
  k.info.argv = req.argv;
  k.info.cwd = req.cwd.empty() ? "/" : req.cwd;
  k.info.user = req.user;
  k.info.tag = req.tag;
  k.info.tty = req.tty;
  k.info.started_ms = WallMs();
  k.timeout_ms = req.timeout_ms;
  k.out.fd = std::move(started->out);
  k.err.fd = std::move(started->err);
  k.in.fd = std::move(started->in);
  // No stdin: the write end goes now and the process reads EOF. A terminal
  // always takes input (a pipe's EOF has no meaning for it).
  if (!req.stdin && !req.tty) Unwatch(k.in);
  if (req.timeout_ms) {
    k.timer.fd = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(req.timeout_ms / 1000);
    its.it_value.tv_nsec = static_cast<long>(req.timeout_ms % 1000) * 1000000L;
    ::timerfd_settime(k.timer.fd.get(), 0, &its, nullptr);
    SetInterest(k.timer, Tag(kKeptTimer, static_cast<uint64_t>(pid)), EPOLLIN);
  }
  // S before any output: it is only read from the loop, after this returns.
  Send(conn_id, FrameType::kStarted, proto::ToJson(proto::Started{pid, 0}));
  c.attached = pid;
  k.listeners[conn_id] = 0;
}

void ServerImpl::Attach(uint64_t conn_id, Conn& c, const proto::AttachRequest& req) {
  auto it = kept_.find(static_cast<pid_t>(req.pid));
  if (it == kept_.end()) {
    return SendOpError(conn_id, Fail(ErrorCode::kNotFound, "attach", std::to_string(req.pid),
                                     "no such kept process"));
  }
  Kept& k = it->second;
  // Older bytes are gone: the replay starts at the oldest kept one, and S
  // says where, so the host can tell a gap from a complete replay.
  uint64_t from = req.from < 0
                      ? k.ring.end()
                      : std::clamp(static_cast<uint64_t>(req.from), k.ring.start(), k.ring.end());
  Send(conn_id, FrameType::kStarted, proto::ToJson(proto::Started{req.pid, from}));
  c.attached = k.pid;
  k.listeners[conn_id] = from;
  PumpListener(k, conn_id);
}

uint64_t ServerImpl::MaxLag(const Kept& k) const {
  uint64_t lag = 0;
  for (const auto& [id, off] : k.listeners) lag = std::max(lag, k.ring.end() - off);
  return lag;
}

ServerImpl::ReadResult ServerImpl::ReadKept(Kept& k, bool is_err) {
  Watched& w = is_err ? k.err : k.out;
  if (!w.fd) return ReadResult::kEof;
  // With listeners, read no more than the ring can take without
  // overwriting a byte the slowest of them has not had.
  uint64_t room = kReadChunk;
  if (!k.listeners.empty()) {
    uint64_t lag = MaxLag(k);
    room = std::min<uint64_t>(room, lag >= k.ring.capacity() ? 0 : k.ring.capacity() - lag);
    if (room == 0) return ReadResult::kBlocked;
  }
  char buf[kReadChunk];
  ssize_t n;
  do {
    n = ::read(w.fd.get(), buf, room);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return ReadResult::kEmpty;
  if (n <= 0) {
    // EOF, or EIO: a terminal's master once every slave fd is closed.
    Unwatch(w);
    return ReadResult::kEof;
  }
  k.ring.Append(is_err, std::string_view(buf, static_cast<size_t>(n)));
  // Copy the ids: a listener's pump may send X and detach it.
  std::vector<uint64_t> ids;
  for (const auto& [id, off] : k.listeners) ids.push_back(id);
  for (uint64_t id : ids) PumpListener(k, id);
  return ReadResult::kData;
}

void ServerImpl::OnKeptOutput(pid_t pid, bool is_err) {
  auto it = kept_.find(pid);
  if (it == kept_.end()) return;
  if (it->second.reaped) {
    TryFinishKept(it->second);
    return;
  }
  ReadKept(it->second, is_err);
}

void ServerImpl::OnKeptStdin(pid_t pid) {
  auto it = kept_.find(pid);
  if (it == kept_.end()) return;
  Kept& k = it->second;
  while (!k.stdin_buf.empty() && k.in.fd) {
    ssize_t n = ::write(k.in.fd.get(), k.stdin_buf.data(), k.stdin_buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      // EPIPE (or EIO from a terminal): the process stopped reading.
      k.stdin_buf.clear();
      Unwatch(k.in);
      return;
    }
    k.stdin_buf.erase(0, static_cast<size_t>(n));
  }
  if (k.stdin_buf.empty() && k.stdin_close) Unwatch(k.in);
}

void ServerImpl::KeptStdinFrame(Conn& c, const proto::Frame& f) {
  auto it = kept_.find(c.attached);
  if (it == kept_.end() || it->second.reaped) return;
  Kept& k = it->second;
  if (f.type == FrameType::kStdin) {
    if (k.in.fd && !k.stdin_close) k.stdin_buf += f.payload;
    return;
  }
  // C on a terminal: there is no end of input to give (a ^D in I is).
  if (k.info.tty) return;
  k.stdin_close = true;
  if (k.stdin_buf.empty()) Unwatch(k.in);
}

bool ServerImpl::InputFull(const Conn& c) const {
  if (c.tunnel) return c.tunnel->to_service.size() > kStdinHighWater;
  if (!c.attached) return false;
  auto it = kept_.find(c.attached);
  return it != kept_.end() && it->second.stdin_buf.size() > kStdinHighWater;
}

void ServerImpl::OnKeptTimer(pid_t pid) {
  auto it = kept_.find(pid);
  if (it == kept_.end()) return;
  Unwatch(it->second.timer);
  if (it->second.reaped) return;
  it->second.timed_out = true;
  ::kill(-pid, SIGKILL);
}

void ServerImpl::OnKeptReaped(Kept& k, int wait_status) {
  k.reaped = true;
  k.wait_status = wait_status;
  // As for a pool run: what is left of its process group goes with it.
  ::kill(-k.pid, SIGKILL);
  Unwatch(k.timer);
  Unwatch(k.in);
  k.stdin_buf.clear();
  TryFinishKept(k);
}

void ServerImpl::TryFinishKept(Kept& k) {
  if (!k.reaped || k.exit || k.finishing) return;
  k.finishing = true;
  FinishKeptDrain(k);
  k.finishing = false;
  // May erase exited processes (k among them): k is not touched after.
  if (k.exit) Retain();
}

void ServerImpl::FinishKeptDrain(Kept& k) {
  // What it wrote before exiting is in the pipes (or the terminal, whose
  // master reads it all before EIO): read until empty. An empty pipe after
  // the exit is the end, even if a process outside the group still holds
  // it open. A lagging listener may stop us (kBlocked): PumpListener calls
  // back once it has caught up.
  for (bool is_err : {false, true}) {
    Watched& w = is_err ? k.err : k.out;
    for (;;) {
      ReadResult r = ReadKept(k, is_err);
      if (r == ReadResult::kData) continue;
      if (r == ReadResult::kBlocked) return;
      if (r == ReadResult::kEmpty) Unwatch(w);
      break;
    }
  }
  proto::ExecExit x = ExitOfStatus(k.wait_status);
  if (k.timed_out) {
    x.timed_out = true;
    x.exit_code = 137;
    x.error = TimeoutMessage(k.timeout_ms);
  }
  k.exit = x;
  exited_.push_back(k.pid);
  std::vector<uint64_t> ids;
  for (const auto& [id, off] : k.listeners) ids.push_back(id);
  for (uint64_t id : ids) PumpListener(k, id);
}

void ServerImpl::PumpListener(Kept& k, uint64_t conn_id) {
  auto li = k.listeners.find(conn_id);
  auto ci = conns_.find(conn_id);
  if (li == k.listeners.end() || ci == conns_.end()) return;
  Conn& c = ci->second;
  const uint64_t before = li->second;
  while (c.pending() < kListenerHighWater && li->second < k.ring.end()) {
    li->second = k.ring.Read(li->second, kReadChunk, [&](bool is_err, std::string_view b) {
      // A terminal's output is one stream.
      Send(conn_id, is_err ? FrameType::kStderr : FrameType::kStdout, b);
    });
  }
  if (k.exit && li->second == k.ring.end()) {
    Send(conn_id, FrameType::kExit, proto::ToJson(*k.exit));
    k.listeners.erase(li);
    c.attached = 0;
    c.close_after_flush = true;
    return;
  }
  // This listener caught up: a process stopped for it may go on. Once
  // reaped, nothing wakes the drain but this.
  if (li->second != before && k.reaped) TryFinishKept(k);
}

void ServerImpl::Detach(uint64_t conn_id, Conn& c) {
  auto it = kept_.find(c.attached);
  c.attached = 0;
  if (it == kept_.end()) return;
  it->second.listeners.erase(conn_id);
  // The slowest listener may have been this one.
  if (it->second.reaped) TryFinishKept(it->second);
}

void ServerImpl::Retain() {
  // The last kMaxExited exits are kept for P and A, and their rings up to
  // kExitedRingBudget in all, oldest released first. One still being
  // replayed to a listener stays until it is done (the next exit retries).
  size_t excess = exited_.size() > kMaxExited ? exited_.size() - kMaxExited : 0;
  for (auto it = exited_.begin(); excess > 0 && it != exited_.end();) {
    auto k = kept_.find(*it);
    if (k != kept_.end() && !k->second.listeners.empty()) {
      ++it;
      continue;
    }
    if (k != kept_.end()) {
      Unwatch(k->second.out);
      Unwatch(k->second.err);
      kept_.erase(k);
    }
    it = exited_.erase(it);
    --excess;
  }
  uint64_t held = 0;
  for (pid_t pid : exited_) held += kept_.at(pid).ring.held();
  for (pid_t pid : exited_) {
    if (held <= kExitedRingBudget) break;
    Kept& k = kept_.at(pid);
    if (!k.listeners.empty()) continue;
    held -= k.ring.held();
    k.ring.Release();
  }
}

}  // namespace wb::agent
