#include "daemon/http_server.h"

#include <sys/socket.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "base/log.h"
#include "daemon/e2b/front.h"
#include "daemon/http_live.h"
#include "daemon/http_mcp.h"
#include "daemon/http_respond.h"

namespace wb::daemon {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::redirect_error;
using asio::use_awaitable;
using boost::system::error_code;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;

namespace {

constexpr const char* kJson = "application/json";
constexpr const char* kNdjson = "application/x-ndjson";
// A client that stops reading its response for this long is dropped (and
// its command, if streaming, is killed): it cannot hold a run slot forever.

// Streams a run's output as NDJSON in a chunked response. The head goes out
// with the first chunk, so a run refused before any output (busy, bad
// image) still gets its own status code.
class HttpSink : public RunSink {
 public:
  HttpSink(beast::tcp_stream& s, unsigned version) : s_(s), version_(version) {}

  asio::awaitable<void> Chunk(bool is_stderr, std::string data) override {
    co_await WriteLine(HttpChunkJson(is_stderr, data));
  }

  asio::awaitable<void> WriteLine(std::string line) {
    if (failed_) co_return;
    error_code ec;
    if (!started_) {
      started_ = true;
      http::response<http::empty_body> res{http::status::ok, version_};
      res.set(http::field::content_type, kNdjson);
      res.set(http::field::cache_control, "no-store");
      res.chunked(true);
      http::response_serializer<http::empty_body> sr{res};
      s_.expires_after(kWriteTimeout);
      co_await http::async_write_header(s_, sr, redirect_error(use_awaitable, ec));
      s_.expires_never();
      if (ec) co_return Failed();
    }
    line += '\n';
    s_.expires_after(kWriteTimeout);
    co_await asio::async_write(s_, http::make_chunk(asio::buffer(line)),
                               redirect_error(use_awaitable, ec));
    s_.expires_never();
    if (ec) Failed();
  }

  asio::awaitable<bool> Finish(std::string final_line) {
    co_await WriteLine(std::move(final_line));
    if (failed_) co_return false;
    error_code ec;
    s_.expires_after(kWriteTimeout);
    co_await asio::async_write(s_, http::make_chunk_last(), redirect_error(use_awaitable, ec));
    s_.expires_never();
    co_return !ec;
  }

  // A readable socket during a run is either a hang-up (EOF) or a pipelined
  // request; only EOF or an error cancels the run.
  void WatchHangup(std::function<void()> on_gone) override {
    watch_ = std::make_shared<Watch>();
    watch_->on_gone = std::move(on_gone);
    auto w = watch_;
    int fd = s_.socket().native_handle();
    s_.socket().async_wait(tcp::socket::wait_read, [w, fd](error_code ec) {
      if (ec || !w->armed) return;
      char c;
      ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) w->Fire();
    });
  }
  void Disarm() override {
    if (!watch_) return;
    watch_->armed = false;
    error_code ignored;
    s_.socket().cancel(ignored);
  }

  bool started() const { return started_; }

 private:
  struct Watch {
    bool armed = true;
    std::function<void()> on_gone;
    void Fire() {
      if (!armed) return;
      armed = false;
      if (on_gone) on_gone();
    }
  };
  void Failed() {
    failed_ = true;
    if (watch_) watch_->Fire();  // the client is gone: cancel the command
  }

  beast::tcp_stream& s_;
  unsigned version_;
  bool started_ = false;
  bool failed_ = false;
  std::shared_ptr<Watch> watch_;
};

}  // namespace

struct HttpServer::Impl {
  Impl(asio::io_context& io, RunService& svc, LiveService* live, HttpOptions opts)
      : io(io), svc(svc), live(live), live_service(live), opts(std::move(opts)), acceptor(io) {}

  asio::awaitable<void> Accept() {
    for (;;) {
      error_code ec;
      tcp::socket s = co_await acceptor.async_accept(redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        spdlog::warn("http accept: {}", ec.message());
        continue;
      }
      s.set_option(tcp::no_delay(true), ec);
      if (*connections >= opts.max_connections) {
        asio::co_spawn(io, Refuse(std::move(s)), asio::detached);
        continue;
      }
      // Counted here, not when the session first runs: the next accept is
      // checked against it before then.
      ++*connections;
      asio::co_spawn(io, Session(std::move(s)), asio::detached);
    }
  }

