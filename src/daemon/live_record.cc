#include "daemon/live_record.h"

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/fs.h"
#include "base/json.h"
#include "daemon/net_json.h"

namespace wb::daemon {

using nlohmann::json;

namespace {

Error Bad(const std::string& what, const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "live record", what,
              field.empty() ? why : field + ": " + why);
}

}  // namespace

json ServicesJson(const std::vector<ServiceState>& services) {
  json out = json::array();
  for (const auto& s : services) {
    out.push_back({{"name", s.name},
                   {"pid", s.pid},
                   {"running", !s.exit_code.has_value()},
                   {"exit_code", s.exit_code ? json(*s.exit_code) : json(nullptr)}});
  }
  return out;
}

Result<std::vector<ServiceState>> ParseServicesJson(const json& j) {
  auto bad = [](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, "parse", "services", why);
  };
  if (!j.is_array()) return bad("expected an array");
  std::vector<ServiceState> out;
  for (const auto& s : j) {
    if (!s.is_object() || !s.contains("name") || !s["name"].is_string() || !s.contains("pid") ||
        !s["pid"].is_number_integer())
      return bad("expected objects with a name and a pid");
    ServiceState st;
    st.name = s["name"];
    st.pid = s["pid"].get<int64_t>();
    if (auto it = s.find("exit_code"); it != s.end() && !it->is_null()) {
      if (!it->is_number_integer()) return bad("exit_code: expected an integer or null");
      st.exit_code = it->get<int>();
    }
    out.push_back(std::move(st));
  }
  return out;
}

