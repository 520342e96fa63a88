#include "daemon/services.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "base/json.h"
#include "base/log.h"
#include "daemon/e2b/fs_messages.h"
#include "daemon/e2b/port_proxy.h"
#include "pool/agent_conn.h"

namespace wb::daemon {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

// The failure of a live operation: e's message, F's text, or what came.
std::string AgentRefusal(const proto::Frame& f) {
  if (f.type == proto::FrameType::kOpError) {
    auto e = proto::ParseOpError(f.payload);
    return e.ok() ? e->message : f.payload;
  }
  if (f.type == proto::FrameType::kFailure) return "the agent refused: " + f.payload;
  return std::string("unexpected frame '") + static_cast<char>(f.type) + "' from the agent";
}

// One L operation (with its I/C for a write) on a connection of its own.
asio::awaitable<Result<void>> FileOp(asio::any_io_executor ex, AgentEndpoint ep,
                                     proto::FileRequest req, std::string data) {
  auto conn = co_await pool::AgentConn::Connect(ex, ep);
  if (!conn.ok()) co_return conn.error();
  const std::string j = proto::ToJson(req);
  if (auto s = co_await (*conn)->Send(proto::FrameType::kFile, j); !s.ok()) co_return s.error();
  if (req.op == "write") {
    if (!data.empty()) {
      if (auto s = co_await (*conn)->Send(proto::FrameType::kStdin, data); !s.ok())
        co_return s.error();
    }
    const std::string none;
    if (auto s = co_await (*conn)->Send(proto::FrameType::kStdinClose, none); !s.ok())
      co_return s.error();
  }
  auto f = co_await (*conn)->ReadFrame();
  if (!f.ok()) co_return f.error();
  if (f->type != proto::FrameType::kFileReply)
    co_return Fail(ErrorCode::kInternal, req.op, req.path, AgentRefusal(*f));
  co_return Ok();
}

}  // namespace

proto::ExecRequest ServiceExec(const Image& image, const ServiceSpec& s) {
  ImageConfig c = image.config;
  c.entrypoint.clear();  // the service's argv is the whole command
  c.cmd.clear();
  proto::ExecRequest req;
  req.argv = s.argv;
  req.env = s.env;
  req.user = s.user;
  req.cwd = s.cwd;
  req = c.Apply(req);
  req.keep = true;
  req.tag = ServiceTag(s.name);
  req.ring_bytes = kServiceRingBytes;
  return req;
}

asio::awaitable<Result<void>> StartServices(asio::any_io_executor ex, AgentEndpoint ep,
                                            const Image& image,
                                            const std::vector<ServiceSpec>& services) {
  for (const auto& s : services) {
    auto conn = co_await pool::AgentConn::Connect(ex, ep);
    if (!conn.ok()) co_return conn.error();
    const std::string e = proto::ToJson(ServiceExec(image, s));
    if (auto sent = co_await (*conn)->Send(proto::FrameType::kExec, e); !sent.ok())
      co_return sent.error();
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return f.error();
    if (f->type != proto::FrameType::kStarted) {
      co_return Fail(ErrorCode::kFailedPrecondition, "start service", image.name + ": " + s.name,
                     AgentRefusal(*f));
    }
    // Hanging up leaves it running (a kept process), its output in its ring.
  }
  co_return Ok();
}

