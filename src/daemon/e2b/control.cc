#include "daemon/e2b/control.h"

#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <chrono>
#include <cmath>

#include "base/json.h"
#include "base/strings.h"
#include "daemon/e2b/envd.h"
#include "daemon/e2b/route.h"
#include "daemon/http_live.h"
#include "daemon/http_respond.h"
#include "daemon/live_registry.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

namespace {

Error Bad(const std::string& field, const std::string& why) {
  return Error{.call = "e2b", .arg = field, .detail = why, .code = ErrorCode::kInvalidArgument};
}

Result<std::map<std::string, std::string>> StringMap(const json& j, const char* field) {
  std::map<std::string, std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) return Bad(field, "expected an object of strings");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return Bad(std::string(field) + "." + k, "expected a string");
    out[k] = v.get<std::string>();
  }
  return out;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t HostMemoryBytes() {
  struct sysinfo si {};
  if (::sysinfo(&si) != 0) return 0;
  return static_cast<uint64_t>(si.totalram) * si.mem_unit;
}

int CpuCount(const LiveInfo& i) {
  if (i.cpus > 0) return std::max(1, static_cast<int>(std::ceil(i.cpus)));
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

uint64_t MemoryLimit(const LiveInfo& i) {
  return i.memory_bytes > 0 ? i.memory_bytes : HostMemoryBytes();
}

// A page token: the start time and id of the last sandbox of the page.
std::string PageToken(const LiveInfo& i) { return std::to_string(i.created_ms) + "." + i.id; }

}  // namespace

Result<NetworkSpec> E2bNetworkSpec(const E2bNetwork& n, NetworkMode default_mode) {
  NetworkSpec s;
  if (!n.internet && !n.allow_out && !n.deny_out) {
    s.mode = default_mode;
    return s;
  }
  // E2B lets an allowOut entry beat a denyOut one; warmbox lets deny win and
  // allows only what an allow list names. The two agree on the forms the
  // SDK documents: everything denied (allow_internet_access false, or
  // denyOut 0.0.0.0/0) with allowOut as the exceptions, or a denyOut list.
  std::vector<std::string> allow = n.allow_out.value_or(std::vector<std::string>{});
  std::vector<std::string> deny;
  bool deny_all = n.internet == false;
  for (const auto& d : n.deny_out.value_or(std::vector<std::string>{})) {
    if (d == "0.0.0.0/0" || d == "::/0") {
      deny_all = true;
    } else {
      deny.push_back(d);
    }
  }
  if (deny_all) {
    // Only the exceptions; with none, no network at all.
    s.mode = allow.empty() ? NetworkMode::kNone : NetworkMode::kEgress;
    s.allow_out = std::move(allow);
  } else {
    if (!allow.empty() && !deny.empty()) {
      return Bad("network.allowOut",
                 "exceptions to a denyOut list other than 0.0.0.0/0 are not supported (in "
                 "warmbox deny beats allow): deny everything with denyOut [\"0.0.0.0/0\"] and "
                 "list what is allowed, or give denyOut alone");
    }
    // allowOut alone allows what is allowed anyway (E2B's allow only
    // overrides a deny): an open policy.
    s.mode = NetworkMode::kEgress;
    s.deny_out = std::move(deny);
  }
  (void)WB_TRY(ParseNetPolicy(s.allow_out, s.deny_out, "network.allowOut", "network.denyOut"));
  return s;
}

