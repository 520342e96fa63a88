#include "daemon/server.h"

#include "pool/warm_pool.h"
#include "proto/pool_proto.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdlib>
#include <cstring>

#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "daemon/drivers.h"
#include "sandbox/agent_client.h"

namespace wb::daemon {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using Socket = asio::local::stream_protocol::socket;
using pool::Clock;

std::string DefaultSocketPath() {
  if (::geteuid() == 0) return "/run/warmbox/pool.sock";
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) return std::string(xdg) + "/warmbox/pool.sock";
  return "/tmp/warmbox-" + std::to_string(::geteuid()) + "/pool.sock";
}

namespace {

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Whether the peer may use the daemon: root, our own uid, or a member of the
// socket group (primary or supplementary, read from /proc: no NSS here).
bool PeerAllowed(int fd, const std::optional<gid_t>& group) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  if (!group) return false;
  if (cred.gid == *group) return true;
  auto status = ReadFile("/proc/" + std::to_string(cred.pid) + "/status");
  if (!status.ok()) return false;
  for (const auto& line : Split(*status, '\n')) {
    if (!StartsWith(line, "Groups:")) continue;
    for (const auto& g : Split(Trim(std::string_view(line).substr(7)), ' ')) {
      auto v = ParseUint(g, "gid");
      if (v.ok() && *v == *group) return true;
    }
  }
  return false;
}

class Daemon {
 public:
  Daemon(const DaemonOptions& opts, DriverSet& drivers, ImageStore& store)
      : opts_(opts),
        rt_(io_, [&drivers](const std::string& name) { return drivers.Get(name); }, store, opts.creation_cap),
        registry_(rt_, opts.pool),
        acceptor_(io_),
        signals_(io_, SIGINT, SIGTERM),
        drain_timer_(io_) {}

  Result<void> Bind(int listen_fd) {
    error_code ec;
    acceptor_.assign(asio::local::stream_protocol(), listen_fd, ec);
    if (ec) return ErrnoValue(ec.value(), "assign", opts_.socket_path);
    return Ok();
  }

