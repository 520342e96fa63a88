#include "daemon/http_live.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/log.h"
#include "base/strings.h"
#include "daemon/code_run.h"
#include "daemon/http_api.h"
#include "daemon/http_respond.h"
#include "daemon/net_json.h"

namespace wb::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using nlohmann::json;
using tcp = asio::ip::tcp;

namespace {

constexpr const char* kJson = "application/json";
constexpr const char* kNdjson = "application/x-ndjson";
constexpr const char* kOctets = "application/octet-stream";
constexpr const char* kText = "text/plain; charset=utf-8";
// As the rest of the API: a client that stops reading is dropped.
// The pieces of an upload or of stdin, as I frames.
constexpr size_t kPiece = 256 * 1024;
constexpr std::string_view kPrefix = "/v1/sandboxes";

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Error Bad(const std::string& field, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", field, why);
}

Result<json> ParseBody(std::string_view body) {
  if (body.empty()) return json::object();
  auto parsed = ParseJsonBounded(body, "body");
  if (!parsed.ok()) {
    const std::string& why = parsed.error().detail;
    return Bad("body", why == "invalid JSON" ? "not valid JSON" : why);
  }
  if (!parsed->is_object()) return Bad("body", "expected a JSON object");
  return std::move(*parsed);
}

Result<void> OnlyFields(const json& j, std::initializer_list<const char*> fields) {
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const char* f : fields) known |= key == f;
    if (!known) return Bad(key, "unknown field");
  }
  return Ok();
}

Result<std::string> StrField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Bad(key, "expected a string");
  if (it->get_ref<const std::string&>().find('\0') != std::string::npos)
    return Bad(key, "NUL byte");
  return it->get<std::string>();
}

Result<std::optional<uint64_t>> UintField(const json& j, const char* key, uint64_t min,
                                          uint64_t max) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<uint64_t>();
  if (!it->is_number_unsigned() || it->get<uint64_t>() < min || it->get<uint64_t>() > max) {
    return Bad(key,
               "expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return std::optional<uint64_t>(it->get<uint64_t>());
}

Result<bool> BoolField(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Bad(key, "expected true or false");
  return it->get<bool>();
}

Result<std::vector<std::string>> EnvField(const json& j) {
  std::vector<std::string> out;
  auto it = j.find("env");
  if (it == j.end() || it->is_null()) return out;
  if (it->is_object()) {
    for (const auto& [k, v] : it->items()) {
      if (k.empty() || k.find('=') != std::string::npos) return Bad("env", "bad name '" + k + "'");
      if (!v.is_string()) return Bad("env", "the value of " + k + " must be a string");
      out.push_back(k + "=" + v.get<std::string>());
    }
  } else if (it->is_array()) {
    for (const auto& v : *it) {
      if (!v.is_string()) return Bad("env", "expected an array of \"K=V\" strings");
      const std::string& kv = v.get_ref<const std::string&>();
      if (kv.empty() || kv.front() == '=' || kv.find('=') == std::string::npos) {
        return Bad("env", "expected KEY=VALUE, got '" + kv + "'");
      }
      out.push_back(kv);
    }
  } else {
    return Bad("env", "expected an object or an array of \"K=V\" strings");
  }
  for (const auto& kv : out) {
    if (kv.find('\0') != std::string::npos) return Bad("env", "NUL byte");
  }
  return out;
}

}  // namespace

Result<std::string> PercentDecode(std::string_view s, const std::string& what) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return Bad(what, "bad % escape");
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0) return Bad(what, "bad % escape");
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  if (out.find('\0') != std::string::npos) return Bad(what, "NUL byte");
  return out;
}

// --- pure parts -------------------------------------------------------------------

bool IsLivePath(std::string_view path) {
  return path == kPrefix || StartsWith(path, std::string(kPrefix) + "/");
}

LiveTarget ParseLiveTarget(std::string_view path) {
  LiveTarget t;
  if (path == kPrefix || path == std::string(kPrefix) + "/") {
    t.route = LiveRoute::kSandboxes;
    return t;
  }
  if (!IsLivePath(path)) return t;
  std::vector<std::string> parts = Split(path.substr(kPrefix.size() + 1), '/');
  if (parts.empty() || parts[0].empty()) return t;
  auto id = PercentDecode(parts[0], "id");
  if (!id.ok() || id->empty() || id->find('/') != std::string::npos) return t;
  t.id = *id;
  if (parts.size() == 1) {
    t.route = LiveRoute::kSandbox;
    return t;
  }
  const std::string& a = parts[1];
  if (parts.size() == 2) {
    static const std::pair<const char*, LiveRoute> kOne[] = {
        {"timeout", LiveRoute::kTimeout},     {"pause", LiveRoute::kPause},
        {"resume", LiveRoute::kResume},       {"logs", LiveRoute::kLogs},
        {"processes", LiveRoute::kProcesses}, {"files", LiveRoute::kFiles},
        {"code", LiveRoute::kCode},           {"network", LiveRoute::kNetwork}};
    for (const auto& [name, r] : kOne) {
      if (a == name) t.route = r;
    }
    return t;
  }
  if (parts.size() == 3 && a == "fs") {
    static const std::pair<const char*, LiveRoute> kFs[] = {
        {"stat", LiveRoute::kFsStat},     {"list", LiveRoute::kFsList},
        {"mkdir", LiveRoute::kFsMkdir},   {"remove", LiveRoute::kFsRemove},
        {"rename", LiveRoute::kFsRename}, {"watch", LiveRoute::kFsWatch}};
    for (const auto& [name, r] : kFs) {
      if (parts[2] == name) t.route = r;
    }
    return t;
  }
  if (parts.size() == 4 && a == "processes") {
    auto pid = ParseUint(parts[2], "pid");
    if (!pid.ok() || *pid == 0 || *pid > 0x3fffffff) return t;
    t.pid = static_cast<int64_t>(*pid);
    static const std::pair<const char*, LiveRoute> kProc[] = {{"output", LiveRoute::kOutput},
                                                              {"signal", LiveRoute::kSignal},
                                                              {"stdin", LiveRoute::kStdin},
                                                              {"resize", LiveRoute::kResize}};
    for (const auto& [name, r] : kProc) {
      if (parts[3] == name) t.route = r;
    }
  }
  return t;
}

const char* LiveRouteMethods(LiveRoute r) {
  switch (r) {
    case LiveRoute::kSandboxes:
    case LiveRoute::kProcesses:
      return "GET, POST";
    case LiveRoute::kSandbox:
      return "GET, DELETE";
    case LiveRoute::kFiles:
      return "GET, PUT";
    case LiveRoute::kNetwork:
      return "PUT";
    case LiveRoute::kLogs:
    case LiveRoute::kOutput:
    case LiveRoute::kFsStat:
    case LiveRoute::kFsList:
    case LiveRoute::kFsWatch:
      return "GET";
    case LiveRoute::kTimeout:
    case LiveRoute::kPause:
    case LiveRoute::kResume:
    case LiveRoute::kSignal:
    case LiveRoute::kStdin:
    case LiveRoute::kResize:
    case LiveRoute::kFsMkdir:
    case LiveRoute::kFsRemove:
    case LiveRoute::kFsRename:
    case LiveRoute::kCode:
      return "POST";
    case LiveRoute::kUnknown:
      break;
  }
  return "";
}

