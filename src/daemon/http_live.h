// The live sandboxes' routes of the HTTP API (docs/openapi.yaml,
// "Sandboxes"): the lifecycle through LiveService, and the process and file
// operations, each on its own agent connection (LiveService::Connect) that
// speaks the frames of docs/protocol.md. The pure parts (routes, queries,
// bodies, status codes) are separate so they are unit-tested without a
// daemon; HttpLive serves them on the HTTP server's connection.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "daemon/live_service.h"
#include "proto/agent_proto.h"
#include "proto/live_ops.h"

namespace wb::daemon {

// --- pure parts -------------------------------------------------------------------

// Which live route a path names (the query already removed).
enum class LiveRoute {
  kSandboxes,  // /v1/sandboxes                           GET list, POST create
  kSandbox,    // /v1/sandboxes/{id}                      GET inspect, DELETE kill
  kTimeout,    // /v1/sandboxes/{id}/timeout              POST
  kPause,      // /v1/sandboxes/{id}/pause                POST
  kResume,     // /v1/sandboxes/{id}/resume               POST
  kLogs,       // /v1/sandboxes/{id}/logs                 GET
  kProcesses,  // /v1/sandboxes/{id}/processes            GET ps, POST exec
  kOutput,     // /v1/sandboxes/{id}/processes/{pid}/output   GET attach
  kSignal,     // /v1/sandboxes/{id}/processes/{pid}/signal   POST
  kStdin,      // /v1/sandboxes/{id}/processes/{pid}/stdin    POST
  kResize,     // /v1/sandboxes/{id}/processes/{pid}/resize   POST
  kFiles,      // /v1/sandboxes/{id}/files                GET read, PUT write
  kCode,       // /v1/sandboxes/{id}/code                 POST run code (NDJSON)
  kNetwork,    // /v1/sandboxes/{id}/network              PUT replace the policy
  kFsStat,     // /v1/sandboxes/{id}/fs/stat              GET
  kFsList,     // /v1/sandboxes/{id}/fs/list              GET
  kFsMkdir,    // /v1/sandboxes/{id}/fs/mkdir             POST
  kFsRemove,   // /v1/sandboxes/{id}/fs/remove            POST
  kFsRename,   // /v1/sandboxes/{id}/fs/rename            POST
  kFsWatch,    // /v1/sandboxes/{id}/fs/watch             GET
  kUnknown,    // under /v1/sandboxes, but no such route: 404
};

struct LiveTarget {
  LiveRoute route = LiveRoute::kUnknown;
  std::string id;   // the sandbox, percent-decoded
  int64_t pid = 0;  // the process routes
};

// Whether path is /v1/sandboxes or under it (these routes are HttpLive's).
bool IsLivePath(std::string_view path);
// The route of a path under /v1/sandboxes; a bad pid is kUnknown.
LiveTarget ParseLiveTarget(std::string_view path);
// The methods a route takes, as an Allow header ("GET, POST").
const char* LiveRouteMethods(LiveRoute r);

// "%41" -> 'A'; '+' -> ' '. Errors (bad escapes, NUL) are bad_request naming what.
[[nodiscard]] Result<std::string> PercentDecode(std::string_view s, const std::string& what);

// "a=1&b=x%20y&a=2" -> [(a,1),(b,"x y"),(a,2)]; '+' is a space. Errors
// (bad percent escapes, NUL) are bad_request naming the parameter.
[[nodiscard]] Result<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    std::string_view query);

// The HTTP status of an error code (docs/openapi.yaml): bad_request 400,
// permission_denied 403, not_found 404, already_exists and
// failed_precondition 409, busy 429, resource_exhausted 507, draining 503,
// unavailable 502, timeout 504, cancelled 499 (never sent), internal 500.
unsigned HttpStatusForCode(ErrorCode c);

// POST /v1/sandboxes's body: image, driver, timeout (seconds), env (object or
// ["K=V"]), metadata (object of strings), memory (bytes), cpus, pids, user,
// cwd, main (array) or no_main (true), on_timeout ("kill", "pause"). Unknown
// fields are refused, as on /v1/run.
[[nodiscard]] Result<LiveCreateRequest> ParseHttpLiveCreate(std::string_view body);

// POST /v1/sandboxes/{id}/processes's body: the socket's exec fields (cmd,
// env, cwd, user, timeout_ms, tty, rows, cols) plus stdin (a string) or
// stdin_base64 (sent, then stdin is closed), or stdin true (a pipe left
// open for POST .../stdin), and background.
struct HttpExec {
  proto::LiveOpRequest req;  // op exec; exec.stdin set when stdin data or tty
  std::optional<std::string> stdin_data;
  bool background = false;
};
[[nodiscard]] Result<HttpExec> ParseHttpExec(std::string_view id, std::string_view body);

// {"signal":"TERM"} or {"signal":15}; absent: TERM.
[[nodiscard]] Result<int> ParseHttpSignal(std::string_view body);
// {"timeout":S}
[[nodiscard]] Result<uint64_t> ParseHttpTimeout(std::string_view body);
// PUT .../network: {"mode"?, "allow_out", "deny_out"} (mode defaults to egress).
[[nodiscard]] Result<NetworkSpec> ParseHttpNetwork(std::string_view body);
// {"rows":R,"cols":C}
[[nodiscard]] Result<proto::ResizeRequest> ParseHttpResize(std::string_view body);
// The FileRequest of POST fs/mkdir ({"path","mode","user"}), fs/remove
// ({"path","recursive","user"}) or fs/rename ({"path","to","user"}).
[[nodiscard]] Result<proto::FileRequest> ParseHttpFsBody(const std::string& op,
                                                         std::string_view body);

// {"started":{"pid":N,"offset":N}}, {"stdout":"<base64>"}, {"exit":ExecExit}...
std::string LiveStartedLine(const proto::Started& s);
std::string LiveOutputLine(bool is_stderr, std::string_view data);
std::string LiveExitLine(const proto::ExecExit& e);
// The kind word of an error: ErrorCodeName, but "no_image" for a missing
// image (as for runs, and on the socket).
const char* LiveErrorKindName(const Error& e);
// {"error":"...","kind":"..."}: also the last line of a stream that failed.
std::string LiveErrorLine(const Error& e);
// The Error of an agent's answer that is not the one expected: an e frame's
// code and message, an F frame as bad_request; anything else unavailable.
Error AgentError(const proto::Frame& f, const char* what);

// --- the server side --------------------------------------------------------------

class HttpLive {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

  explicit HttpLive(LiveService* live) : live_(live) {}

  // Whether a request whose head has arrived is a file upload (PUT
  // .../files), whose body Upload reads itself, in pieces.
  static bool IsUpload(const Request& head);

  // Serves a request to a live route (IsLivePath); returns whether the
  // connection may serve another request.
  boost::asio::awaitable<bool> Handle(boost::beast::tcp_stream& s, Request& req);

  // Serves PUT .../files: the parser has read the head only (and the token
  // was checked); the body goes to the agent as it arrives, never whole.
  boost::asio::awaitable<bool> Upload(boost::beast::tcp_stream& s, boost::beast::flat_buffer& buf,
                                      Parser& parser, std::chrono::milliseconds read_timeout);

 private:
  LiveService* live_;
};

}  // namespace wb::daemon