  int Run() {
    signals_.async_wait([this](error_code ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: stopping", sig);
      Stop();
    });
    asio::co_spawn(io_, Accept(), asio::detached);
    // Warm the default image and every --warm image, in parallel; the socket
    // already serves (status answers at once, runs are served cold meanwhile).
    if (!opts_.default_image.empty()) registry_.Get(opts_.default_image, opts_.default_driver, 0);
    for (const auto& w : opts_.warm) registry_.Get(w.image, opts_.default_driver, w.count);
    io_.run();
    rt_.create.join();
    rt_.destroy.join();
    return 0;
  }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      error_code ec;
      Socket s = co_await acceptor_.async_accept(redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        spdlog::warn("accept: {}", ec.message());
        continue;
      }
      asio::co_spawn(io_, Session(std::move(s)), asio::detached);
    }
  }

  static asio::awaitable<void> Send(Socket& s, std::string_view json) {
    std::string frame = proto::EncodePoolFrame(json);
    error_code ec;
    co_await asio::async_write(s, asio::buffer(frame), redirect_error(use_awaitable, ec));
  }

  asio::awaitable<void> Session(Socket s) {
    if (!PeerAllowed(s.native_handle(), opts_.socket_group)) {
      spdlog::warn("refused a client: its uid is neither root, ours, nor in the socket group");
      co_await Send(s, proto::ToJson(proto::ErrorResponse("permission denied")));
      co_return;
    }
    // A client gets a bounded time to send its request (no slow-loris).
    auto timer = std::make_shared<asio::steady_timer>(io_, opts_.request_timeout);
    auto armed = std::make_shared<bool>(true);
    timer->async_wait([&s, armed](error_code ec) {
      if (!ec && *armed) {
        error_code ignored;
        s.close(ignored);
      }
    });
    unsigned char hdr[4];
    error_code ec;
    co_await asio::async_read(s, asio::buffer(hdr), redirect_error(use_awaitable, ec));
    if (ec) {
      *armed = false;
      timer->cancel();
      co_return;
    }
    auto len = proto::DecodePoolLength(hdr, proto::kMaxRequest);
    if (!len.ok()) {
      *armed = false;
      timer->cancel();
      // Refused before reading (or allocating) the body.
      co_await Send(s, proto::ToJson(proto::ErrorResponse(len.error().ToString())));
      co_return;
    }
    std::string body(*len, '\0');
    co_await asio::async_read(s, asio::buffer(body), redirect_error(use_awaitable, ec));
    *armed = false;
    timer->cancel();
    if (ec) co_return;
    auto req = proto::ParsePoolRequest(body);
    if (!req.ok()) {
      co_await Send(s, proto::ToJson(proto::ErrorResponse(req.error().ToString())));
      co_return;
    }
    switch (req->op) {
      case proto::Op::kStatus:
        co_await Send(s, proto::StatusJson(registry_.Stats()));
        co_return;
      case proto::Op::kStop:
        co_await Send(s, R"({"ok":true,"error":null})");
        Stop();
        co_return;
      case proto::Op::kRun:
        co_await HandleRun(s, std::move(req->run));
        co_return;
    }
  }

  asio::awaitable<void> HandleRun(Socket& s, proto::RunRequest run) {
    const auto t0 = Clock::now();
    if (stopping_) {
      co_await Send(s, proto::ToJson(proto::ErrorResponse("the daemon is shutting down")));
      co_return;
    }
    std::string image = run.image.value_or(opts_.default_image);
    if (image.empty()) {
      co_await Send(s, proto::ToJson(proto::ErrorResponse(
                           "no image: pass --image or start the daemon with --image")));
      co_return;
    }
    if (auto v = ImageStore::ValidateName(image); !v.ok()) {
      co_await Send(s, proto::ToJson(proto::ErrorResponse(v.error().ToString())));
      co_return;
    }
    if (!rt_.store.Exists(image)) {
      co_await Send(s, proto::ToJson(proto::ErrorResponse(
                           "image " + image + ": no such image (see 'warmbox image ls')")));
      co_return;
    }
    pool::WarmPool& pool = registry_.Get(image, run.driver.value_or(opts_.default_driver));
    auto permit = co_await pool.TakePermit();
    if (!permit.ok()) {
      co_await Send(s, proto::ToJson(proto::ErrorResponse(permit.error().ToString())));
      co_return;
    }
    ++active_runs_;
    co_await RunInPool(s, pool, run, Clock::now() - t0, std::move(*permit));
    --active_runs_;
    if (stopping_ && active_runs_ == 0) FinishStop();
  }

  // Acquires a sandbox (another one if an idle one fails its health check),
  // runs the command, replies, and gives the sandbox back.
  asio::awaitable<void> RunInPool(Socket& s, pool::WarmPool& pool, proto::RunRequest& run,
                                  Clock::duration queued, pool::Permit permit) {
    const std::string& image = pool.image();
    for (int attempt = 0;; ++attempt) {
      const auto t_permit = Clock::now();
      auto lease = co_await pool.Acquire();
      if (!lease.ok()) {
        co_await Send(s, proto::ToJson(proto::ErrorResponse(lease.error().ToString())));
        co_return;
      }
      const auto t_acquired = Clock::now();

    // A client that hangs up cancels its run: the agent connection is closed,
    // and the agent kills the command.
    auto done = std::make_shared<bool>(false);
    auto gone = std::make_shared<bool>(false);
    pool::AgentConn* conn = lease->conn.get();
    s.async_wait(Socket::wait_read, [done, gone, conn](error_code ec) {
      if (ec || *done) return;
      *gone = true;
      conn->Close();
    });

    proto::ExecRequest er;
    er.argv = run.cmd;
    er.env = run.env;
    er.cwd = run.workdir;
    er.user = run.user;
    er.timeout_ms = run.timeout_ms;
    if (run.output_cap) er.output_cap = *run.output_cap;
    if (run.nofile) er.nofile = *run.nofile;
    er = lease->sandbox->WithImageDefaults(er);
    if (run.memory_bytes || run.pids || run.cpus) {
      // This run's own limits, on the pre-booted sandbox, before it starts.
      Limits l = opts_.pool.limits;
      if (run.memory_bytes) l.memory_bytes = *run.memory_bytes;
      if (run.pids) l.pids = *run.pids;
      if (run.cpus) l.cpus = *run.cpus;
      if (auto r = lease->sandbox->SetLimits(l); !r.ok()) {
        *done = true;
        error_code ignored;
        s.cancel(ignored);
        pool.Release(std::move(*lease), std::move(permit));
        co_await Send(s, proto::ToJson(proto::ErrorResponse(r.error().ToString())));
        co_return;
      }
    }
    proto::RunResponse resp;
    resp.sandbox = lease->sandbox->id();
    const bool stream = run.stream;
    auto on_chunk = [&](bool is_err, std::string data) -> asio::awaitable<void> {
      if (stream) {
        if (!*gone) co_await Send(s, proto::StreamChunkJson(is_err, data));
      } else {
        (is_err ? resp.stderr_data : resp.stdout_data) += data;
      }
    };
    bool unhealthy = false;
    std::optional<std::chrono::milliseconds> health;
    if (lease->hit) health = opts_.pool.health_timeout;
    const uint64_t ooms = lease->sandbox->OomKills();
    auto exit = co_await lease->conn->Exec(er, run.stdin_data, on_chunk, health, &unhealthy);
    *done = true;
    error_code ignored;
    s.cancel(ignored);  // ends the hang-up watch
    if (unhealthy && !*gone && attempt < 2) {
      pool.Evict(std::move(*lease), exit.error());
      continue;  // the command did not start: another sandbox takes it
    }
    if (exit.ok()) {
      resp.exit_code = exit->exit_code;
      resp.timed_out = exit->timed_out;
      resp.stdout_truncated = exit->stdout_truncated;
      resp.stderr_truncated = exit->stderr_truncated;
      resp.oom_killed = lease->sandbox->OomKills() > ooms;
    } else {
      resp.exit_code = -1;
      resp.error = *gone ? "the client went away; the command was killed" : exit.error().ToString();
    }
    const auto t_exec = Clock::now();
    std::string sandbox_id = lease->sandbox->id();
    const bool hit = lease->hit;
    pool.Release(std::move(*lease), std::move(permit));
    spdlog::info("run image={} driver={} sandbox={} exit={} {} queue={:.2f}ms acquire={:.2f}ms exec={:.2f}ms{}",
                 image, pool.driver(), sandbox_id, resp.exit_code, hit ? "warm" : "cold", Ms(queued), Ms(t_acquired - t_permit),
                 Ms(t_exec - t_acquired), *gone ? " client-gone" : "");
    if (!*gone) co_await Send(s, proto::ToJson(resp));
    co_return;
    }
  }

  void Stop() {
    if (stopping_) return;
    stopping_ = true;
    error_code ec;
    acceptor_.close(ec);
    ::unlink(opts_.socket_path.c_str());
    signals_.cancel(ec);
    if (active_runs_ == 0) {
      FinishStop();
      return;
    }
    spdlog::info("waiting up to {} ms for {} run(s) in flight", opts_.drain_grace.count(), active_runs_);
    drain_timer_.expires_after(opts_.drain_grace);
    drain_timer_.async_wait([this](error_code e) {
      if (!e) FinishStop();
    });
  }

  void FinishStop() {
    if (finishing_) return;
    finishing_ = true;
    drain_timer_.cancel();
    registry_.Shutdown();
    // Runs still in flight (past the grace) end when io_ stops: their agents
    // are killed by the sandboxes' teardown below.
    asio::co_spawn(io_, WaitIdle(), asio::detached);
  }

  asio::awaitable<void> WaitIdle() {
    asio::steady_timer t(io_);
    while (rt_.in_flight > 0) {
      t.expires_after(std::chrono::milliseconds(5));
      error_code ec;
      co_await t.async_wait(redirect_error(use_awaitable, ec));
    }
    io_.stop();
  }

  const DaemonOptions& opts_;
  asio::io_context io_;
  pool::PoolRuntime rt_;
  pool::PoolRegistry registry_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer drain_timer_;
  size_t active_runs_ = 0;
  bool stopping_ = false;
  bool finishing_ = false;
};

