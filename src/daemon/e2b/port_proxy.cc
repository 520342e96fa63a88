// The port proxy (docs/e2b.md, "Ports"): one HTTP request relayed to a TCP
// service inside the sandbox through the agent's T operation
// (docs/protocol.md, "Ports"), its answer relayed back as it comes.
//
//   client --HTTP--> daemon --T, I frames--> agent --TCP 127.0.0.1:N--> service
//   client <--bytes-- daemon <--O frames, x-- agent <--bytes------------ service
//
// The request's head is rewritten (hop-by-hop headers out), its body
// relayed piece by piece as the client sends it; the answer's head is
// rewritten the same way and the rest of it passed through byte for byte
// (chunked or not), each piece written to the client before the next is
// read from the agent, so a stream (NDJSON, server-sent events) reaches the
// client as the service writes it, and a slow client slows the service (the
// agent reads the service no faster than it is drained). The answer's end
// is found by its framing (Content-Length, chunked): then the client's
// connection serves its next request (HTTP/1.1 keep-alive) and the tunnel,
// if the service keeps its connection, goes back to a TunnelPool for the
// next request to the same sandbox and port. An answer that ends with the
// connection, an upgrade, or an exchange cut short closes both.
#include "daemon/e2b/port_proxy.h"

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <list>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "base/strings.h"
#include "daemon/http_respond.h"
#include "proto/agent_proto.h"

namespace wb::daemon::e2b {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using tcp = asio::ip::tcp;

// Request body pieces relayed to the agent (each one I frame).
constexpr size_t kPiece = 256 * 1024;
constexpr size_t kMaxResponseHead = 64 * 1024;

// Hop-by-hop headers (RFC 9110 7.6.1): about this connection, not the
// request; never forwarded. (Transfer-Encoding is set again when the body
// is re-chunked; Content-Length stays when it is not.)
bool IsHopByHop(std::string_view name) {
  static const char* const kNames[] = {"connection", "keep-alive", "proxy-connection", "te",
                                       "trailer",    "upgrade",    "transfer-encoding"};
  for (const char* n : kNames) {
    if (beast::iequals(name, n)) return true;
  }
  return false;
}

// The header names a Connection header lists (also hop-by-hop), lower-case.
template <class Fields>
std::set<std::string> ConnectionTokens(const Fields& f) {
  std::set<std::string> out;
  for (auto it = f.find(http::field::connection);
       it != f.end() && it->name() == http::field::connection; ++it) {
    std::string_view v(it->value().data(), it->value().size());
    for (const auto& t : Split(v, ',')) {
      std::string tok = AsciiLower(Trim(t));
      if (!tok.empty()) out.insert(std::move(tok));
    }
  }
  return out;
}

template <class Fields>
void AppendEndToEnd(std::string& out, const Fields& f, bool drop_content_length) {
  const auto listed = ConnectionTokens(f);
  for (const auto& field : f) {
    std::string_view name(field.name_string().data(), field.name_string().size());
    if (IsHopByHop(name) || listed.count(AsciiLower(name))) continue;
    if (drop_content_length && beast::iequals(name, "content-length")) continue;
    out.append(name);
    out += ": ";
    out.append(field.value().data(), field.value().size());
    out += "\r\n";
  }
}

// The message of an agent's e (or anything else where t was expected).
std::string AgentFailure(const proto::Frame& f, bool* refused) {
  *refused = false;
  if (f.type == proto::FrameType::kOpError) {
    auto e = proto::ParseOpError(f.payload);
    if (e.ok()) {
      *refused = e->err == ECONNREFUSED;
      return e->message;
    }
    return "the agent's error does not parse: " + e.error().ToString();
  }
  if (f.type == proto::FrameType::kFailure) return "the agent refused the tunnel: " + f.payload;
  return std::string("unexpected frame '") + static_cast<char>(f.type) + "' from the agent";
}

}  // namespace

