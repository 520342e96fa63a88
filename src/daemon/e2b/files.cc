// Placeholder until /files lands.
#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"

namespace wb::daemon::e2b {

boost::asio::awaitable<bool> ServeEnvdHttp(boost::beast::tcp_stream& s, const Request& req,
                                           std::string_view path, const EnvdCall&) {
  co_return co_await SendConnectError(s, req.version(), req.keep_alive(), "unimplemented",
                                      std::string(path) + " is not implemented yet");
}

bool IsEnvdUpload(const Request&) { return false; }

boost::asio::awaitable<bool> UploadFiles(boost::beast::tcp_stream& s, boost::beast::flat_buffer&,
                                         Parser& parser, const EnvdCall&,
                                         std::chrono::milliseconds) {
  co_await SendConnectError(s, parser.get().version(), false, "unimplemented",
                            "POST /files is not implemented yet");
  co_return false;
}

}  // namespace wb::daemon::e2b
