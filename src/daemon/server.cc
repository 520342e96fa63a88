#include "daemon/server.h"

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
#include <map>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "daemon/drivers.h"
#include "daemon/http_server.h"
#include "daemon/image_puller.h"
#include "daemon/systemd.h"
#include "pool/warm_pool.h"
#include "proto/pool_proto.h"
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

std::string FormatMs(Clock::duration d) {
  return fmt::format("{:.2f}", std::chrono::duration<double, std::milli>(d).count());
}

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

// The Unix socket's side of a run: output frames as they come, hang-up seen
// as the socket turning readable (a client sends nothing after its request).
class SocketSink : public RunSink {
 public:
  explicit SocketSink(Socket& s) : s_(s) {}
  asio::awaitable<void> Chunk(bool is_stderr, std::string data) override;
  void WatchHangup(std::function<void()> on_gone) override {
    auto armed = std::make_shared<bool>(true);
    armed_ = armed;
    s_.async_wait(Socket::wait_read, [armed, on_gone = std::move(on_gone)](error_code ec) {
      if (ec || !*armed) return;
      *armed = false;
      on_gone();
    });
  }
  void Disarm() override {
    if (armed_) *armed_ = false;
    error_code ignored;
    s_.cancel(ignored);  // ends the hang-up watch
  }

 private:
  Socket& s_;
  std::shared_ptr<bool> armed_;
};

asio::awaitable<void> SendFrame(Socket& s, std::string_view json) {
  std::string frame = proto::EncodePoolFrame(json);
  error_code ec;
  co_await asio::async_write(s, asio::buffer(frame), redirect_error(use_awaitable, ec));
}

asio::awaitable<void> SocketSink::Chunk(bool is_stderr, std::string data) {
  co_await SendFrame(s_, proto::StreamChunkJson(is_stderr, data));
}

class Daemon : public RunService {
 public:
  Daemon(const DaemonOptions& opts, DriverSet& drivers, ImageStore& store)
      : opts_(opts),
        drivers_(drivers),
        rt_(
            io_, [&drivers](const std::string& name) { return drivers.Get(name); }, store,
            opts.creation_cap),
        registry_(rt_, opts.pool),
        puller_(
            io_,
            ImageToolCall{opts.image_tool_path, opts.driver.state_dir, opts.driver.uid_base, {}}),
        acceptor_(io_),
        signals_(io_, SIGINT, SIGTERM),
        drain_timer_(io_) {}

  Result<void> Bind(int listen_fd) {
    error_code ec;
    acceptor_.assign(asio::local::stream_protocol(), listen_fd, ec);
    if (ec) return ErrnoValue(ec.value(), "assign", opts_.socket_path);
    return Ok();
  }

  Result<void> BindHttp(HttpOptions o) {
    http_ = std::make_unique<HttpServer>(io_, *this, std::move(o));
    return http_->Open();
  }
  std::string http_address() const { return http_ ? http_->local_address() : ""; }

  int Run() {
    signals_.async_wait([this](error_code ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: stopping", sig);
      Stop();
    });
    asio::co_spawn(io_, Accept(), asio::detached);
    if (http_) http_->Start();
    // Warm the default image and every --warm image, in parallel; the socket
    // already serves (status answers at once, runs are served cold meanwhile).
    if (!opts_.default_image.empty()) registry_.Get(opts_.default_image, opts_.default_driver, 0);
    for (const auto& w : opts_.warm) registry_.Get(w.image, opts_.default_driver, w.count);
    // Both listeners are bound and the loop is about to serve them.
    Notify("READY=1\nSTATUS=serving");
    io_.run();
    puller_.Join();
    rt_.create.join();
    rt_.destroy.join();
    return 0;
  }

  // --- RunService ---------------------------------------------------------
  asio::awaitable<RunOutcome> Run(proto::RunRequest run, RunSink& sink) override {
    const auto t0 = Clock::now();
    RunOutcome out;
    std::string image = run.image.value_or(opts_.default_image);
    if (stopping_) {
      Refuse(out, RunErrorKind::kDraining, "the daemon is shutting down");
    } else if (image.empty()) {
      Refuse(out, RunErrorKind::kBadRequest,
             "no image: pass --image or start the daemon with --image");
    } else if (auto v = ImageStore::ValidateName(image); !v.ok()) {
      Refuse(out, RunErrorKind::kBadRequest, v.error().ToString());
    }
    if (out.kind != RunErrorKind::kNone) co_return out;
    if (!rt_.store.Exists(image)) {
      // A missing image is pulled first (once, whoever else waits for it).
      auto pulled = co_await puller_.Pull(image);
      if (!pulled.ok()) {
        Refuse(out, RunErrorKind::kNoImage,
               "image " + image +
                   ": no such image, and pulling it failed: " + pulled.error().ToString());
        co_return out;
      }
    }
    pool::WarmPool& pool = registry_.Get(image, run.driver.value_or(opts_.default_driver));
    auto permit = co_await pool.TakePermit();
    if (!permit.ok()) {
      Refuse(out, KindOfError(permit.error()), permit.error().ToString());
      co_return out;
    }
    ++active_runs_;
    out = co_await RunInPool(sink, pool, run, t0, std::move(*permit));
    --active_runs_;
    if (out.kind != RunErrorKind::kNone) ++errors_[out.kind];
    if (stopping_ && active_runs_ == 0) FinishStop();
    co_return out;
  }