bool IsUpgradeRequest(const Request& head) {
  return head.find(http::field::upgrade) != head.end() &&
         ConnectionTokens(head.base()).count("upgrade") > 0;
}

std::string ProxyRequestHead(const Request& head, bool keep) {
  std::string out;
  out.append(head.method_string().data(), head.method_string().size());
  out += ' ';
  out.append(head.target().data(), head.target().size());
  out += head.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";
  const bool chunked = head.chunked();
  AppendEndToEnd(out, head.base(), chunked);
  if (chunked) out += "Transfer-Encoding: chunked\r\n";
  if (IsUpgradeRequest(head)) {
    // The one hop-by-hop request that must reach the service: a protocol
    // switch (WebSocket), after which the tunnel carries the new protocol.
    auto up = head.find(http::field::upgrade);
    out += "Upgrade: ";
    out.append(up->value().data(), up->value().size());
    out += "\r\nConnection: Upgrade\r\n\r\n";
    return out;
  }
  // HTTP/1.1 keeps the connection by default; an HTTP/1.0 request line
  // closes it anyway.
  out += keep ? "\r\n" : "Connection: close\r\n\r\n";
  return out;
}

BodyFramer::BodyFramer(Mode mode, uint64_t length)
    : mode_(mode),
      state_(mode == Mode::kChunked                                          ? State::kSizeLine
             : mode == Mode::kNone || (mode == Mode::kLength && length == 0) ? State::kDone
                                                                             : State::kData),
      left_(mode == Mode::kLength ? length : 0) {}

Result<size_t> BodyFramer::Feed(std::string_view data) {
  constexpr size_t kMaxLine = 4096;
  size_t i = 0;
  while (i < data.size() && state_ != State::kDone) {
    switch (state_) {
      case State::kData: {
        if (mode_ == Mode::kUntilClose) return data.size();
        size_t n = static_cast<size_t>(std::min<uint64_t>(left_, data.size() - i));
        i += n;
        left_ -= n;
        if (left_ == 0) state_ = mode_ == Mode::kLength ? State::kDone : State::kDataEnd;
        break;
      }
      case State::kDataEnd:
        // The CRLF after a chunk's data.
        if (data[i] == '\n')
          state_ = State::kSizeLine;
        else if (data[i] != '\r') {
          return Fail(ErrorCode::kInvalidArgument, "chunked body", "", "no CRLF after a chunk");
        }
        ++i;
        break;
      case State::kSizeLine:
      case State::kTrailers: {
        size_t eol = data.find('\n', i);
        size_t end = eol == std::string_view::npos ? data.size() : eol;
        line_.append(data.substr(i, end - i));
        if (line_.size() > kMaxLine) {
          return Fail(ErrorCode::kInvalidArgument, "chunked body", "",
                      "a line longer than " + std::to_string(kMaxLine) + " bytes");
        }
        if (eol == std::string_view::npos) return data.size();
        i = eol + 1;
        std::string line = std::move(line_);
        line_.clear();
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (state_ == State::kTrailers) {
          if (line.empty()) state_ = State::kDone;
          break;
        }
        // chunk-size [; extensions]
        std::string_view hex = Trim(std::string_view(line).substr(0, line.find(';')));
        uint64_t size = 0;
        if (hex.empty() || hex.size() > 15) {
          return Fail(ErrorCode::kInvalidArgument, "chunked body", line, "not a chunk size");
        }
        for (char c : hex) {
          int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
          if (d < 0) {
            return Fail(ErrorCode::kInvalidArgument, "chunked body", line, "not a chunk size");
          }
          size = size * 16 + static_cast<uint64_t>(d);
        }
        left_ = size;
        state_ = size == 0 ? State::kTrailers : State::kData;
        break;
      }
      case State::kDone:
        break;
    }
  }
  return i;
}