Result<void> ParseNetworkObject(const json& v, E2bNetwork& n) {
  if (v.is_null()) return Ok();
  if (!v.is_object()) return Bad("network", "expected an object");
  auto list = [](const json& a, const std::string& field) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    if (!a.is_array()) return Bad(field, "expected an array of strings");
    for (const auto& e : a) {
      if (!e.is_string()) return Bad(field, "expected an array of strings");
      out.push_back(e.get<std::string>());
    }
    return out;
  };
  for (const auto& [key, f] : v.items()) {
    if (f.is_null()) continue;
    if (key == "allowOut") {
      n.allow_out = WB_TRY(list(f, "network.allowOut"));
    } else if (key == "denyOut") {
      n.deny_out = WB_TRY(list(f, "network.denyOut"));
    } else if (key == "allowPublicTraffic") {
      // false (a sandbox's ports need the traffic token) is what warmbox's
      // port proxy always does; true (ports open to anyone) it does not.
      if (!f.is_boolean()) return Bad("network.allowPublicTraffic", "expected a boolean");
      if (f.get<bool>())
        return Bad("network.allowPublicTraffic",
                   "not supported by warmbox: a sandbox's ports always need its traffic token "
                   "(docs/e2b.md)");
    } else if (key == "httpsPorts" && f.is_array() && f.empty()) {
      continue;
    } else if (key == "rules" && f.is_object() && f.empty()) {
      continue;
    } else if (key == "egressProxy" || key == "maskRequestHost" || key == "rules" ||
               key == "httpsPorts") {
      return Bad("network." + key, "not supported by warmbox (docs/e2b.md, \"Network\")");
    } else {
      return Bad("network." + key, "unknown field");
    }
  }
  return Ok();
}

Result<E2bNetwork> ParseNetworkUpdate(std::string_view body) {
  E2bNetwork n;
  json j = json::object();
  if (!Trim(body).empty()) j = WB_TRY(ParseJsonBounded(body, "body"));
  if (!j.is_object()) return Bad("body", "expected a JSON object");
  json rest = json::object();
  for (const auto& [key, v] : j.items()) {
    if (key == "allow_internet_access") {
      if (!v.is_boolean() && !v.is_null()) return Bad(key, "expected a boolean");
      if (v.is_boolean()) n.internet = v.get<bool>();
    } else {
      rest[key] = v;  // the network object's own fields, at the top level here
    }
  }
  WB_RETURN_IF_ERROR(ParseNetworkObject(rest, n));
  return n;
}

Result<LiveCreateRequest> ParseCreate(std::string_view body, NetworkMode default_network) {
  LiveCreateRequest r;
  E2bNetwork net;
  json j = json::object();
  if (!Trim(body).empty()) j = WB_TRY(ParseJsonBounded(body, "body"));
  if (!j.is_object()) return Bad("body", "expected a JSON object");
  for (const auto& [key, v] : j.items()) {
    if (key == "templateID") {
      if (!v.is_string() || v.get<std::string>().empty())
        return Bad(key, "expected a template name");
      r.image = v.get<std::string>();
    } else if (key == "timeout") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) return Bad(key, "expected seconds, >= 0");
      if (v.get<int64_t>() > 0) r.timeout_s = v.get<uint64_t>();
    } else if (key == "metadata") {
      r.metadata = WB_TRY(StringMap(v, "metadata"));
    } else if (key == "envVars") {
      for (auto& [k, val] : WB_TRY(StringMap(v, "envVars"))) {
        if (k.empty() || k.find('=') != std::string::npos) return Bad("envVars." + k, "bad name");
        r.env.push_back(k + "=" + val);
      }
    } else if (key == "autoPause") {
      if (!v.is_boolean()) return Bad(key, "expected a boolean");
      r.on_timeout = v.get<bool>() ? "pause" : "kill";
    } else if (key == "allow_internet_access") {
      if (!v.is_boolean() && !v.is_null()) return Bad(key, "expected a boolean");
      if (v.is_boolean()) net.internet = v.get<bool>();
    } else if (key == "secure" || key == "autoPauseMemory") {
      if (!v.is_boolean() && !v.is_null()) return Bad(key, "expected a boolean");
    } else if (key == "autoResume") {
      if (!v.is_object() && !v.is_null()) return Bad(key, "expected an object");
    } else if (key == "network") {
      WB_RETURN_IF_ERROR(ParseNetworkObject(v, net));
    } else if (key == "mcp" || key == "volumeMounts") {
      if (v.is_null() || (v.is_object() && v.empty()) || (v.is_array() && v.empty())) continue;
      return Bad(key, "not supported by warmbox yet (docs/e2b.md)");
    } else if (key == "iam") {
      if (!v.is_null()) return Bad(key, "not supported by warmbox");
    } else {
      return Bad(key, "unknown field");
    }
  }
  if (!r.image) r.image = std::string(kDefaultTemplate);
  r.network = WB_TRY(E2bNetworkSpec(net, default_network));
  return r;
}

