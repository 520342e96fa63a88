#include "proto/agent_proto.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "base/json.h"

namespace wb::proto {

using nlohmann::json;

bool IsKnownFrameType(char c) {
  switch (c) {
    case 'H':
    case 'h':
    case 'S':
    case 'A':
    case 'W':
    case 'K':
    case 'k':
    case 'P':
    case 'p':
    case 'M':
    case 'm':
    case 'L':
    case 'l':
    case 'x':
    case 'V':
    case 'e':
    case 'T':
    case 't':
    case 'E':
    case 'I':
    case 'C':
    case 'O':
    case 'R':
    case 'X':
    case 'F':
    case 'D':
    case 'd':
    case 'Y':
    case 'Z':
    case 'G':
    case 'Q':
    case 'q':
      return true;
  }
  return false;
}

void AppendFrame(std::string& out, FrameType type, std::string_view payload) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  char hdr[kHeaderSize] = {static_cast<char>(type), static_cast<char>(n >> 24),
                           static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                           static_cast<char>(n)};
  out.append(hdr, kHeaderSize);
  out.append(payload);
}

std::string EncodeFrame(FrameType type, std::string_view payload) {
  std::string out;
  out.reserve(kHeaderSize + payload.size());
  AppendFrame(out, type, payload);
  return out;
}

Result<void> FrameDecoder::Feed(std::string_view bytes) {
  if (failed_) return *failed_;
  buf_.append(bytes);
  auto r = Validate();
  if (!r.ok()) failed_ = r.error();
  return r;
}

Result<void> FrameDecoder::Validate() {
  for (;;) {
    size_t avail = buf_.size() - pos_;
    if (avail < kHeaderSize) break;
    const unsigned char* h = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    if (!IsKnownFrameType(static_cast<char>(h[0]))) {
      return Fail("decode frame", "type " + std::to_string(h[0]), "unknown frame type");
    }
    uint32_t n = (uint32_t{h[1]} << 24) | (uint32_t{h[2]} << 16) | (uint32_t{h[3]} << 8) | h[4];
    if (n > kMaxFrame) {
      return Fail("decode frame", std::to_string(n) + " bytes",
                  "frame exceeds the " + std::to_string(kMaxFrame) + "-byte limit");
    }
    if (avail < kHeaderSize + n) break;
    ready_.push_back(Frame{static_cast<FrameType>(h[0]), buf_.substr(pos_ + kHeaderSize, n)});
    pos_ += kHeaderSize + n;
  }
  // Compact once the consumed prefix dominates, keeping Feed amortised O(n).
  if (pos_ > 0 && pos_ * 2 >= buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return Ok();
}

std::optional<Frame> FrameDecoder::Next() {
  if (ready_.empty()) return std::nullopt;
  Frame f = std::move(ready_.front());
  ready_.pop_front();
  return f;
}

namespace {

Error Bad(const char* what, std::string_view key, std::string detail);

Result<json> ParseObject(std::string_view text, const char* what) {
  auto parsed = ParseJsonBounded(text, what);
  if (!parsed.ok()) {
    return Fail(ErrorCode::kInvalidArgument, "parse " + std::string(what), "",
                parsed.error().detail);
  }
  json j = std::move(*parsed);
  if (!j.is_object()) return Bad(what, "", "expected a JSON object");
  return j;
}

Error Bad(const char* what, std::string_view key, std::string detail) {
  return Fail(ErrorCode::kInvalidArgument, "parse " + std::string(what), std::string(key),
              std::move(detail));
}

Result<std::vector<std::string>> StringList(const json& j, const char* key, const char* what) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Bad(what, key, "expected an array of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return Bad(what, key, "expected an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::string> String(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Bad(what, key, "expected a string");
  return it->get<std::string>();
}

Result<uint64_t> Uint(const json& j, const char* key, const char* what, uint64_t dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number_unsigned()) return Bad(what, key, "expected a non-negative integer");
  return it->get<uint64_t>();
}

// An unsigned member within [lo, hi].
Result<uint64_t> UintIn(const json& j, const char* key, const char* what, uint64_t dflt,
                        uint64_t lo, uint64_t hi) {
  uint64_t v = WB_TRY(Uint(j, key, what, dflt));
  if (v < lo || v > hi) {
    return Bad(what, key,
               "out of range (" + std::to_string(lo) + " to " + std::to_string(hi) + ")");
  }
  return v;
}

Result<bool> Bool(const json& j, const char* key, const char* what) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Bad(what, key, "expected a boolean");
  return it->get<bool>();
}

Result<int64_t> Int64(const json& j, const char* key, const char* what, int64_t dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return Bad(what, key, "out of range");
    return static_cast<int64_t>(u);
  }
  if (!it->is_number_integer()) return Bad(what, key, "expected an integer");
  return it->get<int64_t>();
}