  // A HEAD request gets the head GET would get, without the body.
  static asio::awaitable<void> Send(beast::tcp_stream& s, unsigned version, bool head,
                                    http::status status, std::string body, const char* type,
                                    bool keep, const HttpHeaders& extra = {}) {
    co_await SendStringResponse(s, version, head, status, std::move(body), type, keep, extra);
  }

  static asio::awaitable<void> SendError(
      beast::tcp_stream& s, unsigned version, bool head, http::status status,
      const std::string& msg, const char* kind, bool keep,
      const std::vector<std::pair<http::field, std::string>>& extra = {}) {
    co_await Send(s, version, head, status, HttpErrorJson(msg, kind), kJson, keep, extra);
  }

  // Over --http-max-connections: a 503 without reading anything, then close.
  asio::awaitable<void> Refuse(tcp::socket sock) {
    beast::tcp_stream stream(std::move(sock));
    ++requests;
    std::vector<std::pair<http::field, std::string>> extra;
    extra.emplace_back(http::field::retry_after, "1");
    co_await SendError(stream, 11, false, http::status::service_unavailable,
                       "too many connections (" + std::to_string(opts.max_connections) +
                           " open; --http-max-connections)",
                       "too_many_connections", false, extra);
    co_await LingeringClose(stream);
  }

  // Every request but /healthz passes here when its head has arrived, before
  // its body is read (docs/security.md): the browser defences, then the
  // token. Sends the refusal and returns false when the request may not go on.
  asio::awaitable<bool> AdmitHead(beast::tcp_stream& s, const Request& req, bool body_pending,
                                  const std::optional<e2b::Route>& e2b_route) {
    const unsigned v = req.version();
    const bool head = req.method() == http::verb::head;
    // Without the body read, the connection cannot serve another request.
    const bool keep = req.keep_alive() && !body_pending;
    http::status status = http::status::ok;
    std::string msg;
    const char* kind = "";
    std::vector<std::pair<http::field, std::string>> extra;
    if (auto why = BrowserRequestRefusal(HeaderValue(req, http::field::origin),
                                         HeaderValue(req, http::field::host), opts.addr.loopback)) {
      status = http::status::forbidden;
      msg = *why;
      kind = "forbidden";
    } else if (e2b_route) {
      // E2B's own credentials (docs/e2b.md): the API key, or the sandbox's
      // access token.
      auto refusal = e2b.Admit(req, *e2b_route);
      if (!refusal) co_return true;
      ++requests;
      co_await Send(s, v, head, static_cast<http::status>(refusal->status),
                    std::move(refusal->body), kJson, keep);
      if (!keep) co_await LingeringClose(s);
      co_return false;
    } else if (!Authorized(req)) {
      status = http::status::unauthorized;
      kind = "unauthorized";
      msg = "authentication required: send 'Authorization: Bearer TOKEN'";
      std::string challenge = R"(Bearer realm="warmbox")";
      if (HeaderValue(req, http::field::authorization)) {
        msg = "invalid bearer token";
        challenge = R"(Bearer realm="warmbox", error="invalid_token")";
      }
      extra.emplace_back(http::field::www_authenticate, std::move(challenge));
    } else {
      co_return true;
    }
    ++requests;
    co_await SendError(s, v, head, status, msg, kind, keep, extra);
    if (!keep) co_await LingeringClose(s);
    co_return false;
  }

