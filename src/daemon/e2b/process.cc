// envd's Process service over Connect (docs/e2b.md, "envd: processes").
//
// Every call is one or two agent connections (LiveService::Connect):
//   Start       E keep:true, then the relay below
//   Connect     P (is it there, is it a terminal), then A from -1 and the relay
//   List        P
//   SendInput   A from -1, I..., H; answered once h is back (see Barrier)
//   CloseStdin  A, C, H
//   Update      A, W, H
//   SendSignal  K
// The relay turns O/R/X into data/end events and sends keepalives while
// idle; a client that goes away only closes its agent connection, which
// detaches it (a kept process is never killed by a hang-up).
#include "daemon/e2b/process.h"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/json.h"
#include "base/strings.h"
#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"
#include "daemon/http_api.h"
#include "daemon/http_live.h"
#include "daemon/http_respond.h"
#include "proto/live_ops.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
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

const char* StartErrorCode(const Error& e) {
  const std::string text = e.ToString();
  if (e.code == ErrorCode::kInvalidArgument && text.find("resolve user") != std::string::npos) {
    return "unauthenticated";
  }
  if (e.code == ErrorCode::kNotFound && text.find("chdir(") != std::string::npos) {
    return "invalid_argument";
  }
  return ConnectCode(e.code);
}

// --- served on the HTTP connection --------------------------------------------------

namespace {

using namespace asio::experimental::awaitable_operators;
using proto::FrameType;
using Clock = std::chrono::steady_clock;

std::optional<std::string_view> Header(const Request& req, std::string_view name) {
  auto it = req.find(name);
  if (it == req.end()) return std::nullopt;
  return std::string_view(it->value().data(), it->value().size());
}

// (Built outside the coroutines: GCC 12 miscompiles braced lists of string
// literals in a coroutine.)
std::vector<proto::Frame> CloseFrames() { return {proto::Frame{FrameType::kStdinClose, ""}}; }
HttpHeaders OneHeader(http::field f, const std::string& value) { return {{f, value}}; }

// One writer at a time on a Connect stream: the relay's events and the
// keepalives come from two coroutines, and two writes interleaved would
// corrupt the chunks. The event loop is one thread; this only orders them.
class StreamWriter {
 public:
  StreamWriter(ConnectStream& out, asio::any_io_executor ex)
      : out_(out), gate_(ex, Clock::time_point::max()) {}

  asio::awaitable<void> Lock() {
    while (busy_) {
      error_code ec;
      co_await gate_.async_wait(redirect_error(use_awaitable, ec));
    }
    busy_ = true;
  }
  // sent: a message went out (the idle time starts again).
  void Unlock(bool sent = true) {
    busy_ = false;
    if (sent) last_ = Clock::now();
    gate_.cancel();
  }
  asio::awaitable<bool> Send(std::string json) {
    co_await Lock();
    bool ok = co_await out_.Send(json);
    Unlock();
    co_return ok;
  }
  Clock::time_point last() const { return last_; }

 private:
  ConnectStream& out_;
  asio::steady_timer gate_;
  bool busy_ = false;
  Clock::time_point last_ = Clock::now();
};

struct Svc {
  beast::tcp_stream& s;
  const Request& req;
  const EnvdCall& call;
  bool keep;

  // --- unary --------------------------------------------------------------------

  // (Errors and bodies by value: a temporary bound to a coroutine's
  // reference parameter is what GCC 12 mishandles.)
  asio::awaitable<bool> Fail(Error e) {
    const std::string code = ConnectCode(e.code);
    const std::string msg = e.ToString();
    co_return co_await SendConnectError(s, req.version(), keep, code, msg) && keep;
  }
  asio::awaitable<bool> Reply(std::string json) {
    co_return co_await SendUnary(s, req.version(), keep, std::move(json)) && keep;
  }
  asio::awaitable<bool> ReplyEmpty() {
    std::string body = "{}";
    co_return co_await Reply(std::move(body));
  }
  // The end of a stream with an error (code: its Connect code).
  asio::awaitable<bool> End(ConnectStream& out, Error e, const char* code = nullptr) {
    const std::string c = code ? code : ConnectCode(e.code);
    const std::string msg = e.ToString();
    co_return co_await out.End(std::string_view(c), msg) && keep;
  }

  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Open(FrameType type,
                                                                 std::string_view payload) {
    auto conn = co_await call.live.Connect(call.sandbox.id);
    if (!conn.ok()) co_return conn.error();
    auto sent = co_await (*conn)->Send(type, payload);
    if (!sent.ok()) co_return sent.error().WithCode(ErrorCode::kUnavailable);
    co_return std::move(*conn);
  }

