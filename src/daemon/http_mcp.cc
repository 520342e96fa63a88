#include "daemon/http_mcp.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/http_api.h"
#include "daemon/http_respond.h"
#include "mcp/live_backend.h"
#include "mcp/server.h"

namespace wb::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr const char* kJson = "application/json";
using Headers = std::vector<std::pair<std::string, std::string>>;

std::optional<std::string_view> Header(const HttpMcp::Request& req, std::string_view name) {
  auto it = req.find(name);
  if (it == req.end()) return std::nullopt;
  return std::string_view(it->value().data(), it->value().size());
}

// A JSON-RPC error as an HTTP answer's body (what the SDKs show a user).
std::string RpcError(int code, const std::string& message) {
  return mcp::Dump(mcp::ErrorReply(nullptr, code, message));
}

// One whole response (SendStringResponse, with headers Beast has no enum for).
asio::awaitable<void> Send(beast::tcp_stream& s, unsigned version, bool head, http::status status,
                           std::string body, const char* type, bool keep,
                           const Headers& extra = {}) {
  http::response<http::string_body> res{status, version};
  if (status != http::status::no_content && status != http::status::accepted) {
    res.set(http::field::content_type, type);
  }
  res.set(http::field::cache_control, "no-store");
  for (const auto& [f, val] : extra) res.set(f, val);
  res.keep_alive(keep);
  res.body() = std::move(body);
  res.prepare_payload();
  boost::system::error_code ec;
  s.expires_after(kWriteTimeout);
  if (head) {
    http::response_serializer<http::string_body> sr{res};
    co_await http::async_write_header(s, sr, asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await http::async_write(s, res, asio::redirect_error(asio::use_awaitable, ec));
  }
  s.expires_never();
}

}  // namespace

struct HttpMcp::Impl {
  explicit Impl(LiveService* live) : live(live) {
    if (live) {
      backend = std::make_unique<mcp::LiveBackend>(*live);
      server = std::make_unique<mcp::Server>(*backend);
    }
  }
  LiveService* live;
  std::unique_ptr<mcp::LiveBackend> backend;
  std::unique_ptr<mcp::Server> server;
  mcp::SessionTable sessions;
};

HttpMcp::HttpMcp(LiveService* live) : impl_(std::make_unique<Impl>(live)) {}
HttpMcp::~HttpMcp() = default;

asio::awaitable<bool> HttpMcp::Handle(beast::tcp_stream& s, Request& req) {
  const unsigned v = req.version();
  const bool keep = req.keep_alive();
  const bool head = req.method() == http::verb::head;
  http::status status = http::status::ok;
  std::string body;
  const char* type = kJson;
  Headers extra;
  if (req.method() == http::verb::get || head) {
    // Nothing is ever sent unprompted (no notifications, no server
    // requests): the spec lets such a server refuse the GET stream with 405.
    status = http::status::method_not_allowed;
    extra.emplace_back("Allow", "POST, DELETE");
    body = HttpErrorJson(
        "GET /mcp: this server offers no server-to-client event stream; POST JSON-RPC "
        "messages to /mcp",
        "method_not_allowed");
  } else if (req.method() != http::verb::post && req.method() != http::verb::delete_) {
    status = http::status::method_not_allowed;
    extra.emplace_back("Allow", "POST, DELETE");
    body = HttpErrorJson(
        std::string(req.method_string()) + " /mcp: use POST (or DELETE to end a session)",
        "method_not_allowed");
  } else if (!impl_->server) {
    status = http::status::conflict;
    body = RpcError(-32000, "live sandboxes are not served by this daemon");
  } else if (req.method() == http::verb::delete_) {
    auto sid = Header(req, "Mcp-Session-Id");
    if (!sid) {
      status = http::status::bad_request;
      body = RpcError(-32000, "Bad Request: DELETE /mcp needs an Mcp-Session-Id header");
    } else if (!impl_->sessions.Remove(std::string(*sid))) {
      status = http::status::not_found;
      body = RpcError(-32001, "Session not found: " + std::string(*sid));
    } else {
      status = http::status::no_content;
    }
  } else {
    co_return co_await Post(s, req);
  }
  co_await Send(s, v, head, status, std::move(body), type, keep, extra);
  co_return keep;
}

