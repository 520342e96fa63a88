#include "proto/live_ops.h"

#include <signal.h>
#include <string.h>

#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/strings.h"

namespace wb::proto {

using nlohmann::json;

namespace {

constexpr std::string_view kOps[] = {"exec", "attach", "ps", "signal", "fs"};
constexpr std::string_view kFsOps[] = {"stat",   "list", "mkdir", "remove",
                                       "rename", "read", "write", "watch"};

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

Result<std::string> Str(const json& j, const char* key, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) return Bad(key, "missing");
    return std::string();
  }
  if (!it->is_string()) return Bad(key, "expected a string");
  return it->get<std::string>();
}

Result<bool> Flag(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Bad(key, "expected true or false");
  return it->get<bool>();
}

Result<uint64_t> Uint(const json& j, const char* key, uint64_t dflt, uint64_t max) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number_unsigned() || it->get<uint64_t>() > max) {
    return Bad(key, "expected an integer from 0 to " + std::to_string(max));
  }
  return it->get<uint64_t>();
}

// ["K=V"] or {"K":"V"}.
Result<std::vector<std::string>> Env(const json& j) {
  std::vector<std::string> out;
  auto it = j.find("env");
  if (it == j.end() || it->is_null()) return out;
  if (it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) return Bad("env " + k, "expected a string value");
      out.push_back(k + "=" + v.get<std::string>());
    }
  } else if (it->is_array()) {
    for (const auto& v : *it) {
      if (!v.is_string()) return Bad("env", "expected an array of \"K=V\" strings");
      out.push_back(v.get<std::string>());
    }
  } else {
    return Bad("env", "expected an array of \"K=V\" strings or an object");
  }
  for (const auto& e : out) {
    size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos || e.find('\0') != std::string::npos) {
      return Bad("env " + e, "expected KEY=VALUE");
    }
  }
  return out;
}

Result<uint64_t> Pid(const json& j) {
  auto it = j.find("pid");
  if (it == j.end() || it->is_null()) return Bad("pid", "missing");
  if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 || it->get<uint64_t>() > 0x3fffffff) {
    return Bad("pid", "expected a process id (a positive integer)");
  }
  return it->get<uint64_t>();
}

Result<void> ParseExec(const json& j, LiveOpRequest& r) {
  auto cmd = j.find("cmd");
  if (cmd == j.end() || cmd->is_null()) return Bad("cmd", "missing");
  if (!cmd->is_array() || cmd->empty()) return Bad("cmd", "expected a non-empty array of strings");
  for (const auto& a : *cmd) {
    if (!a.is_string()) return Bad("cmd", "expected a non-empty array of strings");
    if (a.get<std::string>().find('\0') != std::string::npos) return Bad("cmd", "NUL byte");
    r.exec.argv.push_back(a.get<std::string>());
  }
  r.exec.env = WB_TRY(Env(j));
  r.exec.cwd = WB_TRY(Str(j, "cwd", false));
  r.exec.user = WB_TRY(Str(j, "user", false));
  r.exec.timeout_ms = WB_TRY(Uint(j, "timeout_ms", 0, uint64_t{1} << 40));
  r.exec.keep = true;  // a client that goes away never kills the process
  r.exec.tty = WB_TRY(Flag(j, "tty"));
  r.exec.stdin = r.exec.tty || WB_TRY(Flag(j, "stdin"));
  if (r.exec.tty) {
    r.exec.rows = static_cast<uint32_t>(WB_TRY(Uint(j, "rows", 24, 0xffff)));
    r.exec.cols = static_cast<uint32_t>(WB_TRY(Uint(j, "cols", 80, 0xffff)));
  }
  r.first = FrameType::kExec;
  r.client_frames = {FrameType::kStdin, FrameType::kStdinClose, FrameType::kResize};
  return Ok();
}

