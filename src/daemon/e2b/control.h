// E2B's control plane (docs/e2b.md, "Control plane"): sandboxes as the E2B
// SDKs create, list, inspect, pause, connect to and kill them, mapped onto
// warmbox's live sandboxes (LiveService). Errors are E2B's
// {"code":<HTTP status>,"message":"..."}: the SDK reads `code` for its
// not-found and already-paused answers.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "daemon/live_service.h"

namespace wb::daemon::e2b {

// --- pure parts -------------------------------------------------------------------

// The template when a create names none, as E2B's.
inline constexpr std::string_view kDefaultTemplate = "base";

// POST /v2/sandboxes and POST /sandboxes: templateID, timeout (seconds; 0 or
// absent: the daemon's default), metadata, envVars, autoPause; accepted and
// ignored: secure, autoResume, allow_internet_access (false is what warmbox
// sandboxes have), autoPauseMemory. A network policy, MCP or volume mounts are
// refused (not supported yet), as is any other field's wrong type.
[[nodiscard]] Result<LiveCreateRequest> ParseCreate(std::string_view body);

// {"timeout":S} of /timeout and /connect; absent (connect) is nullopt.
[[nodiscard]] Result<std::optional<uint64_t>> ParseTimeoutBody(std::string_view body,
                                                               bool required);

// The Sandbox schema (create, connect) and SandboxDetail (getInfo), and the
// list's ListedSandbox.
std::string SandboxJson(const LiveInfo& i, std::string_view access_token);
std::string SandboxDetailJson(const LiveInfo& i, std::string_view access_token);
nlohmann::json ListedJson(const LiveInfo& i);

// The list's query: metadata (encoded as the SDK does: a URL-encoded query
// string of URL-encoded pairs), state (running, paused, comma-separated),
// limit (1 to 1000, default 100), nextToken, order (asc, desc; default
// desc, by start time), template.
struct ListQuery {
  std::map<std::string, std::string> metadata;
  bool running = true, paused = true;
  size_t limit = 100;
  std::string next_token;
  bool ascending = false;
  std::string template_id;
};
[[nodiscard]] Result<ListQuery> ParseListQuery(
    const std::vector<std::pair<std::string, std::string>>& query);
// One page of sandboxes (all, as LiveService::List gives them) and the token
// of the next page ("" when this is the last).
std::pair<std::vector<LiveInfo>, std::string> ListPage(std::vector<LiveInfo> all,
                                                       const ListQuery& q);

// {"code":N,"message":"..."}
std::string E2bErrorJson(unsigned status, std::string_view message);
// The HTTP status of a warmbox error on the control plane: warmbox's own
// API's (HttpStatusForCode).
unsigned E2bStatusForCode(ErrorCode c);

// --- the server side --------------------------------------------------------------

// An answer: status, JSON body, the list's next-page token.
struct ControlPlaneReply {
  unsigned status = 200;
  std::string body;
  std::string next_token;
};

class ControlPlane {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  ControlPlane(LiveService& live, std::string api_token)
      : live_(live), api_token_(std::move(api_token)) {}
  // Serves one request (authenticated by the router); returns whether the
  // connection may serve another.
  boost::asio::awaitable<bool> Handle(boost::beast::tcp_stream& s, const Request& req);

 private:
  using Reply = ControlPlaneReply;
  boost::asio::awaitable<Reply> Route(const Request& req);
  struct CpuSample {
    uint64_t usage_us = 0;
    int64_t at_ms = 0;
  };
  LiveService& live_;
  std::string api_token_;
  std::map<std::string, CpuSample> cpu_;  // the last metrics call's sample, per sandbox
};

}  // namespace wb::daemon::e2b
