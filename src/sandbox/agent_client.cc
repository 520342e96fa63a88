#include "sandbox/agent_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace wb {
namespace {

int64_t NowMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

Error AgentDied(const AgentEndpoint& ep) {
  return Fail("sandbox agent", ep.socket_path, "the agent died");
}

// A connection to the agent with buffered, non-blocking I/O and a poll loop
// that also watches the agent's liveness.
class Channel {
 public:
  Channel(const AgentEndpoint& ep, UniqueFd fd) : ep_(ep), fd_(std::move(fd)) {}

  void Queue(proto::FrameType t, std::string_view payload) { proto::AppendFrame(out_, t, payload); }
  bool has_output() const { return out_off_ < out_.size(); }
  size_t queued() const { return out_.size() - out_off_; }

  // One poll round: flushes what it can, reads what is there. extra_fd and
  // cancel_fd, if >= 0, are polled for readability.
  Result<void> Pump(int timeout_ms, int extra_fd, bool* extra_ready, int cancel_fd = -1) {
    pollfd p[4];
    int n = 0;
    p[n++] = {fd_.get(), static_cast<short>(POLLIN | (has_output() ? POLLOUT : 0)), 0};
    int live_idx = -1, extra_idx = -1;
    if (ep_.liveness_fd >= 0) {
      live_idx = n;
      p[n++] = {ep_.liveness_fd, POLLIN, 0};
    }
    if (extra_fd >= 0) {
      extra_idx = n;
      p[n++] = {extra_fd, POLLIN, 0};
    }
    int cancel_idx = -1;
    if (cancel_fd >= 0) {
      cancel_idx = n;
      p[n++] = {cancel_fd, POLLIN, 0};
    }
    int r = ::poll(p, static_cast<nfds_t>(n), timeout_ms);
    if (r < 0) {
      if (errno == EINTR) return Ok();
      return Errno("poll", ep_.socket_path);
    }
    if (cancel_idx >= 0 && (p[cancel_idx].revents & POLLIN)) {
      return Fail("exec", ep_.socket_path, "interrupted");
    }
    if (extra_ready)
      *extra_ready = extra_idx >= 0 && (p[extra_idx].revents & (POLLIN | POLLHUP | POLLERR));
    if (p[0].revents & POLLOUT) WB_RETURN_IF_ERROR(Flush());
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      ssize_t got = ::read(fd_.get(), buf, sizeof buf);
      if (got < 0 && errno != EAGAIN && errno != EINTR) return Errno("read", ep_.socket_path);
      if (got == 0) {
        eof_ = true;
      } else if (got > 0) {
        WB_RETURN_IF_ERROR(dec_.Feed(std::string_view(buf, static_cast<size_t>(got))));
      }
    }
    // Agent death is checked after reading so its last words are not lost.
    if (live_idx >= 0 && (p[live_idx].revents & POLLIN) && !dec_.buffered() && eof_) {
      return AgentDied(ep_);
    }
    if (live_idx >= 0 && (p[live_idx].revents & POLLIN)) agent_dead_ = true;
    return Ok();
  }

  Result<void> Flush() {
    while (has_output()) {
      ssize_t n = ::send(fd_.get(), out_.data() + out_off_, out_.size() - out_off_,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return Ok();
        if (errno == EPIPE || errno == ECONNRESET) {
          // The agent has closed its side, normally right after the exit
          // frame (a command that did not read all its stdin, say): what we
          // still had to send is moot; what it sent is still to be read.
          out_.clear();
          out_off_ = 0;
          return Ok();
        }
        return Errno("send", ep_.socket_path);
      }
      out_off_ += static_cast<size_t>(n);
    }
    out_.clear();
    out_off_ = 0;
    return Ok();
  }

  std::optional<proto::Frame> Next() { return dec_.Next(); }
  bool eof() const { return eof_; }
  bool agent_dead() const { return agent_dead_; }

 private:
  const AgentEndpoint& ep_;
  UniqueFd fd_;
  std::string out_;
  size_t out_off_ = 0;
  proto::FrameDecoder dec_;
  bool eof_ = false;
  bool agent_dead_ = false;
};

}  // namespace

Result<UniqueFd> ListenUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return Fail("bind", path, "socket path too long (use a shorter --state-dir)");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket", "AF_UNIX");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return Errno("bind", path);
  if (::chmod(path.c_str(), 0600) != 0) return Errno("chmod", path);
  if (::listen(fd.get(), 64) != 0) return Errno("listen", path);
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Fail("connect", path, "socket path too long");
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket", "AF_UNIX");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Errno("connect", path);
  }
  return fd;
}

Result<void> AgentHeartbeat(const AgentEndpoint& ep, int timeout_ms) {
  WB_TRY(AgentHeartbeatReply(ep, timeout_ms));
  return Ok();
}

Result<std::string> AgentHeartbeatReply(const AgentEndpoint& ep, int timeout_ms) {
  return AgentRequest(ep, proto::FrameType::kHeartbeat, "", proto::FrameType::kHeartbeatReply,
                      timeout_ms);
}