  asio::awaitable<void> Session(tcp::socket sock) {
    // Shared with the server: a session frame destroyed after the server
    // (an io_context torn down later, with sessions pending) still counts down
    // a live counter.
    struct Count {
      std::shared_ptr<size_t> n;
      ~Count() { --*n; }
    } count{connections};
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(16 * 1024);
      // No cap while the head is read: a file upload (PUT
      // /v1/sandboxes/{id}/files) has its own, and streams its body. Every
      // other body has the socket's cap, checked below before it is read.
      parser.body_limit(boost::none);
      stream.expires_after(opts.request_timeout);
      error_code ec;
      // The head first: a client that sent "Expect: 100-continue" (curl does
      // for bodies over 1 MiB) waits for our go-ahead before the body. The
      // body limit is checked against Content-Length before it is sent.
      co_await http::async_read_header(stream, buf, parser, redirect_error(use_awaitable, ec));
      std::optional<e2b::Route> e2b_route;
      if (!ec && !IsHealthz(parser.get().target())) {
        stream.expires_never();
        auto route = e2b.Classify(parser.get());
        if (!route.ok()) {
          ++requests;
          std::string body = e2b::E2bErrorJson(400, route.error().ToString());
          co_await Send(stream, parser.get().version(), false, http::status::bad_request,
                        std::move(body), kJson, false);
          co_await LingeringClose(stream);
          co_return;
        }
        if (route->plane != e2b::Plane::kNone) e2b_route = *route;
        if (!co_await AdmitHead(stream, parser.get(), !parser.is_done(), e2b_route)) {
          if (!parser.is_done() || !parser.get().keep_alive()) co_return;
          continue;
        }
        if (e2b_route && e2b.Streams(parser.get(), *e2b_route)) {
          ++requests;
          if (!co_await e2b.ServeStreaming(stream, buf, parser, *e2b_route, opts.request_timeout)) {
            co_return;
          }
          continue;
        }
        if (HttpLive::IsUpload(parser.get())) {
          ++requests;
          if (!co_await live.Upload(stream, buf, parser, opts.request_timeout)) co_return;
          continue;
        }
        stream.expires_after(opts.request_timeout);
      }
      if (!ec && parser.content_length() && *parser.content_length() > proto::kMaxRequest) {
        ec = http::error::body_limit;
      }
      if (!ec) parser.body_limit(proto::kMaxRequest);
      if (!ec && !parser.is_done()) {
        auto expect = parser.get().find(http::field::expect);
        if (expect != parser.get().end() && beast::iequals(expect->value(), "100-continue")) {
          http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
          co_await http::async_write(stream, cont, redirect_error(use_awaitable, ec));
        }
        if (!ec) co_await http::async_read(stream, buf, parser, redirect_error(use_awaitable, ec));
      }
      stream.expires_never();
      if (ec == http::error::body_limit) {
        ++requests;
        svc.CountError(RunErrorKind::kBadRequest);
        co_await SendError(stream, 11, false, http::status::payload_too_large,
                           "request body exceeds " + std::to_string(proto::kMaxRequest) + " bytes",
                           "too_large", false);
        co_await LingeringClose(stream);
        co_return;
      }
      if (ec) {
        if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message) {
          ++requests;
          co_await SendError(stream, 11, false, http::status::bad_request,
                             "malformed HTTP request: " + ec.message(), "bad_request", false);
          co_await LingeringClose(stream);
        }
        co_return;  // EOF, timeout or reset
      }
      ++requests;
      Request req = parser.release();
      bool keep = false;
      if (e2b_route) {
        keep = co_await e2b.Serve(stream, req, *e2b_route);
      } else {
        keep = co_await Handle(stream, req);
      }
      if (!keep) {
        stream.socket().shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
    }
  }

  static std::optional<std::string_view> HeaderValue(const Request& req, http::field f) {
    auto it = req.find(f);
    if (it == req.end()) return std::nullopt;
    return std::string_view(it->value().data(), it->value().size());
  }

  static bool IsHealthz(beast::string_view target) {
    return target.substr(0, target.find('?')) == "/healthz";
  }

  bool Authorized(const Request& req) const {
    if (opts.token.empty()) return false;  // the daemon always sets one
    auto authorization = HeaderValue(req, http::field::authorization);
    if (!authorization) return false;
    auto tok = BearerToken(*authorization);
    return tok && TokenEquals(*tok, opts.token);
  }

  static asio::awaitable<bool> MethodNotAllowed(beast::tcp_stream& s, const Request& req,
                                                const std::string& target, const char* allow,
                                                bool keep) {
    std::vector<std::pair<http::field, std::string>> extra;
    extra.emplace_back(http::field::allow, allow);
    co_await SendError(s, req.version(), req.method() == http::verb::head,
                       http::status::method_not_allowed,
                       std::string(req.method_string()) + " " + target + ": use " + allow,
                       "method_not_allowed", keep, extra);
    co_return keep;
  }

  // Returns whether the connection may serve another request.
  asio::awaitable<bool> Handle(beast::tcp_stream& s, Request& req) {
    const unsigned v = req.version();
    const bool head = req.method() == http::verb::head;
    bool keep = req.keep_alive();
    std::string target(req.target());
    if (size_t q = target.find('?'); q != std::string::npos) target.resize(q);
    const bool get = req.method() == http::verb::get || head;

    // Health probes need no token (load balancers and kubelets rarely carry one).
    if (target == "/healthz") {
      if (!get) co_return co_await MethodNotAllowed(s, req, target, "GET", keep);
      // (No ?: on string literals in coroutines: GCC 12 miscompiles them.)
      std::string body = R"({"ok":true,"draining":false})";
      http::status status = http::status::ok;
      if (svc.draining()) {
        body = R"({"ok":false,"draining":true})";
        status = http::status::service_unavailable;
      }
      co_await Send(s, v, head, status, std::move(body), kJson, keep);
      co_return keep;
    }
    // The browser defences and the token were checked at the head (AdmitHead).
    if (target == "/metrics") {
      if (!get) co_return co_await MethodNotAllowed(s, req, target, "GET", keep);
      co_await Send(s, v, head, http::status::ok, svc.Metrics(),
                    "text/plain; version=0.0.4; charset=utf-8", keep);
      co_return keep;
    }
    if (target == "/v1/pools") {
      if (!get) co_return co_await MethodNotAllowed(s, req, target, "GET", keep);
      co_await Send(s, v, head, http::status::ok, svc.StatusJson(), kJson, keep);
      co_return keep;
    }
    if (target == "/v1/run") {
      if (req.method() != http::verb::post)
        co_return co_await MethodNotAllowed(s, req, target, "POST", keep);
      auto type = HeaderValue(req, http::field::content_type);
      if (!type || !IsJsonContentType(*type)) {
        svc.CountError(RunErrorKind::kBadRequest);
        co_await SendError(s, v, false, http::status::unsupported_media_type,
                           "POST /v1/run takes a JSON body: send 'Content-Type: application/json'",
                           "unsupported_media_type", keep);
        co_return keep;
      }
      co_return co_await HandleRun(s, req, keep);
    }
    if (IsLivePath(target)) co_return co_await live.Handle(s, req);
    if (target == "/mcp") co_return co_await mcp.Handle(s, req);
    co_await SendError(s, v, head, http::status::not_found, "no such endpoint: " + target,
                       "not_found", keep);
    co_return keep;
  }

  // A run's 200 answer, the head as Send's (Content-Length known from the
  // encoder), then the body piece by piece from the run's held (maybe
  // spilled) output: never built whole (issue 19, finding 10). False when
  // the client went away (or the spill file failed) mid-body: the
  // connection must close.
  static asio::awaitable<bool> SendRunResponse(beast::tcp_stream& s, unsigned version,
                                               const RunOutcome& out, bool keep) {
    ResponseEncoder enc(ResponseEncoder::Format::kHttp, out.resp, out.output.get());
    const std::optional<uint64_t> length = enc.size();  // named: GCC 12 and co_await
    if (!co_await SendHead(s, version, kJson, keep, length)) co_return false;
    error_code ec;
    std::string piece;
    for (;;) {
      auto more = enc.Next(piece);
      if (!more.ok()) {
        spdlog::warn("run response: {}", more.error().ToString());
        co_return false;
      }
      if (!*more) co_return true;
      s.expires_after(kWriteTimeout);
      co_await asio::async_write(s, asio::buffer(piece), redirect_error(use_awaitable, ec));
      s.expires_never();
      if (ec) co_return false;
    }
  }

  asio::awaitable<bool> HandleRun(beast::tcp_stream& s, Request& req, bool keep) {
    const unsigned v = req.version();
    auto run = ParseHttpRunRequest(req.body());
    if (!run.ok()) {
      svc.CountError(RunErrorKind::kBadRequest);
      co_await SendError(s, v, false, http::status::bad_request, run.error().ToString(),
                         "bad_request", keep);
      co_return keep;
    }
    auto accept = req.find(http::field::accept);
    run->stream = accept != req.end() && accept->value().find(kNdjson) != beast::string_view::npos;
    HttpSink sink(s, v);
    RunOutcome out = co_await svc.Run(std::move(*run), sink);
    if (out.kind == RunErrorKind::kClientGone) co_return false;
    if (sink.started()) {
      // Mid-stream failures end the stream with a final line carrying the error.
      co_return co_await sink.Finish(HttpRunResponseJson(out.resp)) && keep;
    }
    if (out.kind == RunErrorKind::kNone) {
      if (run->stream) {
        // No output at all: still an NDJSON stream, of one final line.
        co_return co_await sink.Finish(HttpRunResponseJson(out.resp)) && keep;
      }
      co_return co_await SendRunResponse(s, v, out, keep) && keep;
    }
    std::vector<std::pair<http::field, std::string>> extra;
    if (out.kind == RunErrorKind::kBusy) extra.emplace_back(http::field::retry_after, "1");
    co_await SendError(s, v, false, static_cast<http::status>(HttpStatusFor(out.kind)),
                       out.resp.error.value_or("error"), RunErrorKindName(out.kind), keep, extra);
    co_return keep;
  }

  asio::io_context& io;
  RunService& svc;
  HttpLive live;
  LiveService* live_service;
  HttpMcp mcp{live_service};
  HttpOptions opts;
  e2b::Front e2b{live_service, opts.token, opts.e2b_default_network};
  tcp::acceptor acceptor;
  uint64_t requests = 0;
  // Open sessions (Session), against opts.max_connections.
  std::shared_ptr<size_t> connections = std::make_shared<size_t>(0);
};

