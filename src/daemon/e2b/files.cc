// envd's plain-HTTP endpoints (docs/e2b.md, "envd: files"): GET /files
// streams a file out of the agent's read, POST /files streams each file of
// the body (multipart/form-data or raw, either maybe gzip) into an agent
// write, GET /envs is the sandbox's env.
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <set>

#include "base/strings.h"
#include "daemon/e2b/envd.h"
#include "daemon/e2b/filesystem_internal.h"
#include "daemon/e2b/fs_messages.h"
#include "daemon/e2b/multipart.h"
#include "daemon/http_live.h"
#include "daemon/http_respond.h"

namespace wb::daemon::e2b {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;

namespace {

constexpr const char* kJson = "application/json";
// The pieces of a body as read, and of the agent's I frames.
constexpr size_t kPiece = 256 * 1024;
// Writes of one multipart upload left open (uncommitted) at once: a failed
// upload hangs them up, which removes the files they created. Beyond it the
// oldest is committed (docs/e2b.md).
constexpr size_t kMaxOpenWrites = 64;

using Query = std::vector<std::pair<std::string, std::string>>;

std::optional<std::string> Param(const Query& q, std::string_view key) {
  std::optional<std::string> v;
  for (const auto& [k, val] : q) {
    if (k == key) v = val;
  }
  return v;
}

std::string_view TargetPath(std::string_view target) { return target.substr(0, target.find('?')); }

Result<Query> TargetQuery(std::string_view target) {
  size_t q = target.find('?');
  return ParseQuery(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
}

std::string HeaderValue(const Request& req, http::field f) {
  auto it = req.find(f);
  return it == req.end() ? std::string() : std::string(it->value());
}

// (The error by value: callers pass temporaries, which GCC 12 mishandles as
// coroutine reference parameters.)
asio::awaitable<bool> SendEnvdError(beast::tcp_stream& s, unsigned version, bool keep, Error e) {
  const unsigned status = EnvdHttpStatus(e);
  co_await SendStringResponse(s, version, false, static_cast<http::status>(status),
                              EnvdHttpErrorJson(status, e.ToString()), kJson, keep);
  co_return keep&& s.socket().is_open();
}

// (Built outside the coroutines: GCC 12 miscompiles braced lists of string
// literals in a coroutine.)
HttpHeaders AllowHeader(const char* methods) {
  HttpHeaders h;
  h.emplace_back(http::field::allow, methods);
  return h;
}

Error Bad(const std::string& what, const std::string& why) {
  return Fail(ErrorCode::kInvalidArgument, "bad request", what, why);
}

// The user of a /files call: ?username= when given, else the call's.
std::string FilesUser(const Query& q, const EnvdCall& call) {
  auto u = Param(q, "username");
  return u && !u->empty() ? *u : call.user;
}

std::string FilePath(std::string_view p, std::string_view user) {
  std::string r = ResolvePath(p, user);
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r;
}

// GET /files: the agent's read, relayed chunk by chunk (never whole).
asio::awaitable<bool> Download(beast::tcp_stream& s, const Request& req, const EnvdCall& call) {
  const bool keep = req.keep_alive();
  std::string_view target(req.target().data(), req.target().size());
  auto query = TargetQuery(target);
  if (!query.ok()) co_return co_await SendEnvdError(s, req.version(), keep, query.error());
  auto path = Param(*query, "path");
  if (!path || path->empty()) {
    co_return co_await SendEnvdError(s, req.version(), keep,
                                     Bad("path", "missing (?path=/abs/path)"));
  }
  proto::FileRequest fr;
  fr.op = "read";
  fr.user = FilesUser(*query, call);
  fr.path = FilePath(*path, fr.user);
  auto op = co_await OpenAgentFileOp(call.live, call.sandbox.id, fr);
  if (!op.ok()) {
    Error e = op.error();
    // envd: a directory (or anything not a regular file) is 400.
    if (e.code == ErrorCode::kFailedPrecondition) e = e.WithCode(ErrorCode::kInvalidArgument);
    co_return co_await SendEnvdError(s, req.version(), keep, std::move(e));
  }
  pool::AgentConn& conn = *op->conn;
  const std::optional<uint64_t> chunked;  // named: GCC 12 and co_await
  if (!co_await SendHead(s, req.version(), "application/octet-stream", keep, chunked))
    co_return false;
  error_code ec;
  for (;;) {
    auto d = co_await conn.ReadFrame();
    // A read that fails mid-way ends without the last chunk: the client
    // sees the body cut, and the connection is closed.
    if (!d.ok()) co_return false;
    if (d->type == proto::FrameType::kStdout) {
      s.expires_after(kWriteTimeout);
      co_await asio::async_write(s, http::make_chunk(asio::buffer(d->payload)),
                                 redirect_error(use_awaitable, ec));
      s.expires_never();
      if (ec) co_return false;
      continue;
    }
    if (d->type != proto::FrameType::kFileEnd) co_return false;
    s.expires_after(kWriteTimeout);
    co_await asio::async_write(s, http::make_chunk_last(), redirect_error(use_awaitable, ec));
    s.expires_never();
    co_return !ec && keep;
  }
}

// Until the agent closes the connection (its frames dropped), at most
// kUndoWait.
constexpr std::chrono::seconds kUndoWait{5};
asio::awaitable<void> WaitClosed(pool::AgentConn& c) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer t(co_await asio::this_coro::executor, kUndoWait);
  auto drain = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto f = co_await c.ReadFrame();
      if (!f.ok()) co_return;
    }
  };
  auto timeout = [&]() -> asio::awaitable<void> {
    error_code ec;
    co_await t.async_wait(redirect_error(use_awaitable, ec));
  };
  co_await (drain() || timeout());
  c.Close();
}

