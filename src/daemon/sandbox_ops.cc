#include "daemon/sandbox_ops.h"

#include <algorithm>
#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "daemon/live_proto.h"
#include "proto/live_ops.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

namespace asio = boost::asio;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using Socket = asio::local::stream_protocol::socket;

namespace {

asio::awaitable<void> SendJson(Socket& s, std::string_view json) {
  std::string frame = proto::EncodePoolFrame(json);
  error_code ec;
  co_await asio::async_write(s, asio::buffer(frame), redirect_error(use_awaitable, ec));
}

// Agent to client: bytes as they come (the agent's frames are the client's).
asio::awaitable<void> PumpAgent(Socket& agent, Socket& client) {
  std::vector<char> buf(256 * 1024);
  for (;;) {
    error_code ec;
    size_t n = co_await agent.async_read_some(asio::buffer(buf), redirect_error(use_awaitable, ec));
    if (ec || n == 0) co_return;
    co_await asio::async_write(client, asio::buffer(buf.data(), n),
                               redirect_error(use_awaitable, ec));
    if (ec) co_return;
  }
}

// Client to agent: frame by frame, only the allowed types.
asio::awaitable<void> PumpClient(Socket& client, Socket& agent,
                                 const std::vector<proto::FrameType>& allowed) {
  std::string payload;
  for (;;) {
    std::array<unsigned char, proto::kHeaderSize> hdr;
    error_code ec;
    co_await asio::async_read(client, asio::buffer(hdr), redirect_error(use_awaitable, ec));
    if (ec) co_return;
    auto type = static_cast<proto::FrameType>(hdr[0]);
    uint32_t n =
        (uint32_t{hdr[1]} << 24) | (uint32_t{hdr[2]} << 16) | (uint32_t{hdr[3]} << 8) | hdr[4];
    // A frame the operation does not take, or an oversize one, ends the
    // relay before its payload is read: nothing unchecked reaches the agent.
    if (std::find(allowed.begin(), allowed.end(), type) == allowed.end() || n > proto::kMaxFrame) {
      co_return;
    }
    payload.resize(n);
    if (n) {
      co_await asio::async_read(client, asio::buffer(payload), redirect_error(use_awaitable, ec));
      if (ec) co_return;
    }
    std::array<asio::const_buffer, 2> out{asio::buffer(hdr), asio::buffer(payload)};
    co_await asio::async_write(agent, out, redirect_error(use_awaitable, ec));
    if (ec) co_return;
  }
}

}  // namespace

asio::awaitable<void> RelayFrames(Socket& client, Socket& agent,
                                  std::vector<proto::FrameType> client_may_send) {
  using namespace asio::experimental::awaitable_operators;
  // Whichever side ends first cancels the other.
  co_await (PumpAgent(agent, client) || PumpClient(client, agent, client_may_send));
}

asio::awaitable<void> ServeLiveOp(Socket& client, std::string_view json, LiveService& live) {
  auto req = proto::ParseLiveOpRequest(json);
  if (!req.ok()) {
    co_await SendJson(client, LiveErrorJson(req.error()));
    co_return;
  }
  if (req->op == proto::LiveOp::kExec) {
    // The sandbox's own defaults (set at create) fill what the request leaves out.
    auto info = live.Inspect(req->sandbox);
    if (!info.ok()) {
      co_await SendJson(client, LiveErrorJson(info.error()));
      co_return;
    }
    if (req->exec.user.empty()) req->exec.user = info->user;
    if (req->exec.cwd.empty()) req->exec.cwd = info->cwd;
    req->payload = proto::LiveExecJson(*req);
  }
  auto conn = co_await live.Connect(req->sandbox);
  if (!conn.ok()) {
    co_await SendJson(client, LiveErrorJson(conn.error()));
    co_return;
  }
  if (auto sent = co_await (*conn)->Send(req->first, req->payload); !sent.ok()) {
    co_await SendJson(client, LiveErrorJson(sent.error().WithCode(ErrorCode::kUnavailable)));
    co_return;
  }
  co_await SendJson(client, proto::kLiveOpOk);
  co_await RelayFrames(client, (*conn)->socket(), req->client_frames);
}

}  // namespace wb::daemon
