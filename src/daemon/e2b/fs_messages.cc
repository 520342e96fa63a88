#include "daemon/e2b/fs_messages.h"

#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/strings.h"
#include "daemon/e2b/connect.h"
#include "daemon/http_live.h"

namespace wb::daemon::e2b {

using nlohmann::json;

namespace {

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

// The member named camel or snake (protobuf-es takes either, not both).
Result<const json*> Member(const json& j, const char* camel, const char* snake) {
  auto a = j.find(camel);
  auto b = snake ? j.find(snake) : j.end();
  if (a != j.end() && b != j.end()) {
    return Bad(camel, std::string("give ") + camel + " or " + snake + ", not both");
  }
  const json* m = a != j.end() ? &*a : b != j.end() ? &*b : nullptr;
  if (m && m->is_null()) m = nullptr;
  return m;
}

Result<std::string> Str(const json& j, const char* camel, const char* snake = nullptr) {
  const json* m = WB_TRY(Member(j, camel, snake));
  if (!m) return std::string();
  if (!m->is_string()) return Bad(camel, "expected a string");
  const auto& s = m->get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos) return Bad(camel, "NUL byte");
  return s;
}

Result<bool> Bool(const json& j, const char* camel, const char* snake = nullptr) {
  const json* m = WB_TRY(Member(j, camel, snake));
  if (!m) return false;
  if (!m->is_boolean()) return Bad(camel, "expected true or false");
  return m->get<bool>();
}

// uint32: a number or a numeric string (proto3 JSON).
Result<uint32_t> U32(const json& j, const char* camel, const char* snake = nullptr) {
  const json* m = WB_TRY(Member(j, camel, snake));
  if (!m) return uint32_t{0};
  uint64_t v = 0;
  if (m->is_number_unsigned()) {
    v = m->get<uint64_t>();
  } else if (m->is_string()) {
    auto p = ParseUint(m->get_ref<const std::string&>(), camel);
    if (!p.ok()) return Bad(camel, "expected an unsigned integer");
    v = *p;
  } else if (m->is_number_float() && m->get<double>() >= 0 &&
             m->get<double>() == static_cast<double>(static_cast<uint64_t>(m->get<double>()))) {
    v = static_cast<uint64_t>(m->get<double>());
  } else {
    return Bad(camel, "expected an unsigned integer");
  }
  if (v > std::numeric_limits<uint32_t>::max()) return Bad(camel, "out of range for uint32");
  return static_cast<uint32_t>(v);
}

const char* FileTypeName(const std::string& agent_type) {
  if (agent_type == "file") return "FILE_TYPE_FILE";
  if (agent_type == "dir") return "FILE_TYPE_DIRECTORY";
  if (agent_type == "symlink") return "FILE_TYPE_SYMLINK";
  return nullptr;
}

json EntryInfo(const proto::FileStat& st) {
  json j = json::object();
  j["name"] = st.name;
  if (const char* t = FileTypeName(st.type)) j["type"] = t;
  j["path"] = st.path;
  j["size"] = std::to_string(st.size);
  j["mode"] = st.mode & 0777;
  j["permissions"] = st.permissions;
  j["owner"] = st.owner;
  j["group"] = st.group;
  j["modifiedTime"] = Rfc3339(st.mtime_ns);
  if (st.type == "symlink") j["symlinkTarget"] = st.symlink_target;
  return j;
}

}  // namespace

Result<FsRequest> ParseFsRequest(std::string_view text) {
  json j = json::object();
  if (!Trim(text).empty()) {
    auto parsed = ParseJsonBounded(text, "body");
    if (!parsed.ok()) return Bad("body", "not valid JSON");
    j = std::move(*parsed);
  }
  if (!j.is_object()) return Bad("body", "expected a JSON object");
  FsRequest r;
  r.path = WB_TRY(Str(j, "path"));
  r.depth = WB_TRY(U32(j, "depth"));
  r.source = WB_TRY(Str(j, "source"));
  r.destination = WB_TRY(Str(j, "destination"));
  r.recursive = WB_TRY(Bool(j, "recursive"));
  r.include_entry = WB_TRY(Bool(j, "includeEntry", "include_entry"));
  // (allowNetworkMounts: warmbox watches any mount; accepted and ignored.)
  (void)WB_TRY(Bool(j, "allowNetworkMounts", "allow_network_mounts"));
  r.watcher_id = WB_TRY(Str(j, "watcherId", "watcher_id"));
  return r;
}