// One file of an upload: its agent write, open until committed.
struct PendingWrite {
  std::unique_ptr<pool::AgentConn> conn;
  std::string path;
  bool failed = false;  // a send failed: the agent's answer (e) says why
};

// POST /files, from the head on.
struct Upload {
  beast::tcp_stream& s;
  beast::flat_buffer& buf;
  const EnvdCall& call;
  std::string user;
  std::optional<std::string> query_path;
  std::optional<MultipartParser> multipart;
  std::optional<GzipInflater> gzip;
  std::deque<PendingWrite> open;  // uncommitted, oldest first
  std::optional<PendingWrite> raw;
  PendingWrite* current = nullptr;  // the part being written (nullptr: skipped)
  std::set<std::string> paths;
  std::vector<WrittenFile> written;
  size_t file_parts = 0;

  // An agent write of path, its L sent.
  asio::awaitable<Result<PendingWrite>> OpenWrite(const std::string& path) {
    proto::FileRequest fr;
    fr.op = "write";
    fr.path = path;
    fr.user = user;
    auto conn = co_await call.live.Connect(call.sandbox.id);
    if (!conn.ok()) co_return conn.error();
    const std::string payload = proto::ToJson(fr);
    auto sent = co_await (*conn)->Send(proto::FrameType::kFile, payload);
    if (!sent.ok()) co_return sent.error().WithCode(ErrorCode::kUnavailable);
    co_return PendingWrite{std::move(*conn), path, false};
  }

  // Bytes of the current file, as I frames.
  asio::awaitable<void> Write(PendingWrite& w, std::string_view data) {
    if (w.failed) co_return;  // the rest is dropped: the commit reports why
    for (size_t at = 0; at < data.size(); at += kPiece) {
      std::string_view piece = data.substr(at, kPiece);
      auto sent = co_await w.conn->Send(proto::FrameType::kStdin, piece);
      if (!sent.ok()) {
        w.failed = true;
        co_return;
      }
    }
  }