Result<void> ParseFs(const json& j, LiveOpRequest& r) {
  auto req = j.find("request");
  if (req == j.end() || !req->is_object()) return Bad("request", "expected an object");
  std::string op = WB_TRY(Str(*req, "op", true));
  bool known = false;
  for (auto k : kFsOps) known = known || op == k;
  if (!known) {
    return Bad("request.op",
               "unknown file operation '" + op +
                   "' (expected stat, list, mkdir, remove, rename, read, write or watch)");
  }
  std::string path = WB_TRY(Str(*req, "path", true));
  if (path.empty() || path.find('\0') != std::string::npos) {
    return Bad("request.path", "expected a non-empty path");
  }
  r.first = FrameType::kFile;
  r.payload = req->dump();
  if (op == "write") r.client_frames = {FrameType::kStdin, FrameType::kStdinClose};
  return Ok();
}

}  // namespace

bool IsLiveOp(std::string_view op) {
  for (auto k : kOps) {
    if (op == k) return true;
  }
  return false;
}

Result<int> ParseSignal(std::string_view s) {
  if (s.empty()) return Bad("signal", "empty");
  if (s.front() >= '0' && s.front() <= '9') {
    auto n = ParseUint(s, "signal");
    if (!n.ok() || *n < 1 || *n > 64) {
      return Bad("signal", "'" + std::string(s) + "' is not a signal number (1-64)");
    }
    return static_cast<int>(*n);
  }
  std::string name = AsciiLower(s);
  if (StartsWith(name, "sig")) name = name.substr(3);
  for (int i = 1; i < 32; ++i) {
    const char* abbrev = ::sigabbrev_np(i);  // "TERM"
    if (abbrev && name == AsciiLower(abbrev)) return i;
  }
  return Bad("signal", "unknown signal '" + std::string(s) + "' (e.g. TERM, KILL, INT, HUP, 9)");
}

Result<LiveOpRequest> ParseLiveOpRequest(std::string_view text) {
  json j = WB_TRY(ParseJsonBounded(text, "request"));
  if (!j.is_object()) return Bad("request", "expected a JSON object");
  LiveOpRequest r;
  std::string op = WB_TRY(Str(j, "op", true));
  r.sandbox = WB_TRY(Str(j, "id", true));
  if (r.sandbox.empty()) return Bad("id", "empty");
  if (op == "exec") {
    r.op = LiveOp::kExec;
    WB_RETURN_IF_ERROR(ParseExec(j, r));
  } else if (op == "attach") {
    r.op = LiveOp::kAttach;
    // (The pid first: a WB_TRY returning from inside a braced initializer
    // would leak the elements already built.)
    const uint64_t pid = WB_TRY(Pid(j));
    json a{{"pid", pid}};
    auto from = j.find("from");
    if (from != j.end() && !from->is_null()) {
      if (!from->is_number_integer() || from->get<int64_t>() < -1) {
        return Bad("from", "expected a byte offset (an integer >= 0, or -1 for new output only)");
      }
      a["from"] = from->get<int64_t>();
    }
    r.first = FrameType::kAttach;
    r.payload = a.dump();
    r.client_frames = {FrameType::kStdin, FrameType::kStdinClose, FrameType::kResize};
  } else if (op == "ps") {
    r.op = LiveOp::kPs;
    r.first = FrameType::kList;
  } else if (op == "signal") {
    r.op = LiveOp::kSignal;
    uint64_t pid = WB_TRY(Pid(j));
    int sig = SIGTERM;
    auto s = j.find("signal");
    if (s != j.end() && !s->is_null()) {
      if (s->is_number_unsigned()) {
        sig = WB_TRY(ParseSignal(std::to_string(s->get<uint64_t>())));
      } else if (s->is_string()) {
        sig = WB_TRY(ParseSignal(s->get<std::string>()));
      } else {
        return Bad("signal", "expected a name (\"TERM\") or a number");
      }
    }
    r.first = FrameType::kSignal;
    r.payload = json{{"pid", pid}, {"signal", sig}}.dump();
  } else if (op == "fs") {
    r.op = LiveOp::kFs;
    WB_RETURN_IF_ERROR(ParseFs(j, r));
  } else {
    return Bad("op", "unknown op '" + op + "'");
  }
  return r;
}

std::string LiveExecJson(const LiveOpRequest& r) {
  ExecRequest e = r.exec;
  e.keep = true;
  return ToJson(e);
}

}  // namespace wb::proto
