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

#include "daemon/e2b/connect.h"
#include "daemon/e2b/envd.h"
#include "daemon/http_live.h"
#include "daemon/http_respond.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

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