Result<std::optional<ProxyResponseHead>> ParseProxyResponseHead(std::string_view bytes,
                                                                bool head_request,
                                                                bool client_keep) {
  http::response_parser<http::empty_body> p;
  p.header_limit(kMaxResponseHead);
  p.eager(false);
  error_code ec;
  size_t used = p.put(asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec == http::error::need_more) {
    if (bytes.size() > kMaxResponseHead) {
      return Fail(ErrorCode::kInvalidArgument, "response head", "",
                  "longer than " + std::to_string(kMaxResponseHead) + " bytes");
    }
    return std::optional<ProxyResponseHead>();
  }
  if (ec) return Fail(ErrorCode::kInvalidArgument, "response head", "", ec.message());
  if (!p.is_header_done()) return std::optional<ProxyResponseHead>();
  ProxyResponseHead h;
  h.size = used;
  h.status = p.get().result_int();
  if (h.status >= 100 && h.status < 200) {
    h.mode = BodyFramer::Mode::kNone;
    h.forwarded = std::string(bytes.substr(0, used));
    return std::optional<ProxyResponseHead>(std::move(h));
  }
  // RFC 9112 6.3: no body after HEAD, 204 and 304; then chunked; then
  // Content-Length; else the body ends with the connection.
  if (head_request || h.status == 204 || h.status == 304) {
    h.mode = BodyFramer::Mode::kNone;
  } else if (p.chunked()) {
    h.mode = BodyFramer::Mode::kChunked;
  } else if (p.content_length()) {
    h.mode = BodyFramer::Mode::kLength;
    h.length = *p.content_length();
  }
  h.keep_service = p.get().keep_alive() && h.mode != BodyFramer::Mode::kUntilClose;
  h.keep_client = client_keep && h.mode != BodyFramer::Mode::kUntilClose;
  // The status line exactly as the service wrote it (its version, its reason).
  size_t eol = bytes.find("\r\n");
  h.forwarded = std::string(bytes.substr(0, eol == std::string_view::npos ? 0 : eol)) + "\r\n";
  std::string& out = h.forwarded;
  // The body is relayed as the service encoded it: Transfer-Encoding stays.
  const auto listed = ConnectionTokens(p.get().base());
  for (const auto& field : p.get().base()) {
    std::string_view name(field.name_string().data(), field.name_string().size());
    if (!beast::iequals(name, "transfer-encoding") &&
        (IsHopByHop(name) || listed.count(AsciiLower(name))))
      continue;
    out.append(name);
    out += ": ";
    out.append(field.value().data(), field.value().size());
    out += "\r\n";
  }
  // Said in full either way: the service's status line may be HTTP/1.0's.
  out += h.keep_client ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return std::optional<ProxyResponseHead>(std::move(h));
}