  // An agent connection whose first frame (E or A) was answered S.
  asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Begin(FrameType type,
                                                                  std::string_view payload,
                                                                  const char* what,
                                                                  proto::Started* started) {
    auto conn = co_await Open(type, payload);
    if (!conn.ok()) co_return conn.error();
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    if (f->type != FrameType::kStarted) co_return AgentError(*f, what);
    auto parsed = proto::ParseStarted(f->payload);
    if (!parsed.ok()) co_return parsed.error().WithCode(ErrorCode::kUnavailable);
    *started = *parsed;
    co_return std::move(*conn);
  }

  asio::awaitable<Result<std::vector<proto::ProcessInfo>>> Processes() {
    auto conn = co_await Open(FrameType::kList, "");
    if (!conn.ok()) co_return conn.error();
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    if (f->type != FrameType::kListReply) co_return AgentError(*f, "list");
    auto list = proto::ParseProcessList(f->payload);
    if (!list.ok()) co_return list.error().WithCode(ErrorCode::kUnavailable);
    co_return std::move(*list);
  }

  // The process a selector names (running or retained, as the agent keeps
  // it): a tag names the newest running process with it.
  asio::awaitable<Result<proto::ProcessInfo>> Find(const ProcessSelector& sel) {
    auto list = co_await Processes();
    if (!list.ok()) co_return list.error();
    const proto::ProcessInfo* found = nullptr;
    for (const auto& p : *list) {
      if (sel.pid ? p.pid == sel.pid : (p.running && p.tag == sel.tag)) found = &p;
    }
    if (!found) {
      std::string what = "tag " + sel.tag;
      if (sel.pid) what = std::to_string(sel.pid);
      co_return wb::Fail(ErrorCode::kNotFound, "process", what, "no such process");
    }
    co_return *found;
  }

  asio::awaitable<Result<int64_t>> PidOf(const ProcessSelector& sel) {
    if (sel.pid) co_return sel.pid;
    auto p = co_await Find(sel);
    if (!p.ok()) co_return p.error();
    co_return p->pid;
  }

  // Attaches to pid (only output from now on) and sends frames, then H,
  // all in one write. The agent handles one connection's frames in order and
  // answers H with h (docs/protocol.md, "Barrier"), so h means every frame
  // before it was taken: stdin bytes are in the process's stdin buffer,
  // ahead of anything a later call sends (a CloseStdin right after a
  // SendInput cannot overtake it). One write, so that the agent reads the
  // frames together and answers S and h in one turn of its loop: an X (the
  // process ended) then comes before h only when the process had ended
  // before the frames were taken, never because it ended right after
  // taking them. Output that arrives meanwhile is read and dropped, so the
  // attachment never holds the process back.
  asio::awaitable<Result<void>> Barrier(int64_t pid, const std::vector<proto::Frame>& frames,
                                        const char* what) {
    proto::AttachRequest a;
    a.pid = pid;
    a.from = -1;
    std::string bytes = proto::EncodeFrame(FrameType::kAttach, proto::ToJson(a));
    for (const auto& fr : frames) proto::AppendFrame(bytes, fr.type, fr.payload);
    proto::AppendFrame(bytes, FrameType::kHeartbeat, "");
    auto conn = co_await call.live.Connect(call.sandbox.id);
    if (!conn.ok()) co_return conn.error();
    pool::AgentConn& c = **conn;
    error_code wrote;
    Result<void> answer = Ok();
    auto send = [&]() -> asio::awaitable<void> {
      // A failed write (the agent closed) leaves the answer to the reader,
      // which sees why.
      co_await asio::async_write(c.socket(), asio::buffer(bytes),
                                 redirect_error(use_awaitable, wrote));
      co_await Forever();
    };
    auto read = [&]() -> asio::awaitable<void> {
      bool started = false;
      for (;;) {
        auto r = co_await c.ReadFrame();
        if (!r.ok()) {
          answer = r.error().WithCode(ErrorCode::kUnavailable);
          co_return;
        }
        if (!started && r->type == FrameType::kStarted) {
          started = true;
          continue;
        }
        if (started && (r->type == FrameType::kStdout || r->type == FrameType::kStderr)) continue;
        if (started && r->type == FrameType::kHeartbeatReply) co_return;
        if (started && r->type == FrameType::kExit) {
          answer =
              wb::Fail(ErrorCode::kNotFound, what, std::to_string(pid), "the process has exited");
        } else {
          answer = AgentError(*r, what);
        }
        co_return;
      }
    };
    co_await (read() || send());
    c.Close();
    if (!answer.ok()) co_return answer;
    if (wrote) co_return wb::Fail(ErrorCode::kUnavailable, "write to agent", "", wrote.message());
    co_return Ok();
  }