Result<int> Int(const json& j, const char* key, const char* what) {
  int64_t v = WB_TRY(Int64(j, key, what, 0));
  if (v < INT32_MIN || v > INT32_MAX) return Bad(what, key, "out of range");
  return static_cast<int>(v);
}

// A required pid: a positive integer.
Result<int64_t> Pid(const json& j, const char* what) {
  auto it = j.find("pid");
  if (it == j.end() || it->is_null()) return Bad(what, "pid", "missing");
  int64_t v = WB_TRY(Int64(j, "pid", what, 0));
  if (v <= 0 || v > INT32_MAX) return Bad(what, "pid", "expected a positive process id");
  return v;
}

// An absolute path without NUL bytes; required unless optional.
Result<std::string> AbsPath(const json& j, const char* key, const char* what) {
  std::string p = WB_TRY(String(j, key, what));
  if (p.empty()) return Bad(what, key, "missing");
  if (p[0] != '/') return Bad(what, key, "expected an absolute path");
  if (p.find('\0') != std::string::npos) return Bad(what, key, "NUL byte");
  return p;
}

// The array member key, each element an object (for lists of records).
Result<std::vector<const json*>> Objects(const json& j, const char* key, const char* what) {
  std::vector<const json*> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (!it->is_array()) return Bad(what, key, "expected an array of objects");
  for (const auto& v : *it) {
    if (!v.is_object()) return Bad(what, key, "expected an array of objects");
    out.push_back(&v);
  }
  return out;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string ToJson(const ExecRequest& r) {
  json j = {{"argv", r.argv},
            {"env", r.env},
            {"cwd", r.cwd},
            {"user", r.user},
            {"timeout_ms", r.timeout_ms},
            {"output_cap", r.output_cap},
            {"stdin", r.stdin},
            {"nofile", r.nofile}};
  // Live members only when set: a pool run's request is unchanged.
  if (r.keep) j["keep"] = true;
  if (r.tty) j["tty"] = true;
  if (r.rows) j["rows"] = r.rows;
  if (r.cols) j["cols"] = r.cols;
  if (!r.tag.empty()) j["tag"] = r.tag;
  if (r.ring_bytes) j["ring_bytes"] = r.ring_bytes;
  return Dump(j);
}

std::string ToJson(const ExecExit& e) {
  json j = {{"exit_code", e.exit_code},
            {"signal", e.signal},
            {"timed_out", e.timed_out},
            {"stdout_truncated", e.stdout_truncated},
            {"stderr_truncated", e.stderr_truncated},
            {"error", e.error},
            {"oom_killed", e.oom_killed}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ExecRequest> ParseExecRequest(std::string_view text) {
  const char* what = "exec request";
  json j = WB_TRY(ParseObject(text, what));
  ExecRequest r;
  r.argv = WB_TRY(StringList(j, "argv", what));
  if (r.argv.empty()) return Bad(what, "argv", "empty command");
  for (const auto& a : r.argv) {
    if (a.find('\0') != std::string::npos) return Bad(what, "argv", "NUL byte");
  }
  r.env = WB_TRY(StringList(j, "env", what));
  for (const auto& e : r.env) {
    size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos || e.find('\0') != std::string::npos) {
      return Bad(what, "env " + e, "expected KEY=VALUE");
    }
  }
  r.cwd = WB_TRY(String(j, "cwd", what));
  r.user = WB_TRY(String(j, "user", what));
  r.timeout_ms = WB_TRY(Uint(j, "timeout_ms", what, 0));
  r.output_cap = WB_TRY(Uint(j, "output_cap", what, kDefaultOutputCap));
  r.stdin = WB_TRY(Bool(j, "stdin", what));
  r.nofile = WB_TRY(Uint(j, "nofile", what, 0));
  r.keep = WB_TRY(Bool(j, "keep", what));
  r.tty = WB_TRY(Bool(j, "tty", what));
  r.rows = static_cast<uint32_t>(WB_TRY(UintIn(j, "rows", what, 0, 0, 65535)));
  r.cols = static_cast<uint32_t>(WB_TRY(UintIn(j, "cols", what, 0, 0, 65535)));
  r.tag = WB_TRY(String(j, "tag", what));
  r.ring_bytes = WB_TRY(UintIn(j, "ring_bytes", what, 0, 0, kMaxRingBytes));
  if (r.ring_bytes && r.ring_bytes < kMinRingBytes) {
    return Bad(what, "ring_bytes", "at least " + std::to_string(kMinRingBytes));
  }
  if ((r.tty || r.ring_bytes || !r.tag.empty()) && !r.keep) {
    // A pool run has no ring, no tag and no terminal: refuse rather than ignore.
    return Bad(what, r.tty ? "tty" : r.ring_bytes ? "ring_bytes" : "tag", "needs keep:true");
  }
  return r;
}

Result<ExecExit> ParseExecExit(std::string_view text) {
  const char* what = "exec exit";
  json j = WB_TRY(ParseObject(text, what));
  ExecExit e;
  e.exit_code = WB_TRY(Int(j, "exit_code", what));
  e.signal = WB_TRY(Int(j, "signal", what));
  e.timed_out = WB_TRY(Bool(j, "timed_out", what));
  e.stdout_truncated = WB_TRY(Bool(j, "stdout_truncated", what));
  e.stderr_truncated = WB_TRY(Bool(j, "stderr_truncated", what));
  e.error = WB_TRY(String(j, "error", what));
  e.oom_killed = WB_TRY(Bool(j, "oom_killed", what));
  return e;
}

// --- Live sandboxes ------------------------------------------------------------

std::string ToJson(const Started& s) { return Dump({{"pid", s.pid}, {"offset", s.offset}}); }

Result<Started> ParseStarted(std::string_view text) {
  const char* what = "started";
  json j = WB_TRY(ParseObject(text, what));
  Started s;
  s.pid = WB_TRY(Pid(j, what));
  s.offset = WB_TRY(Uint(j, "offset", what, 0));
  return s;
}

std::string ToJson(const AttachRequest& a) { return Dump({{"pid", a.pid}, {"from", a.from}}); }

Result<AttachRequest> ParseAttachRequest(std::string_view text) {
  const char* what = "attach request";
  json j = WB_TRY(ParseObject(text, what));
  AttachRequest a;
  a.pid = WB_TRY(Pid(j, what));
  a.from = WB_TRY(Int64(j, "from", what, -1));
  if (a.from < -1) return Bad(what, "from", "expected a byte offset or -1");
  return a;
}

std::string ToJson(const ResizeRequest& r) { return Dump({{"rows", r.rows}, {"cols", r.cols}}); }

Result<ResizeRequest> ParseResizeRequest(std::string_view text) {
  const char* what = "resize request";
  json j = WB_TRY(ParseObject(text, what));
  ResizeRequest r;
  r.rows = static_cast<uint32_t>(WB_TRY(UintIn(j, "rows", what, 0, 1, 65535)));
  r.cols = static_cast<uint32_t>(WB_TRY(UintIn(j, "cols", what, 0, 1, 65535)));
  return r;
}

std::string ToJson(const SignalRequest& s) { return Dump({{"pid", s.pid}, {"signal", s.signal}}); }

Result<SignalRequest> ParseSignalRequest(std::string_view text) {
  const char* what = "signal request";
  json j = WB_TRY(ParseObject(text, what));
  SignalRequest s;
  s.pid = WB_TRY(Pid(j, what));
  s.signal = static_cast<int>(WB_TRY(UintIn(j, "signal", what, 0, 1, 64)));
  return s;
}

namespace {

json ProcessJson(const ProcessInfo& p) {
  json j = {{"pid", p.pid},         {"argv", p.argv},  {"cwd", p.cwd},
            {"user", p.user},       {"tag", p.tag},    {"tty", p.tty},
            {"running", p.running}, {"exit", nullptr}, {"started_ms", p.started_ms}};
  if (p.exit) j["exit"] = json::parse(ToJson(*p.exit));
  return j;
}

Result<ProcessInfo> ProcessFromJson(const json& j) {
  const char* what = "process info";
  ProcessInfo p;
  p.pid = WB_TRY(Pid(j, what));
  p.argv = WB_TRY(StringList(j, "argv", what));
  p.cwd = WB_TRY(String(j, "cwd", what));
  p.user = WB_TRY(String(j, "user", what));
  p.tag = WB_TRY(String(j, "tag", what));
  p.tty = WB_TRY(Bool(j, "tty", what));
  p.running = WB_TRY(Bool(j, "running", what));
  p.started_ms = WB_TRY(Int64(j, "started_ms", what, 0));
  auto it = j.find("exit");
  if (it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Bad(what, "exit", "expected an object or null");
    auto x = ParseExecExit(it->dump());
    if (!x.ok()) return Bad(what, "exit", x.error().ToString());
    p.exit = std::move(*x);
  }
  return p;
}

}  // namespace

std::string ToJson(const ProcessInfo& p) { return Dump(ProcessJson(p)); }

std::string ToJson(const std::vector<ProcessInfo>& list) {
  json arr = json::array();
  for (const auto& p : list) arr.push_back(ProcessJson(p));
  return Dump({{"processes", arr}});
}

Result<std::vector<ProcessInfo>> ParseProcessList(std::string_view text) {
  const char* what = "process list";
  json j = WB_TRY(ParseObject(text, what));
  std::vector<ProcessInfo> out;
  for (const json* p : WB_TRY(Objects(j, "processes", what))) {
    out.push_back(WB_TRY(ProcessFromJson(*p)));
  }
  return out;
}

std::string ToJson(const ClaimRequest& c) { return Dump({{"env", c.env}, {"persist", c.persist}}); }

Result<ClaimRequest> ParseClaimRequest(std::string_view text) {
  const char* what = "claim request";
  json j = WB_TRY(ParseObject(text, what));
  ClaimRequest c;
  c.env = WB_TRY(StringList(j, "env", what));
  for (const auto& e : c.env) {
    size_t eq = e.find('=');
    if (eq == 0 || eq == std::string::npos || e.find('\0') != std::string::npos) {
      return Bad(what, "env " + e, "expected KEY=VALUE");
    }
  }
  c.persist = WB_TRY(Bool(j, "persist", what));
  return c;
}

std::string ToJson(const FileRequest& r) {
  json j = {{"op", r.op}, {"path", r.path}, {"user", r.user}};
  if (r.op == "list") j["depth"] = r.depth;
  if (r.mode) j["mode"] = *r.mode;
  if (r.recursive) j["recursive"] = true;
  if (!r.to.empty()) j["to"] = r.to;
  if (r.append) j["append"] = true;
  if (r.max_bytes) j["max_bytes"] = r.max_bytes;
  return Dump(j);
}

Result<FileRequest> ParseFileRequest(std::string_view text) {
  const char* what = "file request";
  json j = WB_TRY(ParseObject(text, what));
  FileRequest r;
  r.op = WB_TRY(String(j, "op", what));
  static const char* const kOps[] = {"stat",   "list", "mkdir", "remove",
                                     "rename", "read", "write", "watch"};
  bool known = false;
  for (const char* op : kOps) known = known || r.op == op;
  if (!known) {
    return Bad(what, "op", r.op.empty() ? "missing" : "unknown op '" + r.op + "'");
  }
  r.path = WB_TRY(AbsPath(j, "path", what));
  r.user = WB_TRY(String(j, "user", what));
  r.depth = static_cast<uint32_t>(WB_TRY(UintIn(j, "depth", what, 1, 1, 64)));
  if (j.contains("mode") && !j["mode"].is_null()) {
    r.mode = static_cast<uint32_t>(WB_TRY(UintIn(j, "mode", what, 0, 0, 07777)));
  }
  r.recursive = WB_TRY(Bool(j, "recursive", what));
  if (r.op == "rename") {
    r.to = WB_TRY(AbsPath(j, "to", what));
  } else {
    r.to = WB_TRY(String(j, "to", what));
  }
  r.append = WB_TRY(Bool(j, "append", what));
  r.max_bytes = WB_TRY(Uint(j, "max_bytes", what, 0));
  return r;
}

namespace {

json StatJson(const FileStat& s) {
  json j = {{"name", s.name},   {"path", s.path},         {"type", s.type},
            {"size", s.size},   {"mode", s.mode},         {"permissions", s.permissions},
            {"owner", s.owner}, {"group", s.group},       {"uid", s.uid},
            {"gid", s.gid},     {"mtime_ns", s.mtime_ns}, {"symlink_target", s.symlink_target}};
  if (s.created) j["created"] = *s.created;
  return j;
}

Result<FileStat> StatFromJson(const json& j) {
  const char* what = "file stat";
  FileStat s;
  s.name = WB_TRY(String(j, "name", what));
  s.path = WB_TRY(String(j, "path", what));
  s.type = WB_TRY(String(j, "type", what));
  s.size = WB_TRY(Uint(j, "size", what, 0));
  s.mode = static_cast<uint32_t>(WB_TRY(UintIn(j, "mode", what, 0, 0, 07777)));
  s.permissions = WB_TRY(String(j, "permissions", what));
  s.owner = WB_TRY(String(j, "owner", what));
  s.group = WB_TRY(String(j, "group", what));
  s.uid = static_cast<uint32_t>(WB_TRY(UintIn(j, "uid", what, 0, 0, UINT32_MAX)));
  s.gid = static_cast<uint32_t>(WB_TRY(UintIn(j, "gid", what, 0, 0, UINT32_MAX)));
  s.mtime_ns = WB_TRY(Int64(j, "mtime_ns", what, 0));
  s.symlink_target = WB_TRY(String(j, "symlink_target", what));
  if (j.contains("created") && !j["created"].is_null())
    s.created = WB_TRY(Bool(j, "created", what));
  return s;
}

}  // namespace

std::string ToJson(const FileStat& s) { return Dump(StatJson(s)); }

Result<FileStat> ParseFileStat(std::string_view text) {
  json j = WB_TRY(ParseObject(text, "file stat"));
  return StatFromJson(j);
}

std::string ToJson(const std::vector<FileStat>& entries) {
  json arr = json::array();
  for (const auto& s : entries) arr.push_back(StatJson(s));
  return Dump({{"entries", arr}});
}

Result<std::vector<FileStat>> ParseFileEntries(std::string_view text) {
  const char* what = "file entries";
  json j = WB_TRY(ParseObject(text, what));
  std::vector<FileStat> out;
  for (const json* e : WB_TRY(Objects(j, "entries", what))) out.push_back(WB_TRY(StatFromJson(*e)));
  return out;
}

std::string ToJson(const FileEnd& e) { return Dump({{"size", e.size}}); }

Result<FileEnd> ParseFileEnd(std::string_view text) {
  const char* what = "file end";
  json j = WB_TRY(ParseObject(text, what));
  FileEnd e;
  e.size = WB_TRY(Uint(j, "size", what, 0));
  return e;
}

std::string ToJson(const TunnelRequest& t) { return Dump({{"port", t.port}}); }

Result<TunnelRequest> ParseTunnelRequest(std::string_view text) {
  const char* what = "tunnel request";
  json j = WB_TRY(ParseObject(text, what));
  if (!j.contains("port")) return Bad(what, "port", "missing");
  TunnelRequest t;
  t.port = static_cast<uint32_t>(WB_TRY(UintIn(j, "port", what, 0, 1, 65535)));
  return t;
}

std::string ToJson(const std::vector<WatchEvent>& events) {
  json arr = json::array();
  for (const auto& e : events) {
    arr.push_back({{"type", e.type}, {"path", e.path}, {"is_dir", e.is_dir}});
  }
  return Dump({{"events", arr}});
}

Result<std::vector<WatchEvent>> ParseWatchEvents(std::string_view text) {
  const char* what = "watch events";
  json j = WB_TRY(ParseObject(text, what));
  std::vector<WatchEvent> out;
  for (const json* e : WB_TRY(Objects(j, "events", what))) {
    WatchEvent w;
    w.type = WB_TRY(String(*e, "type", what));
    if (w.type.empty()) return Bad(what, "type", "missing");
    w.path = WB_TRY(String(*e, "path", what));
    w.is_dir = WB_TRY(Bool(*e, "is_dir", what));
    out.push_back(std::move(w));
  }
  return out;
}

std::string ToJson(const OpError& e) {
  return Dump({{"code", e.code}, {"errno", e.err}, {"message", e.message}});
}

Result<OpError> ParseOpError(std::string_view text) {
  const char* what = "op error";
  json j = WB_TRY(ParseObject(text, what));
  OpError e;
  e.code = WB_TRY(String(j, "code", what));
  if (e.code.empty()) return Bad(what, "code", "missing");
  e.err = WB_TRY(Int(j, "errno", what));
  e.message = WB_TRY(String(j, "message", what));
  return e;
}

OpError ToOpError(const Error& e) { return OpError{ErrorCodeName(e.code), e.err, e.ToString()}; }

}  // namespace wb::proto