// Binds the socket, refusing when a live daemon answers on it and replacing a
// stale file. The mode is set through the umask so that it is never, even for
// a moment, more open than 0600 (or 0660 with a group).
Result<int> BindSocket(const DaemonOptions& opts) {
  const std::string& path = opts.socket_path;
  if (path.empty() || path.front() != '/') return Fail("--socket", path, "must be an absolute path");
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) WB_CHECK(MkdirAll(dir, 0755));
  if (PathExists(path)) {
    auto probe = ConnectUnix(path);
    if (probe.ok()) return Fail("pool start", path, "a warmbox pool daemon is already serving this socket");
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("unlink stale socket", path);
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Fail("--socket", path, "path too long");
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Errno("socket", "AF_UNIX");
  mode_t old = ::umask(opts.socket_group ? 0117 : 0177);
  int r = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int bind_errno = errno;
  ::umask(old);
  if (r != 0) return ErrnoValue(bind_errno, "bind", path);
  if (opts.socket_group && ::chown(path.c_str(), static_cast<uid_t>(-1), *opts.socket_group) != 0) {
    Error e = Errno("chown", path);
    ::unlink(path.c_str());
    return e;
  }
  if (::listen(fd.get(), 1024) != 0) {
    Error e = Errno("listen", path);
    ::unlink(path.c_str());
    return e;
  }
  return fd.release();
}

}  // namespace

Result<int> RunDaemon(const DaemonOptions& opts) {
  ImageStore store(opts.driver.state_dir, opts.driver.uid_base);
  // Socket first: clients can connect (and queue) while everything else starts.
  UniqueFd listen_fd(WB_TRY(BindSocket(opts)));
  DriverSet drivers(opts.driver, opts.vm_driver, &store);
  auto driver = drivers.Get(opts.default_driver);
  if (!driver.ok()) {
    ::unlink(opts.socket_path.c_str());
    return driver.error();
  }
  Daemon d(opts, drivers, store);
  WB_CHECK(d.Bind(listen_fd.release()));
  spdlog::info("serving on {} (default image {}, driver {}, size {}, max {}, ttl {}s)", opts.socket_path,
               opts.default_image.empty() ? "none" : opts.default_image, opts.default_driver, opts.pool.size,
               opts.pool.max, opts.pool.ttl_s);
  int rc = d.Run();
  ::unlink(opts.socket_path.c_str());
  spdlog::info("stopped");
  return rc;
}

}  // namespace wb::daemon
