// The MCP Streamable HTTP transport at /mcp (docs/mcp.md): POST carries
// JSON-RPC messages to the MCP core (mcp/server.h), answered as JSON (or one
// server-sent event when the client accepts only that); GET is 405 (no
// server-initiated stream); DELETE ends a session. The bearer token was
// checked before (HttpServer's AdmitHead), as for every route.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <memory>

#include "daemon/live_service.h"

namespace wb::daemon {

class HttpMcp {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  // live: the live sandboxes the tools use; none: /mcp answers 409.
  explicit HttpMcp(LiveService* live);
  ~HttpMcp();
  // Serves a request to /mcp; returns whether the connection may serve another.
  boost::asio::awaitable<bool> Handle(boost::beast::tcp_stream& s, Request& req);

 private:
  boost::asio::awaitable<bool> Post(boost::beast::tcp_stream& s, Request& req);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wb::daemon
