#include "daemon/live_proto.h"

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "daemon/net_json.h"

namespace wb::daemon {

using nlohmann::json;

namespace {

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

const std::map<std::string, LiveOp>& Ops() {
  static const std::map<std::string, LiveOp> ops = {
      {"sandbox_create", LiveOp::kCreate},
      {"sandbox_list", LiveOp::kList},
      {"sandbox_inspect", LiveOp::kInspect},
      {"sandbox_kill", LiveOp::kKill},
      {"sandbox_set_timeout", LiveOp::kSetTimeout},
      {"sandbox_pause", LiveOp::kPause},
      {"sandbox_resume", LiveOp::kResume},
      {"sandbox_logs", LiveOp::kLogs},
      {"sandbox_code", LiveOp::kCode},
      {"sandbox_update_network", LiveOp::kUpdateNetwork}};
  return ops;
}

const char* OpName(LiveOp op) {
  for (const auto& [name, o] : Ops()) {
    if (o == op) return name.c_str();
  }
  return "sandbox_list";
}

Result<std::vector<std::string>> Strings(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Bad(key, "expected an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return Bad(key, "expected an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::map<std::string, std::string>> StringMap(const json& j, const char* key) {
  std::map<std::string, std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_object()) return Bad(key, "expected an object of strings");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string()) return Bad(key, "expected an object of strings");
    if (k.empty()) return Bad(key, "empty key");
    out[k] = v.get<std::string>();
  }
  return out;
}

Result<std::optional<std::string>> OptString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return Bad(key, "expected a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<uint64_t>> OptPositive(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<uint64_t>();
  if (!it->is_number_unsigned() || it->get<uint64_t>() == 0)
    return Bad(key, "expected a positive integer");
  return std::optional<uint64_t>(it->get<uint64_t>());
}

}  // namespace

bool IsLiveRequest(std::string_view body) {
  auto j = ParseJsonBounded(body, "request");
  if (!j.ok() || !j->is_object()) return false;
  auto op = j->find("op");
  return op != j->end() && op->is_string() && op->get<std::string>().rfind("sandbox_", 0) == 0;
}

Result<LiveRequest> ParseLiveRequest(std::string_view body) {
  auto parsed = ParseJsonBounded(body, "request");
  if (!parsed.ok()) return Bad("request", parsed.error().detail);
  const json& j = *parsed;
  if (!j.is_object()) return Bad("request", "expected a JSON object");
  auto op = j.find("op");
  if (op == j.end() || !op->is_string()) return Bad("op", "missing or not a string");
  auto known = Ops().find(op->get<std::string>());
  if (known == Ops().end()) {
    return Bad("op", "unknown op '" + op->get<std::string>() +
                         "' (expected sandbox_create, sandbox_list, sandbox_inspect, sandbox_kill, "
                         "sandbox_set_timeout, sandbox_pause, sandbox_resume, sandbox_logs, "
                         "sandbox_code or sandbox_update_network)");
  }
  LiveRequest r;
  r.op = known->second;
  if (r.op != LiveOp::kCreate && r.op != LiveOp::kList) {
    auto id = WB_TRY(OptString(j, "id"));
    if (!id || id->empty()) return Bad("id", "missing");
    r.id = *id;
  }
  switch (r.op) {
    case LiveOp::kCreate: {
      LiveCreateRequest& c = r.create;
      c.image = WB_TRY(OptString(j, "image"));
      if (c.image && c.image->empty()) return Bad("image", "empty");
      c.driver = WB_TRY(OptString(j, "driver"));
      if (c.driver && *c.driver != "ns" && *c.driver != "vm")
        return Bad("driver", "expected \"ns\" or \"vm\"");
      c.timeout_s = WB_TRY(OptPositive(j, "timeout"));
      c.env = WB_TRY(Strings(j, "env"));
      for (const auto& kv : c.env) {
        if (kv.empty() || kv.front() == '=' || kv.find('=') == std::string::npos)
          return Bad("env", "expected KEY=VALUE, got '" + kv + "'");
      }
      c.metadata = WB_TRY(StringMap(j, "metadata"));
      c.memory_bytes = WB_TRY(OptPositive(j, "memory"));
      if (c.memory_bytes && *c.memory_bytes < (4u << 20))
        return Bad("memory", "at least 4194304 bytes (4 MiB)");
      c.pids = WB_TRY(OptPositive(j, "pids"));
      if (auto it = j.find("cpus"); it != j.end() && !it->is_null()) {
        if (!it->is_number() || !(it->get<double>() > 0) || it->get<double>() > 1024)
          return Bad("cpus", "expected a positive number, at most 1024");
        c.cpus = it->get<double>();
      }
      c.user = WB_TRY(OptString(j, "user")).value_or("");
      c.cwd = WB_TRY(OptString(j, "workdir")).value_or("");
      if (auto it = j.find("main"); it != j.end() && !it->is_null()) {
        c.main = WB_TRY(Strings(j, "main"));  // [] = no main
      }
      if (auto it = j.find("no_main"); it != j.end() && !it->is_null()) {
        if (!it->is_boolean()) return Bad("no_main", "expected a boolean");
        if (it->get<bool>()) {
          if (c.main && !c.main->empty()) return Bad("no_main", "given with a main");
          c.main = std::vector<std::string>();
        }
      }
      if (auto it = j.find("network"); it != j.end()) {
        c.network = WB_TRY(ParseNetworkJson(*it, "network"));
      }
      c.on_timeout = WB_TRY(OptString(j, "on_timeout")).value_or("kill");
      if (c.on_timeout != "kill" && c.on_timeout != "pause")
        return Bad("on_timeout", "expected \"kill\" or \"pause\"");
      break;
    }
    case LiveOp::kList:
      r.metadata = WB_TRY(StringMap(j, "metadata"));
      break;
    case LiveOp::kSetTimeout: {
      auto t = WB_TRY(OptPositive(j, "timeout"));
      if (!t) return Bad("timeout", "missing");
      r.timeout_s = *t;
      break;
    }
    case LiveOp::kLogs: {
      if (auto it = j.find("tail"); it != j.end() && !it->is_null()) {
        if (!it->is_number_unsigned()) return Bad("tail", "expected a non-negative integer");
        r.tail = it->get<size_t>();
      }
      if (auto it = j.find("follow"); it != j.end() && !it->is_null()) {
        if (!it->is_boolean()) return Bad("follow", "expected a boolean");
        r.follow = it->get<bool>();
      }
      break;
    }
    case LiveOp::kUpdateNetwork: {
      // The policy in force afterwards: {"id", "network": {"mode"?,
      // "allow_out", "deny_out"}}; mode defaults to egress.
      auto it = j.find("network");
      if (it == j.end() || it->is_null()) return Bad("network", "missing");
      r.network = WB_TRY(
          ParseNetworkJson(*it, "network", {.default_mode = NetworkMode::kEgress, .ports = false}));
      break;
    }
    case LiveOp::kCode: {
      json body = j;
      body.erase("op");
      body.erase("id");
      r.code = WB_TRY(ParseCodeRequest(body.dump()));
      break;
    }
    default:
      break;
  }
  return r;
}

