// envd, emulated by the daemon (docs/e2b.md): what the E2B SDKs send to a
// sandbox (E2b-Sandbox-Port 49983), served over the sandbox's agent
// (LiveService::Connect, the frames of docs/protocol.md). The router
// (route.h, http_server.cc) has checked the access token and that the
// sandbox is running before any of these is called.
//
//   /process.Process/{Start,Connect,List,SendInput,CloseStdin,SendSignal,Update}  process.cc
//   /filesystem.Filesystem/{Stat,ListDir,MakeDir,Move,Remove,WatchDir,
//                          CreateWatcher,GetWatcherEvents,RemoveWatcher}         filesystem.cc
//   GET /files, POST /files, GET /envs                                            files.cc
//   GET /health                                                                   the router
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "daemon/live_service.h"

namespace wb::daemon::e2b {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// envd's version as the SDK sees it: 0.6.4 and later enable every feature of
// e2b 2.51 (docs/e2b.md).
inline constexpr std::string_view kEnvdVersion = "0.6.4";
inline constexpr uint16_t kEnvdPort = 49983;

// One envd call: the sandbox and who is calling.
struct EnvdCall {
  LiveService& live;
  LiveInfo sandbox;  // running
  // The user the call acts as: the Basic-auth user (or ?username= on /files)
  // when given, else the sandbox's default user (sandbox.user; "" is root).
  std::string user;
};

// --- pure parts (envd.cc) -----------------------------------------------------------

// "Basic base64(user:)" -> "user"; nullopt without the header; invalid_argument
// when it is not Basic or does not decode.
[[nodiscard]] Result<std::optional<std::string>> BasicAuthUser(
    std::optional<std::string_view> authorization);
// The home of a sandbox user as E2B's images have it: /root for root (or
// ""), else /home/USER.
std::string HomeOf(std::string_view user);
// A path of a request: absolute as is; relative (or empty) against the
// user's home. Dot segments are left to the agent (it resolves inside the
// sandbox's root).
std::string ResolvePath(std::string_view path, std::string_view user);

// --- served on the HTTP connection ----------------------------------------------------

// Each returns whether the connection may serve another request.
boost::asio::awaitable<bool> ServeProcess(boost::beast::tcp_stream& s, const Request& req,
                                          std::string_view method, const EnvdCall& call);
boost::asio::awaitable<bool> ServeFilesystem(boost::beast::tcp_stream& s, const Request& req,
                                             std::string_view method, const EnvdCall& call);
// GET /files?path=P[&username=U] (streamed download), GET /envs (the
// sandbox's env as a JSON object).
boost::asio::awaitable<bool> ServeEnvdHttp(boost::beast::tcp_stream& s, const Request& req,
                                           std::string_view path, const EnvdCall& call);
// POST /files: only the head has been read; the body (multipart/form-data,
// application/octet-stream, either maybe Content-Encoding: gzip; chunked or
// not) is read here in pieces and streamed to the agent, never whole.
bool IsEnvdUpload(const Request& head);
boost::asio::awaitable<bool> UploadFiles(boost::beast::tcp_stream& s,
                                         boost::beast::flat_buffer& buf, Parser& parser,
                                         const EnvdCall& call,
                                         std::chrono::milliseconds read_timeout);

}  // namespace wb::daemon::e2b