  void CountError(RunErrorKind kind) override { ++errors_[kind]; }

  std::string StatusJson() const override {
    auto stats = registry_.Stats();
    for (auto& s : stats) drivers_.AnnotateStat(s);
    return proto::StatusJson(stats);
  }

  std::string Metrics() const override {
    MetricsSnapshot m;
    m.pools = registry_.Stats();
    for (const pool::WarmPool* p : registry_.Pools())
      m.creation[{p->image(), p->driver()}] = &p->creation_seconds();
    for (const auto& [key, r] : run_metrics_) m.runs[key] = &r;
    m.errors = errors_;
    m.http_requests = http_ ? http_->requests() : 0;
    m.draining = stopping_;
    return RenderPrometheus(m);
  }

  bool draining() const override { return stopping_; }

 private:
  void Refuse(RunOutcome& out, RunErrorKind kind, std::string msg) {
    out.kind = kind;
    out.resp = proto::ErrorResponse(std::move(msg));
    ++errors_[kind];
  }

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

  asio::awaitable<void> Session(Socket s) {
    if (!PeerAllowed(s.native_handle(), opts_.socket_group)) {
      spdlog::warn("refused a client: its uid is neither root, ours, nor in the socket group");
      co_await SendFrame(s, proto::ToJson(proto::ErrorResponse("permission denied")));
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
      CountError(RunErrorKind::kBadRequest);
      co_await SendFrame(s, proto::ToJson(proto::ErrorResponse(len.error().ToString())));
      co_return;
    }
    std::string body(*len, '\0');
    co_await asio::async_read(s, asio::buffer(body), redirect_error(use_awaitable, ec));
    *armed = false;
    timer->cancel();
    if (ec) co_return;
    auto req = proto::ParsePoolRequest(body);
    if (!req.ok()) {
      CountError(RunErrorKind::kBadRequest);
      co_await SendFrame(s, proto::ToJson(proto::ErrorResponse(req.error().ToString())));
      co_return;
    }
    switch (req->op) {
      case proto::Op::kStatus:
        if (req->format == "prometheus") {
          nlohmann::json j{{"format", "prometheus"}, {"metrics", Metrics()}};
          co_await SendFrame(s, j.dump());
        } else {
          co_await SendFrame(s, StatusJson());
        }
        co_return;
      case proto::Op::kStop:
        co_await SendFrame(s, R"({"ok":true,"error":null})");
        Stop();
        co_return;
      case proto::Op::kRun: {
        SocketSink sink(s);
        RunOutcome out = co_await Run(std::move(req->run), sink);
        if (out.kind != RunErrorKind::kClientGone) co_await SendFrame(s, proto::ToJson(out.resp));
        co_return;
      }
    }
  }

