#include "daemon/server.h"

#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "base/fs.h"
#include "base/log.h"
#include "daemon/drivers.h"
#include "daemon/http_server.h"
#include "daemon/live_registry.h"
#include "daemon/run_executor.h"
#include "daemon/services.h"
#include "daemon/socket_server.h"
#include "daemon/systemd.h"
#include "image/image_tool.h"
#include "sandbox/agent_client.h"

namespace wb::daemon {

namespace asio = boost::asio;
using boost::system::error_code;

std::string DefaultSocketPath() {
  if (::geteuid() == 0) return "/run/warmbox/pool.sock";
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg && *xdg) return std::string(xdg) + "/warmbox/pool.sock";
  return "/tmp/warmbox-" + std::to_string(::geteuid()) + "/pool.sock";
}

namespace {

// The daemon's lifecycle: one event loop serving both front ends and the run
// executor; signals and stop requests start the drain, and the drain's steps
// are events (the last run ends, the last creation or teardown ends), not
// polls of a counter.
class Daemon {
 public:
  Daemon(const DaemonOptions& opts, DriverSet& drivers, ImageStore& store)
      : opts_(opts),
        executor_(
            io_, opts, [&drivers](const std::string& name) { return drivers.Get(name); }, store,
            [&drivers](proto::ImageStat& s) { drivers.AnnotateStat(s); }),
        live_(io_, executor_.registry(), executor_.puller(),
              LiveOptions{.state_dir = opts.driver.state_dir,
                          .default_image = opts.default_image,
                          .default_driver = opts.default_driver,
                          .max_sandboxes = opts.max_sandboxes,
                          .max_timeout_s = opts.max_sandbox_timeout_s}),
        socket_(io_, executor_,
                SocketOptions{opts.socket_path, opts.socket_group, opts.request_timeout,
                              [this](bool keep) { Stop(keep); }}),
        signals_(io_, SIGINT, SIGTERM),
        drain_timer_(io_) {
    socket_.set_live(&live_);
    // An image's services start in each of its pre-booted sandboxes, which
    // go idle once those that declare readiness are ready.
    pool::PoolRuntime& rt = executor_.registry().runtime();
    rt.prepare = [&store, &rt](Sandbox& sb, const std::string& image) {
      std::function<bool()> stopping = [&rt] { return rt.stopping; };
      return PrepareServices(store, sb, image, std::move(stopping));
    };
    executor_.set_live_counts([this] { return live_.CountByState(); });
    executor_.set_live_network([this] {
      std::map<std::string, MetricsSnapshot::SandboxNet> out;
      for (const auto& [id, n] : live_.NetworkCountersById())
        out[id] = MetricsSnapshot::SandboxNet{n.bytes_out, n.bytes_in, n.refused};
      return out;
    });
  }

  Result<void> Bind(int listen_fd) { return socket_.Adopt(listen_fd); }

  Result<void> BindHttp(HttpOptions o) {
    http_ = std::make_unique<HttpServer>(io_, executor_, &live_, std::move(o));
    executor_.set_http_requests([this] { return http_->requests(); });
    return http_->Open();
  }
  std::string http_address() const { return http_ ? http_->local_address() : ""; }

  int Run() {
    signals_.async_wait([this](error_code ec, int sig) {
      if (ec) return;
      spdlog::info("signal {}: stopping", sig);
      Stop();
    });
    // Live sandboxes an earlier daemon left running are ours again first.
    live_.AdoptAll();
    socket_.Start();
    if (http_) http_->Start();
    // Warm the default image and every --warm image, in parallel; the socket
    // already serves (status answers at once, runs are served cold meanwhile).
    executor_.Warm();
    // Both listeners are bound and the loop is about to serve them.
    Notify("READY=1\nSTATUS=serving");
    io_.run();
    executor_.Join();
    return 0;
  }

 private:
  // The drain: refuse new runs, let those in flight finish within the grace,
  // then FinishStop.
  // keep_sandboxes: the live sandboxes stay for the next daemon (pool stop
  // --keep-sandboxes); otherwise they are destroyed with the pools.
  void Stop(bool keep_sandboxes = false) {
    if (executor_.draining()) return;
    keep_sandboxes_ = keep_sandboxes;
    executor_.BeginDrain();
    live_.BeginDrain();
    Notify("STOPPING=1\nSTATUS=draining");
    socket_.Close();
    if (opts_.unlink_socket) ::unlink(opts_.socket_path.c_str());
    error_code ec;
    signals_.cancel(ec);
    if (size_t n = executor_.runs_in_flight()) {
      spdlog::info("waiting up to {} ms for {} run(s) in flight", opts_.drain_grace.count(), n);
      drain_timer_.expires_after(opts_.drain_grace);
      drain_timer_.async_wait([this](error_code e) {
        if (!e) FinishStop();
      });
    }
    // At once if no run is in flight, else when the last one ends.
    executor_.WhenRunsDone([this] { FinishStop(); });
  }

  void FinishStop() {
    if (finishing_) return;
    finishing_ = true;
    drain_timer_.cancel();
    // The HTTP API answered 503 (and /healthz "draining") during the grace.
    if (http_) http_->Close();
    live_.Shutdown(keep_sandboxes_);
    // The loop stops when the last creation or teardown in flight ends.
    executor_.Shutdown([this] { io_.stop(); });
  }

  const DaemonOptions& opts_;
  asio::io_context io_;
  RunExecutor executor_;
  LiveRegistry live_;
  SocketServer socket_;
  asio::signal_set signals_;
  asio::steady_timer drain_timer_;
  std::unique_ptr<HttpServer> http_;
  bool finishing_ = false;
  bool keep_sandboxes_ = false;
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
    // A token always (docs/security.md): the one in --http-token-file, or
    // the state dir's, generated at first start. Without one, every local
    // user (and, through the browser, every web page) could run code.
    bool created = false;
    // On a fresh machine the state dir does not exist yet (the driver makes
    // it later, the same way).
    if (auto made = MkdirAll(opts.driver.state_dir, 0755); !made.ok()) {
      cleanup_socket();
      return made.error();
    }
    auto token = opts.http_token_file.empty()
                     ? LoadOrCreateTokenFile(DefaultTokenPath(opts.driver.state_dir), &created)
                     : ReadTokenFile(opts.http_token_file);
    if (!token.ok()) {
      cleanup_socket();
      return token.error();
    }
    if (created) {
      spdlog::info("http: generated the API's bearer token in {}",
                   DefaultTokenPath(opts.driver.state_dir));
    }
    h.token = *token;
    h.max_connections = opts.http_max_connections;
    h.e2b_default_network = opts.e2b_default_network;
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
  // `pool start --warm` (and --image) pull (or build) what they need before warming.
  std::vector<std::string> needed;
  if (!opts.default_image.empty()) needed.push_back(opts.default_image);
  for (const auto& w : opts.warm) needed.push_back(w.image);
  for (const auto& image : needed) {
    if (store.Exists(image)) continue;
    spdlog::info("image {} is missing: {}", image, ImagePuller::HowMissing(image));
    auto pulled = RunImageTool(ImagePuller::CallFor(
        {opts.image_tool_path, opts.driver.state_dir, opts.driver.uid_base, {}}, image));
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