HttpServer::HttpServer(asio::io_context& io, RunService& service, LiveService* live,
                       HttpOptions opts)
    : impl_(std::make_unique<Impl>(io, service, live, std::move(opts))) {}
HttpServer::~HttpServer() = default;

Result<void> HttpServer::Open() {
  auto& a = impl_->acceptor;
  error_code ec;
  if (impl_->opts.listen_fd >= 0) {
    // An inherited socket (systemd): its family decides the protocol.
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(impl_->opts.listen_fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      return Errno("getsockname", "http listen fd");
    }
    a.assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), impl_->opts.listen_fd, ec);
    if (ec) return ErrnoValue(ec.value(), "assign", "http listen fd");
    // The Host check (AdmitHead) applies on loopback, wherever the address came from.
    auto local = a.local_endpoint(ec);
    impl_->opts.addr.loopback = !ec && local.address().is_loopback();
    return Ok();
  }
  const auto& addr = impl_->opts.addr;
  tcp::endpoint ep(asio::ip::make_address(addr.host, ec), addr.port);
  if (ec) return Fail("--http", addr.host, ec.message());
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(1024, ec);
  if (ec) {
    error_code ignored;
    a.close(ignored);
    return ErrnoValue(ec.value(), "bind", addr.host + ":" + std::to_string(addr.port));
  }
  return Ok();
}

void HttpServer::Start() { asio::co_spawn(impl_->io, impl_->Accept(), asio::detached); }

void HttpServer::Close() {
  error_code ec;
  impl_->acceptor.close(ec);
}

std::string HttpServer::local_address() const {
  error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  if (ec) return "?";
  std::string host = ep.address().to_string();
  if (ep.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(ep.port());
}

uint64_t HttpServer::requests() const { return impl_->requests; }

}  // namespace wb::daemon