  // Acquires a sandbox (another one if an idle one fails its health check),
  // runs the command and gives the sandbox back. The caller replies.
  asio::awaitable<RunOutcome> RunInPool(RunSink& sink, pool::WarmPool& pool, proto::RunRequest& run,
                                        Clock::time_point t0, pool::Permit permit) {
    const std::string& image = pool.image();
    RunOutcome out;
    ImageRunMetrics& metrics = run_metrics_[{image, pool.driver()}];
    for (int attempt = 0;; ++attempt) {
      const auto t_permit = Clock::now();
      auto lease = co_await pool.Acquire();
      if (!lease.ok()) {
        out.kind = KindOfError(lease.error());
        out.resp = proto::ErrorResponse(lease.error().ToString());
        spdlog::warn("run image={} failed: {}", image, lease.error().ToString());
        co_return out;
      }
      const auto t_acquired = Clock::now();

      // A client that hangs up cancels its run: the agent connection is
      // closed, and the agent kills the command.
      auto gone = std::make_shared<bool>(false);
      pool::AgentConn* conn = lease->conn.get();
      sink.WatchHangup([gone, conn] {
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
      // The per-run policy, as warmbox run applies it (sandbox/run_policy.h).
      auto prepared = lease->sandbox->PrepareExec(er);
      if (!prepared.ok()) {
        sink.Disarm();
        pool.Release(std::move(*lease), std::move(permit));
        out.kind = KindOfError(prepared.error());
        out.resp = proto::ErrorResponse(prepared.error().ToString());
        co_return out;
      }
      er = std::move(*prepared);
      if (run.memory_bytes || run.pids || run.cpus) {
        // This run's own limits, on the pre-booted sandbox, before it starts.
        Limits l = opts_.pool.limits;
        if (run.memory_bytes) l.memory_bytes = *run.memory_bytes;
        if (run.pids) l.pids = *run.pids;
        if (run.cpus) l.cpus = *run.cpus;
        if (auto r = lease->sandbox->SetLimits(l); !r.ok()) {
          sink.Disarm();
          pool.Release(std::move(*lease), std::move(permit));
          out.kind = RunErrorKind::kInternal;
          out.resp = proto::ErrorResponse(r.error().ToString());
          co_return out;
        }
      }
      out.resp = proto::RunResponse{};
      out.resp.sandbox = lease->sandbox->id();
      const bool stream = run.stream;
      auto on_chunk = [&](bool is_err, std::string data) -> asio::awaitable<void> {
        if (stream) {
          if (!*gone) co_await sink.Chunk(is_err, std::move(data));
        } else {
          (is_err ? out.resp.stderr_data : out.resp.stdout_data) += data;
        }
      };
      bool unhealthy = false;
      std::optional<std::chrono::milliseconds> health;
      if (lease->hit) health = opts_.pool.health_timeout;
      const OomWatch oom(*lease->sandbox);
      auto exit = co_await lease->conn->Exec(er, run.stdin_data, on_chunk, health, &unhealthy);
      sink.Disarm();
      if (unhealthy && !*gone && attempt < 2) {
        pool.Evict(std::move(*lease), exit.error());
        continue;  // the command did not start: another sandbox takes it
      }
      if (exit.ok()) {
        out.resp.exit_code = exit->exit_code;
        out.resp.timed_out = exit->timed_out;
        out.resp.stdout_truncated = exit->stdout_truncated;
        out.resp.stderr_truncated = exit->stderr_truncated;
        out.resp.oom_killed = oom.Fired();
      } else if (*gone) {
        out.kind = RunErrorKind::kClientGone;
        out.resp.exit_code = -1;
        out.resp.error = "the client went away; the command was killed";
      } else {
        out.kind = RunErrorKind::kInternal;
        out.resp.exit_code = -1;
        out.resp.error = exit.error().ToString();
      }
      if (*gone) out.kind = RunErrorKind::kClientGone;
      const auto t_exec = Clock::now();
      std::string sandbox_id = lease->sandbox->id();
      const bool hit = lease->hit;
      pool.Release(std::move(*lease), std::move(permit));
      metrics.acquire_wait.Observe(std::chrono::duration<double>(t_acquired - t0).count());
      if (exit.ok()) {
        ++metrics.runs;
        metrics.run_duration.Observe(std::chrono::duration<double>(t_exec - t_acquired).count());
      }
      // One line per run; never the command's output.
      LogEvent(
          spdlog::level::info, "run",
          {{"image", image},
           {"driver", pool.driver()},
           {"sandbox", sandbox_id},
           {"exit", std::to_string(out.resp.exit_code), true},
           {"pool", hit ? "warm" : "cold"},
           {"queue_ms", FormatMs(t_permit - t0), true},
           {"acquire_ms", FormatMs(t_acquired - t_permit), true},
           {"exec_ms", FormatMs(t_exec - t_acquired), true},
           {"outcome", out.kind == RunErrorKind::kNone ? (out.resp.timed_out ? "timeout" : "exited")
                                                       : RunErrorKindName(out.kind)}});
      co_return out;
    }
  }

  void Stop() {
    if (stopping_) return;
    stopping_ = true;
    Notify("STOPPING=1\nSTATUS=draining");
    error_code ec;
    acceptor_.close(ec);
    if (opts_.unlink_socket) ::unlink(opts_.socket_path.c_str());
    signals_.cancel(ec);
    if (active_runs_ == 0) {
      FinishStop();
      return;
    }
    spdlog::info("waiting up to {} ms for {} run(s) in flight", opts_.drain_grace.count(),
                 active_runs_);
    drain_timer_.expires_after(opts_.drain_grace);
    drain_timer_.async_wait([this](error_code e) {
      if (!e) FinishStop();
    });
  }

  void FinishStop() {
    if (finishing_) return;
    finishing_ = true;
    drain_timer_.cancel();
    // The HTTP API answered 503 (and /healthz "draining") during the grace.
    if (http_) http_->Close();
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
  DriverSet& drivers_;
  asio::io_context io_;
  pool::PoolRuntime rt_;
  pool::PoolRegistry registry_;
  ImagePuller puller_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::signal_set signals_;
  asio::steady_timer drain_timer_;
  std::unique_ptr<HttpServer> http_;
  std::map<PoolKey, ImageRunMetrics> run_metrics_;
  std::map<RunErrorKind, uint64_t> errors_;
  size_t active_runs_ = 0;
  bool stopping_ = false;
  bool finishing_ = false;
};

// Binds the socket, refusing when a live daemon answers on it and replacing a
// stale file. The mode is set through the umask so that it is never, even for
// a moment, more open than 0600 (or 0660 with a group).
Result<int> BindSocket(const DaemonOptions& opts) {
  const std::string& path = opts.socket_path;
  if (path.empty() || path.front() != '/')
    return Fail("--socket", path, "must be an absolute path");
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) WB_RETURN_IF_ERROR(MkdirAll(dir, 0755));
  if (PathExists(path)) {
    auto probe = ConnectUnix(path);
    if (probe.ok())
      return Fail("pool start", path, "a warmbox pool daemon is already serving this socket");
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

Result<int> RunDaemon(const DaemonOptions& options) {
  DaemonOptions opts = options;
  ImageStore store(opts.driver.state_dir, opts.driver.uid_base);
  // Sockets first: clients can connect (and queue) while everything else
  // starts. Under systemd socket activation they are inherited instead.
  ListenFds activated = WB_TRY(TakeActivationFds());
  UniqueFd listen_fd, http_fd(activated.http);
  if (activated.pool >= 0) {
    listen_fd = UniqueFd(activated.pool);
    // systemd owns the socket file: it stays for the next activation.
    opts.unlink_socket = false;
    sockaddr_un addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(listen_fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
        addr.sun_path[0]) {
      opts.socket_path = addr.sun_path;
    }
  } else {
    listen_fd = UniqueFd(WB_TRY(BindSocket(opts)));
  }
  auto cleanup_socket = [&] {
    if (opts.unlink_socket) ::unlink(opts.socket_path.c_str());
  };
  std::optional<HttpOptions> http;
  if (!opts.http.empty() || http_fd) {
    HttpOptions h;
    if (!opts.http.empty()) {
      auto addr = ParseListenAddress(opts.http);
      if (!addr.ok()) {
        cleanup_socket();
        return addr.error();
      }
      h.addr = *addr;
    }
    if (!opts.http_token_file.empty()) {
      auto token = ReadTokenFile(opts.http_token_file);
      if (!token.ok()) {
        cleanup_socket();
        return token.error();
      }
      h.token = *token;
    } else if (http_fd || !h.addr.loopback) {
      // Anyone who can reach a non-loopback port could run code: a token is
      // mandatory there (and for inherited sockets, whose address systemd chose).
      cleanup_socket();
      return Fail("--http", opts.http.empty() ? "socket activation" : opts.http,
                  "a non-loopback address needs --http-token-file (bearer-token authentication)");
    }
    h.request_timeout = opts.request_timeout;
    h.listen_fd = http_fd.release();
    http = std::move(h);
  }
  DriverSet drivers(opts.driver, opts.vm_driver, &store);
  auto driver = drivers.Get(opts.default_driver);
  if (!driver.ok()) {
    cleanup_socket();
    return driver.error();
  }
  // `pool start --warm` (and --image) pull what they need before warming.
  std::vector<std::string> needed;
  if (!opts.default_image.empty()) needed.push_back(opts.default_image);
  for (const auto& w : opts.warm) needed.push_back(w.image);
  for (const auto& image : needed) {
    if (store.Exists(image)) continue;
    spdlog::info("pulling image {}", image);
    auto pulled = RunImageTool(
        {opts.image_tool_path, opts.driver.state_dir, opts.driver.uid_base, {"pull", image}});
    if (!pulled.ok()) {
      cleanup_socket();
      return pulled.error().Wrap("image " + image + " is missing");
    }
  }
  Daemon d(opts, drivers, store);
  WB_RETURN_IF_ERROR(d.Bind(listen_fd.release()));
  if (http) {
    if (auto r = d.BindHttp(std::move(*http)); !r.ok()) {
      cleanup_socket();
      return r.error();
    }
  }
  spdlog::info("serving on {}{}{} (default image {}, driver {}, size {}, max {}, ttl {}s)",
               opts.socket_path, http ? " and http://" : "", d.http_address(),
               opts.default_image.empty() ? "none" : opts.default_image, opts.default_driver,
               opts.pool.size, opts.pool.max, opts.pool.ttl_s);
  int rc = d.Run();
  cleanup_socket();
  spdlog::info("stopped");
  return rc;
}

}  // namespace wb::daemon
