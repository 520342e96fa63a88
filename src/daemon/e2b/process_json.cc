// envd's Process service: the pure parts (process.h), apart from the
// service itself (process.cc), so the fuzz targets build them alone.
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/strings.h"
#include "daemon/e2b/envd.h"
#include "daemon/e2b/process.h"
#include "daemon/http_api.h"
#include "proto/live_ops.h"

namespace wb::daemon::e2b {

using nlohmann::json;

namespace {

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

Result<json> ParseMessage(std::string_view text) {
  // An empty message may come as an empty body.
  if (Trim(text).empty()) return json::object();
  auto parsed = ParseJsonBounded(text, "message");
  if (!parsed.ok()) {
    const std::string& why = parsed.error().detail;
    return Bad("message", why == "invalid JSON" ? "not valid JSON" : why);
  }
  if (!parsed->is_object()) return Bad("message", "expected a JSON object");
  return std::move(*parsed);
}

// A member; null counts as absent (proto3 JSON).
const json* Member(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

Result<std::string> Str(const json& v, const std::string& field) {
  if (!v.is_string()) return Bad(field, "expected a string");
  const auto& s = v.get_ref<const std::string&>();
  if (s.find('\0') != std::string::npos) return Bad(field, "NUL byte");
  return s;
}

// A proto3 integer: a JSON number (integral) or a string of digits.
Result<uint64_t> Uint(const json& v, const std::string& field, uint64_t max) {
  uint64_t n = 0;
  if (v.is_number_unsigned()) {
    n = v.get<uint64_t>();
  } else if (v.is_number_float() && v.get<double>() >= 0 && v.get<double>() <= 1e18 &&
             v.get<double>() == static_cast<double>(static_cast<uint64_t>(v.get<double>()))) {
    n = static_cast<uint64_t>(v.get<double>());
  } else if (v.is_string() && !v.get_ref<const std::string&>().empty() &&
             v.get_ref<const std::string&>().size() <= 19) {
    auto parsed = ParseUint(v.get_ref<const std::string&>(), field);
    if (!parsed.ok()) return Bad(field, "expected an integer");
    n = *parsed;
  } else {
    return Bad(field, "expected a non-negative integer");
  }
  if (n > max) return Bad(field, "at most " + std::to_string(max));
  return n;
}

Result<const json*> Object(const json& j, const char* name, const std::string& field) {
  const json* v = Member(j, name);
  if (v && !v->is_object()) return Bad(field, "expected an object");
  return v;
}

Result<ProcessSelector> Selector(const json& msg) {
  const json* p = WB_TRY(Object(msg, "process", "process"));
  if (!p) return Bad("process", "missing ({\"pid\":N} or {\"tag\":\"...\"})");
  const json* pid = Member(*p, "pid");
  const json* tag = Member(*p, "tag");
  if (pid && tag) return Bad("process", "give pid or tag, not both");
  ProcessSelector s;
  if (pid) {
    s.pid = static_cast<int64_t>(WB_TRY(Uint(*pid, "process.pid", 0xffffffffu)));
    if (s.pid == 0) return Bad("process.pid", "must be positive");
  } else if (tag) {
    s.tag = WB_TRY(Str(*tag, "process.tag"));
    if (s.tag.empty()) return Bad("process.tag", "empty");
  } else {
    return Bad("process", "missing pid (or tag)");
  }
  return s;
}

// {"cols":C,"rows":R}; each 1 to 65535.
Result<proto::ResizeRequest> Size(const json& size, const std::string& field) {
  proto::ResizeRequest r;
  const json* cols = Member(size, "cols");
  const json* rows = Member(size, "rows");
  if (!cols) return Bad(field + ".cols", "missing");
  if (!rows) return Bad(field + ".rows", "missing");
  r.cols = static_cast<uint32_t>(WB_TRY(Uint(*cols, field + ".cols", 65535)));
  r.rows = static_cast<uint32_t>(WB_TRY(Uint(*rows, field + ".rows", 65535)));
  if (r.cols == 0) return Bad(field + ".cols", "must be positive");
  if (r.rows == 0) return Bad(field + ".rows", "must be positive");
  return r;
}

int B64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

}  // namespace

// --- pure parts -------------------------------------------------------------------

Result<StartRequest> ParseStartRequest(std::string_view text) {
  json msg = WB_TRY(ParseMessage(text));
  StartRequest r;
  const json* p = WB_TRY(Object(msg, "process", "process"));
  if (!p) return Bad("process", "missing ({\"cmd\":...})");
  const json* cmd = Member(*p, "cmd");
  if (!cmd) return Bad("process.cmd", "missing");
  r.cmd = WB_TRY(Str(*cmd, "process.cmd"));
  if (r.cmd.empty()) return Bad("process.cmd", "empty");
  if (const json* args = Member(*p, "args")) {
    if (!args->is_array()) return Bad("process.args", "expected an array of strings");
    for (const auto& a : *args) r.args.push_back(WB_TRY(Str(a, "process.args")));
  }
  if (const json* envs = Member(*p, "envs")) {
    if (!envs->is_object()) return Bad("process.envs", "expected an object of strings");
    for (const auto& [k, v] : envs->items()) {
      if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
        return Bad("process.envs", "bad name '" + k + "'");
      }
      std::string value = WB_TRY(Str(v, "process.envs." + k));
      r.envs.emplace_back(k, std::move(value));
    }
  }
  if (const json* cwd = Member(*p, "cwd")) r.cwd = WB_TRY(Str(*cwd, "process.cwd"));
  if (const json* in = Member(msg, "stdin")) {
    if (!in->is_boolean()) return Bad("stdin", "expected true or false");
    r.stdin = in->get<bool>();
  }
  if (const json* pty = WB_TRY(Object(msg, "pty", "pty"))) {
    r.pty = true;
    if (const json* size = WB_TRY(Object(*pty, "size", "pty.size"))) {
      auto sz = WB_TRY(Size(*size, "pty.size"));
      r.rows = sz.rows;
      r.cols = sz.cols;
    }
  }
  if (const json* tag = Member(msg, "tag")) r.tag = WB_TRY(Str(*tag, "tag"));
  return r;
}

Result<ProcessSelector> ParseSelectorRequest(std::string_view text) {
  json msg = WB_TRY(ParseMessage(text));
  return Selector(msg);
}

Result<InputRequest> ParseSendInputRequest(std::string_view text) {
  json msg = WB_TRY(ParseMessage(text));
  InputRequest r;
  r.process = WB_TRY(Selector(msg));
  const json* in = WB_TRY(Object(msg, "input", "input"));
  if (!in) return Bad("input", "missing ({\"stdin\":\"<base64>\"} or {\"pty\":\"<base64>\"})");
  const json* out = Member(*in, "stdin");
  const json* pty = Member(*in, "pty");
  if (out && pty) return Bad("input", "give stdin or pty, not both");
  if (!out && !pty) return Bad("input", "missing stdin or pty");
  r.pty = pty != nullptr;
  const char* field = r.pty ? "input.pty" : "input.stdin";
  std::string b64 = WB_TRY(Str(r.pty ? *pty : *out, field));
  r.data = WB_TRY(DecodeProtoBytes(b64, field));
  return r;
}

Result<SignalCall> ParseSendSignalRequest(std::string_view text) {
  json msg = WB_TRY(ParseMessage(text));
  SignalCall r;
  r.process = WB_TRY(Selector(msg));
  const json* sig = Member(msg, "signal");
  if (!sig) return Bad("signal", "missing (SIGNAL_SIGKILL, SIGNAL_SIGTERM or a number)");
  if (sig->is_string()) {
    std::string name = sig->get<std::string>();
    if (name == "SIGNAL_UNSPECIFIED") return Bad("signal", "SIGNAL_UNSPECIFIED is no signal");
    if (!StartsWith(name, "SIGNAL_")) {
      return Bad("signal", "expected an enum name like SIGNAL_SIGKILL, got '" + name + "'");
    }
    auto n = proto::ParseSignal(std::string_view(name).substr(7));
    if (!n.ok()) return Bad("signal", "unknown signal '" + name + "'");
    r.signal = *n;
  } else {
    uint64_t n = WB_TRY(Uint(*sig, "signal", 64));
    if (n == 0) return Bad("signal", "0 (SIGNAL_UNSPECIFIED) is no signal");
    r.signal = static_cast<int>(n);
  }
  return r;
}

Result<UpdateRequest> ParseUpdateRequest(std::string_view text) {
  json msg = WB_TRY(ParseMessage(text));
  UpdateRequest r;
  r.process = WB_TRY(Selector(msg));
  if (const json* pty = WB_TRY(Object(msg, "pty", "pty"))) {
    if (const json* size = WB_TRY(Object(*pty, "size", "pty.size"))) {
      r.size = WB_TRY(Size(*size, "pty.size"));
    }
  }
  return r;
}

proto::ExecRequest StartExec(const StartRequest& r, std::string_view user,
                             std::string_view default_cwd, uint64_t timeout_ms) {
  proto::ExecRequest x;
  x.argv.push_back(r.cmd);
  x.argv.insert(x.argv.end(), r.args.begin(), r.args.end());
  // envd sets USER and LOGNAME (and HOME, which the agent sets from the
  // sandbox's passwd); a number has no name to give.
  std::string name(user.substr(0, user.find(':')));
  if (name.empty()) name = "root";
  if (!ParseUint(name, "user").ok()) {
    x.env.push_back("USER=" + name);
    x.env.push_back("LOGNAME=" + name);
  }
  // (After them: the request's own envs win, per key, in the agent's merge.)
  for (const auto& [k, v] : r.envs) x.env.push_back(k + "=" + v);
  if (r.cwd && !r.cwd->empty()) {
    x.cwd = ResolvePath(*r.cwd, name);
  } else if (!default_cwd.empty()) {
    x.cwd = std::string(default_cwd);
  } else {
    x.cwd = HomeOf(name);
  }
  x.user = std::string(user);
  x.timeout_ms = timeout_ms;
  x.stdin = r.stdin || r.pty;
  x.keep = true;
  x.tty = r.pty;
  x.rows = r.rows;
  x.cols = r.cols;
  x.tag = r.tag;
  return x;
}

std::string StartEventJson(int64_t pid) {
  return "{\"event\":{\"start\":{\"pid\":" + std::to_string(pid) + "}}}";
}

std::string DataEventJson(std::string_view stream, std::string_view bytes) {
  return "{\"event\":{\"data\":{\"" + std::string(stream) + "\":\"" + Base64Encode(bytes) + "\"}}}";
}

std::string KeepaliveEventJson() { return R"({"event":{"keepalive":{}}})"; }

std::string GoSignalName(int signal) {
  // The descriptions of Go's signal table for Linux (os.ProcessState's
  // String), which envd's status and error carry.
  static constexpr const char* kNames[] = {
      nullptr,
      "hangup",
      "interrupt",
      "quit",
      "illegal instruction",
      "trace/breakpoint trap",
      "aborted",
      "bus error",
      "floating point exception",
      "killed",
      "user defined signal 1",
      "segmentation fault",
      "user defined signal 2",
      "broken pipe",
      "alarm clock",
      "terminated",
      "stack fault",
      "child exited",
      "continued",
      "stopped (signal)",
      "stopped",
      "stopped (tty input)",
      "stopped (tty output)",
      "urgent I/O condition",
      "CPU time limit exceeded",
      "file size limit exceeded",
      "virtual timer expired",
      "profiling timer expired",
      "window changed",
      "I/O possible",
      "power failure",
      "bad system call",
  };
  if (signal > 0 && signal < static_cast<int>(std::size(kNames))) return kNames[signal];
  return "signal " + std::to_string(signal);
}

std::string EndEventJson(const proto::ExecExit& e) {
  json end = json::object();
  if (e.signal) {
    const std::string status = "signal: " + GoSignalName(e.signal);
    end["exitCode"] = -1;
    end["status"] = status;
    end["error"] = status;
  } else {
    const std::string status = "exit status " + std::to_string(e.exit_code);
    if (e.exit_code) end["exitCode"] = e.exit_code;
    end["exited"] = true;
    end["status"] = status;
    if (e.exit_code) end["error"] = status;
  }
  json event = json::object();
  event["end"] = std::move(end);
  json msg = json::object();
  msg["event"] = std::move(event);
  return Dump(msg);
}

std::string ProcessListJson(const std::vector<proto::ProcessInfo>& ps) {
  json list = json::array();
  for (const auto& p : ps) {
    if (!p.running || p.argv.empty()) continue;
    json config = json::object();
    config["cmd"] = p.argv.front();
    if (p.argv.size() > 1)
      config["args"] = std::vector<std::string>(p.argv.begin() + 1, p.argv.end());
    config["cwd"] = p.cwd;
    json entry = json::object();
    entry["pid"] = p.pid;
    if (!p.tag.empty()) entry["tag"] = p.tag;
    entry["config"] = std::move(config);
    list.push_back(std::move(entry));
  }
  json out = json::object();
  out["processes"] = std::move(list);
  return Dump(out);
}

Result<std::string> DecodeProtoBytes(std::string_view text, std::string_view field) {
  auto bad = [&] { return Bad(std::string(field), "not valid base64"); };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return bad();
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = B64Value(c);
    if (v < 0) return bad();
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

Result<uint64_t> ParseTimeoutMs(std::optional<std::string_view> header) {
  if (!header) return uint64_t{0};
  std::string_view v = Trim(*header);
  auto n = ParseUint(v, "Connect-Timeout-Ms");
  if (v.empty() || v.size() > 10 || !n.ok()) {
    return Bad("Connect-Timeout-Ms", "expected at most 10 digits, got '" + std::string(v) + "'");
  }
  return *n;
}

Result<std::chrono::seconds> ParseKeepaliveInterval(std::optional<std::string_view> header) {
  if (!header) return kDefaultKeepalive;
  std::string_view v = Trim(*header);
  auto n = ParseUint(v, "Keepalive-Ping-Interval");
  if (v.empty() || v.size() > 6 || !n.ok() || *n == 0) {
    return Bad("Keepalive-Ping-Interval",
               "expected seconds from 1 to 999999, got '" + std::string(v) + "'");
  }
  return std::chrono::seconds(*n);
}

}  // namespace wb::daemon::e2b
