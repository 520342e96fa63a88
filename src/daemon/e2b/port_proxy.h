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

#include "daemon/e2b/envd.h"
#include "daemon/live_service.h"

namespace wb::daemon::e2b {

// Only the head has been read (parser); the body, if any, is relayed as it
// arrives. Returns whether the connection may serve another request.
boost::asio::awaitable<bool> ProxyToPort(boost::beast::tcp_stream& s,
                                         boost::beast::flat_buffer& buf, Parser& parser,
                                         LiveService& live, const LiveInfo& sandbox, uint16_t port,
                                         std::chrono::milliseconds read_timeout);

}  // namespace wb::daemon::e2b