// A POST refused before the core sees it: its status and JSON-RPC error.
struct Refusal {
  http::status status;
  int code;
  std::string message;
};

asio::awaitable<bool> HttpMcp::Post(beast::tcp_stream& s, Request& req) {
  const unsigned v = req.version();
  const bool keep = req.keep_alive();
  const mcp::ReplyFormat format = mcp::ChooseReplyFormat(Header(req, "Accept"));
  const mcp::MessageInfo info = mcp::Inspect(req.body());
  std::shared_ptr<mcp::Session> session;
  Headers extra;
  std::optional<Refusal> refusal;
  auto type = Header(req, "Content-Type");
  auto pv = Header(req, "MCP-Protocol-Version");
  if (!type || !IsJsonContentType(*type)) {
    refusal = Refusal{http::status::unsupported_media_type, -32000,
                      "Unsupported Media Type: POST /mcp takes JSON-RPC messages as "
                      "application/json"};
  } else if (format == mcp::ReplyFormat::kNone) {
    refusal = Refusal{http::status::not_acceptable, -32000,
                      "Not Acceptable: the client must accept application/json or "
                      "text/event-stream"};
  } else if (pv && !mcp::IsSupportedVersion(*pv)) {
    std::string supported;
    for (const char* x : mcp::kProtocolVersions) {
      supported += std::string(supported.empty() ? "" : ", ") + x;
    }
    refusal = Refusal{http::status::bad_request, -32000,
                      "Bad Request: unsupported MCP-Protocol-Version '" + std::string(*pv) +
                          "' (supported: " + supported + ")"};
  } else if (info.initialize) {
    // A new session; its id goes back with the answer, and every later
    // request must carry it.
    auto created = impl_->sessions.Create();
    if (!created.ok()) {
      refusal = Refusal{http::status::internal_server_error, mcp::kInternalError,
                        created.error().ToString()};
    } else {
      session = created->second;
      extra.emplace_back("Mcp-Session-Id", created->first);
    }
  } else if (info.valid) {
    auto sid = Header(req, "Mcp-Session-Id");
    if (!sid) {
      refusal = Refusal{http::status::bad_request, -32000,
                        "Bad Request: Mcp-Session-Id header is required (send initialize "
                        "first)"};
    } else if (session = impl_->sessions.Find(std::string(*sid)); !session) {
      refusal = Refusal{http::status::not_found, -32001,
                        "Session not found: " + std::string(*sid) +
                            " (it ended or expired: initialize a new one)"};
    }
  } else {
    session = std::make_shared<mcp::Session>();  // only to answer the parse error
  }
  if (refusal) {
    std::string body = RpcError(refusal->code, refusal->message);
    co_await Send(s, v, false, refusal->status, std::move(body), kJson, keep);
    co_return keep;
  }
  std::string text = req.body();
  std::string reply = co_await impl_->server->Handle(std::move(text), session);
  if (reply.empty()) {
    // Only notifications or responses: accepted, nothing to say.
    std::string none;
    co_await Send(s, v, false, http::status::accepted, std::move(none), kJson, keep, extra);
    co_return keep;
  }
  http::status status = http::status::ok;
  if (!info.valid) status = http::status::bad_request;
  if (format == mcp::ReplyFormat::kSse && info.valid) {
    std::string event = mcp::SseEvent(reply);
    co_await Send(s, v, false, status, std::move(event), "text/event-stream", keep, extra);
  } else {
    co_await Send(s, v, false, status, std::move(reply), kJson, keep, extra);
  }
  co_return keep;
}

}  // namespace wb::daemon
