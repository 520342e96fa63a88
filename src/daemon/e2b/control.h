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

// E2B's network fields (docs/e2b.md, "Network"): allow_internet_access and
// network.allowOut / denyOut, each absent unless given.
struct E2bNetwork {
  std::optional<bool> internet;
  std::optional<std::vector<std::string>> allow_out, deny_out;
};
// The network object's fields into n; what warmbox cannot honour
// (allowPublicTraffic true, egressProxy, maskRequestHost, rules, httpsPorts)
// is bad_request naming the field.
[[nodiscard]] Result<void> ParseNetworkObject(const nlohmann::json& v, E2bNetwork& n);
// The body of PUT /sandboxes/{id}/network: the network object's fields and
// allow_internet_access, at the top level.
[[nodiscard]] Result<E2bNetwork> ParseNetworkUpdate(std::string_view body);
// E2B's fields as warmbox's network: nothing given is default_mode (the
// daemon's --e2b-default-network); everything denied (allow_internet_access
// false or denyOut 0.0.0.0/0) with allowOut is egress allowing only those,
// without allowOut no network; otherwise egress denying denyOut. allowOut
// with a partial denyOut is refused (E2B's allow beats deny, warmbox's deny
// beats allow).
[[nodiscard]] Result<NetworkSpec> E2bNetworkSpec(const E2bNetwork& n, NetworkMode default_mode);

// POST /v2/sandboxes and POST /sandboxes: templateID, timeout (seconds; 0 or
// absent: the daemon's default), metadata, envVars, autoPause,
// allow_internet_access and network (E2bNetworkSpec); accepted and ignored:
// secure, autoResume, autoPauseMemory. MCP or volume mounts are refused (not
// supported yet), as is any other field's wrong type.
[[nodiscard]] Result<LiveCreateRequest> ParseCreate(
    std::string_view body, NetworkMode default_network = NetworkMode::kNone);

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
  ControlPlane(LiveService& live, std::string api_token,
               NetworkMode default_network = NetworkMode::kNone)
      : live_(live), api_token_(std::move(api_token)), default_network_(default_network) {}
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
  NetworkMode default_network_;           // a create that says nothing (--e2b-default-network)
  std::map<std::string, CpuSample> cpu_;  // the last metrics call's sample, per sandbox
};

}  // namespace wb::daemon::e2b