Result<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  if (query.empty()) return out;
  for (const std::string& part : Split(query, '&')) {
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string key = WB_TRY(PercentDecode(std::string_view(part).substr(0, eq), "query"));
    std::string value;
    if (eq != std::string::npos) {
      value = WB_TRY(PercentDecode(std::string_view(part).substr(eq + 1), key));
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

unsigned HttpStatusForCode(ErrorCode c) {
  switch (c) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kPermissionDenied:
      return 403;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kFailedPrecondition:
      return 409;
    case ErrorCode::kBusy:
      return 429;
    case ErrorCode::kCancelled:
      return 499;  // never sent: the client is gone
    case ErrorCode::kResourceExhausted:
      return 507;
    case ErrorCode::kDraining:
      return 503;
    case ErrorCode::kUnavailable:
      return 502;
    case ErrorCode::kDeadlineExceeded:
      return 504;
    case ErrorCode::kInternal:
      return 500;
  }
  return 500;
}

Result<LiveCreateRequest> ParseHttpLiveCreate(std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  WB_RETURN_IF_ERROR(
      OnlyFields(j, {"image", "driver", "timeout", "env", "metadata", "memory", "cpus", "pids",
                     "user", "cwd", "workdir", "main", "no_main", "on_timeout", "network"}));
  LiveCreateRequest r;
  if (auto it = j.find("image"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      return Bad("image", "expected a non-empty string or null");
    }
    r.image = it->get<std::string>();
  }
  if (auto it = j.find("driver"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || (it->get<std::string>() != "ns" && it->get<std::string>() != "vm")) {
      return Bad("driver", "expected \"ns\" or \"vm\"");
    }
    r.driver = it->get<std::string>();
  }
  r.timeout_s = WB_TRY(UintField(j, "timeout", 1, uint64_t{1} << 32));
  r.env = WB_TRY(EnvField(j));
  if (auto it = j.find("metadata"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Bad("metadata", "expected an object of strings");
    for (const auto& [k, v] : it->items()) {
      if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos) {
        return Bad("metadata", "bad key '" + k + "'");
      }
      if (!v.is_string()) return Bad("metadata", "the value of " + k + " must be a string");
      r.metadata[k] = v.get<std::string>();
    }
  }
  // As /v1/run: bytes, at least 4 MiB.
  r.memory_bytes = WB_TRY(UintField(j, "memory", 4u << 20, std::numeric_limits<int64_t>::max()));
  r.pids = WB_TRY(UintField(j, "pids", 1, 1u << 22));
  if (auto it = j.find("cpus"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || !(it->get<double>() > 0))
      return Bad("cpus", "expected a positive number");
    if (it->get<double>() > 1024) return Bad("cpus", "at most 1024");
    r.cpus = it->get<double>();
  }
  r.user = WB_TRY(StrField(j, "user"));
  // cwd, or workdir as /v1/run and the socket call it.
  r.cwd = WB_TRY(StrField(j, "cwd"));
  if (j.contains("workdir")) {
    if (j.contains("cwd")) return Bad("workdir", "give cwd or workdir, not both");
    r.cwd = WB_TRY(StrField(j, "workdir"));
  }
  bool no_main = WB_TRY(BoolField(j, "no_main"));
  if (auto it = j.find("main"); it != j.end() && !it->is_null()) {
    if (no_main) return Bad("main", "give main or no_main, not both");
    if (!it->is_array() || it->empty()) return Bad("main", "expected a non-empty array of strings");
    std::vector<std::string> argv;
    for (const auto& a : *it) {
      if (!a.is_string()) return Bad("main", "expected a non-empty array of strings");
      if (a.get_ref<const std::string&>().find('\0') != std::string::npos) {
        return Bad("main", "NUL byte");
      }
      argv.push_back(a.get<std::string>());
    }
    r.main = std::move(argv);
  } else if (no_main) {
    r.main = std::vector<std::string>();
  }
  // As the socket's sandbox_create (docs/network.md).
  if (auto it = j.find("network"); it != j.end()) r.network = WB_TRY(ParseNetworkJson(*it));
  std::string on_timeout = WB_TRY(StrField(j, "on_timeout"));
  if (!on_timeout.empty()) {
    if (on_timeout != "kill" && on_timeout != "pause") {
      return Bad("on_timeout", "expected \"kill\" or \"pause\"");
    }
    r.on_timeout = on_timeout;
  }
  return r;
}

Result<HttpExec> ParseHttpExec(std::string_view id, std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  WB_RETURN_IF_ERROR(OnlyFields(j, {"cmd", "env", "cwd", "user", "timeout_ms", "stdin",
                                    "stdin_base64", "tty", "rows", "cols", "background"}));
  HttpExec out;
  out.background = WB_TRY(BoolField(j, "background"));
  if (auto it = j.find("stdin_base64"); it != j.end() && !it->is_null()) {
    if (j.contains("stdin") && !j["stdin"].is_null()) {
      return Bad("stdin_base64", "give stdin or stdin_base64, not both");
    }
    if (!it->is_string()) return Bad("stdin_base64", "expected a base64 string");
    out.stdin_data = WB_TRY(Base64Decode(it->get_ref<const std::string&>(), "stdin_base64"));
    j.erase(it);
  } else if (auto in = j.find("stdin"); in != j.end() && !in->is_boolean()) {
    // (true: a pipe left open, fed by POST .../stdin; the socket's parser
    // takes the flag as it is.)
    if (!in->is_null() && !in->is_string()) {
      return Bad("stdin", "expected a string, or true (or use stdin_base64 for bytes)");
    }
    if (in->is_string()) out.stdin_data = std::move(in->get_ref<std::string&>());
    j.erase(in);
  }
  j.erase("background");
  // The rest is the socket's exec (proto/live_ops.h), which checks it.
  j["op"] = "exec";
  j["id"] = std::string(id);
  if (out.stdin_data) j["stdin"] = true;
  out.req = WB_TRY(proto::ParseLiveOpRequest(Dump(j)));
  return out;
}

Result<int> ParseHttpSignal(std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  WB_RETURN_IF_ERROR(OnlyFields(j, {"signal"}));
  auto s = j.find("signal");
  if (s == j.end() || s->is_null()) return SIGTERM;
  if (s->is_number_unsigned()) return proto::ParseSignal(std::to_string(s->get<uint64_t>()));
  if (s->is_string()) return proto::ParseSignal(s->get<std::string>());
  return Bad("signal", "expected a name (\"TERM\") or a number");
}

Result<uint64_t> ParseHttpTimeout(std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  WB_RETURN_IF_ERROR(OnlyFields(j, {"timeout"}));
  auto t = WB_TRY(UintField(j, "timeout", 1, uint64_t{1} << 32));
  if (!t) return Bad("timeout", "missing");
  return *t;
}

Result<NetworkSpec> ParseHttpNetwork(std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  // The body is the network object itself; an update is of an egress policy.
  return ParseNetworkJson(j, "network", {.default_mode = NetworkMode::kEgress, .ports = false});
}

Result<proto::ResizeRequest> ParseHttpResize(std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  WB_RETURN_IF_ERROR(OnlyFields(j, {"rows", "cols"}));
  proto::ResizeRequest r;
  auto rows = WB_TRY(UintField(j, "rows", 1, 65535));
  auto cols = WB_TRY(UintField(j, "cols", 1, 65535));
  if (!rows) return Bad("rows", "missing");
  if (!cols) return Bad("cols", "missing");
  r.rows = static_cast<uint32_t>(*rows);
  r.cols = static_cast<uint32_t>(*cols);
  return r;
}

namespace {

Result<std::string> AbsPath(const std::string& p, const char* field) {
  if (p.empty()) return Bad(field, "missing");
  if (p.front() != '/') return Bad(field, "expected an absolute path, got '" + p + "'");
  return p;
}

}  // namespace

Result<proto::FileRequest> ParseHttpFsBody(const std::string& op, std::string_view body) {
  json j = WB_TRY(ParseBody(body));
  proto::FileRequest r;
  r.op = op;
  if (op == "mkdir") {
    WB_RETURN_IF_ERROR(OnlyFields(j, {"path", "mode", "user"}));
    if (auto m = WB_TRY(UintField(j, "mode", 0, 07777))) r.mode = static_cast<uint32_t>(*m);
  } else if (op == "remove") {
    WB_RETURN_IF_ERROR(OnlyFields(j, {"path", "recursive", "user"}));
    r.recursive = WB_TRY(BoolField(j, "recursive"));
  } else if (op == "rename") {
    WB_RETURN_IF_ERROR(OnlyFields(j, {"path", "to", "user"}));
    r.to = WB_TRY(AbsPath(WB_TRY(StrField(j, "to")), "to"));
  } else {
    return Bad("op", "unknown file operation '" + op + "'");
  }
  r.path = WB_TRY(AbsPath(WB_TRY(StrField(j, "path")), "path"));
  r.user = WB_TRY(StrField(j, "user"));
  return r;
}

std::string LiveStartedLine(const proto::Started& s) {
  return "{\"started\":" + proto::ToJson(s) + "}";
}

std::string LiveOutputLine(bool is_stderr, std::string_view data) {
  return std::string("{\"") + (is_stderr ? "stderr" : "stdout") + "\":\"" + Base64Encode(data) +
         "\"}";
}

std::string LiveExitLine(const proto::ExecExit& e) { return "{\"exit\":" + proto::ToJson(e) + "}"; }

const char* LiveErrorKindName(const Error& e) {
  // A missing image is its own kind, as for runs and on the socket.
  if (e.code == ErrorCode::kNotFound && e.call == "no image") return "no_image";
  return ErrorCodeName(e.code);
}

std::string LiveErrorLine(const Error& e) {
  return HttpErrorJson(e.ToString(), LiveErrorKindName(e));
}

// --- the server side --------------------------------------------------------------

namespace {

using Headers = HttpHeaders;
using Request = HttpLive::Request;
using Socket = asio::local::stream_protocol::socket;

asio::awaitable<void> Send(beast::tcp_stream& s, unsigned version, bool head, http::status status,
                           std::string body, const char* type, bool keep,
                           const Headers& extra = {}) {
  co_await SendStringResponse(s, version, head, status, std::move(body), type, keep, extra);
}

asio::awaitable<void> SendJson(beast::tcp_stream& s, const Request& req, http::status status,
                               std::string body, bool keep) {
  co_await Send(s, req.version(), req.method() == http::verb::head, status, std::move(body), kJson,
                keep);
}

asio::awaitable<void> SendNoContent(beast::tcp_stream& s, const Request& req, bool keep) {
  co_await Send(s, req.version(), false, http::status::no_content, "", kJson, keep);
}

asio::awaitable<void> SendError(beast::tcp_stream& s, unsigned version, bool head, const Error& e,
                                bool keep) {
  Headers extra;
  if (e.code == ErrorCode::kBusy) extra.emplace_back(http::field::retry_after, "1");
  co_await Send(s, version, head, static_cast<http::status>(HttpStatusForCode(e.code)),
                LiveErrorLine(e), kJson, keep, extra);
}

asio::awaitable<void> SendError(beast::tcp_stream& s, const Request& req, const Error& e,
                                bool keep) {
  co_await SendError(s, req.version(), req.method() == http::verb::head, e, keep);
}

using Chunked = ChunkedResponse;

// (Built outside the coroutines: GCC 12 miscompiles braced lists of string
// literals in a coroutine.)
std::string PidJson(int64_t pid) { return Dump(json{{"pid", pid}}); }
std::string WatchEventJson(const proto::WatchEvent& e) {
  return Dump(json{{"type", e.type}, {"path", e.path}, {"is_dir", e.is_dir}});
}
std::string SandboxListJson(const std::vector<LiveInfo>& infos) {
  std::string out = "{\"sandboxes\":[";
  for (size_t i = 0; i < infos.size(); ++i) out += (i ? "," : "") + ToJson(infos[i]);
  return out + "]}";
}

}  // namespace

// The Error of an agent's e (or F) frame; anything else is unexpected.
Error AgentError(const proto::Frame& f, const char* what) {
  if (f.type == proto::FrameType::kOpError) {
    auto e = proto::ParseOpError(f.payload);
    if (!e.ok()) return e.error().WithCode(ErrorCode::kUnavailable);
    Error err = Fail(ErrorCodeFromName(e->code), what, "", e->message);
    err.err = e->err;
    return err;
  }
  if (f.type == proto::FrameType::kFailure) {
    return Fail(ErrorCode::kInvalidArgument, what, "", "the agent refused it: " + f.payload);
  }
  return Fail(ErrorCode::kUnavailable, what, "",
              std::string("unexpected frame '") + static_cast<char>(f.type) + "' from the agent");
}

namespace {

// Sends data as I frames (then C when close). A C that cannot be written
// after data that was is no failure: the process may have read what it
// needed and exited meanwhile (`read l; echo $l`), and the agent ended the
// attachment with it, so there is no input left to end. (Seen: the C's
// write failed with EPIPE under load, and the client got a 503 for stdin
// that had been delivered.)
asio::awaitable<Result<void>> SendStdin(pool::AgentConn& conn, std::string_view data, bool close) {
  for (size_t at = 0; at < data.size(); at += kPiece) {
    auto r = co_await conn.Send(proto::FrameType::kStdin, data.substr(at, kPiece));
    if (!r.ok()) co_return r.error();
  }
  if (!close) co_return Ok();
  auto r = co_await conn.Send(proto::FrameType::kStdinClose, "");
  if (!r.ok() && data.empty()) co_return r.error();
  co_return Ok();
}

std::optional<std::string> Param(const std::vector<std::pair<std::string, std::string>>& q,
                                 std::string_view key) {
  std::optional<std::string> v;
  for (const auto& [k, val] : q) {
    if (k == key) v = val;
  }
  return v;
}

Result<bool> BoolParam(const std::vector<std::pair<std::string, std::string>>& q,
                       std::string_view key) {
  auto v = Param(q, key);
  if (!v) return false;
  if (*v == "true" || *v == "1" || v->empty()) return true;
  if (*v == "false" || *v == "0") return false;
  return Bad(std::string(key), "expected true or false, got '" + *v + "'");
}

Result<std::optional<int64_t>> IntParam(const std::vector<std::pair<std::string, std::string>>& q,
                                        std::string_view key, int64_t min, int64_t max) {
  auto v = Param(q, key);
  if (!v) return std::optional<int64_t>();
  int64_t n = 0;
  bool neg = !v->empty() && v->front() == '-';
  auto u = ParseUint(neg ? v->substr(1) : *v, key);
  if (!u.ok() || *u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Bad(std::string(key), "expected an integer, got '" + *v + "'");
  }
  n = neg ? -static_cast<int64_t>(*u) : static_cast<int64_t>(*u);
  if (n < min || n > max) {
    return Bad(std::string(key),
               "expected an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  return std::optional<int64_t>(n);
}

Result<std::string> PathParam(const std::vector<std::pair<std::string, std::string>>& q) {
  auto p = Param(q, "path");
  if (!p) return Bad("path", "missing (?path=/abs/path)");
  return AbsPath(*p, "path");
}

bool IsContentType(const Request& req, std::string_view want) {
  auto it = req.find(http::field::content_type);
  if (it == req.end()) return false;
  std::string_view v(it->value().data(), it->value().size());
  return AsciiLower(Trim(v.substr(0, v.find(';')))) == want;
}

}  // namespace

bool HttpLive::IsUpload(const Request& head) {
  if (head.method() != http::verb::put) return false;
  std::string_view target(head.target().data(), head.target().size());
  return ParseLiveTarget(target.substr(0, target.find('?'))).route == LiveRoute::kFiles;
}

namespace {

// One live request on its connection: the context the route handlers share.
struct Call {
  beast::tcp_stream& s;
  Request& req;
  LiveService& live;
  LiveTarget t;
  std::vector<std::pair<std::string, std::string>> query;
  bool keep;

  unsigned v() const { return req.version(); }

  asio::awaitable<bool> Err(const Error& e) {
    co_await SendError(s, req, e, keep);
    co_return keep;
  }

  // An agent connection with its first frame sent.
  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Open(proto::FrameType type,
                                                                 std::string_view payload) {
    auto conn = co_await live.Connect(t.id);
    if (!conn.ok()) co_return conn.error();
    auto sent = co_await (*conn)->Send(type, payload);
    if (!sent.ok()) co_return sent.error().WithCode(ErrorCode::kUnavailable);
    co_return std::move(*conn);
  }

  // An agent connection, its first frame, and the one answer expected.
  asio::awaitable<Result<proto::Frame>> Exchange(proto::FrameType type, std::string_view payload,
                                                 proto::FrameType want, std::string what) {
    auto conn = co_await Open(type, payload);
    if (!conn.ok()) co_return conn.error();
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    if (f->type != want) co_return AgentError(*f, what.c_str());
    co_return std::move(*f);
  }

  // The output of a process (exec or attach), as NDJSON, from its S on:
  // started, stdout/stderr, exit. stdin_data is written meanwhile (then C).
  // A client that goes away just closes the agent connection.
  asio::awaitable<bool> Relay(pool::AgentConn& conn, const proto::Started& started,
                              std::optional<std::string> stdin_data) {
    using namespace asio::experimental::awaitable_operators;
    Chunked out(s, v(), kNdjson);
    if (!co_await out.Line(LiveStartedLine(started))) co_return false;
    bool finished = false;
    auto pump = [&]() -> asio::awaitable<void> {
      for (;;) {
        auto f = co_await conn.ReadFrame();
        if (!f.ok()) {
          co_await out.Line(LiveErrorLine(f.error().WithCode(ErrorCode::kUnavailable)));
          break;
        }
        if (f->type == proto::FrameType::kStdout || f->type == proto::FrameType::kStderr) {
          if (!co_await out.Line(LiveOutputLine(f->type == proto::FrameType::kStderr, f->payload)))
            co_return;
          continue;
        }
        if (f->type == proto::FrameType::kExit) {
          auto e = proto::ParseExecExit(f->payload);
          if (!e.ok()) {
            co_await out.Line(LiveErrorLine(e.error().WithCode(ErrorCode::kUnavailable)));
          } else {
            co_await out.Line(LiveExitLine(*e));
          }
          break;
        }
        co_await out.Line(LiveErrorLine(AgentError(*f, "process")));
        break;
      }
      finished = !out.failed();
    };
    auto feed = [&]() -> asio::awaitable<void> {
      if (stdin_data) (void)co_await SendStdin(conn, *stdin_data, true);
      co_await Forever();
    };
    co_await (pump() || feed() || ClientGone(s));
    conn.Close();
    if (!finished) co_return false;
    co_return co_await out.Finish() && keep;
  }

  // POST /code: the interpreter's NDJSON lines as they come (docs/services.md).
  asio::awaitable<bool> Code() {
    using namespace asio::experimental::awaitable_operators;
    if (!IsContentType(req, "application/json")) co_return co_await NeedType(kJson);
    auto cr = ParseCodeRequest(req.body());
    if (!cr.ok()) co_return co_await Err(cr.error());
    Chunked out(s, v(), kNdjson);
    CodeLineFn on_line = [&out](std::string line) -> asio::awaitable<bool> {
      co_return co_await out.Line(std::move(line));
    };
    auto run = RunCode(live, t.id, std::move(*cr), on_line);
    auto gone = ClientGone(s);
    auto r = co_await (std::move(run) || std::move(gone));
    if (r.index() != 0 || out.failed()) co_return false;
    const Result<void>& res = std::get<0>(r);
    if (!res.ok()) {
      // Before any line: a plain error answer with its status; after: a last line.
      if (!out.started()) co_return co_await Err(res.error());
      if (!co_await out.Line(LiveErrorLine(res.error()))) co_return false;
    }
    co_return co_await out.Finish() && keep;
  }

  asio::awaitable<bool> Exec() {
    if (!IsContentType(req, "application/json")) co_return co_await NeedType(kJson);
    auto ex = ParseHttpExec(t.id, req.body());
    if (!ex.ok()) co_return co_await Err(ex.error());
    // The sandbox's own defaults (set at create) fill what the request leaves out.
    auto info = live.Inspect(t.id);
    if (!info.ok()) co_return co_await Err(info.error());
    if (ex->req.exec.user.empty()) ex->req.exec.user = info->user;
    if (ex->req.exec.cwd.empty()) ex->req.exec.cwd = info->cwd;
    // (Payloads are named, not temporaries in a co_await: GCC 12 mishandles those.)
    const std::string payload = proto::LiveExecJson(ex->req);
    auto conn = co_await Open(proto::FrameType::kExec, payload);
    if (!conn.ok()) co_return co_await Err(conn.error());
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return co_await Err(f.error().WithCode(ErrorCode::kUnavailable));
    if (f->type != proto::FrameType::kStarted) co_return co_await Err(AgentError(*f, "exec"));
    auto started = proto::ParseStarted(f->payload);
    if (!started.ok()) co_return co_await Err(started.error().WithCode(ErrorCode::kUnavailable));
    if (ex->background) {
      if (ex->stdin_data) (void)co_await SendStdin(**conn, *ex->stdin_data, true);
      (*conn)->Close();
      co_await Send(s, v(), false, http::status::created, PidJson(started->pid), kJson, keep);
      co_return keep;
    }
    co_return co_await Relay(**conn, *started, std::move(ex->stdin_data));
  }

  asio::awaitable<bool> Attach() {
    auto from = IntParam(query, "from", -1, std::numeric_limits<int64_t>::max());
    if (!from.ok()) co_return co_await Err(from.error());
    proto::AttachRequest a;
    a.pid = t.pid;
    a.from = from->value_or(0);
    const std::string payload = proto::ToJson(a);
    auto conn = co_await Open(proto::FrameType::kAttach, payload);
    if (!conn.ok()) co_return co_await Err(conn.error());
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return co_await Err(f.error().WithCode(ErrorCode::kUnavailable));
    if (f->type != proto::FrameType::kStarted) co_return co_await Err(AgentError(*f, "attach"));
    auto started = proto::ParseStarted(f->payload);
    if (!started.ok()) co_return co_await Err(started.error().WithCode(ErrorCode::kUnavailable));
    co_return co_await Relay(**conn, *started, std::nullopt);
  }

  // Attaches (no replay), waits for S, then hands the connection to fn.
  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> AttachQuiet(std::string what) {
    proto::AttachRequest a;
    a.pid = t.pid;
    a.from = -1;
    const std::string payload = proto::ToJson(a);
    auto conn = co_await Open(proto::FrameType::kAttach, payload);
    if (!conn.ok()) co_return conn.error();
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    if (f->type != proto::FrameType::kStarted) co_return AgentError(*f, what.c_str());
    co_return std::move(*conn);
  }

  asio::awaitable<bool> Stdin() {
    if (!IsContentType(req, "application/octet-stream")) co_return co_await NeedType(kOctets);
    auto close = BoolParam(query, "close");
    if (!close.ok()) co_return co_await Err(close.error());
    auto conn = co_await AttachQuiet("stdin");
    if (!conn.ok()) co_return co_await Err(conn.error());
    auto sent = co_await SendStdin(**conn, req.body(), *close);
    if (!sent.ok()) co_return co_await Err(sent.error().WithCode(ErrorCode::kUnavailable));
    (*conn)->Close();
    co_await SendNoContent(s, req, keep);
    co_return keep;
  }

  asio::awaitable<bool> Resize() {
    if (!IsContentType(req, "application/json")) co_return co_await NeedType(kJson);
    auto r = ParseHttpResize(req.body());
    if (!r.ok()) co_return co_await Err(r.error());
    auto conn = co_await AttachQuiet("resize");
    if (!conn.ok()) co_return co_await Err(conn.error());
    const std::string payload = proto::ToJson(*r);
    auto sent = co_await (*conn)->Send(proto::FrameType::kResize, payload);
    if (!sent.ok()) co_return co_await Err(sent.error().WithCode(ErrorCode::kUnavailable));
    (*conn)->Close();
    co_await SendNoContent(s, req, keep);
    co_return keep;
  }

  asio::awaitable<bool> Signal() {
    if (!IsContentType(req, "application/json")) co_return co_await NeedType(kJson);
    auto sig = ParseHttpSignal(req.body());
    if (!sig.ok()) co_return co_await Err(sig.error());
    proto::SignalRequest k;
    k.pid = t.pid;
    k.signal = *sig;
    const std::string payload = proto::ToJson(k);
    auto f = co_await Exchange(proto::FrameType::kSignal, payload, proto::FrameType::kSignalReply,
                               "signal");
    if (!f.ok()) co_return co_await Err(f.error());
    co_await SendNoContent(s, req, keep);
    co_return keep;
  }

  asio::awaitable<bool> Ps() {
    auto f = co_await Exchange(proto::FrameType::kList, "", proto::FrameType::kListReply, "ps");
    if (!f.ok()) co_return co_await Err(f.error());
    auto list = proto::ParseProcessList(f->payload);
    if (!list.ok()) co_return co_await Err(list.error().WithCode(ErrorCode::kUnavailable));
    co_await SendJson(s, req, http::status::ok, proto::ToJson(*list), keep);
    co_return keep;
  }

  // stat, list, mkdir, remove, rename: one L, one l.
  asio::awaitable<bool> FsSimple(const proto::FileRequest& fr) {
    const std::string payload = proto::ToJson(fr);
    auto f =
        co_await Exchange(proto::FrameType::kFile, payload, proto::FrameType::kFileReply, fr.op);
    if (!f.ok()) co_return co_await Err(f.error());
    if (fr.op == "remove") {
      co_await SendNoContent(s, req, keep);
      co_return keep;
    }
    std::string body;
    if (fr.op == "list") {
      auto entries = proto::ParseFileEntries(f->payload);
      if (!entries.ok()) co_return co_await Err(entries.error().WithCode(ErrorCode::kUnavailable));
      body = proto::ToJson(*entries);
    } else {
      auto st = proto::ParseFileStat(f->payload);
      if (!st.ok()) co_return co_await Err(st.error().WithCode(ErrorCode::kUnavailable));
      body = proto::ToJson(*st);
    }
    co_await SendJson(s, req, http::status::ok, std::move(body), keep);
    co_return keep;
  }

  asio::awaitable<bool> FsQuery(const std::string& op) {
    proto::FileRequest fr;
    fr.op = op;
    auto path = PathParam(query);
    if (!path.ok()) co_return co_await Err(path.error());
    fr.path = *path;
    fr.user = Param(query, "user").value_or("");
    if (op == "list") {
      auto depth = IntParam(query, "depth", 1, 64);
      if (!depth.ok()) co_return co_await Err(depth.error());
      fr.depth = static_cast<uint32_t>(depth->value_or(1));
    }
    co_return co_await FsSimple(fr);
  }

  asio::awaitable<bool> FsBody(const std::string& op) {
    if (!IsContentType(req, "application/json")) co_return co_await NeedType(kJson);
    auto fr = ParseHttpFsBody(op, req.body());
    if (!fr.ok()) co_return co_await Err(fr.error());
    co_return co_await FsSimple(*fr);
  }

  asio::awaitable<bool> Read() {
    proto::FileRequest fr;
    fr.op = "read";
    auto path = PathParam(query);
    if (!path.ok()) co_return co_await Err(path.error());
    fr.path = *path;
    fr.user = Param(query, "user").value_or("");
    const std::string payload = proto::ToJson(fr);
    auto conn = co_await Open(proto::FrameType::kFile, payload);
    if (!conn.ok()) co_return co_await Err(conn.error());
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return co_await Err(f.error().WithCode(ErrorCode::kUnavailable));
    if (f->type != proto::FrameType::kFileReply) co_return co_await Err(AgentError(*f, "read"));
    // Chunked, piece by piece as the agent sends them: never the whole file.
    Chunked out(s, v(), kOctets);
    if (!co_await out.Write("")) co_return false;
    for (;;) {
      auto d = co_await (*conn)->ReadFrame();
      if (!d.ok()) break;  // ends without the last chunk: the client sees it cut
      if (d->type == proto::FrameType::kStdout) {
        if (!co_await out.Write(d->payload)) co_return false;
        continue;
      }
      if (d->type == proto::FrameType::kFileEnd) co_return co_await out.Finish() && keep;
      spdlog::warn("http: read {} in sandbox {}: {}", fr.path, t.id,
                   AgentError(*d, "read").ToString());
      break;
    }
    co_return false;  // a read that fails mid-way: the connection is closed
  }

  asio::awaitable<bool> Watch() {
    using namespace asio::experimental::awaitable_operators;
    proto::FileRequest fr;
    fr.op = "watch";
    auto path = PathParam(query);
    if (!path.ok()) co_return co_await Err(path.error());
    fr.path = *path;
    fr.user = Param(query, "user").value_or("");
    auto rec = BoolParam(query, "recursive");
    if (!rec.ok()) co_return co_await Err(rec.error());
    fr.recursive = *rec;
    const std::string payload = proto::ToJson(fr);
    auto conn = co_await Open(proto::FrameType::kFile, payload);
    if (!conn.ok()) co_return co_await Err(conn.error());
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return co_await Err(f.error().WithCode(ErrorCode::kUnavailable));
    if (f->type != proto::FrameType::kFileReply) co_return co_await Err(AgentError(*f, "watch"));
    Chunked out(s, v(), kNdjson);
    if (!co_await out.Write("")) co_return false;
    auto pump = [&]() -> asio::awaitable<void> {
      for (;;) {
        auto ev = co_await (*conn)->ReadFrame();
        if (!ev.ok()) {
          co_await out.Line(LiveErrorLine(ev.error().WithCode(ErrorCode::kUnavailable)));
          co_return;
        }
        if (ev->type != proto::FrameType::kWatchEvents) {
          co_await out.Line(LiveErrorLine(AgentError(*ev, "watch")));
          co_return;
        }
        auto events = proto::ParseWatchEvents(ev->payload);
        if (!events.ok()) continue;
        for (const auto& e : *events) {
          if (!co_await out.Line(WatchEventJson(e))) co_return;
        }
      }
    };
    co_await (pump() || ClientGone(s));
    (*conn)->Close();
    // The stream ends only when the sandbox (or the agent) does, or the
    // client goes: either way this connection is done.
    if (!out.failed()) co_await out.Finish();
    co_return false;
  }

  asio::awaitable<bool> Logs() {
    auto tail = IntParam(query, "tail", 0, std::numeric_limits<int32_t>::max());
    if (!tail.ok()) co_return co_await Err(tail.error());
    auto follow = BoolParam(query, "follow");
    if (!follow.ok()) co_return co_await Err(follow.error());
    auto lines = live.Logs(t.id, static_cast<size_t>(tail->value_or(0)));
    if (!lines.ok()) co_return co_await Err(lines.error());
    if (!*follow) {
      std::string body;
      for (const auto& l : *lines) body += l + "\n";
      co_await Send(s, v(), req.method() == http::verb::head, http::status::ok, std::move(body),
                    kText, keep);
      co_return keep;
    }
    // Lines arrive on this loop; the queue and the timer that wakes the
    // writer outlive the handle (the callback may be called after we leave).
    struct Q {
      std::deque<std::optional<std::string>> lines;
      asio::steady_timer wake;
      explicit Q(asio::any_io_executor ex) : wake(ex, asio::steady_timer::time_point::max()) {}
    };
    auto q = std::make_shared<Q>(co_await asio::this_coro::executor);
    for (auto& l : *lines) q->lines.emplace_back(std::move(l));
    auto handle = live.FollowLogs(t.id, [w = std::weak_ptr<Q>(q)](const auto& line) {
      if (auto q = w.lock()) {
        q->lines.push_back(line);
        q->wake.cancel();
      }
    });
    if (!handle.ok()) co_return co_await Err(handle.error());
    using namespace asio::experimental::awaitable_operators;
    Chunked out(s, v(), kText);
    if (!co_await out.Write("")) co_return false;
    bool ended = false;
    auto pump = [&]() -> asio::awaitable<void> {
      for (;;) {
        while (!q->lines.empty()) {
          auto l = std::move(q->lines.front());
          q->lines.pop_front();
          if (!l) {
            ended = true;
            co_return;
          }
          if (!co_await out.Write(*l + "\n")) co_return;
        }
        q->wake.expires_at(asio::steady_timer::time_point::max());
        error_code ec;
        co_await q->wake.async_wait(redirect_error(use_awaitable, ec));
      }
    };
    co_await (pump() || ClientGone(s));
    handle->reset();
    if (ended && !out.failed()) co_return co_await out.Finish() && keep;
    co_return false;
  }

  asio::awaitable<bool> NeedType(std::string type) {
    co_await Send(
        s, v(), false, http::status::unsupported_media_type,
        HttpErrorJson(std::string(req.method_string()) + " " +
                          std::string(req.target().substr(0, req.target().find('?'))) +
                          " takes a body of type " + type + ": send 'Content-Type: " + type + "'",
                      "unsupported_media_type"),
        kJson, keep);
    co_return keep;
  }
};

}  // namespace

asio::awaitable<bool> HttpLive::Handle(beast::tcp_stream& s, Request& req) {
  const bool keep = req.keep_alive();
  std::string_view target(req.target().data(), req.target().size());
  size_t q = target.find('?');
  std::string path(target.substr(0, q));
  LiveTarget t = ParseLiveTarget(path);
  const bool head = req.method() == http::verb::head;
  if (t.route == LiveRoute::kUnknown) {
    co_await Send(s, req.version(), head, http::status::not_found,
                  HttpErrorJson("no such endpoint: " + path, "not_found"), kJson, keep);
    co_return keep;
  }
  // The method first: a wrong one is 405 whatever the rest says.
  const std::string methods = LiveRouteMethods(t.route);
  std::string m(req.method_string());
  if (head) m = "GET";
  bool allowed = false;
  for (const auto& a : Split(methods, ',')) allowed |= Trim(a) == m;
  if (!allowed) {
    Headers extra;
    extra.emplace_back(http::field::allow, methods);
    co_await Send(s, req.version(), head, http::status::method_not_allowed,
                  HttpErrorJson(std::string(req.method_string()) + " " + path + ": use " + methods,
                                "method_not_allowed"),
                  kJson, keep, extra);
    co_return keep;
  }
  if (!live_) {
    co_await SendError(
        s, req.version(), head,
        Fail(ErrorCode::kFailedPrecondition, "live sandboxes", "", "not served by this daemon"),
        keep);
    co_return keep;
  }
  auto query = ParseQuery(q == std::string_view::npos ? "" : target.substr(q + 1));
  if (!query.ok()) {
    co_await SendError(s, req.version(), head, query.error(), keep);
    co_return keep;
  }
  Call c{s, req, *live_, std::move(t), std::move(*query), keep};
  const bool get = req.method() == http::verb::get || head;
  // Streams have no HEAD form: their head is the start of the stream.
  auto no_head = [&]() -> asio::awaitable<bool> {
    Headers extra;
    extra.emplace_back(http::field::allow, "GET");
    co_await Send(s, req.version(), true, http::status::method_not_allowed,
                  HttpErrorJson("HEAD " + path + ": use GET", "method_not_allowed"), kJson, keep,
                  extra);
    co_return keep;
  };
  switch (c.t.route) {
    case LiveRoute::kSandboxes: {
      if (get) {
        std::map<std::string, std::string> filter;
        for (const auto& [k, v] : c.query) {
          if (k != "metadata") {
            co_return co_await c.Err(Bad(k, "unknown parameter (expected metadata=K=V)"));
          }
          size_t eq = v.find('=');
          if (eq == 0 || eq == std::string::npos) {
            co_return co_await c.Err(Bad("metadata", "expected K=V, got '" + v + "'"));
          }
          filter[v.substr(0, eq)] = v.substr(eq + 1);
        }
        co_await SendJson(s, req, http::status::ok, SandboxListJson(live_->List(filter)), keep);
        co_return keep;
      }
      if (!IsContentType(req, "application/json")) co_return co_await c.NeedType(kJson);
      auto cr = ParseHttpLiveCreate(req.body());
      if (!cr.ok()) co_return co_await c.Err(cr.error());
      auto info = co_await live_->Create(std::move(*cr));
      if (!info.ok()) co_return co_await c.Err(info.error());
      co_await SendJson(s, req, http::status::created, ToJson(*info), keep);
      co_return keep;
    }
    case LiveRoute::kSandbox: {
      if (get) {
        auto info = live_->Inspect(c.t.id);
        if (!info.ok()) co_return co_await c.Err(info.error());
        co_await SendJson(s, req, http::status::ok, ToJson(*info), keep);
        co_return keep;
      }
      auto r = co_await live_->Kill(c.t.id);
      if (!r.ok()) co_return co_await c.Err(r.error());
      co_await SendNoContent(s, req, keep);
      co_return keep;
    }
    case LiveRoute::kTimeout: {
      if (!IsContentType(req, "application/json")) co_return co_await c.NeedType(kJson);
      auto secs = ParseHttpTimeout(req.body());
      if (!secs.ok()) co_return co_await c.Err(secs.error());
      auto info = live_->SetTimeout(c.t.id, *secs);
      if (!info.ok()) co_return co_await c.Err(info.error());
      co_await SendJson(s, req, http::status::ok, ToJson(*info), keep);
      co_return keep;
    }
    case LiveRoute::kNetwork: {
      if (!IsContentType(req, "application/json")) co_return co_await c.NeedType(kJson);
      auto spec = ParseHttpNetwork(req.body());
      if (!spec.ok()) co_return co_await c.Err(spec.error());
      auto info = co_await live_->UpdateNetwork(c.t.id, std::move(*spec));
      if (!info.ok()) co_return co_await c.Err(info.error());
      co_await SendJson(s, req, http::status::ok, ToJson(*info), keep);
      co_return keep;
    }
    case LiveRoute::kPause:
    case LiveRoute::kResume: {
      // (No ?: around co_await: GCC 12 miscompiles it.)
      Result<void> r = Ok();
      if (c.t.route == LiveRoute::kPause) {
        r = co_await live_->Pause(c.t.id);
      } else {
        r = co_await live_->Resume(c.t.id);
      }
      if (!r.ok()) co_return co_await c.Err(r.error());
      co_await SendNoContent(s, req, keep);
      co_return keep;
    }
    case LiveRoute::kLogs:
      co_return co_await c.Logs();
    case LiveRoute::kCode:
      co_return co_await c.Code();
    case LiveRoute::kProcesses:
      if (get) co_return co_await c.Ps();
      co_return co_await c.Exec();
    case LiveRoute::kOutput:
      if (head) co_return co_await no_head();
      co_return co_await c.Attach();
    case LiveRoute::kSignal:
      co_return co_await c.Signal();
    case LiveRoute::kStdin:
      co_return co_await c.Stdin();
    case LiveRoute::kResize:
      co_return co_await c.Resize();
    case LiveRoute::kFiles:
      // A PUT is Upload's (the server hands it over before the body is read).
      if (head) co_return co_await no_head();
      co_return co_await c.Read();
    case LiveRoute::kFsStat:
      co_return co_await c.FsQuery("stat");
    case LiveRoute::kFsList:
      co_return co_await c.FsQuery("list");
    case LiveRoute::kFsMkdir:
      co_return co_await c.FsBody("mkdir");
    case LiveRoute::kFsRemove:
      co_return co_await c.FsBody("remove");
    case LiveRoute::kFsRename:
      co_return co_await c.FsBody("rename");
    case LiveRoute::kFsWatch:
      if (head) co_return co_await no_head();
      co_return co_await c.Watch();
    case LiveRoute::kUnknown:
      break;
  }
  co_return keep;
}

namespace {

// "0644" (octal, as chmod takes it) -> 0644.
Result<uint32_t> ParseMode(const std::string& text) {
  if (text.empty() || text.size() > 5) return Bad("mode", "expected octal permissions like 0644");
  uint32_t m = 0;
  for (char c : text) {
    if (c < '0' || c > '7')
      return Bad("mode", "expected octal permissions like 0644, got '" + text + "'");
    m = m * 8 + static_cast<uint32_t>(c - '0');
  }
  if (m > 07777) return Bad("mode", "at most 07777");
  return m;
}

}  // namespace

asio::awaitable<bool> HttpLive::Upload(beast::tcp_stream& s, beast::flat_buffer& buf,
                                       Parser& sparser, std::chrono::milliseconds read_timeout) {
  Request& head = sparser.get();
  const unsigned v = head.version();
  const bool body_pending = !sparser.is_done();
  // Refused before the body is read: answer, then close without keeping it.
  auto refuse = [&](const Error& e) -> asio::awaitable<bool> {
    co_await SendError(s, v, false, e, !body_pending && head.keep_alive());
    if (body_pending || !head.keep_alive()) {
      co_await LingeringClose(s);
      co_return false;
    }
    co_return true;
  };
  std::string_view target(head.target().data(), head.target().size());
  size_t qpos = target.find('?');
  LiveTarget t = ParseLiveTarget(target.substr(0, qpos));
  if (!live_) {
    co_return co_await refuse(
        Fail(ErrorCode::kFailedPrecondition, "live sandboxes", "", "not served by this daemon"));
  }
  if (!IsContentType(head, "application/octet-stream")) {
    co_await Send(s, v, false, http::status::unsupported_media_type,
                  HttpErrorJson("PUT " + std::string(target.substr(0, qpos)) +
                                    " takes the file's bytes: send 'Content-Type: "
                                    "application/octet-stream'",
                                "unsupported_media_type"),
                  kJson, false);
    co_await LingeringClose(s);
    co_return false;
  }
  auto query = ParseQuery(qpos == std::string_view::npos ? "" : target.substr(qpos + 1));
  if (!query.ok()) co_return co_await refuse(query.error());
  proto::FileRequest fr;
  fr.op = "write";
  auto path = PathParam(*query);
  if (!path.ok()) co_return co_await refuse(path.error());
  fr.path = *path;
  fr.user = Param(*query, "user").value_or("");
  if (auto m = Param(*query, "mode")) {
    auto mode = ParseMode(*m);
    if (!mode.ok()) co_return co_await refuse(mode.error());
    fr.mode = *mode;
  }
  auto append = BoolParam(*query, "append");
  if (!append.ok()) co_return co_await refuse(append.error());
  fr.append = *append;
  auto max = IntParam(*query, "max_bytes", 1, std::numeric_limits<int64_t>::max());
  if (!max.ok()) co_return co_await refuse(max.error());
  if (*max) fr.max_bytes = static_cast<uint64_t>(**max);
  auto too_large = [&]() {
    return Fail(ErrorCode::kResourceExhausted, "write", fr.path,
                "the upload exceeds max_bytes (" + std::to_string(fr.max_bytes) + ")");
  };
  if (fr.max_bytes && sparser.content_length() && *sparser.content_length() > fr.max_bytes) {
    co_await Send(s, v, false, http::status::payload_too_large, LiveErrorLine(too_large()), kJson,
                  false);
    co_await LingeringClose(s);
    co_return false;
  }
  auto conn = co_await live_->Connect(t.id);
  if (!conn.ok()) co_return co_await refuse(conn.error());
  const std::string payload = proto::ToJson(fr);
  if (auto sent = co_await (*conn)->Send(proto::FrameType::kFile, payload); !sent.ok()) {
    co_return co_await refuse(sent.error().WithCode(ErrorCode::kUnavailable));
  }
  error_code ec;
  if (body_pending) {
    auto expect = head.find(http::field::expect);
    if (expect != head.end() && beast::iequals(expect->value(), "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, v};
      s.expires_after(kWriteTimeout);
      co_await http::async_write(s, cont, redirect_error(use_awaitable, ec));
      s.expires_never();
      if (ec) co_return false;
    }
  }
  // The body in pieces, each sent on as it arrives: a slow agent slows the
  // client (TCP backpressure), and nothing is held but one piece.
  http::request_parser<http::buffer_body> p{std::move(sparser)};
  p.body_limit(fr.max_bytes ? boost::optional<uint64_t>(fr.max_bytes) : boost::none);
  std::vector<char> piece(kPiece);
  std::optional<Error> failed;
  bool body_done = !body_pending;
  while (!p.is_done()) {
    p.get().body().data = piece.data();
    p.get().body().size = piece.size();
    s.expires_after(read_timeout);
    co_await http::async_read_some(s, buf, p, redirect_error(use_awaitable, ec));
    s.expires_never();
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit) {
      failed = too_large();
      break;
    }
    if (ec) co_return false;  // the client went away (or timed out): nothing to answer
    size_t n = piece.size() - p.get().body().size;
    if (n == 0) continue;
    auto sent = co_await (*conn)->Send(proto::FrameType::kStdin, std::string_view(piece.data(), n));
    if (!sent.ok()) {
      failed = sent.error().WithCode(ErrorCode::kUnavailable);
      break;
    }
  }
  body_done = body_done || p.is_done();
  if (!failed) {
    if (auto sent = co_await (*conn)->Send(proto::FrameType::kStdinClose, ""); !sent.ok()) {
      failed = sent.error().WithCode(ErrorCode::kUnavailable);
    }
  }
  // The agent's answer: l Stat after the last byte, or e (which may have come
  // early, ending our writes with EPIPE: it is still there to read).
  std::optional<proto::FileStat> stat;
  if (!failed || failed->code == ErrorCode::kUnavailable) {
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) {
      if (!failed) failed = f.error().WithCode(ErrorCode::kUnavailable);
    } else if (f->type == proto::FrameType::kFileReply) {
      auto st = proto::ParseFileStat(f->payload);
      if (st.ok()) {
        stat = std::move(*st);
        failed.reset();
      } else {
        failed = st.error().WithCode(ErrorCode::kUnavailable);
      }
    } else {
      failed = AgentError(*f, "write");
    }
  }
  if (failed && !stat && failed->code == ErrorCode::kResourceExhausted) {
    // Refused midway (max_bytes): the agent undoes the partial upload when
    // the connection ends without C (AbortUpload), then closes its side.
    // Half-close and wait for that close (bounded), so that a client that
    // gets the 413 finds nothing left behind.
    error_code ignored;
    (*conn)->socket().shutdown(asio::socket_base::shutdown_send, ignored);
    asio::steady_timer bound(s.get_executor());
    bound.expires_after(std::chrono::seconds(5));
    bound.async_wait([&sock = (*conn)->socket()](error_code e) {
      error_code ig;
      if (!e) sock.cancel(ig);
    });
    while (true) {
      auto f = co_await (*conn)->ReadFrame();
      if (!f.ok()) break;
    }
    bound.cancel();
  }
  (*conn)->Close();
  const bool keep = body_done && p.get().keep_alive();
  if (failed) {
    // The agent's own max_bytes refusal is the request's size: 413.
    http::status status = static_cast<http::status>(HttpStatusForCode(failed->code));
    if (failed->code == ErrorCode::kResourceExhausted && fr.max_bytes) {
      status = http::status::payload_too_large;
    }
    co_await Send(s, v, false, status, LiveErrorLine(*failed), kJson, keep);
  } else {
    co_await Send(s, v, false, http::status::ok, proto::ToJson(*stat), kJson, keep);
  }
  if (!keep) {
    if (!body_done) co_await LingeringClose(s);
    co_return false;
  }
  co_return true;
}

}  // namespace wb::daemon