std::string Rfc3339(int64_t unix_ns) {
  int64_t secs = unix_ns / 1000000000;
  int64_t nanos = unix_ns % 1000000000;
  if (nanos < 0) {
    nanos += 1000000000;
    --secs;
  }
  time_t t = static_cast<time_t>(secs);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (nanos) {
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%09lld", static_cast<long long>(nanos));
    std::string f(frac);
    // 9 digits, or 6 or 3 when the rest are zeros (protobuf's canonical form).
    if (f.size() == 10 && f.substr(7) == "000") f.resize(7);
    if (f.size() == 7 && f.substr(4) == "000") f.resize(4);
    out += f;
  }
  return out + "Z";
}

std::string EntryInfoJson(const proto::FileStat& st) { return Dump(EntryInfo(st)); }

std::string EntryMessageJson(const proto::FileStat& st) {
  json j = json::object();
  j["entry"] = EntryInfo(st);
  return Dump(j);
}

std::string EntriesMessageJson(const std::vector<proto::FileStat>& entries) {
  json arr = json::array();
  for (const auto& e : entries) arr.push_back(EntryInfo(e));
  json j = json::object();
  j["entries"] = std::move(arr);
  return Dump(j);
}

std::string RelativeName(std::string_view root, std::string_view path) {
  std::string_view r = root;
  while (r.size() > 1 && r.back() == '/') r.remove_suffix(1);
  if (path == r) return ".";
  if (StartsWith(path, r) && (r == "/" || (path.size() > r.size() && path[r.size()] == '/'))) {
    std::string_view rest = path.substr(r.size());
    while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
    return rest.empty() ? "." : std::string(rest);
  }
  return std::string(path);
}

const char* EventTypeName(std::string_view t) {
  if (t == "create") return "EVENT_TYPE_CREATE";
  if (t == "write") return "EVENT_TYPE_WRITE";
  if (t == "remove") return "EVENT_TYPE_REMOVE";
  if (t == "rename") return "EVENT_TYPE_RENAME";
  if (t == "chmod") return "EVENT_TYPE_CHMOD";
  return nullptr;
}

std::string FilesystemEventJson(std::string_view name, const char* type,
                                const std::optional<proto::FileStat>& entry) {
  json j = json::object();
  j["name"] = std::string(name);
  j["type"] = type;
  if (entry) j["entry"] = EntryInfo(*entry);
  return Dump(j);
}

std::string WatchEventMessageJson(const std::string& filesystem_event_json) {
  return "{\"filesystem\":" + filesystem_event_json + "}";
}

namespace {

bool IsUnknownUser(const Error& e) {
  // The agent resolves the user first; its error names the call.
  return e.code == ErrorCode::kInvalidArgument &&
         e.ToString().find("resolve user(") != std::string::npos;
}

}  // namespace

std::string FsConnectCode(const Error& e) {
  if (IsUnknownUser(e)) return "unauthenticated";
  return ConnectCode(e.code);
}

unsigned EnvdHttpStatus(const Error& e) {
  if (IsUnknownUser(e)) return 401;
  // warmbox's HTTP statuses (HttpStatusForCode) but where envd differs.
  switch (e.code) {
    case ErrorCode::kFailedPrecondition:
      return 400;
    case ErrorCode::kDraining:
      return 502;
    case ErrorCode::kCancelled:
      return 500;
    default:
      return HttpStatusForCode(e.code);
  }
}

std::string EnvdHttpErrorJson(unsigned status, std::string_view message) {
  json j = json::object();
  j["code"] = status;
  j["message"] = std::string(message);
  return Dump(j);
}

std::string UploadResultJson(const std::vector<WrittenFile>& files) {
  json arr = json::array();
  for (const auto& f : files) {
    json e = json::object();
    e["name"] = f.name;
    e["type"] = "file";
    e["path"] = f.path;
    arr.push_back(std::move(e));
  }
  return Dump(arr);
}

std::string BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos || path == "/") return std::string(path);
  return std::string(path.substr(slash + 1));
}

std::string EnvsJson(const std::vector<std::string>& env) {
  json j = json::object();
  for (const auto& kv : env) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    j[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return Dump(j);
}

}  // namespace wb::daemon::e2b
