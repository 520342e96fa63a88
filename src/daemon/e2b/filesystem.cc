// Placeholder until the service lands: every method is unimplemented.
#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"

namespace wb::daemon::e2b {

boost::asio::awaitable<bool> ServeFilesystem(boost::beast::tcp_stream& s, const Request& req,
                                             std::string_view method, const EnvdCall&) {
  co_return co_await SendConnectError(s, req.version(), req.keep_alive(), "unimplemented",
                                      std::string(method) + " is not implemented yet");
}

}  // namespace wb::daemon::e2b
