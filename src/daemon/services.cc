#include "daemon/services.h"

#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "base/json.h"
#include "base/log.h"
#include "daemon/e2b/fs_messages.h"
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

asio::awaitable<void> PrepareServices(ImageStore& store, Sandbox& sb, const std::string& image) {
  if (!ServesBeforeClaim(sb)) co_return;
  auto img = store.Get(image);
  if (!img.ok()) co_return;
  // Warned once per image (and reason), not at every refill. The loop's
  // thread only.
  static std::set<std::string> warned;
  auto services = ServicesOf(image, img->config);
  if (!services.ok()) {
    const std::string why = services.error().ToString();
    if (warned.insert(why).second)
      spdlog::warn("{}; its sandboxes start no services (a live create of it is refused)", why);
    co_return;
  }
  if (services->empty()) co_return;
  asio::any_io_executor ex = co_await asio::this_coro::executor;
  const AgentEndpoint ep = sb.endpoint();
  auto started = co_await StartServices(ex, ep, *img, *services);
  if (!started.ok()) {
    const std::string why = started.error().ToString();
    if (warned.insert(why).second) spdlog::warn("pool {}: {}", image, why);
  }
}

}  // namespace wb::daemon
