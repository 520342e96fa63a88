#include "image/services.h"

#include <nlohmann/json.hpp>
#include <set>

#include "base/json.h"
#include "base/strings.h"

namespace wb {

namespace {

Error BadLabel(std::string_view image, const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "image " + std::string(image),
              std::string("label ") + kServicesLabel + (field.empty() ? "" : ": " + field), why);
}

bool ValidName(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (unsigned char c : n) {
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

bool StringArray(const nlohmann::json& j) {
  if (!j.is_array()) return false;
  for (const auto& v : j) {
    if (!v.is_string()) return false;
  }
  return true;
}

}  // namespace

Result<std::vector<ServiceSpec>> ParseServicesLabel(std::string_view image,
                                                    std::string_view value) {
  if (value.size() > kMaxServiceLabelBytes)
    return BadLabel(image, "", "longer than " + std::to_string(kMaxServiceLabelBytes) + " bytes");
  auto parsed = ParseJsonBounded(value, kServicesLabel, 8);
  if (!parsed.ok()) return BadLabel(image, "", "not JSON: " + parsed.error().ToString());
  const nlohmann::json& j = *parsed;
  if (!j.is_array()) return BadLabel(image, "", "expected a JSON array of services");
  if (j.size() > kMaxServices)
    return BadLabel(image, "", "more than " + std::to_string(kMaxServices) + " services");
  std::vector<ServiceSpec> out;
  std::set<std::string> names;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string at = "[" + std::to_string(i) + "]";
    const auto& s = j[i];
    if (!s.is_object()) return BadLabel(image, at, "expected an object");
    for (const auto& [k, v] : s.items()) {
      if (k != "name" && k != "argv" && k != "user" && k != "cwd" && k != "env" &&
          k != "ready_port" && k != "ready_timeout_s")
        return BadLabel(image, at + "." + k,
                        "unknown key (expected name, argv, user, cwd, env, ready_port, "
                        "ready_timeout_s)");
    }
    ServiceSpec spec;
    if (!s.contains("name") || !s["name"].is_string() || !ValidName(s["name"]))
      return BadLabel(image, at + ".name", "expected 1 to 64 characters of [A-Za-z0-9._-]");
    spec.name = s["name"];
    if (!names.insert(spec.name).second)
      return BadLabel(image, at + ".name", "'" + spec.name + "' is named twice");
    if (!s.contains("argv") || !StringArray(s["argv"]) || s["argv"].empty() ||
        s["argv"][0].get<std::string>().empty())
      return BadLabel(image, at + ".argv", "expected a non-empty array of strings");
    spec.argv = s["argv"].get<std::vector<std::string>>();
    for (const char* key : {"user", "cwd"}) {
      if (!s.contains(key)) continue;
      if (!s[key].is_string()) return BadLabel(image, at + "." + key, "expected a string");
      (key[0] == 'u' ? spec.user : spec.cwd) = s[key].get<std::string>();
    }
    if (!spec.cwd.empty() && spec.cwd.front() != '/')
      return BadLabel(image, at + ".cwd", "expected an absolute path, got '" + spec.cwd + "'");
    if (s.contains("env")) {
      if (!StringArray(s["env"])) return BadLabel(image, at + ".env", "expected an array of K=V");
      for (const auto& kv : s["env"]) {
        std::string e = kv;
        if (e.empty() || e.front() == '=' || e.find('=') == std::string::npos)
          return BadLabel(image, at + ".env", "expected K=V, got '" + e + "'");
        spec.env.push_back(std::move(e));
      }
    }
    if (s.contains("ready_port")) {
      const auto& p = s["ready_port"];
      if (!p.is_number_integer() || p.get<int64_t>() < 1 || p.get<int64_t>() > 65535)
        return BadLabel(image, at + ".ready_port", "expected a TCP port, 1 to 65535");
      spec.ready_port = static_cast<uint16_t>(p.get<int64_t>());
    }
    if (s.contains("ready_timeout_s")) {
      const auto& t = s["ready_timeout_s"];
      if (!s.contains("ready_port"))
        return BadLabel(image, at + ".ready_timeout_s", "only with ready_port");
      if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > kMaxReadyTimeoutS)
        return BadLabel(image, at + ".ready_timeout_s",
                        "expected seconds, 1 to " + std::to_string(kMaxReadyTimeoutS));
      spec.ready_timeout_s = static_cast<uint32_t>(t.get<int64_t>());
    }
    out.push_back(std::move(spec));
  }
  return out;
}

Result<std::vector<ServiceSpec>> ServicesOf(const std::string& image, const ImageConfig& config) {
  auto it = config.labels.find(kServicesLabel);
  if (it == config.labels.end()) return std::vector<ServiceSpec>{};
  return ParseServicesLabel(image, it->second);
}

std::optional<std::chrono::milliseconds> ReadyPollPlan::Next(
    uint32_t attempts, std::chrono::milliseconds elapsed) const {
  if (elapsed >= timeout) return std::nullopt;
  std::chrono::milliseconds d = kMax;
  if (attempts < 8) d = std::min(kMax, kFirst * (1u << attempts));
  // The last attempt lands on the deadline, not after it.
  return std::min(d, timeout - elapsed);
}

std::string ServiceTag(const std::string& name) { return "service:" + name; }

std::string ServiceNameOfTag(std::string_view tag) {
  return StartsWith(tag, "service:") ? std::string(tag.substr(8)) : std::string();
}

}  // namespace wb