Result<std::string> AgentRequest(const AgentEndpoint& ep, proto::FrameType type,
                                 std::string_view payload, proto::FrameType reply, int timeout_ms) {
  const char* what = type == proto::FrameType::kHeartbeat ? "heartbeat" : "agent request";
  UniqueFd fd = WB_TRY(ConnectUnix(ep.socket_path));
  Channel ch(ep, std::move(fd));
  ch.Queue(type, payload);
  int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    int64_t left = deadline - NowMs();
    if (left <= 0) {
      return Fail(what, ep.socket_path, "no answer within " + std::to_string(timeout_ms) + " ms");
    }
    WB_RETURN_IF_ERROR(ch.Pump(static_cast<int>(left), -1, nullptr));
    while (auto f = ch.Next()) {
      if (f->type == reply) {
        spdlog::debug("{} from {}: {}", what, ep.socket_path, f->payload);
        return std::move(f->payload);
      }
      return Fail(what, ep.socket_path, "unexpected reply: " + f->payload);
    }
    if (ch.eof()) return Fail(what, ep.socket_path, "agent closed the connection");
    if (ch.agent_dead()) return AgentDied(ep);
  }
}

Result<void> WaitAgentReady(const AgentEndpoint& ep, int attempt_ms, int total_ms) {
  int64_t deadline = NowMs() + total_ms;
  Error last = Fail("wait for agent", ep.socket_path, "no attempt made");
  for (;;) {
    int64_t left = deadline - NowMs();
    if (left <= 0) {
      return Fail(
          "wait for agent", ep.socket_path,
          "not ready after " + std::to_string(total_ms) + " ms (last: " + last.ToString() + ")");
    }
    auto r = AgentHeartbeat(ep, static_cast<int>(std::min<int64_t>(attempt_ms, left)));
    if (r.ok()) return Ok();
    last = r.error();
    // A dead agent will not get better: fail at once.
    if (ep.liveness_fd >= 0) {
      pollfd p{ep.liveness_fd, POLLIN, 0};
      if (::poll(&p, 1, 0) == 1) return AgentDied(ep);
    }
  }
}

Result<ExecOutcome> AgentExec(const AgentEndpoint& ep, const proto::ExecRequest& req_in,
                              ExecIo& io) {
  proto::ExecRequest req = req_in;
  req.stdin = io.stdin_fd >= 0 || io.has_stdin_data;
  UniqueFd fd = WB_TRY(ConnectUnix(ep.socket_path));
  Channel ch(ep, std::move(fd));
  ch.Queue(proto::FrameType::kExec, proto::ToJson(req));
  if (io.stdin_fd < 0 && io.has_stdin_data) {
    std::string_view data = io.stdin_data;
    while (!data.empty()) {
      size_t n = std::min<size_t>(data.size(), 1 << 20);
      ch.Queue(proto::FrameType::kStdin, data.substr(0, n));
      data.remove_prefix(n);
    }
    ch.Queue(proto::FrameType::kStdinClose, "");
  }
  bool stdin_open = io.stdin_fd >= 0;
  // The agent enforces the timeout; this backstop only covers an agent that
  // stopped answering.
  int64_t deadline = req.timeout_ms ? NowMs() + static_cast<int64_t>(req.timeout_ms) + 10000 : 0;

  ExecOutcome out;
  for (;;) {
    int wait = -1;
    if (deadline) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return Fail("exec", req.argv[0], "the agent did not report an exit in time");
      wait = static_cast<int>(left);
    }
    // Read stdin only while little is queued: backpressure to the source.
    bool stdin_ready = false;
    int extra = stdin_open && ch.queued() < (1 << 20) ? io.stdin_fd : -1;
    WB_RETURN_IF_ERROR(ch.Pump(wait, extra, &stdin_ready, io.cancel_fd));
    if (stdin_ready) {
      char buf[65536];
      ssize_t n = ::read(io.stdin_fd, buf, sizeof buf);
      if (n > 0) {
        ch.Queue(proto::FrameType::kStdin, std::string_view(buf, static_cast<size_t>(n)));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        ch.Queue(proto::FrameType::kStdinClose, "");
        stdin_open = false;
      }
    }
    while (auto f = ch.Next()) {
      switch (f->type) {
        case proto::FrameType::kStdout:
          if (io.on_stdout)
            io.on_stdout(f->payload);
          else
            out.stdout_data += f->payload;
          break;
        case proto::FrameType::kStderr:
          if (io.on_stderr)
            io.on_stderr(f->payload);
          else
            out.stderr_data += f->payload;
          break;
        case proto::FrameType::kExit:
          out.exit = WB_TRY(proto::ParseExecExit(f->payload));
          return out;
        case proto::FrameType::kFailure:
          return Fail("exec", req.argv[0], "agent refused: " + f->payload);
        default:
          return Fail("exec", req.argv[0], "unexpected frame from agent");
      }
    }
    if (ch.eof()) {
      return Fail("exec", req.argv[0],
                  ch.agent_dead() ? "the sandbox agent died during the command"
                                  : "the agent closed the connection before the command exited");
    }
  }
}

}  // namespace wb
