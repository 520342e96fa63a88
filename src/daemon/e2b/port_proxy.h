// E2b-Sandbox-Port N (not envd's 49983): the request goes to TCP port N on
// the sandbox's loopback, through the agent (no network device needed: the
// agent connects inside the sandbox), and the answer comes back as the
// service wrote it (docs/e2b.md, "Ports").
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
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
// chunked (it is re-chunked as it is relayed). keep: the tunnel may carry
// further requests (HTTP/1.1's default: no Connection header); otherwise
// `Connection: close`, one request per tunnel.
// A WebSocket (any `Upgrade` with `Connection: upgrade`) keeps its
// `Upgrade` and gets `Connection: Upgrade` instead: after the service's 101
// the tunnel carries the new protocol both ways until either side closes.
std::string ProxyRequestHead(const Request& head, bool keep = false);
bool IsUpgradeRequest(const Request& head);

// Where the body of the service's answer ends (RFC 9112, 6.3), so that the
// client's connection and the tunnel can carry another exchange: fed the
// bytes after the head as they come, it says how many of them are the
// body's. Chunked framing is followed (sizes, extensions, trailers) without
// changing a byte.
class BodyFramer {
 public:
  enum class Mode {
    kNone,        // HEAD, 1xx, 204, 304: no body
    kLength,      // Content-Length
    kChunked,     // Transfer-Encoding: chunked
    kUntilClose,  // neither: the body ends with the connection
  };
  explicit BodyFramer(Mode mode = Mode::kUntilClose, uint64_t length = 0);
  // How many bytes of data belong to the body (all of them until its end);
  // invalid_argument when chunked framing is malformed.
  [[nodiscard]] Result<size_t> Feed(std::string_view data);
  bool done() const { return state_ == State::kDone; }
  Mode mode() const { return mode_; }

 private:
  enum class State { kData, kSizeLine, kDataEnd, kTrailers, kDone };
  Mode mode_;
  State state_;
  uint64_t left_ = 0;  // bytes of the body (kLength) or of the chunk (kChunked)
  std::string line_;   // a chunk-size or trailer line so far
};

// The service's response head, once all of it has arrived.
struct ProxyResponseHead {
  size_t size = 0;      // bytes of the head (through its blank line)
  unsigned status = 0;  // 1xx: an interim answer, another head follows
  // What the client gets: the status line as the service wrote it, its
  // headers without the hop-by-hop ones, and `Connection: keep-alive` when
  // the client's connection carries another request after this answer
  // (keep_client), else `Connection: close`. An interim answer is passed on
  // as it came.
  std::string forwarded;
  BodyFramer::Mode mode = BodyFramer::Mode::kUntilClose;
  uint64_t length = 0;        // kLength's
  bool keep_client = false;   // the client asked to keep it, and the body is delimited
  bool keep_service = false;  // the service keeps the connection (HTTP/1.1, no close)
};
// nullopt while the head is incomplete; invalid_argument when it is not an
// HTTP/1 response head or exceeds 64 KiB. head_request: the request was a
// HEAD (no body follows); client_keep: the client's request keeps its
// connection (beast's keep_alive()).
[[nodiscard]] Result<std::optional<ProxyResponseHead>> ParseProxyResponseHead(
    std::string_view bytes, bool head_request = false, bool client_keep = false);

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

// Tunnels kept between exchanges, so that a request to a port does not pay
// for a new agent connection and a new TCP connection to the service: per
// (sandbox, port) at most kMaxIdlePerPort, each closed after idle_timeout
// unused, at once when its sandbox goes away or the service closes it (each
// idle tunnel's agent socket is watched: the agent's EOF, or any frame, ends
// it), and with the pool. A tunnel is put back only after a complete
// exchange: the request's body relayed to its end, the answer's read to its
// end by its framing, the service's connection kept (HTTP/1.1, no close).
// It goes back as soon as the answer's end is read, before the answer's last
// bytes are written to the client: a client that has the whole answer and
// sends its next request at once (on another connection too) finds it.
class TunnelPool {
 public:
  static constexpr size_t kMaxIdlePerPort = 8;
  static constexpr std::chrono::milliseconds kDefaultIdleTimeout{30000};
  explicit TunnelPool(std::chrono::milliseconds idle_timeout = kDefaultIdleTimeout);
  ~TunnelPool();
  TunnelPool(const TunnelPool&) = delete;
  TunnelPool& operator=(const TunnelPool&) = delete;

  // The most recently used idle tunnel to (sandbox, port), or null. One
  // whose service or agent has already closed or written is dropped.
  std::unique_ptr<pool::AgentConn> Take(const std::string& sandbox, uint16_t port);
  void Put(const std::string& sandbox, uint16_t port, std::unique_ptr<pool::AgentConn> conn);
  size_t idle() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// The port proxy's counters, the daemon's (all its pools): the
// warmbox_port_tunnels_* metrics (docs/e2b.md, "Ports").
struct PortTunnelStats {
  uint64_t opened = 0;  // tunnels opened for a proxied request
  uint64_t reused = 0;  // requests served on a kept tunnel
  uint64_t idle = 0;    // tunnels kept idle now
};
PortTunnelStats PortTunnelCounters();

// --- served on the HTTP connection ----------------------------------------------------

// Only the head has been read (parser); the body, if any, is relayed as it
// arrives. Returns whether the connection may serve another request (the
// client keeps it, the answer's end was found by its framing, the request's
// body was read to its end). tunnels: where the tunnel comes from and goes
// back after a complete exchange; null: one tunnel per request.
boost::asio::awaitable<bool> ProxyToPort(boost::beast::tcp_stream& s,
                                         boost::beast::flat_buffer& buf, Parser& parser,
                                         LiveService& live, const LiveInfo& sandbox, uint16_t port,
                                         std::chrono::milliseconds read_timeout,
                                         TunnelPool* tunnels = nullptr);

}  // namespace wb::daemon::e2b
