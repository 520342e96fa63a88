#include "daemon/net_json.h"

#include <vector>

namespace wb::daemon {

using nlohmann::json;

namespace {

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

Result<std::vector<std::string>> Strings(const json& j, const char* key, const std::string& what) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Bad(what, "expected an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return Bad(what, "expected an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

Result<NetworkSpec> ParseNetworkJson(const json& j, const std::string& field,
                                     NetworkJsonRules rules) {
  NetworkSpec s;
  s.mode = rules.default_mode;
  if (j.is_null()) return s;
  if (!j.is_object()) return Bad(field, "expected an object");
  for (const auto& [key, v] : j.items()) {
    if (key != "mode" && key != "allow_out" && key != "deny_out" &&
        (key != "ports" || !rules.ports))
      return Bad(field + "." + key, "unknown field");
  }
  if (auto it = j.find("mode"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return Bad(field + ".mode", "expected \"none\" or \"egress\"");
    s.mode = WB_TRY(ParseNetworkMode(it->get<std::string>(), field + ".mode"));
  }
  s.allow_out = WB_TRY(Strings(j, "allow_out", field + ".allow_out"));
  s.deny_out = WB_TRY(Strings(j, "deny_out", field + ".deny_out"));
  for (const auto& p : WB_TRY(Strings(j, "ports", field + ".ports"))) {
    s.ports.push_back(WB_TRY(ParsePublishedPort(p, field + ".ports")));
  }
  (void)WB_TRY(ParseNetPolicy(s.allow_out, s.deny_out, field + ".allow_out", field + ".deny_out"));
  // Ports are published by the daemon through the agent: any mode.
  if (s.mode == NetworkMode::kNone && (!s.allow_out.empty() || !s.deny_out.empty())) {
    return Bad(field, "a policy needs mode \"egress\"");
  }
  return s;
}

Result<NetworkSpec> RunNetworkSpec(const proto::RunRequest::Network& n) {
  NetworkSpec s;
  s.mode = WB_TRY(ParseNetworkMode(n.mode, "network.mode"));
  s.allow_out = n.allow_out;
  s.deny_out = n.deny_out;
  (void)WB_TRY(ParseNetPolicy(s.allow_out, s.deny_out, "network.allow_out", "network.deny_out"));
  if (s.mode == NetworkMode::kNone && (!s.allow_out.empty() || !s.deny_out.empty()))
    return Bad("network", "a policy needs mode \"egress\"");
  return s;
}

json NetworkToJson(const NetworkSpec& s) {
  std::vector<std::string> ports;
  for (const auto& p : s.ports) {
    const bool v6 = p.host_addr.find(':') != std::string::npos;
    ports.push_back((v6 ? "[" + p.host_addr + "]" : p.host_addr) + ":" +
                    std::to_string(p.host_port) + ":" + std::to_string(p.port));
  }
  return {{"mode", NetworkModeName(s.mode)},
          {"allow_out", s.allow_out},
          {"deny_out", s.deny_out},
          {"ports", ports}};
}

}  // namespace wb::daemon