asio::awaitable<Result<void>> AwaitServicesReady(asio::any_io_executor ex, AgentEndpoint ep,
                                                 const std::string& image,
                                                 const std::vector<ServiceSpec>& services,
                                                 std::function<bool()> stopping) {
  using std::chrono::milliseconds;
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  asio::steady_timer timer(ex);
  for (const auto& s : services) {
    if (s.ready_port == 0) continue;
    const std::string what = "service " + s.name + " of image " + image;
    const std::string ports = std::to_string(s.ready_port);
    const ReadyPollPlan plan{std::chrono::seconds(s.ready_timeout_s)};
    for (uint32_t attempts = 0;; ++attempts) {
      if (stopping()) co_return Fail(ErrorCode::kDraining, "service ready", what, "shutting down");
      auto conn = co_await pool::AgentConn::Connect(ex, ep);
      if (!conn.ok()) co_return conn.error().Wrap("service ready: " + what);
      std::unique_ptr<pool::AgentConn> agent = std::move(*conn);
      const std::string sandbox = ep.socket_path;
      auto tunnel = co_await e2b::OpenTunnelOn(std::move(agent), sandbox, s.ready_port);
      // Accepted: ready. The tunnel closes here (the service sees a client
      // that sends nothing and leaves).
      if (tunnel.ok()) break;
      if (tunnel.error().err != ECONNREFUSED)
        co_return tunnel.error().Wrap("service ready: " + what + ": port " + ports);
      // Nothing listens yet. A service that died never will: said at once,
      // with its status, rather than at the timeout.
      auto listed = co_await ListServices(ex, ep);
      if (!listed.ok()) co_return listed.error().Wrap("service ready: " + what);
      for (const auto& st : *listed) {
        if (st.name == s.name && st.exit_code) {
          co_return Fail(ErrorCode::kFailedPrecondition, "service ready", what,
                         "exited (status " + std::to_string(*st.exit_code) + ") before port " +
                             ports + " (its ready_port) accepted a connection");
        }
      }
      const auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
      auto delay = plan.Next(attempts, elapsed);
      if (!delay) {
        co_return Fail(ErrorCode::kDeadlineExceeded, "service ready", what,
                       "port " + ports + " (its ready_port) accepted no connection within " +
                           std::to_string(s.ready_timeout_s) + " s of the start");
      }
      timer.expires_after(*delay);
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  co_return Ok();
}

asio::awaitable<Result<std::vector<ServiceState>>> ListServices(asio::any_io_executor ex,
                                                                AgentEndpoint ep) {
  auto conn = co_await pool::AgentConn::Connect(ex, ep);
  if (!conn.ok()) co_return conn.error();
  const std::string none;
  if (auto s = co_await (*conn)->Send(proto::FrameType::kList, none); !s.ok()) co_return s.error();
  auto f = co_await (*conn)->ReadFrame();
  if (!f.ok()) co_return f.error();
  if (f->type != proto::FrameType::kListReply)
    co_return Fail("list services", "", AgentRefusal(*f));
  auto list = proto::ParseProcessList(f->payload);
  if (!list.ok()) co_return list.error();
  std::vector<ServiceState> out;
  for (const auto& p : *list) {
    std::string name = ServiceNameOfTag(p.tag);
    if (name.empty()) continue;
    ServiceState st;
    st.name = std::move(name);
    st.pid = p.pid;
    if (p.exit) st.exit_code = p.exit->exit_code;
    out.push_back(std::move(st));
  }
  co_return out;
}

asio::awaitable<Result<void>> WriteEnvFile(asio::any_io_executor ex, AgentEndpoint ep,
                                           std::vector<std::string> env) {
  // A reader (the in-sandbox server) must never see half a file: written
  // beside it, then renamed over it.
  const std::string tmp = std::string(kEnvFilePath) + ".tmp";
  proto::FileRequest w;
  w.op = "write";
  w.path = tmp;
  w.mode = 0644;
  std::string body = e2b::EnvsJson(env);
  auto wrote = co_await FileOp(ex, ep, w, body);
  if (!wrote.ok()) co_return wrote.error().Wrap("write " + std::string(kEnvFilePath));
  proto::FileRequest r;
  r.op = "rename";
  r.path = tmp;
  r.to = kEnvFilePath;
  const std::string nothing;
  auto renamed = co_await FileOp(ex, ep, r, nothing);
  if (!renamed.ok()) co_return renamed.error().Wrap("write " + std::string(kEnvFilePath));
  co_return Ok();
}

asio::awaitable<Result<void>> PrepareServices(ImageStore& store, Sandbox& sb,
                                              const std::string& image,
                                              std::function<bool()> stopping) {
  if (!ServesBeforeClaim(sb)) co_return Ok();
  auto img = store.Get(image);
  if (!img.ok()) co_return Ok();
  // Warned once per image (and reason), not at every refill. The loop's
  // thread only.
  static std::set<std::string> warned;
  auto services = ServicesOf(image, img->config);
  if (!services.ok()) {
    const std::string why = services.error().ToString();
    if (warned.insert(why).second)
      spdlog::warn("{}; its sandboxes start no services (a live create of it is refused)", why);
    co_return Ok();
  }
  if (services->empty()) co_return Ok();
  asio::any_io_executor ex = co_await asio::this_coro::executor;
  const AgentEndpoint ep = sb.endpoint();
  auto started = co_await StartServices(ex, ep, *img, *services);
  if (!started.ok()) {
    const std::string why = started.error().ToString();
    if (warned.insert(why).second) spdlog::warn("pool {}: {}", image, why);
    co_return Ok();
  }
  co_return co_await AwaitServicesReady(ex, ep, image, *services, std::move(stopping));
}

}  // namespace wb::daemon