  asio::awaitable<bool> List() {
    auto list = co_await Processes();
    if (!list.ok()) co_return co_await Fail(list.error());
    std::string body = ProcessListJson(*list);
    co_return co_await Reply(std::move(body));
  }

  asio::awaitable<bool> SendInput() {
    auto r = ParseSendInputRequest(req.body());
    if (!r.ok()) co_return co_await Fail(r.error());
    auto pid = co_await PidOf(r->process);
    if (!pid.ok()) co_return co_await Fail(pid.error());
    // In pieces well under the agent's frame limit.
    constexpr size_t kPiece = 256 * 1024;
    std::vector<proto::Frame> frames;
    for (size_t at = 0; at < r->data.size(); at += kPiece) {
      frames.push_back(proto::Frame{FrameType::kStdin, r->data.substr(at, kPiece)});
    }
    auto done = co_await Barrier(*pid, frames, "send input");
    if (!done.ok()) co_return co_await Fail(done.error());
    co_return co_await ReplyEmpty();
  }

  asio::awaitable<bool> CloseStdin() {
    auto sel = ParseSelectorRequest(req.body());
    if (!sel.ok()) co_return co_await Fail(sel.error());
    auto pid = co_await PidOf(*sel);
    if (!pid.ok()) co_return co_await Fail(pid.error());
    const std::vector<proto::Frame> frames = CloseFrames();
    auto done = co_await Barrier(*pid, frames, "close stdin");
    if (!done.ok()) co_return co_await Fail(done.error());
    co_return co_await ReplyEmpty();
  }

  asio::awaitable<bool> Update() {
    auto r = ParseUpdateRequest(req.body());
    if (!r.ok()) co_return co_await Fail(r.error());
    auto pid = co_await PidOf(r->process);
    if (!pid.ok()) co_return co_await Fail(pid.error());
    std::vector<proto::Frame> frames;
    if (r->size) frames.push_back(proto::Frame{FrameType::kResize, proto::ToJson(*r->size)});
    auto done = co_await Barrier(*pid, frames, "update");
    if (!done.ok()) co_return co_await Fail(done.error());
    co_return co_await ReplyEmpty();
  }

  asio::awaitable<bool> SendSignal() {
    auto r = ParseSendSignalRequest(req.body());
    if (!r.ok()) co_return co_await Fail(r.error());
    auto pid = co_await PidOf(r->process);
    if (!pid.ok()) co_return co_await Fail(pid.error());
    proto::SignalRequest k;
    k.pid = *pid;
    k.signal = r->signal;
    const std::string payload = proto::ToJson(k);
    auto conn = co_await Open(FrameType::kSignal, payload);
    if (!conn.ok()) co_return co_await Fail(conn.error());
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) {
      const Error e = f.error().WithCode(ErrorCode::kUnavailable);
      co_return co_await Fail(e);
    }
    if (f->type != FrameType::kSignalReply) {
      const Error e = AgentError(*f, "signal");
      co_return co_await Fail(e);
    }
    co_return co_await ReplyEmpty();
  }

  // --- server streams -------------------------------------------------------------