Result<std::optional<uint64_t>> ParseTimeoutBody(std::string_view body, bool required) {
  json j = json::object();
  if (!Trim(body).empty()) j = WB_TRY(ParseJsonBounded(body, "body"));
  if (!j.is_object()) return Bad("body", "expected a JSON object");
  auto it = j.find("timeout");
  if (it == j.end() || it->is_null()) {
    if (required) return Bad("timeout", "missing");
    return std::optional<uint64_t>();
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0)
    return Bad("timeout", "expected seconds, >= 0");
  return std::optional<uint64_t>(it->get<uint64_t>());
}

std::string SandboxJson(const LiveInfo& i, std::string_view access_token) {
  json j = {
      {"sandboxID", i.id},     {"templateID", i.image},        {"alias", i.image},
      {"clientID", "warmbox"}, {"envdVersion", kEnvdVersion},  {"envdAccessToken", access_token},
      {"domain", nullptr},     {"trafficAccessToken", nullptr}};
  // The code interpreter SDK sends only the traffic token to a sandbox's
  // ports (its /contexts calls carry no X-Access-Token): the same token
  // (docs/e2b.md, "Ports").
  if (!access_token.empty()) j["trafficAccessToken"] = access_token;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ListedJson(const LiveInfo& i) {
  return {{"sandboxID", i.id},
          {"templateID", i.image},
          {"alias", i.image},
          {"clientID", "warmbox"},
          {"metadata", i.metadata},
          {"startedAt", Rfc3339Utc(i.created_ms)},
          {"endAt", Rfc3339Utc(i.expires_ms)},
          {"state", i.state == LiveState::kPaused ? "paused" : "running"},
          {"cpuCount", CpuCount(i)},
          {"memoryMB", MemoryLimit(i) >> 20},
          {"diskSizeMB", 0},
          {"envdVersion", kEnvdVersion},
          {"volumeMounts", json::array()}};
}

std::string SandboxDetailJson(const LiveInfo& i, std::string_view access_token) {
  json j = ListedJson(i);
  j["envdAccessToken"] = access_token;
  j["domain"] = nullptr;
  // What the sandbox has, in E2B's terms: internet unless it has no network
  // or denies everything; the lists as warmbox enforces them.
  const bool denies_all = std::find(i.network.deny_out.begin(), i.network.deny_out.end(),
                                    "0.0.0.0/0") != i.network.deny_out.end();
  j["allowInternetAccess"] = i.network.mode == NetworkMode::kEgress && !denies_all;
  j["network"] = {{"allowOut", i.network.allow_out}, {"denyOut", i.network.deny_out}};
  j["lifecycle"] = {{"onTimeout", i.on_timeout}, {"autoResume", false}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ListQuery> ParseListQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  ListQuery q;
  for (const auto& [k, v] : query) {
    if (k == "metadata") {
      // The SDK URL-encodes each key and value, joins them as a query string,
      // and the whole is URL-encoded once more as the parameter (docs/e2b.md).
      std::string pairs = WB_TRY(PercentDecode(v, "metadata"));
      for (const auto& [mk, mv] : WB_TRY(ParseQuery(pairs))) q.metadata[mk] = mv;
    } else if (k == "state") {
      q.running = q.paused = false;
      for (std::string_view s : Split(v, ',')) {
        s = Trim(s);
        if (s == "running") {
          q.running = true;
        } else if (s == "paused") {
          q.paused = true;
        } else {
          return Bad("state", "'" + std::string(s) + "': expected running or paused");
        }
      }
    } else if (k == "limit") {
      size_t n = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
      if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > 1000) {
        return Bad("limit", "'" + v + "': expected 1 to 1000");
      }
      q.limit = n;
    } else if (k == "nextToken") {
      q.next_token = v;
    } else if (k == "order") {
      if (v != "asc" && v != "desc") return Bad("order", "'" + v + "': expected asc or desc");
      q.ascending = v == "asc";
    } else if (k == "template") {
      q.template_id = v;
    }
    // Others (startedAfter, ...) are not filters warmbox applies yet.
  }
  return q;
}

std::pair<std::vector<LiveInfo>, std::string> ListPage(std::vector<LiveInfo> all,
                                                       const ListQuery& q) {
  std::vector<LiveInfo> kept;
  for (auto& i : all) {
    if (i.state == LiveState::kDead) continue;
    if (i.state == LiveState::kRunning && !q.running) continue;
    if (i.state == LiveState::kPaused && !q.paused) continue;
    if (!q.template_id.empty() && i.image != q.template_id) continue;
    bool match = true;
    for (const auto& [k, v] : q.metadata) {
      auto it = i.metadata.find(k);
      if (it == i.metadata.end() || it->second != v) match = false;
    }
    if (match) kept.push_back(std::move(i));
  }
  auto before = [](const LiveInfo& a, const LiveInfo& b) {
    return a.created_ms != b.created_ms ? a.created_ms < b.created_ms : a.id < b.id;
  };
  std::sort(kept.begin(), kept.end(), [&](const LiveInfo& a, const LiveInfo& b) {
    return q.ascending ? before(a, b) : before(b, a);
  });
  size_t start = 0;
  if (!q.next_token.empty()) {
    // The page starts after the token's sandbox in this order, whether or
    // not that sandbox still exists.
    LiveInfo mark;
    auto dot = q.next_token.find('.');
    std::from_chars(q.next_token.data(), q.next_token.data() + std::min(dot, q.next_token.size()),
                    mark.created_ms);
    if (dot != std::string::npos) mark.id = q.next_token.substr(dot + 1);
    while (start < kept.size() &&
           !(q.ascending ? before(mark, kept[start]) : before(kept[start], mark))) {
      ++start;
    }
  }
  std::vector<LiveInfo> page;
  for (size_t k = start; k < kept.size() && page.size() < q.limit; ++k) page.push_back(kept[k]);
  std::string next;
  if (start + page.size() < kept.size() && !page.empty()) next = PageToken(page.back());
  return {std::move(page), std::move(next)};
}

std::string E2bErrorJson(unsigned status, std::string_view message) {
  json j = {{"code", status}, {"message", message}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

unsigned E2bStatusForCode(ErrorCode c) { return HttpStatusForCode(c); }

// --- the server side --------------------------------------------------------------

namespace {

constexpr const char* kJson = "application/json";

struct Target {
  std::string id;    // empty: the collection
  std::string verb;  // "", "timeout", "pause", "resume", "connect", "metrics", ...
  bool v2 = false;
  bool known = false;
};

ControlPlaneReply Fail(unsigned status, const std::string& message) {
  return {status, E2bErrorJson(status, message), ""};
}

ControlPlaneReply FailWith(const Error& e) { return Fail(E2bStatusForCode(e.code), e.ToString()); }

Target ParseTarget(std::string_view path) {
  Target t;
  if (path.substr(0, 3) == "/v2") {
    t.v2 = true;
    path.remove_prefix(3);
  }
  if (path.substr(0, 10) != "/sandboxes") return t;
  path.remove_prefix(10);
  if (path.empty() || path == "/") {
    t.known = true;
    return t;
  }
  path.remove_prefix(1);
  auto slash = path.find('/');
  auto id = PercentDecode(path.substr(0, slash), "id");
  if (!id.ok() || id->empty()) return t;
  t.id = *id;
  if (slash != std::string_view::npos) t.verb = std::string(path.substr(slash + 1));
  t.known = t.verb.find('/') == std::string::npos;
  return t;
}

}  // namespace

asio::awaitable<ControlPlane::Reply> ControlPlane::Route(const Request& req) {
  std::string target(req.target());
  std::string query;
  if (auto q = target.find('?'); q != std::string::npos) {
    query = target.substr(q + 1);
    target.resize(q);
  }
  const Target t = ParseTarget(target);
  const auto method = req.method();
  if (!t.known) co_return Fail(404, target + ": not an endpoint warmbox serves");

  // The collection: create and list.
  if (t.id.empty()) {
    if (method == http::verb::post) {
      auto cr = ParseCreate(req.body(), default_network_);
      if (!cr.ok()) co_return FailWith(cr.error());
      auto info = co_await live_.Create(std::move(*cr));
      if (!info.ok()) co_return FailWith(info.error());
      std::string body = SandboxJson(*info, info->access_token);
      co_return Reply{201, std::move(body)};
    }
    if (method == http::verb::get) {
      auto pairs = ParseQuery(query);
      if (!pairs.ok()) co_return FailWith(pairs.error());
      auto lq = ParseListQuery(*pairs);
      if (!lq.ok()) co_return FailWith(lq.error());
      if (!t.v2 && !pairs->empty()) lq->limit = 1000;  // v1 has no pages
      auto [page, next] = ListPage(live_.List({}), *lq);
      json arr = json::array();
      for (const auto& i : page) arr.push_back(ListedJson(i));
      co_return Reply{200, arr.dump(-1, ' ', false, json::error_handler_t::replace), next};
    }
    co_return Fail(405, std::string(req.method_string()) + " " + target + ": use GET or POST");
  }

  const std::string& id = t.id;
  auto info = live_.Inspect(id);
  if (!info.ok() || info->state == LiveState::kDead) {
    if (t.verb.empty() && method == http::verb::delete_ && info.ok()) {
      // A dead sandbox is still released by a kill.
      (void)co_await live_.Kill(id);
    }
    co_return Fail(404, "sandbox " + id + " not found");
  }

  if (t.verb.empty()) {
    if (method == http::verb::get) {
      co_return Reply{200, SandboxDetailJson(*info, info->access_token)};
    }
    if (method == http::verb::delete_) {
      auto k = co_await live_.Kill(id);
      if (!k.ok()) co_return FailWith(k.error());
      cpu_.erase(id);
      co_return Reply{204, ""};
    }
    co_return Fail(405, std::string(req.method_string()) + " " + target + ": use GET or DELETE");
  }
  if (t.verb == "timeout") {
    if (method != http::verb::post) co_return Fail(405, target + ": use POST");
    auto secs = ParseTimeoutBody(req.body(), true);
    if (!secs.ok()) co_return FailWith(secs.error());
    auto r = live_.SetTimeout(id, **secs);
    if (!r.ok()) co_return FailWith(r.error());
    co_return Reply{204, ""};
  }
  if (t.verb == "network") {
    if (method != http::verb::put) co_return Fail(405, target + ": use PUT");
    auto n = ParseNetworkUpdate(req.body());
    if (!n.ok()) co_return FailWith(n.error());
    // Fields left out are cleared (as E2B's): {} is the internet, open.
    auto spec = E2bNetworkSpec(*n, NetworkMode::kEgress);
    if (!spec.ok()) co_return FailWith(spec.error());
    if (spec->mode == NetworkMode::kNone) {
      // Everything denied: a sandbox without a network stays so; one with
      // keeps its interface and refuses every address.
      if (info->network.mode == NetworkMode::kNone) co_return Reply{204, ""};
      spec->mode = NetworkMode::kEgress;
      spec->deny_out = {"0.0.0.0/0", "::/0"};
    }
    auto r = co_await live_.UpdateNetwork(id, std::move(*spec));
    if (!r.ok()) co_return FailWith(r.error());
    co_return Reply{204, ""};
  }
  if (t.verb == "pause") {
    if (method != http::verb::post) co_return Fail(405, target + ": use POST");
    if (info->state == LiveState::kPaused)
      co_return Fail(409, "sandbox " + id + " is already paused");
    auto r = co_await live_.Pause(id);
    if (!r.ok()) co_return FailWith(r.error());
    co_return Reply{204, ""};
  }
  if (t.verb == "connect" || t.verb == "resume") {
    if (method != http::verb::post) co_return Fail(405, target + ": use POST");
    auto secs = ParseTimeoutBody(req.body(), false);
    if (!secs.ok()) co_return FailWith(secs.error());
    const bool was_paused = info->state == LiveState::kPaused;
    if (was_paused) {
      auto r = co_await live_.Resume(id);
      if (!r.ok()) co_return FailWith(r.error());
    }
    // A running sandbox's time is only extended, never shortened; a resumed
    // one gets the timeout asked for.
    if (*secs && **secs > 0) {
      const int64_t wanted = NowMs() + static_cast<int64_t>(**secs) * 1000;
      if (was_paused || wanted > info->expires_ms) {
        auto r = live_.SetTimeout(id, **secs);
        if (!r.ok()) co_return FailWith(r.error());
      }
    }
    auto now = live_.Inspect(id);
    if (!now.ok()) co_return FailWith(now.error());
    co_return Reply{was_paused ? 201u : 200u, SandboxJson(*now, now->access_token)};
  }
  if (t.verb == "metrics") {
    if (method != http::verb::get) co_return Fail(405, target + ": use GET");
    // CPU use since the previous call (the first: since creation), as a
    // share of the sandbox's CPUs.
    const int64_t now_ms = NowMs();
    CpuSample prev{0, info->created_ms};
    if (auto it = cpu_.find(id); it != cpu_.end()) prev = it->second;
    cpu_[id] = CpuSample{info->cpu_usage_us, now_ms};
    const double wall_us = std::max<int64_t>(1, now_ms - prev.at_ms) * 1000.0;
    const double used_us =
        static_cast<double>(info->cpu_usage_us - std::min(prev.usage_us, info->cpu_usage_us));
    const double pct = std::min(100.0, 100.0 * used_us / wall_us / CpuCount(*info));
    json m = {{"timestamp", Rfc3339Utc(now_ms)},
              {"timestampUnix", now_ms / 1000},
              {"cpuCount", CpuCount(*info)},
              {"cpuUsedPct", pct},
              {"memUsed", info->memory_current},
              {"memTotal", MemoryLimit(*info)},
              {"memCache", 0},
              {"diskUsed", info->disk_used},
              {"diskTotal", info->disk_total}};
    co_return Reply{200, json::array({m}).dump()};
  }
  co_return Fail(404, target + ": not an endpoint warmbox serves");
}

asio::awaitable<bool> ControlPlane::Handle(beast::tcp_stream& s, const Request& req) {
  Reply r = co_await Route(req);
  http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
  if (r.status != 204) res.set(http::field::content_type, kJson);
  res.set(http::field::cache_control, "no-store");
  // The list's next page (the SDK reads this header).
  if (!r.next_token.empty()) res.set("X-Next-Token", r.next_token);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(r.body);
  res.prepare_payload();
  boost::system::error_code ec;
  s.expires_after(kWriteTimeout);
  co_await http::async_write(s, res, asio::redirect_error(asio::use_awaitable, ec));
  s.expires_never();
  co_return !ec && req.keep_alive();
}

}  // namespace wb::daemon::e2b
