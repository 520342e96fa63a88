// The Unix-socket front end (docs/protocol.md): a peer of HttpServer behind
// the same RunService. One coroutine per connection on the daemon's loop;
// the peer's credentials are checked, the request is read within a time
// limit, and a run's output frames are streamed as they come.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/error.h"
#include "daemon/live_service.h"
#include "daemon/run_service.h"

namespace wb::mcp {
class Server;
class LiveBackend;
}  // namespace wb::mcp

namespace wb::daemon {

struct SocketOptions {
  std::string path;                   // for messages only: the socket is bound by the caller
  std::optional<gid_t> socket_group;  // members may connect (besides root and our uid)
  std::chrono::milliseconds request_timeout{10000};  // to receive a request
  // A client's stop request; keep_sandboxes: leave the live sandboxes running.
  std::function<void(bool keep_sandboxes)> on_stop;
};

class SocketServer {
 public:
  SocketServer(boost::asio::io_context& io, RunService& service, SocketOptions opts);
  ~SocketServer();
  // Takes the listening socket (bound and listening).
  [[nodiscard]] Result<void> Adopt(int listen_fd);
  // The live sandboxes' ops (sandbox_*): refused as unknown ops without.
  // Also the MCP op ({"op":"mcp"}: docs/mcp.md), which `warmbox mcp` relays.
  void set_live(LiveService* live);
  // Accepts connections until Close.
  void Start();
  // Stops accepting; connections already accepted go on.
  void Close();

 private:
  boost::asio::awaitable<void> Accept();
  boost::asio::awaitable<void> Session(boost::asio::local::stream_protocol::socket s);
  // One sandbox_* request (live_proto.h), answered on s.
  boost::asio::awaitable<void> LiveSession(boost::asio::local::stream_protocol::socket& s,
                                           std::string body);
  // One MCP message ({"op":"mcp","message":TEXT}), answered {"ok":true,"reply":TEXT}.
  boost::asio::awaitable<void> McpMessage(boost::asio::local::stream_protocol::socket& s,
                                          std::string message);

  boost::asio::io_context& io_;
  RunService& service_;
  LiveService* live_ = nullptr;
  std::unique_ptr<mcp::LiveBackend> mcp_backend_;
  std::unique_ptr<mcp::Server> mcp_;
  SocketOptions opts_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
};

}  // namespace wb::daemon