  // The events of a process from its S on: data (stdout, stderr, or pty for
  // a terminal), keepalives when nothing was sent for `interval`, the end,
  // then the end of the stream. deadline (Connect only; a Start's deadline
  // is the process's own timeout, which the agent enforces and X reports)
  // ends the stream, not the process. Returns whether the connection may
  // serve another request.
  asio::awaitable<bool> Relay(pool::AgentConn& conn, ConnectStream& out, bool tty,
                              std::chrono::seconds interval, uint64_t deadline_ms) {
    auto ex = co_await asio::this_coro::executor;
    StreamWriter w(out, ex);
    enum class Outcome { kGone, kExit, kAgentError, kDeadline } outcome = Outcome::kGone;
    proto::ExecExit exit;
    Error failed;
    auto pump = [&]() -> asio::awaitable<void> {
      for (;;) {
        auto f = co_await conn.ReadFrame();
        if (!f.ok()) {
          outcome = Outcome::kAgentError;
          failed = f.error().WithCode(ErrorCode::kUnavailable);
          break;
        }
        if (f->type == FrameType::kStdout || f->type == FrameType::kStderr) {
          const char* stream = tty ? "pty" : f->type == FrameType::kStderr ? "stderr" : "stdout";
          std::string event = DataEventJson(stream, f->payload);
          if (!co_await w.Send(std::move(event))) co_return;  // gone
          continue;
        }
        if (f->type == FrameType::kExit) {
          auto e = proto::ParseExecExit(f->payload);
          if (e.ok()) {
            outcome = Outcome::kExit;
            exit = *e;
          } else {
            outcome = Outcome::kAgentError;
            failed = e.error().WithCode(ErrorCode::kUnavailable);
          }
          break;
        }
        outcome = Outcome::kAgentError;
        failed = AgentError(*f, "process");
        break;
      }
      // Hold the writer: what remains to send is sent after the race below,
      // and no keepalive may be half written when it is cancelled.
      co_await w.Lock();
    };
    auto keepalive = [&]() -> asio::awaitable<void> {
      asio::steady_timer t(ex);
      for (;;) {
        t.expires_at(w.last() + interval);
        error_code ec;
        co_await t.async_wait(redirect_error(use_awaitable, ec));
        co_await w.Lock();
        if (Clock::now() < w.last() + interval) {  // an event went out meanwhile
          w.Unlock(false);
          continue;
        }
        const std::string ping = KeepaliveEventJson();
        bool ok = co_await out.Send(ping);
        w.Unlock();
        if (!ok) co_return;  // gone
      }
    };
    auto deadline = [&]() -> asio::awaitable<void> {
      if (deadline_ms == 0) co_await Forever();
      asio::steady_timer t(ex, std::chrono::milliseconds(deadline_ms));
      error_code ec;
      co_await t.async_wait(redirect_error(use_awaitable, ec));
      co_await w.Lock();
      outcome = Outcome::kDeadline;
    };
    co_await (pump() || keepalive() || deadline() || ClientGone(s));
    // The agent only detaches a connection that hangs up: the process lives on.
    conn.Close();
    switch (outcome) {
      case Outcome::kGone:
        co_return false;
      case Outcome::kExit: {
        const std::string end = EndEventJson(exit);
        if (!co_await out.Send(end)) co_return false;
        if (exit.timed_out) {
          const std::string msg = exit.error.empty() ? "the deadline passed" : exit.error;
          co_return co_await out.End("deadline_exceeded", msg) && keep;
        }
        co_return co_await out.End() && keep;
      }
      case Outcome::kAgentError:
        co_return co_await End(out, failed);
      case Outcome::kDeadline: {
        const std::string msg = "the stream's deadline of " + std::to_string(deadline_ms) +
                                " ms passed; the process goes on";
        co_return co_await out.End("deadline_exceeded", msg) && keep;
      }
    }
    co_return false;
  }

  struct StreamHeaders {
    uint64_t timeout_ms = 0;
    std::chrono::seconds interval = kDefaultKeepalive;
  };
  Result<StreamHeaders> ParseStreamHeaders() const {
    StreamHeaders h;
    h.timeout_ms = WB_TRY(ParseTimeoutMs(Header(req, "Connect-Timeout-Ms")));
    h.interval = WB_TRY(ParseKeepaliveInterval(Header(req, "Keepalive-Ping-Interval")));
    return h;
  }

