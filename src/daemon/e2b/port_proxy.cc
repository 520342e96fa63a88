// Placeholder until the port proxy lands.
#include "daemon/e2b/port_proxy.h"

#include "daemon/e2b/connect.h"

namespace wb::daemon::e2b {

boost::asio::awaitable<bool> ProxyToPort(boost::beast::tcp_stream& s, boost::beast::flat_buffer&,
                                         Parser& parser, LiveService&, const LiveInfo&,
                                         uint16_t port, std::chrono::milliseconds) {
  co_await SendConnectError(
      s, parser.get().version(), false, "unimplemented",
      "port " + std::to_string(port) + ": the port proxy is not implemented yet");
  co_return false;
}

}  // namespace wb::daemon::e2b
