// warmbox exec and warmbox attach: a process in a live sandbox, in the
// foreground (output streamed, its exit code passed through), in the
// background (-d: the pid at once), or on a terminal (-t: raw mode here, the
// window size at start and on every SIGWINCH).
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <memory>

#include "base/strings.h"
#include "cli/live_client.h"
#include "cli/verbs.h"

namespace wb::cli {
namespace {

using proto::FrameType;

// The local terminal in raw mode for the life of this object.
class RawTerminal {
 public:
  RawTerminal() {
    if (::tcgetattr(0, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    if (::tcsetattr(0, TCSANOW, &raw) == 0) active_ = true;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  termios saved_{};
  bool active_ = false;
};

std::string WindowSize() {
  winsize ws{};
  if (::ioctl(0, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return "";
  return nlohmann::json{{"rows", ws.ws_row}, {"cols", ws.ws_col}}.dump();
}

// The foreground loop of exec and attach: output to our stdout/stderr,
// our stdin to the process (when forward_stdin), resizes (tty), until X.
Result<int> Follow(LiveConn& c, bool forward_stdin, bool tty) {
  std::unique_ptr<RawTerminal> raw;
  UniqueFd winch;
  if (tty && ::isatty(0)) {
    raw = std::make_unique<RawTerminal>();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGWINCH);
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    winch = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (std::string ws = WindowSize(); !ws.empty()) {
      WB_RETURN_IF_ERROR(c.Send(FrameType::kResize, ws));
    }
  }
  bool stdin_open = forward_stdin;
  for (;;) {
    while (auto f = c.Pop()) {
      switch (f->type) {
        case FrameType::kStarted:
          break;
        case FrameType::kStdout:
          (void)WriteAll(1, f->payload);
          break;
        case FrameType::kStderr:
          (void)WriteAll(2, f->payload);
          break;
        case FrameType::kExit: {
          raw.reset();
          auto exit = WB_TRY(proto::ParseExecExit(f->payload));
          if (exit.timed_out) std::fprintf(stderr, "warmbox: the process timed out\n");
          return exit.exit_code;
        }
        default:
          return OpError(*f);
      }
    }
    pollfd p[3] = {{c.fd(), POLLIN, 0},
                   {stdin_open ? 0 : -1, POLLIN, 0},
                   {winch ? winch.get() : -1, POLLIN, 0}};
    if (::poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return Errno("poll", "");
    }
    if (p[0].revents) {
      if (!WB_TRY(c.ReadSome())) {
        return Fail(ErrorCode::kUnavailable, "exec", "",
                    "the connection closed before the process exited (did the sandbox end?)");
      }
    }
    if (p[1].revents) {
      char buf[64 * 1024];
      ssize_t n = ::read(0, buf, sizeof buf);
      if (n > 0) {
        WB_RETURN_IF_ERROR(
            c.Send(FrameType::kStdin, std::string_view(buf, static_cast<size_t>(n))));
      } else if (n == 0 || errno != EINTR) {
        stdin_open = false;
        WB_RETURN_IF_ERROR(c.Send(FrameType::kStdinClose, ""));
      }
    }
    if (p[2].revents) {
      signalfd_siginfo si;
      while (::read(winch.get(), &si, sizeof si) == sizeof si) {
      }
      if (std::string ws = WindowSize(); !ws.empty()) {
        WB_RETURN_IF_ERROR(c.Send(FrameType::kResize, ws));
      }
    }
  }
}

struct ExecOpts {
  std::string socket, workdir, user, timeout;
  std::string id;
  std::vector<std::string> env, cmd;
  bool detach = false, interactive = false, tty = false;
};

Result<int> DoExec(const ExecOpts& o) {
  if (o.cmd.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "exec", o.id,
                "missing command: warmbox exec [OPTIONS] ID -- CMD [ARG...]");
  }
  nlohmann::json req{{"op", "exec"}, {"id", o.id}, {"cmd", o.cmd}};
  std::vector<std::string> env;
  for (const auto& kv : o.env) {
    if (kv.empty() || kv.front() == '=') return Fail("-e", kv, "expected KEY=VALUE");
    if (kv.find('=') == std::string::npos) {
      if (const char* v = std::getenv(kv.c_str())) env.push_back(kv + "=" + v);
      continue;
    }
    env.push_back(kv);
  }
  bool tty = o.tty && !o.detach;
  if (tty) {
    const char* term = std::getenv("TERM");
    bool has_term = false;
    for (const auto& e : env) has_term = has_term || StartsWith(e, "TERM=");
    if (!has_term) env.push_back(std::string("TERM=") + (term && *term ? term : "xterm"));
    winsize ws{};
    if (::ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_row) {
      req["rows"] = ws.ws_row;
      req["cols"] = ws.ws_col;
    }
    req["tty"] = true;
  }
  if (!env.empty()) req["env"] = env;
  if (!o.workdir.empty()) req["cwd"] = o.workdir;
  if (!o.user.empty()) req["user"] = o.user;
  if (!o.timeout.empty()) {
    req["timeout_ms"] =
        static_cast<uint64_t>(std::ceil(WB_TRY(ParseSeconds(o.timeout, "--timeout")) * 1000));
  }
  bool forward = (o.interactive || tty) && !o.detach;
  if (forward) req["stdin"] = true;
  LiveConn c = WB_TRY(LiveConn::Open(SocketOrDefault(o.socket), req));
  if (o.detach) {
    auto started = nlohmann::json::parse(WB_TRY(Expect(c, FrameType::kStarted)), nullptr, false);
    if (!started.is_object() || !started.contains("pid")) {
      return Fail("exec", o.id, "the agent's start answer has no pid");
    }
    std::printf("%lld\n", started["pid"].get<long long>());
    return 0;
  }
  return Follow(c, forward, tty);
}

struct AttachOpts {
  std::string socket, id, pid, from;
  bool interactive = false, tty = false;
};

Result<int> DoAttach(const AttachOpts& o) {
  const uint64_t pid = WB_TRY(ParseUint(o.pid, "PID"));  // not inside the braces: see live_ops.cc
  nlohmann::json req{{"op", "attach"}, {"id", o.id}, {"pid", pid}};
  if (!o.from.empty()) req["from"] = WB_TRY(ParseUint(o.from, "--from"));
  LiveConn c = WB_TRY(LiveConn::Open(SocketOrDefault(o.socket), req));
  return Follow(c, o.interactive || o.tty, o.tty);
}

}  // namespace

Action AddExec(CLI::App& app) {
  auto o = std::make_shared<ExecOpts>();
  CLI::App* exec = app.add_subcommand("exec", "run a process in a live sandbox");
  exec->add_option("--socket", o->socket, "daemon socket");
  exec->add_flag("-d,--detach", o->detach, "run in the background; print its pid");
  exec->add_flag("-i,--interactive", o->interactive, "send this terminal's stdin to the process");
  exec->add_flag("-t,--tty", o->tty, "give the process a terminal");
  exec->add_option("-e,--env", o->env, "KEY=VALUE (repeatable)")->allow_extra_args(false);
  exec->add_option("-w,--workdir", o->workdir, "working directory (default: the sandbox's)");
  exec->add_option("-u,--user", o->user, "user[:group] (default: the sandbox's)");
  exec->add_option("--timeout", o->timeout, "seconds before the process is killed (exit 137)");
  exec->add_option("id", o->id, "sandbox id")->required();
  exec->add_option("cmd", o->cmd, "command and arguments (after --)");
  return [o](const GlobalOptions&) -> int {
    auto r = DoExec(*o);
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

Action AddAttach(CLI::App& app) {
  auto o = std::make_shared<AttachOpts>();
  CLI::App* attach =
      app.add_subcommand("attach", "follow a process of a live sandbox: later output, then exit");
  attach->add_option("--socket", o->socket, "daemon socket");
  attach->add_option("--from", o->from, "replay retained output from this byte offset (0: all)");
  attach->add_flag("-i,--interactive", o->interactive, "send this terminal's stdin to the process");
  attach->add_flag("-t,--tty", o->tty, "the process has a terminal: raw mode here, resizes sent");
  attach->add_option("id", o->id, "sandbox id")->required();
  attach->add_option("pid", o->pid, "process id (from exec -d or ps)")->required();
  return [o](const GlobalOptions&) -> int {
    auto r = DoAttach(*o);
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

}  // namespace wb::cli