  asio::awaitable<bool> Start() {
    ConnectStream out(s, req.version());
    auto body = ParseRequestEnvelope(req.body());
    if (!body.ok()) co_return co_await End(out, body.error());
    auto r = ParseStartRequest(*body);
    if (!r.ok()) co_return co_await End(out, r.error());
    auto h = ParseStreamHeaders();
    if (!h.ok()) co_return co_await End(out, h.error());
    proto::ExecRequest x = StartExec(*r, call.user, call.sandbox.cwd, h->timeout_ms);
    const std::string payload = proto::ToJson(x);
    proto::Started started;
    auto conn = co_await Begin(FrameType::kExec, payload, "start", &started);
    if (!conn.ok()) {
      const Error e = conn.error();
      co_return co_await End(out, e, StartErrorCode(e));
    }
    // The first event at once: the SDK's handshake waits for it.
    const std::string first = StartEventJson(started.pid);
    if (!co_await out.Send(first)) co_return false;
    co_return co_await Relay(**conn, out, x.tty, h->interval, 0);
  }

  asio::awaitable<bool> Connect() {
    ConnectStream out(s, req.version());
    auto body = ParseRequestEnvelope(req.body());
    if (!body.ok()) co_return co_await End(out, body.error());
    auto sel = ParseSelectorRequest(*body);
    if (!sel.ok()) co_return co_await End(out, sel.error());
    auto h = ParseStreamHeaders();
    if (!h.ok()) co_return co_await End(out, h.error());
    // Whether it has a terminal (its output is then pty data), and that it
    // is there at all.
    auto info = co_await Find(*sel);
    if (!info.ok()) co_return co_await End(out, info.error());
    proto::AttachRequest a;
    a.pid = info->pid;
    a.from = -1;  // envd replays nothing: only new output
    const std::string payload = proto::ToJson(a);
    proto::Started started;
    auto conn = co_await Begin(FrameType::kAttach, payload, "connect", &started);
    if (!conn.ok()) co_return co_await End(out, conn.error());
    const std::string first = StartEventJson(info->pid);
    if (!co_await out.Send(first)) co_return false;
    co_return co_await Relay(**conn, out, info->tty, h->interval, h->timeout_ms);
  }
};

bool IsStreaming(std::string_view method) { return method == "Start" || method == "Connect"; }

}  // namespace

asio::awaitable<bool> ServeProcess(beast::tcp_stream& s, const Request& req,
                                   std::string_view method, const EnvdCall& call) {
  // The router may hand over the whole path.
  method = method.substr(method.rfind('/') + 1);
  Svc svc{s, req, call, req.keep_alive()};
  if (req.method() != http::verb::post) {
    std::string body = ConnectErrorJson("unimplemented", "Connect calls are POSTs");
    const HttpHeaders allow = OneHeader(http::field::allow, "POST");
    co_await SendStringResponse(s, req.version(), false, http::status::method_not_allowed,
                                std::move(body), "application/json", svc.keep, allow);
    co_return svc.keep;
  }
  // The codec this service speaks: JSON (the SDKs' useBinaryFormat:false).
  std::string_view type;
  if (auto it = req.find(http::field::content_type); it != req.end()) {
    type = std::string_view(it->value().data(), it->value().size());
  }
  const bool streaming = IsStreaming(method);
  if (streaming ? !IsConnectStreamType(type) : !IsConnectUnaryType(type)) {
    const std::string want = streaming ? "application/connect+json" : "application/json";
    const std::string msg = "process." + std::string(method) + " takes Content-Type " + want +
                            " (the Connect protocol's JSON codec), not '" + std::string(type) + "'";
    std::string body = ConnectErrorJson("invalid_argument", msg);
    const HttpHeaders accept = OneHeader(http::field::accept_post, want);
    co_await SendStringResponse(s, req.version(), false, http::status::unsupported_media_type,
                                std::move(body), "application/json", svc.keep, accept);
    co_return svc.keep;
  }
  if (method == "Start") co_return co_await svc.Start();
  if (method == "Connect") co_return co_await svc.Connect();
  if (method == "List") co_return co_await svc.List();
  if (method == "SendInput") co_return co_await svc.SendInput();
  if (method == "CloseStdin") co_return co_await svc.CloseStdin();
  if (method == "SendSignal") co_return co_await svc.SendSignal();
  if (method == "Update") co_return co_await svc.Update();
  const std::string msg =
      method == "StreamInput"
          ? std::string(
                "process.StreamInput is a client stream, which HTTP/1.1 Connect cannot "
                "carry: use SendInput")
          : "process.Process has no method '" + std::string(method) + "'";
  co_return co_await SendConnectError(s, req.version(), svc.keep, "unimplemented", msg) && svc.keep;
}

}  // namespace wb::daemon::e2b