bool IsLiveId(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string ToJson(const LiveRecord& r) {
  json j = {{"version", r.version},
            {"id", r.id},
            {"sandbox", r.sandbox},
            {"image", r.image},
            {"driver", r.driver},
            {"created_ms", r.created_ms},
            {"expires_ms", r.expires_ms},
            {"on_timeout", r.on_timeout},
            {"metadata", r.metadata},
            {"env", r.env},
            {"user", r.user},
            {"cwd", r.cwd},
            {"access_token", r.access_token},
            {"memory_bytes", r.memory_bytes},
            {"pids", r.pids},
            {"cpus", r.cpus},
            {"main", r.main},
            {"main_pid", r.main_pid},
            {"main_exit_code", r.main_exit_code ? json(*r.main_exit_code) : json(nullptr)},
            {"services", ServicesJson(r.services)},
            {"main_offset", r.main_offset},
            {"state", r.state},
            {"network", NetworkToJson(r.network)},
            {"host_pid", r.host_pid},
            {"host_start", r.host_start}};
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<LiveRecord> ParseLiveRecord(std::string_view text, const std::string& what) {
  auto parsed = ParseJsonBounded(text, what);
  if (!parsed.ok()) return Bad(what, "", "not JSON: " + parsed.error().detail);
  const json& j = *parsed;
  if (!j.is_object()) return Bad(what, "", "expected a JSON object");
  LiveRecord r;
  auto str = [&](const char* key, std::string& out, bool required) -> Result<void> {
    auto it = j.find(key);
    if (it == j.end()) {
      if (required) return Bad(what, key, "missing");
      return Ok();
    }
    if (!it->is_string()) return Bad(what, key, "expected a string");
    out = it->get<std::string>();
    return Ok();
  };
  auto i64 = [&](const char* key, int64_t& out, bool required) -> Result<void> {
    auto it = j.find(key);
    if (it == j.end()) {
      if (required) return Bad(what, key, "missing");
      return Ok();
    }
    if (!it->is_number_integer()) return Bad(what, key, "expected an integer");
    out = it->get<int64_t>();
    return Ok();
  };
  auto u64 = [&](const char* key, uint64_t& out) -> Result<void> {
    auto it = j.find(key);
    if (it == j.end()) return Ok();
    if (!it->is_number_unsigned()) return Bad(what, key, "expected a non-negative integer");
    out = it->get<uint64_t>();
    return Ok();
  };
  auto strings = [&](const char* key, std::vector<std::string>& out) -> Result<void> {
    auto it = j.find(key);
    if (it == j.end()) return Ok();
    if (!it->is_array()) return Bad(what, key, "expected an array of strings");
    for (const auto& v : *it) {
      if (!v.is_string()) return Bad(what, key, "expected an array of strings");
      out.push_back(v.get<std::string>());
    }
    return Ok();
  };
  int64_t version = 0;
  WB_RETURN_IF_ERROR(i64("version", version, true));
  if (version != 1)
    return Bad(what, "version", "unsupported version " + std::to_string(version) + " (expected 1)");
  WB_RETURN_IF_ERROR(str("id", r.id, true));
  if (!IsLiveId(r.id)) return Bad(what, "id", "expected 32 lower-case hex digits");
  WB_RETURN_IF_ERROR(str("sandbox", r.sandbox, false));
  WB_RETURN_IF_ERROR(str("image", r.image, true));
  WB_RETURN_IF_ERROR(str("driver", r.driver, true));
  if (r.driver != "ns" && r.driver != "vm") return Bad(what, "driver", "expected ns or vm");
  WB_RETURN_IF_ERROR(i64("created_ms", r.created_ms, true));
  WB_RETURN_IF_ERROR(i64("expires_ms", r.expires_ms, true));
  WB_RETURN_IF_ERROR(str("on_timeout", r.on_timeout, false));
  if (r.on_timeout != "kill" && r.on_timeout != "pause")
    return Bad(what, "on_timeout", "expected kill or pause");
  if (auto it = j.find("metadata"); it != j.end()) {
    if (!it->is_object()) return Bad(what, "metadata", "expected an object of strings");
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) return Bad(what, "metadata", "expected an object of strings");
      r.metadata[k] = v.get<std::string>();
    }
  }
  WB_RETURN_IF_ERROR(strings("env", r.env));
  WB_RETURN_IF_ERROR(str("user", r.user, false));
  WB_RETURN_IF_ERROR(str("cwd", r.cwd, false));
  WB_RETURN_IF_ERROR(str("access_token", r.access_token, false));
  WB_RETURN_IF_ERROR(u64("memory_bytes", r.memory_bytes));
  WB_RETURN_IF_ERROR(u64("pids", r.pids));
  if (auto it = j.find("cpus"); it != j.end()) {
    if (!it->is_number() || it->get<double>() < 0) return Bad(what, "cpus", "expected a number");
    r.cpus = it->get<double>();
  }
  WB_RETURN_IF_ERROR(strings("main", r.main));
  WB_RETURN_IF_ERROR(i64("main_pid", r.main_pid, false));
  if (auto it = j.find("main_exit_code"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) return Bad(what, "main_exit_code", "expected an integer or null");
    r.main_exit_code = it->get<int>();
  }
  if (auto it = j.find("services"); it != j.end()) {
    auto sv = ParseServicesJson(*it);
    if (!sv.ok()) return Bad(what, "services", sv.error().detail);
    r.services = std::move(*sv);
  }
  WB_RETURN_IF_ERROR(u64("main_offset", r.main_offset));
  WB_RETURN_IF_ERROR(str("state", r.state, false));
  if (r.state != "running" && r.state != "paused")
    return Bad(what, "state", "expected running or paused");
  if (auto it = j.find("network"); it != j.end()) {
    auto n = ParseNetworkJson(*it, "network");
    if (!n.ok()) return Bad(what, "network", n.error().detail);
    r.network = std::move(*n);
  }
  int64_t pid = 0;
  WB_RETURN_IF_ERROR(i64("host_pid", pid, true));
  if (pid <= 0 || pid > (1 << 22)) return Bad(what, "host_pid", "not a pid");
  r.host_pid = static_cast<pid_t>(pid);
  WB_RETURN_IF_ERROR(u64("host_start", r.host_start));
  return r;
}

Result<void> WriteLiveRecord(const std::string& dir, const LiveRecord& r) {
  // Written to a temp file and renamed, so a reader never sees half a
  // record. No fsync: the record must survive the daemon (a crash, a kill,
  // an upgrade), not the host: a reboot ends every sandbox it describes, and
  // the claim path (and the event loop, which writes it) does not wait on
  // the disk.
  return WriteFileAtomic(dir + "/" + kLiveRecordFile, ToJson(r), 0600);
}

Result<LiveRecord> ReadLiveRecord(const std::string& dir) {
  const std::string path = dir + "/" + kLiveRecordFile;
  std::string text = WB_TRY(ReadFile(path));
  return ParseLiveRecord(text, path);
}

}  // namespace wb::daemon
