#include "daemon/socket_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/json.h"
#include "base/log.h"
#include "base/strings.h"
#include "daemon/code_run.h"
#include "daemon/live_proto.h"
#include "daemon/sandbox_ops.h"
#include "mcp/live_backend.h"
#include "mcp/server.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using Socket = asio::local::stream_protocol::socket;

namespace {

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

// The message of an MCP request ({"op":"mcp","message":"..."}), else nullopt.
std::optional<std::string> McpRequestMessage(const std::string& body) {
  auto j = ParseJsonBounded(body, "request");
  if (!j.ok() || !j->is_object()) return std::nullopt;
  auto op = j->find("op");
  if (op == j->end() || *op != "mcp") return std::nullopt;
  auto m = j->find("message");
  if (m == j->end() || !m->is_string()) return std::string();  // answered as a parse error
  return m->get<std::string>();
}

asio::awaitable<void> SendFrame(Socket& s, std::string_view json) {
  std::string frame = proto::EncodePoolFrame(json);
  error_code ec;
  co_await asio::async_write(s, asio::buffer(frame), redirect_error(use_awaitable, ec));
}

// A run's response, encoded piece by piece from its held (maybe spilled)
// output: the frame's length is known before the first byte, so nothing is
// ever built whole (issue 19, finding 10). A client that hangs up ends the
// writes; the outcome, and with it any spill file, is freed by the caller.
asio::awaitable<void> SendRunResponse(Socket& s, const RunOutcome& out) {
  ResponseEncoder enc(ResponseEncoder::Format::kPool, out.resp, out.output.get());
  if (enc.size() > UINT32_MAX) {
    // Only with --max-run-output above 511 MiB: two such outputs as numbers
    // do not fit a frame's 32-bit length.
    const std::string refusal = proto::ToJson(proto::ErrorResponse(
        "the response of " + std::to_string(enc.size()) +
            " bytes does not fit a frame (4 GiB): lower output_cap, or stream the run",
        RunErrorKindName(RunErrorKind::kInternal)));
    co_await SendFrame(s, refusal);
    co_return;
  }
  const uint32_t n = static_cast<uint32_t>(enc.size());
  std::string piece{static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                    static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
  std::string next;
  error_code ec;
  for (;;) {
    // The header goes with the first piece; a read error mid-response
    // (the spill file) can only cut the frame short: the client sees a
    // truncated frame, never wrong bytes.
    auto more = enc.Next(next);
    if (!more.ok()) {
      spdlog::warn("run response: {}", more.error().ToString());
      co_return;
    }
    if (!*more) break;
    piece += next;
    co_await asio::async_write(s, asio::buffer(piece), redirect_error(use_awaitable, ec));
    if (ec) co_return;
    piece.clear();
  }
}

asio::awaitable<void> SocketSink::Chunk(bool is_stderr, std::string data) {
  co_await SendFrame(s_, proto::StreamChunkJson(is_stderr, data));
}

}  // namespace

SocketServer::SocketServer(asio::io_context& io, RunService& service, SocketOptions opts)
    : io_(io), service_(service), opts_(std::move(opts)), acceptor_(io) {}

SocketServer::~SocketServer() = default;

void SocketServer::set_live(LiveService* live) {
  live_ = live;
  mcp_.reset();
  mcp_backend_.reset();
  if (!live) return;
  mcp_backend_ = std::make_unique<mcp::LiveBackend>(*live);
  mcp_ = std::make_unique<mcp::Server>(*mcp_backend_);
}

Result<void> SocketServer::Adopt(int listen_fd) {
  error_code ec;
  acceptor_.assign(asio::local::stream_protocol(), listen_fd, ec);
  if (ec) return ErrnoValue(ec.value(), "assign", opts_.path);
  return Ok();
}

void SocketServer::Start() { asio::co_spawn(io_, Accept(), asio::detached); }

void SocketServer::Close() {
  error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> SocketServer::Accept() {
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

asio::awaitable<void> SocketServer::Session(Socket s) {
  if (!PeerAllowed(s.native_handle(), opts_.socket_group)) {
    spdlog::warn("refused a client: its uid is neither root, ours, nor in the socket group");
    co_await SendFrame(
        s, proto::ToJson(proto::ErrorResponse("permission denied", "permission_denied")));
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
    service_.CountError(RunErrorKind::kBadRequest);
    co_await SendFrame(s, proto::ToJson(proto::ErrorResponse(
                              len.error().ToString(), RunErrorKindName(KindOfError(len.error())))));
    co_return;
  }
  std::string body(*len, '\0');
  co_await asio::async_read(s, asio::buffer(body), redirect_error(use_awaitable, ec));
  *armed = false;
  timer->cancel();
  if (ec) co_return;
  if (auto m = McpRequestMessage(body)) {
    co_await McpMessage(s, std::move(*m));
    co_return;
  }
  if (live_ && IsLiveRequest(body)) {
    co_await LiveSession(s, std::move(body));
    co_return;
  }
  auto req = proto::ParsePoolRequest(body);
  if (!req.ok()) {
    service_.CountError(RunErrorKind::kBadRequest);
    co_await SendFrame(s, proto::ToJson(proto::ErrorResponse(
                              req.error().ToString(), RunErrorKindName(KindOfError(req.error())))));
    co_return;
  }
  switch (req->op) {
    case proto::Op::kStatus:
      if (req->format == "prometheus") {
        nlohmann::json j{{"format", "prometheus"}, {"metrics", service_.Metrics()}};
        co_await SendFrame(s, j.dump());
      } else {
        co_await SendFrame(s, service_.StatusJson());
      }
      co_return;
    case proto::Op::kStop:
      co_await SendFrame(s, R"({"ok":true,"error":null})");
      if (opts_.on_stop) opts_.on_stop(req->keep_sandboxes);
      co_return;
    case proto::Op::kLive:
      if (!live_) {
        co_await SendFrame(s, LiveErrorJson(Fail(ErrorCode::kFailedPrecondition, "live sandboxes",
                                                 "", "not served by this daemon")));
        co_return;
      }
      co_await ServeLiveOp(s, body, *live_);
      co_return;
    case proto::Op::kRun: {
      SocketSink sink(s);
      RunOutcome out = co_await service_.Run(std::move(req->run), sink);
      // out.resp carries the kind (the HTTP API's word for the same failure).
      if (out.kind != RunErrorKind::kClientGone) co_await SendRunResponse(s, out);
      co_return;
    }
  }
}

asio::awaitable<void> SocketServer::McpMessage(Socket& s, std::string message) {
  if (!mcp_) {
    const std::string refusal = LiveErrorJson(Fail(ErrorCode::kFailedPrecondition, "mcp", "",
                                                   "live sandboxes are not served by this daemon"));
    co_await SendFrame(s, refusal);
    co_return;
  }
  // Each message stands alone: the stdio relay is one session, and nothing
  // of a session changes what a later message gets.
  auto session = std::make_shared<mcp::Session>();
  std::string reply = co_await mcp_->Handle(std::move(message), session);
  nlohmann::json out = {{"ok", true}, {"reply", std::move(reply)}};
  std::string frame = mcp::Dump(out);
  co_await SendFrame(s, frame);
}

// --- live sandboxes (sandbox_* ops; docs/protocol.md) ---------------------------
// Kept in this one block: every live op is parsed by live_proto.h and served
// by the LiveService.

namespace {

// (Replies are built before the co_await that sends them: GCC 12 evaluates
// both arms of a conditional inside a co_await expression.)
std::string InfoReply(const Result<LiveInfo>& r) {
  if (!r.ok()) return LiveErrorJson(r.error());
  return "{\"ok\":true,\"sandbox\":" + ToJson(r.value()) + "}";
}

std::string OkReply(const Result<void>& r) {
  if (!r.ok()) return LiveErrorJson(r.error());
  return R"({"ok":true})";
}

}  // namespace

asio::awaitable<void> SocketServer::LiveSession(Socket& s, std::string body) {
  auto req = ParseLiveRequest(body);
  if (!req.ok()) {
    co_await SendFrame(s, LiveErrorJson(req.error()));
    co_return;
  }
  LiveService& live = *live_;
  switch (req->op) {
    case LiveOp::kCreate: {
      if (service_.draining()) {
        co_await SendFrame(s, LiveErrorJson(Fail(ErrorCode::kDraining, "sandbox create", "",
                                                 "the daemon is shutting down")));
        co_return;
      }
      auto r = co_await live.Create(std::move(req->create));
      std::string reply = InfoReply(r);
      co_await SendFrame(s, reply);
      co_return;
    }
    case LiveOp::kList: {
      std::string out = "{\"ok\":true,\"sandboxes\":[";
      bool first = true;
      for (const auto& i : live.List(req->metadata)) {
        if (!first) out += ',';
        first = false;
        out += ToJson(i);
      }
      out += "]}";
      co_await SendFrame(s, out);
      co_return;
    }
    case LiveOp::kInspect: {
      std::string reply = InfoReply(live.Inspect(req->id));
      co_await SendFrame(s, reply);
      co_return;
    }
    case LiveOp::kSetTimeout: {
      std::string reply = InfoReply(live.SetTimeout(req->id, req->timeout_s));
      co_await SendFrame(s, reply);
      co_return;
    }
    case LiveOp::kUpdateNetwork: {
      auto r = co_await live.UpdateNetwork(req->id, std::move(req->network));
      std::string reply = InfoReply(r);
      co_await SendFrame(s, reply);
      co_return;
    }
    case LiveOp::kKill:
    case LiveOp::kPause:
    case LiveOp::kResume: {
      Result<void> r = Ok();
      if (req->op == LiveOp::kKill) {
        r = co_await live.Kill(req->id);
      } else if (req->op == LiveOp::kPause) {
        r = co_await live.Pause(req->id);
      } else {
        r = co_await live.Resume(req->id);
      }
      std::string reply = OkReply(r);
      co_await SendFrame(s, reply);
      co_return;
    }
    case LiveOp::kCode: {
      // Each NDJSON line of the interpreter as {"line":"..."}, then
      // {"ok":true} or the error; a client that hangs up (the socket turns
      // readable: it sends nothing after its request) interrupts the code.
      CodeLineFn on_line = [&s](std::string line) -> asio::awaitable<bool> {
        nlohmann::json f = {{"line", std::move(line)}};
        std::string frame = f.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        co_await SendFrame(s, frame);
        co_return true;
      };
      auto gone = [&s]() -> asio::awaitable<void> {
        error_code ec;
        co_await s.async_wait(Socket::wait_read, redirect_error(use_awaitable, ec));
      };
      using namespace asio::experimental::awaitable_operators;
      auto run = RunCode(live, req->id, std::move(req->code), on_line);
      auto hangup = gone();
      auto r = co_await (std::move(run) || std::move(hangup));
      if (r.index() != 0) co_return;
      std::string reply = OkReply(std::get<0>(r));
      co_await SendFrame(s, reply);
      co_return;
    }
    case LiveOp::kLogs: {
      // follow: lines logged from the tail's read on are queued until sent.
      auto queue = std::make_shared<std::deque<std::optional<std::string>>>();
      auto wake = std::make_shared<asio::steady_timer>(io_, asio::steady_timer::time_point::max());
      std::shared_ptr<void> handle;
      if (req->follow) {
        auto h = live.FollowLogs(req->id, [queue, wake](const std::optional<std::string>& line) {
          queue->push_back(line);
          wake->cancel();
        });
        if (!h.ok()) {
          co_await SendFrame(s, LiveErrorJson(h.error()));
          co_return;
        }
        handle = *h;
      }
      auto lines = live.Logs(req->id, req->tail);
      if (!lines.ok()) {
        co_await SendFrame(s, LiveErrorJson(lines.error()));
        co_return;
      }
      nlohmann::json first = {{"ok", true}, {"lines", *lines}};
      co_await SendFrame(s, first.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      if (!req->follow) co_return;
      // Until the sandbox ends or the client hangs up (the socket turns
      // readable: a client sends nothing after its request).
      auto gone = std::make_shared<bool>(false);
      s.async_wait(Socket::wait_read, [gone, wake](error_code) {
        *gone = true;
        wake->cancel();
      });
      for (;;) {
        while (!queue->empty() && !*gone) {
          std::optional<std::string> line = std::move(queue->front());
          queue->pop_front();
          nlohmann::json f = {{"end", true}};
          if (line) f = {{"line", *line}};
          std::string frame = f.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          co_await SendFrame(s, frame);
          if (!line) {
            error_code ignored;
            s.cancel(ignored);
            co_return;
          }
        }
        if (*gone) co_return;
        error_code ec;
        co_await wake->async_wait(redirect_error(use_awaitable, ec));
      }
    }
  }
}

}  // namespace wb::daemon
