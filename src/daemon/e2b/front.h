// The E2B front end on the daemon's HTTP listener (docs/e2b.md): which
// requests are E2B's, their admission (the API key on the control plane, a
// sandbox's access token on its envd and ports), and their dispatch.
// http_server.cc calls it for every request before warmbox's own routes.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "daemon/e2b/control.h"
#include "daemon/e2b/envd.h"
#include "daemon/e2b/port_proxy.h"
#include "daemon/e2b/route.h"
#include "daemon/live_service.h"

namespace wb::daemon::e2b {

// A request refused at its head: the status and the whole JSON body.
struct Refusal {
  unsigned status = 401;
  std::string body;
};

class Front {
 public:
  // live: null when the daemon has no live sandboxes (then E2B requests are
  // refused with 503).
  // default_network: an E2B create's network when it says nothing
  // (--e2b-default-network; docs/e2b.md, "Network").
  Front(LiveService* live, std::string api_token, NetworkMode default_network = NetworkMode::kNone);

  // The plane of a request whose head has arrived; a malformed routing
  // header is a refusal (400).
  Result<Route> Classify(const Request& head) const;
  // Whether the request may go on (checked before its body is read): the API
  // key (X-API-Key, or warmbox's bearer token) on the control plane; on a
  // sandbox's planes the sandbox must be running (else 502, as E2B's proxy
  // answers) and X-Access-Token its envd access token (GET /health needs
  // none, as envd's).
  std::optional<Refusal> Admit(const Request& head, const Route& r) const;
  // Whether Serve takes the request with its body unread (a POST /files
  // upload, anything to a port): then ServeStreaming is called instead.
  bool Streams(const Request& head, const Route& r) const;

  boost::asio::awaitable<bool> Serve(boost::beast::tcp_stream& s, Request& req, const Route& r);
  boost::asio::awaitable<bool> ServeStreaming(boost::beast::tcp_stream& s,
                                              boost::beast::flat_buffer& buf, Parser& parser,
                                              const Route& r,
                                              std::chrono::milliseconds read_timeout);

 private:
  Result<EnvdCall> Call(const Request& req, const Route& r) const;
  LiveService* live_;
  std::string api_token_;
  std::unique_ptr<ControlPlane> control_;
  // The port proxy's kept tunnels (port_proxy.h), all clients'.
  TunnelPool tunnels_;
};

}  // namespace wb::daemon::e2b
