#include "daemon/e2b/front.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/write.hpp>

#include "daemon/e2b/connect.h"
#include "daemon/e2b/port_proxy.h"
#include "daemon/http_api.h"
#include "daemon/http_live.h"
#include "daemon/http_respond.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::optional<std::string_view> Header(const Request& req, std::string_view name) {
  auto it = req.find(beast::string_view(name.data(), name.size()));
  if (it == req.end()) return std::nullopt;
  return std::string_view(it->value().data(), it->value().size());
}

std::string PathOf(const Request& req) {
  std::string target(req.target());
  if (auto q = target.find('?'); q != std::string::npos) target.resize(q);
  return target;
}

bool IsConnectPath(std::string_view path) {
  return path.starts_with("/process.Process/") || path.starts_with("/filesystem.Filesystem/");
}

// envd's planes answer in two dialects: Connect's string codes on its RPCs,
// E2B's numeric ones elsewhere.
Refusal EnvdRefusal(std::string_view path, unsigned status, const char* connect_code,
                    const std::string& message) {
  if (IsConnectPath(path)) return {status, ConnectErrorJson(connect_code, message)};
  return {status, E2bErrorJson(status, message)};
}

}  // namespace

Front::Front(LiveService* live, std::string api_token, NetworkMode default_network)
    : live_(live), api_token_(std::move(api_token)) {
  if (live_) control_ = std::make_unique<ControlPlane>(*live_, api_token_, default_network);
}

Result<Route> Front::Classify(const Request& head) const {
  return e2b::Classify(Header(head, "E2b-Sandbox-Id"), Header(head, "E2b-Sandbox-Port"),
                       PathOf(head));
}

std::optional<Refusal> Front::Admit(const Request& head, const Route& r) const {
  const std::string path = PathOf(head);
  if (!live_) {
    return Refusal{503, E2bErrorJson(503, "this daemon serves no live sandboxes")};
  }
  if (r.plane == Plane::kControl) {
    auto key = Header(head, "X-API-Key");
    std::optional<std::string_view> bearer;
    if (auto a = Header(head, "Authorization")) bearer = BearerToken(*a);
    if ((key && TokenEquals(*key, api_token_)) || (bearer && TokenEquals(*bearer, api_token_))) {
      return std::nullopt;
    }
    std::string why = key ? "invalid API key" : "authentication required: send 'X-API-Key: TOKEN'";
    return Refusal{401, E2bErrorJson(401, why)};
  }
  // A sandbox's planes.
  auto info = live_->Lookup(r.sandbox);
  if (!info.ok() || info->state != LiveState::kRunning) {
    std::string why = "sandbox " + r.sandbox + " is not running";
    if (!info.ok()) {
      why = "sandbox " + r.sandbox + " not found";
    } else if (info->state == LiveState::kPaused) {
      why = "sandbox " + r.sandbox + " is paused (connect to resume it)";
    }
    return EnvdRefusal(path, 502, "unavailable", why);
  }
  if (r.plane == Plane::kEnvd && path == "/health") return std::nullopt;
  auto token = Header(head, "X-Access-Token");
  // A port also takes the traffic token (the code interpreter SDK sends
  // only that on its /contexts calls); it is the access token.
  if (!token && r.plane == Plane::kPort) token = Header(head, "E2B-Traffic-Access-Token");
  // A sandbox of an older daemon has no token: no E2B access to it.
  if (token && !info->access_token.empty() && TokenEquals(*token, info->access_token)) {
    return std::nullopt;
  }
  std::string why = token ? "invalid access token for sandbox " + r.sandbox
                          : "authentication required: send 'X-Access-Token: TOKEN'";
  return EnvdRefusal(path, 401, "unauthenticated", why);
}

bool Front::Streams(const Request& head, const Route& r) const {
  if (r.plane == Plane::kPort) return true;
  return r.plane == Plane::kEnvd && IsEnvdUpload(head);
}

Result<EnvdCall> Front::Call(const Request& req, const Route& r) const {
  auto info = live_->Lookup(r.sandbox);
  if (!info.ok()) return info.error();
  EnvdCall call{*live_, *info, info->user};
  auto user = BasicAuthUser(Header(req, "Authorization"));
  if (!user.ok()) return user.error();
  if (*user) call.user = **user;
  // /files names its user in the query instead.
  std::string target(req.target());
  if (auto q = target.find('?'); q != std::string::npos) {
    auto pairs = ParseQuery(std::string_view(target).substr(q + 1));
    if (!pairs.ok()) return pairs.error();
    for (const auto& [k, v] : *pairs) {
      if (k == "username" && !v.empty()) call.user = v;
    }
  }
  return call;
}

asio::awaitable<bool> Front::Serve(beast::tcp_stream& s, Request& req, const Route& r) {
  const bool keep = req.keep_alive();
  if (r.plane == Plane::kControl) co_return co_await control_->Handle(s, req);
  const std::string path = PathOf(req);
  if (path == "/health") {
    co_await SendStringResponse(s, req.version(), req.method() == http::verb::head,
                                http::status::no_content, "", nullptr, keep);
    co_return keep;
  }
  auto call = Call(req, r);
  if (!call.ok()) {
    Refusal f = EnvdRefusal(path, 400, "invalid_argument", call.error().ToString());
    co_await SendStringResponse(s, req.version(), false, http::status::bad_request,
                                std::move(f.body), "application/json", keep);
    co_return keep;
  }
  constexpr std::string_view kProcess = "/process.Process/";
  constexpr std::string_view kFilesystem = "/filesystem.Filesystem/";
  if (path.starts_with(kProcess)) {
    std::string method = path.substr(kProcess.size());
    co_return co_await ServeProcess(s, req, method, *call);
  }
  if (path.starts_with(kFilesystem)) {
    std::string method = path.substr(kFilesystem.size());
    co_return co_await ServeFilesystem(s, req, method, *call);
  }
  co_return co_await ServeEnvdHttp(s, req, path, *call);
}

asio::awaitable<bool> Front::ServeStreaming(beast::tcp_stream& s, beast::flat_buffer& buf,
                                            Parser& parser, const Route& r,
                                            std::chrono::milliseconds read_timeout) {
  if (r.plane == Plane::kPort) {
    auto info = live_->Lookup(r.sandbox);
    if (info.ok()) {
      co_return co_await ProxyToPort(s, buf, parser, *live_, *info, r.port, read_timeout,
                                     &tunnels_);
    }
  } else if (auto call = Call(parser.get(), r); call.ok()) {
    co_return co_await UploadFiles(s, buf, parser, *call, read_timeout);
  }
  std::string body = E2bErrorJson(400, "bad request to sandbox " + r.sandbox);
  co_await SendStringResponse(s, parser.get().version(), false, http::status::bad_request,
                              std::move(body), "application/json", false);
  co_await LingeringClose(s);
  co_return false;
}

}  // namespace wb::daemon::e2b
