// E2b-Sandbox-Port N (not envd's 49983): the request goes to TCP port N on
// the sandbox's loopback, through the agent (no network device needed: the
// agent connects inside the sandbox), and the answer comes back as the
// service wrote it (docs/e2b.md, "Ports").
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/e2b/envd.h"
#include "daemon/live_service.h"

namespace wb::daemon::e2b {

// --- pure parts -------------------------------------------------------------------

// The head sent to the service: the client's request line (its HTTP
// version) and headers, without the hop-by-hop ones (Connection, Keep-Alive,
// Proxy-Connection, TE, Trailer, Upgrade, Transfer-Encoding and any named in
// Connection), with `Transfer-Encoding: chunked` again when the body is
// chunked (it is re-chunked as it is relayed), and `Connection: close`: one
// request per tunnel.
// A WebSocket (any `Upgrade` with `Connection: upgrade`) keeps its
// `Upgrade` and gets `Connection: Upgrade` instead: after the service's 101
// the tunnel carries the new protocol both ways until either side closes.
std::string ProxyRequestHead(const Request& head);
bool IsUpgradeRequest(const Request& head);

// The service's response head, once all of it has arrived.
struct ProxyResponseHead {
  size_t size = 0;      // bytes of the head (through its blank line)
  unsigned status = 0;  // 1xx: an interim answer, another head follows
  // What the client gets: the status line as the service wrote it, its
  // headers without the hop-by-hop ones, and `Connection: close` (the
  // tunnel, and so the client's connection, ends with the service's answer).
  // An interim answer is passed on as it came.
  std::string forwarded;
};
// nullopt while the head is incomplete; invalid_argument when it is not an
// HTTP/1 response head or exceeds 64 KiB.
[[nodiscard]] Result<std::optional<ProxyResponseHead>> ParseProxyResponseHead(
    std::string_view bytes);

// The 502 body: {"code":502,"message":"...","sandboxId":"...","port":N}.
std::string PortErrorJson(std::string_view sandbox, uint16_t port, std::string_view message);

// A tunnel to TCP port N on the sandbox's loopback (T, answered t): the
// connection then carries the service's bytes (I/C to it, O/x from it:
// docs/protocol.md, "Ports"). Errors (call "port", detail the whole message):
// the sandbox's (not_found, failed_precondition); unavailable when nothing
// listens (err ECONNREFUSED, E2B's proxy's words) or the agent fails.
[[nodiscard]] boost::asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> OpenPortTunnel(
    LiveService& live, std::string id, uint16_t port);
// The same on an agent connection already made (a pre-booted sandbox's own,
// before any claim: the pool's readiness poll, daemon/services.h); id names
// the sandbox in the errors.
[[nodiscard]] boost::asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> OpenTunnelOn(
    std::unique_ptr<pool::AgentConn> conn, std::string id, uint16_t port);

// --- served on the HTTP connection ----------------------------------------------------

// Only the head has been read (parser); the body, if any, is relayed as it
// arrives. Returns whether the connection may serve another request.
boost::asio::awaitable<bool> ProxyToPort(boost::beast::tcp_stream& s,
                                         boost::beast::flat_buffer& buf, Parser& parser,
                                         LiveService& live, const LiveInfo& sandbox, uint16_t port,
                                         std::chrono::milliseconds read_timeout);

}  // namespace wb::daemon::e2b
