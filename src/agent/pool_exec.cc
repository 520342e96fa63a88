// Pool runs (docs/protocol.md, "ExecRequest"): one command per connection,
// killed when its connection hangs up; output capped per stream.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "agent/server_impl.h"
#include "agent/spawn.h"

namespace wb::agent {

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

  auto cred = Resolve(req.user);
  if (!cred.ok()) return fail_start(cred.error().ToString());
  SpawnSpec spec;
  spec.argv = req.argv;
  spec.env = CommandEnv(*cred, req.env);
  spec.cwd = req.cwd;
  spec.cred = std::move(*cred);
  spec.nofile = req.nofile ? req.nofile : opts_.nofile;
  spec.seccomp = &opts_.seccomp;
  auto started = SpawnCommand(spec);
  if (!started.ok()) return fail_start(started.error().ToString());
  // Registered before the loop can call waitpid again: never stolen.
  e.pid = started->pid;
  exec_by_pid_[e.pid] = id;
  e.start_error = std::move(started->start_error);

  e.in.fd = std::move(started->in);
  e.out.fd = std::move(started->out);
  e.err.fd = std::move(started->err);
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

  proto::ExecExit x = ExitOfStatus(wait_status);
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
    x.error = TimeoutMessage(e.timeout_ms);
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

}  // namespace wb::agent