  // C, then the agent's l (the file is complete) or e.
  asio::awaitable<Result<void>> Commit(PendingWrite& w) {
    if (!w.failed) {
      auto sent = co_await w.conn->Send(proto::FrameType::kStdinClose, "");
      if (!sent.ok()) w.failed = true;
    }
    auto f = co_await w.conn->ReadFrame();
    w.conn->Close();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable).Wrap("write " + w.path);
    if (f->type != proto::FrameType::kFileReply) {
      Error e = AgentError(*f, "write");
      // envd: a directory at the path is 400.
      if (e.code == ErrorCode::kFailedPrecondition) e = e.WithCode(ErrorCode::kInvalidArgument);
      co_return e;
    }
    written.push_back(WrittenFile{BaseName(w.path), w.path});
    co_return Ok();
  }

  // The decoded body's next bytes.
  asio::awaitable<Result<void>> Consume(std::string_view data) {
    if (raw) {
      co_await Write(*raw, data);
      co_return Ok();
    }
    std::vector<MultipartParser::Event> events;
    auto fed = multipart->Feed(data, events);
    if (!fed.ok()) co_return fed.error();
    for (auto& ev : events) {
      if (ev.kind == MultipartParser::Event::kBegin) {
        current = nullptr;
        // As envd: only the parts named "file" are files.
        if (ev.part.name != "file") continue;
        ++file_parts;
        std::string p = query_path ? *query_path : ev.part.filename.value_or("");
        if (p.empty()) {
          co_return Bad("file", "part " + std::to_string(multipart->parts()) +
                                    " has no filename and no ?path= was given");
        }
        std::string path = FilePath(p, user);
        if (!paths.insert(path).second) {
          co_return Bad("path", "two files of one upload go to " + path);
        }
        auto w = co_await OpenWrite(path);
        if (!w.ok()) co_return w.error();
        open.push_back(std::move(*w));
        current = &open.back();
        continue;
      }
      if (ev.kind == MultipartParser::Event::kData) {
        if (current) co_await Write(*current, ev.data);
        continue;
      }
      // kEnd: the file is complete; commit the oldest when too many wait.
      current = nullptr;
      while (open.size() > kMaxOpenWrites) {
        auto r = co_await Commit(open.front());
        open.pop_front();
        if (!r.ok()) co_return r.error();
      }
    }
    co_return Ok();
  }

  asio::awaitable<Result<void>> ConsumeRaw(std::string_view piece) {
    if (!gzip) co_return co_await Consume(piece);
    gzip->SetInput(piece);
    for (;;) {
      auto out = gzip->Next();
      if (!out.ok()) co_return out.error();
      if (out->empty()) co_return Ok();
      auto r = co_await Consume(*out);
      if (!r.ok()) co_return r.error();
    }
  }

  // After the last byte: every file committed, in order.
  asio::awaitable<Result<void>> Finish() {
    if (gzip) {
      auto g = gzip->Finish();
      if (!g.ok()) co_return g.error();
    }
    if (multipart) {
      auto m = multipart->Finish();
      if (!m.ok()) co_return m.error();
      if (file_parts == 0) co_return Bad("file", "the multipart body has no part named 'file'");
    }
    if (raw) {
      auto r = co_await Commit(*raw);
      raw.reset();
      if (!r.ok()) co_return r.error();
    }
    while (!open.empty()) {
      auto r = co_await Commit(open.front());
      open.pop_front();
      if (!r.ok()) co_return r.error();
    }
    co_return Ok();
  }

  // A failed upload: every open write is hung up, which undoes it. The
  // agent closes its end once it has (docs/protocol.md, "Files (L)"):
  // waiting for that (bounded) means the answer goes out with nothing left.
  asio::awaitable<void> Abandon() {
    std::vector<std::unique_ptr<pool::AgentConn>> conns;
    if (raw) conns.push_back(std::move(raw->conn));
    for (auto& w : open) conns.push_back(std::move(w.conn));
    raw.reset();
    open.clear();
    current = nullptr;
    for (auto& c : conns) {
      error_code ec;
      c->socket().shutdown(asio::socket_base::shutdown_send, ec);
    }
    for (auto& c : conns) co_await WaitClosed(*c);
  }
};

}  // namespace

bool IsEnvdUpload(const Request& head) {
  std::string_view target(head.target().data(), head.target().size());
  return head.method() == http::verb::post && TargetPath(target) == "/files";
}

asio::awaitable<bool> ServeEnvdHttp(beast::tcp_stream& s, const Request& req, std::string_view path,
                                    const EnvdCall& call) {
  const bool keep = req.keep_alive();
  std::string_view p = TargetPath(path);
  if (p != "/files" && p != "/envs") {
    const Error e = Fail(ErrorCode::kNotFound, "envd", std::string(p), "no such endpoint");
    co_return co_await SendEnvdError(s, req.version(), keep, e);
  }
  if (req.method() != http::verb::get) {
    const std::string message =
        std::string(req.method_string()) + " " + std::string(p) +
        (p == "/files" ? ": use GET (download) or POST (upload)" : ": use GET");
    const HttpHeaders extra = AllowHeader(p == "/files" ? "GET, POST" : "GET");
    co_await SendStringResponse(s, req.version(), false, http::status::method_not_allowed,
                                EnvdHttpErrorJson(405, message), kJson, keep, extra);
    co_return keep;
  }
  if (p == "/envs") {
    co_await SendStringResponse(s, req.version(), false, http::status::ok,
                                EnvsJson(call.sandbox.env), kJson, keep);
    co_return keep&& s.socket().is_open();
  }
  co_return co_await Download(s, req, call);
}

