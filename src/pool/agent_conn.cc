#include "pool/agent_conn.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace wb::pool {

using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

asio::awaitable<Result<std::unique_ptr<AgentConn>>> AgentConn::Connect(asio::any_io_executor ex,
                                                                       const AgentEndpoint& ep) {
  auto c = std::make_unique<AgentConn>(ex);
  c->path_ = ep.socket_path;
  error_code ec;
  co_await c->sock_.async_connect(asio::local::stream_protocol::endpoint(ep.socket_path),
                                  redirect_error(use_awaitable, ec));
  if (ec) co_return ErrnoValue(ec.value(), "connect", ep.socket_path);
  co_return std::move(c);
}

void AgentConn::Close() {
  error_code ec;
  sock_.close(ec);
}

asio::awaitable<Result<proto::Frame>> AgentConn::ReadFrame() {
  unsigned char hdr[proto::kHeaderSize];
  error_code ec;
  co_await asio::async_read(sock_, asio::buffer(hdr), redirect_error(use_awaitable, ec));
  if (ec) {
    co_return Fail("read from agent", path_,
                   ec == asio::error::eof ? "the agent closed the connection (did the sandbox die?)"
                                          : ec.message());
  }
  proto::FrameDecoder dec;
  if (auto r = dec.Feed(std::string_view(reinterpret_cast<char*>(hdr), sizeof hdr)); !r.ok()) {
    co_return r.error();
  }
  uint32_t n =
      (uint32_t{hdr[1]} << 24) | (uint32_t{hdr[2]} << 16) | (uint32_t{hdr[3]} << 8) | hdr[4];
  std::string payload(n, '\0');
  if (n) {
    co_await asio::async_read(sock_, asio::buffer(payload), redirect_error(use_awaitable, ec));
    if (ec) co_return Fail("read from agent", path_, ec.message());
  }
  co_return proto::Frame{static_cast<proto::FrameType>(hdr[0]), std::move(payload)};
}

asio::awaitable<Result<void>> AgentConn::Send(proto::FrameType type, std::string_view payload) {
  std::string frame = proto::EncodeFrame(type, payload);
  error_code ec;
  co_await asio::async_write(sock_, asio::buffer(frame), redirect_error(use_awaitable, ec));
  if (ec) co_return Fail("write to agent", path_, ec.message());
  co_return Ok();
}

namespace {

// Closes the connection if it is still armed when the time is up. The flags
// are shared with the timer's handler, which may run after the waiting
// coroutine has finished: disarming first makes that handler a no-op.
class Watchdog {
 public:
  Watchdog(asio::any_io_executor ex, std::chrono::milliseconds after, AgentConn* conn)
      : timer_(std::make_shared<asio::steady_timer>(ex, after)) {
    timer_->async_wait([armed = armed_, fired = fired_, conn](error_code ec) {
      if (!ec && *armed) {
        *fired = true;
        conn->Close();
      }
    });
  }
  ~Watchdog() {
    *armed_ = false;
    timer_->cancel();
  }
  bool fired() const { return *fired_; }

 private:
  std::shared_ptr<bool> armed_ = std::make_shared<bool>(true);
  std::shared_ptr<bool> fired_ = std::make_shared<bool>(false);
  std::shared_ptr<asio::steady_timer> timer_;
};

}  // namespace

asio::awaitable<Result<proto::ExecExit>> AgentConn::Exec(
    const proto::ExecRequest& req_in, const std::optional<std::string>& stdin_data,
    ChunkFn on_chunk, std::optional<std::chrono::milliseconds> health_check, bool* unhealthy) {
  proto::ExecRequest req = req_in;
  req.stdin = stdin_data.has_value();
  std::string head;
  if (health_check) proto::AppendFrame(head, proto::FrameType::kHeartbeat, "");
  proto::AppendFrame(head, proto::FrameType::kExec, proto::ToJson(req));
  error_code ec;
  if (health_check) {
    Watchdog dog(sock_.get_executor(), *health_check, this);
    co_await asio::async_write(sock_, asio::buffer(head), redirect_error(use_awaitable, ec));
    Result<proto::Frame> h = Fail("health check", path_, ec ? ec.message() : "");
    if (!ec) h = co_await ReadFrame();
    if (!h.ok() || h->type != proto::FrameType::kHeartbeatReply) {
      if (unhealthy) *unhealthy = true;
      co_return Fail("health check", path_,
                     dog.fired()
                         ? "no answer within " + std::to_string(health_check->count()) + " ms"
                         : (h.ok() ? std::string("unexpected reply") : h.error().ToString()));
    }
  } else {
    co_await asio::async_write(sock_, asio::buffer(head), redirect_error(use_awaitable, ec));
    if (ec) co_return Fail("exec", path_, "send request: " + ec.message());
  }
  if (stdin_data) {
    // Written by its own coroutine so that output keeps flowing meanwhile.
    auto buf = std::make_shared<std::string>();
    std::string_view d = *stdin_data;
    while (!d.empty()) {
      size_t n = std::min<size_t>(d.size(), 1 << 20);
      proto::AppendFrame(*buf, proto::FrameType::kStdin, d.substr(0, n));
      d.remove_prefix(n);
    }
    proto::AppendFrame(*buf, proto::FrameType::kStdinClose, "");
    asio::co_spawn(
        sock_.get_executor(),
        [this, buf]() -> asio::awaitable<void> {
          error_code wec;
          co_await asio::async_write(sock_, asio::buffer(*buf), redirect_error(use_awaitable, wec));
        },
        asio::detached);
  }
  // The agent enforces the timeout; this backstop covers an agent that hangs.
  std::optional<Watchdog> backstop;
  if (req.timeout_ms) {
    backstop.emplace(sock_.get_executor(),
                     std::chrono::milliseconds(req.timeout_ms) + std::chrono::seconds(10), this);
  }
  Result<proto::ExecExit> result = Fail("exec", path_, "no exit from the agent");
  for (;;) {
    auto f = co_await ReadFrame();
    if (!f.ok()) {
      result = backstop && backstop->fired()
                   ? Fail("exec", path_, "the agent did not report an exit in time")
                   : f.error();
      break;
    }
    if (f->type == proto::FrameType::kStdout || f->type == proto::FrameType::kStderr) {
      co_await on_chunk(f->type == proto::FrameType::kStderr, std::move(f->payload));
      continue;
    }
    if (f->type == proto::FrameType::kExit) {
      result = proto::ParseExecExit(f->payload);
      break;
    }
    result =
        Fail("exec", path_,
             f->type == proto::FrameType::kFailure ? "agent refused: " + f->payload
                                                   : std::string("unexpected frame from agent"));
    break;
  }
  co_return result;
}

}  // namespace wb::pool