std::string PortErrorJson(std::string_view sandbox, uint16_t port, std::string_view message) {
  nlohmann::json j = {{"code", 502},
                      {"message", std::string(message)},
                      {"sandboxId", std::string(sandbox)},
                      {"port", port}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> OpenTunnelOn(
    std::unique_ptr<pool::AgentConn> conn, std::string id, uint16_t port) {
  const std::string ports = std::to_string(port);
  auto fail = [&](ErrorCode code, int err, std::string why) {
    Error e = Fail(code, "port", ports, std::move(why));
    e.err = err;
    return e;
  };
  pool::AgentConn& agent = *conn;
  const std::string open = proto::ToJson(proto::TunnelRequest{port});
  if (auto sent = co_await agent.Send(proto::FrameType::kTunnel, open); !sent.ok()) {
    co_return fail(ErrorCode::kUnavailable, 0,
                   "port " + ports + ": the sandbox's agent: " + sent.error().ToString());
  }
  auto answer = co_await agent.ReadFrame();
  if (!answer.ok() || answer->type != proto::FrameType::kTunnelReply) {
    bool refused = false;
    std::string why = answer.ok() ? AgentFailure(*answer, &refused)
                                  : "the sandbox's agent: " + answer.error().ToString();
    agent.Close();
    // E2B's proxy answers 502 for a port where nothing listens, in these words.
    if (refused) {
      co_return fail(ErrorCode::kUnavailable, ECONNREFUSED,
                     "The sandbox " + id + " is running but there's no service running on port " +
                         ports + ".");
    }
    co_return fail(ErrorCode::kUnavailable, 0, "port " + ports + ": " + why);
  }
  co_return std::move(conn);
}

asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> OpenPortTunnel(LiveService& live,
                                                                         std::string id,
                                                                         uint16_t port) {
  auto conn = co_await live.Connect(id);
  if (!conn.ok()) {
    const std::string ports = std::to_string(port);
    co_return Fail(conn.error().code, "port", ports,
                   "port " + ports + ": the sandbox cannot be reached: " + conn.error().ToString());
  }
  std::unique_ptr<pool::AgentConn> agent = std::move(*conn);
  co_return co_await OpenTunnelOn(std::move(agent), id, port);
}

// --- the tunnel pool -------------------------------------------------------------------

namespace {
std::atomic<uint64_t> g_opened{0}, g_reused{0}, g_idle{0};
}  // namespace

PortTunnelStats PortTunnelCounters() {
  return PortTunnelStats{g_opened.load(), g_reused.load(), g_idle.load()};
}

struct TunnelPool::State {
  struct Entry {
    std::string sandbox;
    uint16_t port = 0;
    std::unique_ptr<pool::AgentConn> conn;
    asio::steady_timer timer;
    bool gone = false;  // taken, or dropped: its watcher leaves it alone
    Entry(asio::any_io_executor ex) : timer(ex) {}
  };
  std::chrono::milliseconds idle_timeout;
  mutable std::mutex mu;
  std::list<std::shared_ptr<Entry>> idle;  // most recently put first

  // Out of the list (the caller holds mu).
  void Drop(const std::shared_ptr<Entry>& e) {
    e->gone = true;
    e->timer.cancel();
    idle.remove(e);
    --g_idle;
  }
};

namespace {

// Whether an idle tunnel's agent socket has anything to say: EOF (the agent,
// so the sandbox, is gone), an error, or a frame (the service closed its
// connection, x; or wrote unasked). Any of them ends the tunnel.
bool Readable(pool::AgentConn& conn) {
  char c;
  ssize_t n = ::recv(conn.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

// Until the idle tunnel is taken, times out or its agent socket is readable.
// The wait is for readability only (nothing is read), so Take can cancel it
// and use the socket as it is.
asio::awaitable<void> WatchIdle(std::shared_ptr<TunnelPool::State> st,
                                std::shared_ptr<TunnelPool::State::Entry> e) {
  using namespace asio::experimental::awaitable_operators;
  error_code rec, tec;
  auto readable = e->conn->socket().async_wait(asio::socket_base::wait_read,
                                               redirect_error(use_awaitable, rec));
  auto expired = e->timer.async_wait(redirect_error(use_awaitable, tec));
  co_await (std::move(readable) || std::move(expired));
  std::unique_ptr<pool::AgentConn> conn;
  {
    std::lock_guard lock(st->mu);
    if (e->gone) co_return;  // taken (its taker cancelled the wait), or the pool's end
    st->Drop(e);
    conn = std::move(e->conn);
  }
  conn->Close();
}

}  // namespace

TunnelPool::TunnelPool(std::chrono::milliseconds idle_timeout) : state_(std::make_shared<State>()) {
  state_->idle_timeout = idle_timeout;
}

TunnelPool::~TunnelPool() {
  std::lock_guard lock(state_->mu);
  while (!state_->idle.empty()) {
    auto e = state_->idle.front();
    state_->Drop(e);
    // Closing cancels the watcher's wait; it finds the entry gone.
    e->conn->Close();
  }
}

std::unique_ptr<pool::AgentConn> TunnelPool::Take(const std::string& sandbox, uint16_t port) {
  std::lock_guard lock(state_->mu);
  for (auto it = state_->idle.begin(); it != state_->idle.end();) {
    auto e = *it;
    ++it;
    if (e->port != port || e->sandbox != sandbox) continue;
    state_->Drop(e);
    std::unique_ptr<pool::AgentConn> conn = std::move(e->conn);
    // The watcher's wait ends (operation_aborted) and finds the entry gone.
    error_code ec;
    conn->socket().cancel(ec);
    // Closed meanwhile, its watcher not run yet: the next one, or none.
    if (ec || Readable(*conn)) {
      conn->Close();
      continue;
    }
    ++g_reused;
    return conn;
  }
  return nullptr;
}

void TunnelPool::Put(const std::string& sandbox, uint16_t port,
                     std::unique_ptr<pool::AgentConn> conn) {
  std::lock_guard lock(state_->mu);
  size_t same = 0;
  for (const auto& e : state_->idle) same += e->port == port && e->sandbox == sandbox;
  if (same >= kMaxIdlePerPort || Readable(*conn)) {
    conn->Close();
    return;
  }
  auto ex = conn->socket().get_executor();
  auto e = std::make_shared<State::Entry>(ex);
  e->sandbox = sandbox;
  e->port = port;
  e->conn = std::move(conn);
  e->timer.expires_after(state_->idle_timeout);
  state_->idle.push_front(e);
  ++g_idle;
  asio::co_spawn(ex, WatchIdle(state_, e), asio::detached);
}

size_t TunnelPool::idle() const {
  std::lock_guard lock(state_->mu);
  return state_->idle.size();
}

// --- served on the HTTP connection ----------------------------------------------------

boost::asio::awaitable<bool> ProxyToPort(boost::beast::tcp_stream& s,
                                         boost::beast::flat_buffer& buf, Parser& parser,
                                         LiveService& live, const LiveInfo& sandbox, uint16_t port,
                                         std::chrono::milliseconds read_timeout,
                                         TunnelPool* tunnels) {
  using namespace asio::experimental::awaitable_operators;
  const unsigned version = parser.get().version();
  const bool body_pending = !parser.is_done();
  const bool chunked = parser.get().chunked();
  const bool upgrade = IsUpgradeRequest(parser.get());
  const bool head_request = parser.get().method() == http::verb::head;
  const bool client_keep = parser.get().keep_alive() && !upgrade;
  // The tunnel may carry another request after this one.
  const bool reuse = tunnels != nullptr && !upgrade && version == 11;
  const std::string ports = std::to_string(port);
  bool body_done = !body_pending;
  // Answers before any byte of the service's: a 502, then close (after
  // draining what the client still sends, so the answer is not lost to a
  // reset).
  // (Its message is a named local at every call: GCC 12 frees temporaries
  // passed into a co_await twice.)
  auto bad_gateway = [&](const std::string& message) -> asio::awaitable<void> {
    std::string body = PortErrorJson(sandbox.id, port, message);
    co_await SendStringResponse(s, version, false, http::status::bad_gateway, std::move(body),
                                "application/json", false);
    if (!body_done) co_await LingeringClose(s);
  };

  std::unique_ptr<pool::AgentConn> kept;
  if (reuse) kept = tunnels->Take(sandbox.id, port);
  if (!kept) {
    auto conn = co_await OpenPortTunnel(live, sandbox.id, port);
    if (!conn.ok()) {
      co_await bad_gateway(conn.error().detail);
      co_return false;
    }
    kept = std::move(*conn);
    ++g_opened;
  }
  pool::AgentConn& agent = *kept;
  const std::string head = ProxyRequestHead(parser.get(), reuse);
  if (auto sent = co_await agent.Send(proto::FrameType::kStdin, head); !sent.ok()) {
    agent.Close();
    const std::string why = "port " + ports + ": the sandbox's agent: " + sent.error().ToString();
    co_await bad_gateway(why);
    co_return false;
  }

  bool wrote_any = false;  // bytes of the service's answer reached the client
  bool answered = false;   // the answer's end was found by its framing
  bool keep_client = false, keep_service = false;
  bool put_back = false;  // the tunnel is in the pool again (agent is not ours)
  std::optional<std::string> gateway_error;
  // The answer's end is known, its last bytes not yet written: a tunnel
  // that can carry another exchange goes back now. A client that has the
  // whole answer may send its next request at once, on another connection
  // too, and must find the tunnel there (not open a second one).
  auto answer_ends = [&] {
    answered = true;
    if (reuse && body_done && keep_service && !gateway_error && !put_back) {
      put_back = true;
      tunnels->Put(sandbox.id, port, std::move(kept));
    }
  };
  auto write = [&](std::string_view data) -> asio::awaitable<bool> {
    error_code ec;
    s.expires_after(kWriteTimeout);
    co_await asio::async_write(s, asio::buffer(data.data(), data.size()),
                               redirect_error(use_awaitable, ec));
    if (ec) co_return false;
    wrote_any = true;
    co_return true;
  };
  // The service's answer, as it comes, to its end.
  auto pump = [&]() -> asio::awaitable<void> {
    std::string held;  // bytes before the final head is complete
    bool head_done = false;
    bool switched = false;  // 101: raw bytes until either side closes
    BodyFramer framer;
    // Body bytes to the client, as far as the framing says; past its end,
    // the service wrote what nobody asked for: the tunnel is not kept.
    auto body = [&](std::string_view data) -> asio::awaitable<bool> {
      if (switched) co_return co_await write(data);
      auto n = framer.Feed(data);
      if (!n.ok()) {
        keep_service = keep_client = false;
        co_return co_await write(data);
      }
      if (*n < data.size()) keep_service = false;
      std::string_view mine = data.substr(0, *n);
      if (framer.done() && framer.mode() != BodyFramer::Mode::kUntilClose) answer_ends();
      if (!mine.empty() && !co_await write(mine)) co_return false;
      co_return true;
    };
    for (;;) {
      auto f = co_await agent.ReadFrame();
      if (!f.ok()) {
        gateway_error = "the sandbox's agent: " + f.error().ToString();
        co_return;
      }
      if (f->type == proto::FrameType::kFileEnd) {
        if (!head_done) {
          gateway_error = held.empty() ? "the service closed the connection without an answer"
                                       : "the service closed the connection mid-answer";
        }
        keep_service = false;
        // Read to its close: the body's end (or the framing was short).
        if (head_done && framer.mode() == BodyFramer::Mode::kUntilClose) answered = true;
        co_return;
      }
      if (f->type != proto::FrameType::kStdout) {
        bool refused = false;
        gateway_error = AgentFailure(*f, &refused);
        co_return;
      }
      if (head_done) {
        if (!co_await body(f->payload)) co_return;
        if (answered) co_return;
        continue;
      }
      held += f->payload;
      for (;;) {
        auto h = ParseProxyResponseHead(held, head_request, client_keep);
        if (!h.ok()) {
          gateway_error = "the service's answer is not HTTP: " + h.error().ToString();
          co_return;
        }
        if (!*h) break;  // more to come
        const ProxyResponseHead& rh = **h;
        std::string out = rh.forwarded;
        // 101: the protocol switched (ParseProxyResponseHead passes it on
        // as it came, Upgrade and Connection included); raw bytes follow.
        const bool interim = rh.status < 200 && rh.status != 101;
        held.erase(0, rh.size);
        if (interim) {
          if (!co_await write(out)) co_return;
          continue;
        }
        head_done = true;
        switched = rh.status == 101;
        framer = BodyFramer(rh.mode, rh.length);
        keep_client = rh.keep_client && !switched;
        keep_service = rh.keep_service && !switched;
        // No body (and nothing after the head): the head is the answer's end.
        if (!switched && framer.done() && held.empty()) answer_ends();
        if (!co_await write(out)) co_return;
        break;
      }
      if (head_done) {
        std::string rest = std::move(held);
        if (!rest.empty() && !co_await body(rest)) co_return;
        if (framer.done() && !switched && !answered) answer_ends();
        if (answered) co_return;
      }
    }
  };
  // The request's body, piece by piece, then the client's hang-up.
  auto feed = [&]() -> asio::awaitable<void> {
    if (body_pending) {
      http::request_parser<http::buffer_body> p{std::move(parser)};
      p.body_limit(boost::none);
      std::vector<char> piece(kPiece);
      while (!p.is_done()) {
        p.get().body().data = piece.data();
        p.get().body().size = piece.size();
        error_code ec;
        s.expires_after(read_timeout);
        co_await http::async_read_some(s, buf, p, redirect_error(use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return;  // gone, timed out, or a malformed body: the exchange ends
        size_t n = piece.size() - p.get().body().size;
        if (n == 0) continue;
        std::string frame;
        if (chunked) {
          char size_line[24];
          std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
          frame.reserve(n + 32);
          frame += size_line;
          frame.append(piece.data(), n);
          frame += "\r\n";
        } else {
          frame.assign(piece.data(), n);
        }
        if (!(co_await agent.Send(proto::FrameType::kStdin, frame)).ok()) co_return;
      }
      const std::string last_chunk = "0\r\n\r\n";
      if (chunked && !(co_await agent.Send(proto::FrameType::kStdin, last_chunk)).ok()) co_return;
      body_done = true;
    }
    if (!upgrade) {
      // No C: a service may take the end of its input for the client's
      // hang-up (an HTTP server may cancel a streamed answer). The
      // request's own framing ends it. (Only a wait: bytes of the client's
      // next request stay where they are when the answer's end cancels it.)
      co_await ClientGone(s);
      co_return;
    }
    // An upgrade: whatever the client sends next is the new protocol's,
    // relayed as it comes (first what the head's read already buffered);
    // its EOF is the service's (C), and the service's close ends it all.
    if (buf.size() > 0) {
      std::string early(static_cast<const char*>(buf.data().data()), buf.size());
      buf.consume(buf.size());
      if (!(co_await agent.Send(proto::FrameType::kStdin, early)).ok()) co_return;
    }
    std::vector<char> piece(kPiece);
    for (;;) {
      error_code ec;
      s.expires_never();  // an idle WebSocket is no stalled request
      size_t n = co_await s.async_read_some(asio::buffer(piece), redirect_error(use_awaitable, ec));
      if (ec == asio::error::eof) {
        if (!(co_await agent.Send(proto::FrameType::kStdinClose, "")).ok()) co_return;
        break;
      }
      if (ec) co_return;
      const std::string_view data(piece.data(), n);
      if (!(co_await agent.Send(proto::FrameType::kStdin, data)).ok()) co_return;
    }
    asio::steady_timer forever(co_await asio::this_coro::executor,
                               asio::steady_timer::time_point::max());
    error_code ec;
    co_await forever.async_wait(redirect_error(use_awaitable, ec));
  };
  // The answer may end before the client's body is read (an early answer):
  // then feed is cancelled mid-read and the connection is not kept.
  co_await (pump() || feed());
  s.expires_never();
  const bool complete = answered && body_done && !gateway_error;
  if (put_back) {
    // Already in the pool (answer_ends): another exchange may be using it.
  } else if (complete && keep_service && reuse) {
    tunnels->Put(sandbox.id, port, std::move(kept));
  } else {
    agent.Close();
  }
  if (gateway_error && !wrote_any) {
    const std::string why = "port " + ports + ": " + *gateway_error;
    co_await bad_gateway(why);
    co_return false;
  }
  if (complete && keep_client) co_return true;
  if (!body_done) co_await LingeringClose(s);
  co_return false;
}

}  // namespace wb::daemon::e2b