asio::awaitable<bool> UploadFiles(beast::tcp_stream& s, beast::flat_buffer& buf, Parser& parser,
                                  const EnvdCall& call, std::chrono::milliseconds read_timeout) {
  Request& head = parser.get();
  const unsigned v = head.version();
  const bool body_pending = !parser.is_done();
  // Refused before the body is read: answered, then the connection closes
  // without keeping what the client still sends.
  auto refuse = [&](Error e) -> asio::awaitable<bool> {
    const bool keep = !body_pending && head.keep_alive();
    co_await SendEnvdError(s, v, keep, e);
    if (!keep) {
      co_await LingeringClose(s);
      co_return false;
    }
    co_return true;
  };
  std::string_view target(head.target().data(), head.target().size());
  auto query = TargetQuery(target);
  if (!query.ok()) co_return co_await refuse(query.error());
  Upload up{s, buf, call, FilesUser(*query, call), Param(*query, "path")};
  if (up.query_path && up.query_path->empty()) up.query_path.reset();

  const std::string type = HeaderValue(head, http::field::content_type);
  const std::string media = AsciiLower(Trim(std::string_view(type).substr(0, type.find(';'))));
  if (media == "application/octet-stream") {
    if (!up.query_path) {
      co_return co_await refuse(
          Bad("path", "an application/octet-stream upload needs ?path= (the file's path)"));
    }
  } else if (StartsWith(media, "multipart/")) {
    auto boundary = MultipartBoundary(type);
    if (!boundary.ok()) co_return co_await refuse(boundary.error());
    up.multipart.emplace(std::move(*boundary));
  } else {
    co_return co_await refuse(Bad("Content-Type",
                                  "expected multipart/form-data or "
                                  "application/octet-stream, got '" +
                                      type + "'"));
  }
  const std::string encoding = AsciiLower(Trim(HeaderValue(head, http::field::content_encoding)));
  if (encoding == "gzip" || encoding == "x-gzip") {
    up.gzip.emplace();
  } else if (!encoding.empty() && encoding != "identity") {
    co_return co_await refuse(
        Bad("Content-Encoding", "only gzip is taken, got '" + encoding + "'"));
  }
  if (!up.multipart) {
    const std::string path = FilePath(*up.query_path, up.user);
    auto w = co_await up.OpenWrite(path);
    if (!w.ok()) co_return co_await refuse(w.error());
    up.raw.emplace(std::move(*w));
  }
  error_code ec;
  if (body_pending) {
    auto expect = head.find(http::field::expect);
    if (expect != head.end() && beast::iequals(expect->value(), "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, v};
      s.expires_after(kWriteTimeout);
      co_await http::async_write(s, cont, redirect_error(use_awaitable, ec));
      s.expires_never();
      if (ec) {
        co_await up.Abandon();
        co_return false;
      }
    }
  }
  // The body in pieces, each decoded and sent on as it arrives: a slow
  // agent slows the client (TCP backpressure); nothing is held but a piece.
  http::request_parser<http::buffer_body> p{std::move(parser)};
  p.body_limit(boost::none);
  std::vector<char> piece(kPiece);
  std::optional<Error> failed;
  while (!p.is_done()) {
    p.get().body().data = piece.data();
    p.get().body().size = piece.size();
    s.expires_after(read_timeout);
    co_await http::async_read_some(s, buf, p, redirect_error(use_awaitable, ec));
    s.expires_never();
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      co_await up.Abandon();  // the client went away (or timed out): nothing to answer
      co_return false;
    }
    size_t n = piece.size() - p.get().body().size;
    if (n == 0) continue;
    auto r = co_await up.ConsumeRaw(std::string_view(piece.data(), n));
    if (!r.ok()) {
      failed = r.error();
      break;
    }
  }
  if (!failed) {
    auto r = co_await up.Finish();
    if (!r.ok()) failed = r.error();
  }
  const bool body_done = p.is_done();
  const bool keep = body_done && p.get().keep_alive();
  if (failed) {
    co_await up.Abandon();
    co_await SendEnvdError(s, v, keep, *failed);
  } else {
    co_await SendStringResponse(s, v, false, http::status::ok, UploadResultJson(up.written), kJson,
                                keep);
  }
  if (!keep) {
    if (!body_done) co_await LingeringClose(s);
    co_return false;
  }
  co_return s.socket().is_open();
}

}  // namespace wb::daemon::e2b