std::string ToJson(const LiveRequest& r) {
  json j = {{"op", OpName(r.op)}};
  if (!r.id.empty()) j["id"] = r.id;
  switch (r.op) {
    case LiveOp::kCreate: {
      const LiveCreateRequest& c = r.create;
      if (c.image) j["image"] = *c.image;
      if (c.driver) j["driver"] = *c.driver;
      if (c.timeout_s) j["timeout"] = *c.timeout_s;
      if (!c.env.empty()) j["env"] = c.env;
      if (!c.metadata.empty()) j["metadata"] = c.metadata;
      if (c.memory_bytes) j["memory"] = *c.memory_bytes;
      if (c.pids) j["pids"] = *c.pids;
      if (c.cpus) j["cpus"] = *c.cpus;
      if (!c.user.empty()) j["user"] = c.user;
      if (!c.cwd.empty()) j["workdir"] = c.cwd;
      if (c.main) j["main"] = *c.main;
      if (c.network.mode != NetworkMode::kNone || !c.network.ports.empty())
        j["network"] = NetworkToJson(c.network);
      j["on_timeout"] = c.on_timeout;
      break;
    }
    case LiveOp::kList:
      if (!r.metadata.empty()) j["metadata"] = r.metadata;
      break;
    case LiveOp::kSetTimeout:
      j["timeout"] = r.timeout_s;
      break;
    case LiveOp::kUpdateNetwork: {
      json n = NetworkToJson(r.network);
      n.erase("ports");
      j["network"] = n;
      break;
    }
    case LiveOp::kLogs:
      if (r.tail) j["tail"] = r.tail;
      if (r.follow) j["follow"] = true;
      break;
    case LiveOp::kCode:
      j.update(json::parse(ExecuteBody(r.code)));
      if (r.code.timeout_ms) j["timeout_ms"] = r.code.timeout_ms;
      break;
    default:
      break;
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

const char* LiveErrorKind(const Error& e) {
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      return "bad_request";
    case ErrorCode::kNotFound:
      // A missing image is its own kind, as for runs (the registry's error
      // for it is born with the call "no image").
      return e.call == "no image" ? "no_image" : "not_found";
    case ErrorCode::kBusy:
      return "busy";
    case ErrorCode::kDraining:
      return "draining";
    default:
      return ErrorCodeName(e.code);  // the same word as every other front end
  }
}

std::string LiveErrorJson(const Error& e) {
  // Field order as documented: ok, error, kind.
  return R"({"ok":false,"error":)" +
         json(e.ToString()).dump(-1, ' ', false, json::error_handler_t::replace) + R"(,"kind":")" +
         LiveErrorKind(e) + "\"}";
}

}  // namespace wb::daemon
