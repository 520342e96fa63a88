// The port proxy (port_proxy.h): the pure head rewriting, then ProxyToPort
// on real HTTP connections (tests/port_proxy_harness.h), over a LiveService
// whose Connect reaches a real warmbox-agent spawned as a plain process (it
// shares the test's network namespace, so a service the test runs on
// 127.0.0.1 is "in the sandbox").
#include "daemon/e2b/port_proxy.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/live_test_util.h"
#include "tests/assert_ok.h"
#include "tests/port_proxy_harness.h"

namespace wb::daemon::e2b {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using tcp = asio::ip::tcp;

// --- pure parts -------------------------------------------------------------------

Request Head(const std::string& raw) {
  Parser p;
  p.eager(false);
  boost::system::error_code ec;
  p.put(asio::buffer(raw), ec);
  EXPECT_FALSE(ec) << ec.message();
  return p.release();
}

TEST(ProxyHeadTest, RequestHeadDropsHopByHopAndClosesAfterOne) {
  std::string h = ProxyRequestHead(
      Head("POST /execute?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: keep-alive, X-Hop\r\n"
           "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\nUpgrade: h2c\r\n"
           "E2b-Sandbox-Id: abc\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"));
  EXPECT_EQ(h,
            "POST /execute?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nE2b-Sandbox-Id: abc\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
  // A chunked body is re-chunked: the encoding is said again, once.
  std::string c =
      ProxyRequestHead(Head("PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_EQ(
      c, "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(ProxyRequestHead(Head("GET / HTTP/1.0\r\n\r\n")),
            "GET / HTTP/1.0\r\nConnection: close\r\n\r\n");
  // A protocol switch keeps its Upgrade.
  auto ws = Head(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: "
      "websocket\r\n\r\n");
  EXPECT_TRUE(IsUpgradeRequest(ws));
  EXPECT_EQ(ProxyRequestHead(ws),
            "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  EXPECT_FALSE(IsUpgradeRequest(Head("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n")));
  // A kept tunnel: HTTP/1.1's default, no Connection header at all.
  EXPECT_EQ(
      ProxyRequestHead(Head("GET /h HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"), true),
      "GET /h HTTP/1.1\r\nHost: h\r\n\r\n");
}

// The bytes of a body fed one split at a time: the end is found at every cut.
size_t FeedSplit(BodyFramer f, const std::string& bytes, size_t cut) {
  auto a = f.Feed(std::string_view(bytes).substr(0, cut));
  EXPECT_OK(a);
  if (!a.ok()) return 0;
  if (f.done()) return *a;
  auto b = f.Feed(std::string_view(bytes).substr(cut));
  EXPECT_OK(b);
  return b.ok() ? *a + *b : 0;
}

TEST(BodyFramerTest, FindsTheEndOfEachFraming) {
  const std::string chunked =
      "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
  const std::string next = "HTTP/1.1 200 OK\r\n";  // what follows is not the body's
  for (size_t cut = 0; cut <= chunked.size(); ++cut) {
    SCOPED_TRACE(cut);
    BodyFramer f(BodyFramer::Mode::kChunked);
    EXPECT_EQ(FeedSplit(f, chunked + next, cut), chunked.size());
  }
  BodyFramer one(BodyFramer::Mode::kChunked);
  ASSERT_OK(one.Feed("0\r\n"));
  EXPECT_FALSE(one.done());
  auto end = one.Feed("\r\nrest");
  ASSERT_OK(end);
  EXPECT_EQ(*end, 2u);
  EXPECT_TRUE(one.done());

  BodyFramer length(BodyFramer::Mode::kLength, 5);
  auto a = length.Feed("hel");
  ASSERT_OK(a);
  EXPECT_EQ(*a, 3u);
  EXPECT_FALSE(length.done());
  auto b = length.Feed("loXX");
  ASSERT_OK(b);
  EXPECT_EQ(*b, 2u);
  EXPECT_TRUE(length.done());
  EXPECT_TRUE(BodyFramer(BodyFramer::Mode::kLength, 0).done());
  EXPECT_TRUE(BodyFramer(BodyFramer::Mode::kNone).done());

  BodyFramer until(BodyFramer::Mode::kUntilClose);
  auto u = until.Feed("anything");
  ASSERT_OK(u);
  EXPECT_EQ(*u, 8u);
  EXPECT_FALSE(until.done());

  for (const char* bad : {"zz\r\n", "5\r\nhelloXY", "\r\n"}) {
    BodyFramer f(BodyFramer::Mode::kChunked);
    auto r = f.Feed(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument);
  }
}

TEST(ProxyHeadTest, ResponseHeadIsCompletedThenRewritten) {
  const std::string raw =
      "HTTP/1.1 200 Fine\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n"
      "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n5\r\nhello\r\n";
  for (size_t cut : {0ul, 10ul, raw.find("\r\n\r\n") + 3}) {
    auto partial = ParseProxyResponseHead(std::string_view(raw).substr(0, cut));
    ASSERT_OK(partial);
    EXPECT_FALSE(*partial) << cut;
  }
  auto h = ParseProxyResponseHead(raw);
  ASSERT_OK(h);
  ASSERT_TRUE(*h);
  EXPECT_EQ((*h)->status, 200u);
  EXPECT_EQ((*h)->size, raw.find("\r\n\r\n") + 4);
  EXPECT_EQ((*h)->forwarded,
            "HTTP/1.1 200 Fine\r\nContent-Type: application/x-ndjson\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
  EXPECT_EQ((*h)->mode, BodyFramer::Mode::kChunked);
  EXPECT_TRUE((*h)->keep_service);
  EXPECT_FALSE((*h)->keep_client);
  // The client keeps its connection when it asked to and the body is delimited.
  auto kept = ParseProxyResponseHead(raw, false, true);
  ASSERT_OK(kept);
  ASSERT_TRUE(*kept);
  EXPECT_TRUE((*kept)->keep_client);
  EXPECT_EQ((*kept)->forwarded,
            "HTTP/1.1 200 Fine\r\nContent-Type: application/x-ndjson\r\n"
            "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n");
  struct Case {
    std::string raw;
    bool head_request;
    BodyFramer::Mode mode;
    uint64_t length;
    bool keep_service, keep_client;
  };
  for (const Case& c : std::vector<Case>{
           {"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", false, BodyFramer::Mode::kLength, 7,
            true, true},
           {"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true, BodyFramer::Mode::kNone, 0, true,
            true},
           {"HTTP/1.1 204 No Content\r\n\r\n", false, BodyFramer::Mode::kNone, 0, true, true},
           {"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\n", false,
            BodyFramer::Mode::kLength, 7, false, true},
           {"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\n", false, BodyFramer::Mode::kLength, 7,
            false, true},
           {"HTTP/1.1 200 OK\r\n\r\n", false, BodyFramer::Mode::kUntilClose, 0, false, false},
       }) {
    SCOPED_TRACE(c.raw);
    auto r = ParseProxyResponseHead(c.raw, c.head_request, true);
    ASSERT_OK(r);
    ASSERT_TRUE(*r);
    EXPECT_EQ((*r)->mode, c.mode);
    EXPECT_EQ((*r)->length, c.length);
    EXPECT_EQ((*r)->keep_service, c.keep_service);
    EXPECT_EQ((*r)->keep_client, c.keep_client);
  }
  // An interim answer goes on as it came; the final one follows it.
  auto cont = ParseProxyResponseHead("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n");
  ASSERT_OK(cont);
  ASSERT_TRUE(*cont);
  EXPECT_EQ((*cont)->status, 100u);
  EXPECT_EQ((*cont)->forwarded, "HTTP/1.1 100 Continue\r\n\r\n");

  auto bad = ParseProxyResponseHead("SSH-2.0-OpenSSH_9.2\r\n\r\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  auto huge = ParseProxyResponseHead("HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'a'));
  EXPECT_FALSE(huge.ok());
}

TEST(ProxyHeadTest, ErrorJson) {
  auto j = json::parse(PortErrorJson("sb1", 3000, "nothing on port 3000"));
  EXPECT_EQ(j["code"], 502);
  EXPECT_EQ(j["message"], "nothing on port 3000");
  EXPECT_EQ(j["sandboxId"], "sb1");
  EXPECT_EQ(j["port"], 3000);
}

// --- over a real agent ------------------------------------------------------------

constexpr const char* kId = "0123456789abcdef0123456789abcdef";

// A request as the service received it (beast's blocking parser on the fd).
struct Received {
  std::string head;  // the raw head
  std::string body;
  bool ok = false;
};
Received ReadRequest(int fd) {
  Received r;
  asio::io_context io;
  tcp::socket sock(io);
  boost::system::error_code ec;
  sock.assign(tcp::v4(), ::dup(fd), ec);
  if (ec) return r;
  beast::flat_buffer buf;
  http::request_parser<http::string_body> p;
  p.body_limit(boost::none);
  // The raw head first (the parser consumes what it parses), then the
  // parser over the same bytes.
  for (;;) {
    std::string_view all(static_cast<const char*>(buf.data().data()), buf.size());
    if (size_t end = all.find("\r\n\r\n"); end != std::string_view::npos) {
      r.head = std::string(all.substr(0, end + 4));
      break;
    }
    size_t n = sock.read_some(buf.prepare(65536), ec);
    if (ec) return r;
    buf.commit(n);
  }
  http::read(sock, buf, p, ec);
  if (ec) return r;
  r.body = p.get().body();
  r.ok = true;
  return r;
}

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

class PortProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The services' writes to a closed tunnel must fail (EPIPE), not kill us.
    ::signal(SIGPIPE, SIG_IGN);
    ASSERT_TRUE(agent_.Start());
    live_ = std::make_unique<wb::testing::SocketLive>(kId, agent_.sock());
    proxy_ = std::make_unique<wb::testing::ProxyServer>(*live_, kId);
  }
  void TearDown() override { proxy_.reset(); }

  // A client connection to the proxy.
  struct Client {
    asio::io_context io;
    beast::tcp_stream s{io};
    beast::flat_buffer buf;
  };
  std::unique_ptr<Client> Connect() {
    auto c = std::make_unique<Client>();
    c->s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), proxy_->port()));
    c->s.expires_after(std::chrono::seconds(60));
    return c;
  }
  template <class Body>
  http::request<Body> Req(http::verb v, uint16_t target, const std::string& path = "/") {
    http::request<Body> r{v, path, 11};
    r.set(http::field::host, "127.0.0.1");
    r.set("X-Port", std::to_string(target));
    r.set("E2b-Sandbox-Id", kId);
    return r;
  }
  bool Done(int n) { return proxy_->Done(n); }
  // Waits (bounded) until the pool holds n idle tunnels.
  bool Idle(size_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (proxy_->idle() != n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }

  live_test::TestAgent agent_;
  std::unique_ptr<wb::testing::SocketLive> live_;
  std::unique_ptr<wb::testing::ProxyServer> proxy_;
};

TEST_F(PortProxyTest, RelaysARequestAndItsAnswer) {
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  Received got;
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    got = ReadRequest(c.get());
    (void)WriteAll(c.get(),
                   "HTTP/1.1 201 Made\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
                   "Keep-Alive: timeout=5\r\nX-Service: yes\r\n\r\nhello");
  });
  auto c = Connect();
  auto req = Req<http::string_body>(http::verb::post, l.port(), "/run?x=1");
  req.set(http::field::connection, "keep-alive, X-Hop");
  req.set("X-Hop", "1");
  req.set("X-Custom", "kept");
  req.body() = "{\"a\":1}";
  req.prepare_payload();
  http::write(c->s, req);
  http::response<http::string_body> res;
  http::read(c->s, c->buf, res);
  service.join();
  ASSERT_TRUE(got.ok);
  EXPECT_EQ(got.head.rfind("POST /run?x=1 HTTP/1.1\r\n", 0), 0u) << got.head;
  EXPECT_NE(got.head.find("X-Custom: kept\r\n"), std::string::npos) << got.head;
  // HTTP/1.1 to the service: the tunnel may be kept, nothing says close.
  EXPECT_EQ(got.head.find("Connection"), std::string::npos) << got.head;
  EXPECT_EQ(got.head.find("X-Hop"), std::string::npos) << got.head;
  EXPECT_EQ(got.head.find("keep-alive"), std::string::npos) << got.head;
  EXPECT_EQ(got.body, "{\"a\":1}");
  EXPECT_EQ(res.result_int(), 201u);
  EXPECT_EQ(res.reason(), "Made");
  EXPECT_EQ(res.body(), "hello");
  EXPECT_EQ(res["X-Service"], "yes");
  EXPECT_EQ(res[http::field::connection], "keep-alive");
  EXPECT_EQ(res.count(http::field::keep_alive), 0u);
  // The service closed its connection: the kept tunnel is dropped.
  EXPECT_TRUE(Idle(0));
  c.reset();
  EXPECT_TRUE(Done(1));
  EXPECT_EQ(proxy_->kept(), 1);
}

std::string HexSize(size_t n) {
  char b[24];
  std::snprintf(b, sizeof b, "%zx", n);
  return b;
}

// A service that answers every request on its one connection (Content-Length
// first, then chunked, alternately) until it is closed; the heads it got.
struct KeepAliveService {
  live_test::TcpListener l;
  std::vector<std::string> heads;
  std::atomic<int> accepted{0};
  std::thread t;
  void Start() {
    t = std::thread([this] {
      UniqueFd c = l.Accept();
      if (!c) return;
      ++accepted;
      for (int i = 0;; ++i) {
        Received got = ReadRequest(c.get());
        if (!got.ok) return;
        heads.push_back(got.head);
        const std::string answer =
            i % 2 == 0 ? "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(got.body.size()) +
                             "\r\n\r\n" + got.body
                       : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                             HexSize(got.body.size()) + "\r\n" + got.body + "\r\n0\r\n\r\n";
        if (!WriteAll(c.get(), answer).ok()) return;
      }
    });
  }
  ~KeepAliveService() {
    if (t.joinable()) t.join();
  }
};

TEST_F(PortProxyTest, ExchangesOnOneConnectionShareOneTunnelUntilTheSandboxGoes) {
  KeepAliveService svc;
  ASSERT_TRUE(svc.l.ok());
  svc.Start();
  const PortTunnelStats before = PortTunnelCounters();
  auto c = Connect();
  for (int i = 0; i < 4; ++i) {
    auto req = Req<http::string_body>(http::verb::post, svc.l.port(), "/execute");
    req.body() = "{\"n\":" + std::to_string(i) + "}";
    req.prepare_payload();
    http::write(c->s, req);
    http::response<http::string_body> res;
    http::read(c->s, c->buf, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body(), req.body());
    EXPECT_EQ(res[http::field::connection], "keep-alive");
  }
  const PortTunnelStats after = PortTunnelCounters();
  EXPECT_EQ(after.opened - before.opened, 1u);
  EXPECT_EQ(after.reused - before.reused, 3u);
  EXPECT_EQ(proxy_->idle(), 1u);
  EXPECT_EQ(proxy_->kept(), 4);
  EXPECT_EQ(svc.accepted.load(), 1);
  // The sandbox goes away: the idle tunnel is closed (the service sees its
  // connection end), and a request after it is a 502 that closes.
  ASSERT_EQ(::kill(agent_.pid(), SIGKILL), 0);
  EXPECT_TRUE(Idle(0));
  svc.t.join();
  EXPECT_EQ(svc.heads.size(), 4u);
  auto req = Req<http::empty_body>(http::verb::get, svc.l.port(), "/after");
  http::write(c->s, req);
  http::response<http::string_body> res;
  http::read(c->s, c->buf, res);
  EXPECT_EQ(res.result_int(), 502u);
  EXPECT_TRUE(Done(1));
}

TEST_F(PortProxyTest, AKilledSandboxClosesAConnectionMidAnswer) {
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  UniqueFd go_r(go[0]), go_w(go[1]);
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    (void)ReadRequest(c.get());
    (void)WriteAll(c.get(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n");
    char b;  // until the test is done
    pollfd p{go_r.get(), POLLIN, 0};
    (void)::poll(&p, 1, 20000);
    (void)::read(go_r.get(), &b, 1);
  });
  auto c = Connect();
  auto req = Req<http::empty_body>(http::verb::get, l.port(), "/stream");
  http::write(c->s, req);
  http::response_parser<http::string_body> res;
  http::read_header(c->s, c->buf, res);
  while (res.get().body().empty()) {
    boost::system::error_code ec;
    http::read_some(c->s, c->buf, res, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  ASSERT_EQ(::kill(agent_.pid(), SIGKILL), 0);
  boost::system::error_code ec;
  http::read(c->s, c->buf, res, ec);
  EXPECT_EQ(ec, http::error::partial_message) << ec.message();
  EXPECT_TRUE(Done(1));
  EXPECT_EQ(proxy_->idle(), 0u);
  ASSERT_EQ(::write(go_w.get(), "x", 1), 1);
  service.join();
}

TEST_F(PortProxyTest, AnIdleTunnelIsClosedAfterItsTimeout) {
  wb::testing::ProxyServer proxy(*live_, kId, std::chrono::milliseconds(200));
  KeepAliveService svc;
  ASSERT_TRUE(svc.l.ok());
  svc.Start();
  {
    Client c;
    c.s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), proxy.port()));
    auto req = Req<http::string_body>(http::verb::post, svc.l.port(), "/x");
    req.body() = "1";
    req.prepare_payload();
    http::write(c.s, req);
    http::response<http::string_body> res;
    http::read(c.s, c.buf, res);
    EXPECT_EQ(res.body(), "1");
  }
  // The service sees its connection closed once the tunnel has been idle
  // for 200 ms (its thread ends).
  svc.t.join();
  EXPECT_EQ(svc.heads.size(), 1u);
  EXPECT_TRUE(proxy.Done(1));
  EXPECT_EQ(proxy.idle(), 0u);
}

TEST_F(PortProxyTest, AnAnswerEndingWithItsConnectionClosesTheClients) {
  for (const char* answer :
       {"HTTP/1.1 200 OK\r\n\r\nuntil close", "HTTP/1.0 200 OK\r\n\r\nuntil close"}) {
    SCOPED_TRACE(answer);
    live_test::TcpListener l;
    ASSERT_TRUE(l.ok());
    std::thread service([&] {
      UniqueFd c = l.Accept();
      if (!c) return;
      (void)ReadRequest(c.get());
      (void)WriteAll(c.get(), answer);
    });
    auto c = Connect();
    auto req = Req<http::empty_body>(http::verb::get, l.port());
    http::write(c->s, req);
    http::response<http::string_body> res;
    http::read(c->s, c->buf, res);
    service.join();
    EXPECT_EQ(res.body(), "until close");
    EXPECT_EQ(res[http::field::connection], "close");
    boost::system::error_code ec;
    char b;
    c->s.socket().read_some(asio::buffer(&b, 1), ec);
    EXPECT_EQ(ec, asio::error::eof);
  }
  EXPECT_TRUE(Done(2));
  EXPECT_EQ(proxy_->idle(), 0u);
  EXPECT_EQ(proxy_->kept(), 0);
}

TEST_F(PortProxyTest, NothingListeningIs502) {
  live_test::TcpListener bound(false, /*listen=*/false);
  ASSERT_TRUE(bound.ok());
  auto c = Connect();
  auto req = Req<http::empty_body>(http::verb::get, bound.port());
  http::write(c->s, req);
  http::response<http::string_body> res;
  http::read(c->s, c->buf, res);
  EXPECT_EQ(res.result_int(), 502u);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  auto j = json::parse(res.body());
  EXPECT_EQ(j["code"], 502);
  EXPECT_EQ(j["port"], bound.port());
  EXPECT_NE(j["message"].get<std::string>().find("port " + std::to_string(bound.port())),
            std::string::npos)
      << res.body();
  EXPECT_TRUE(Done(1));
}

TEST_F(PortProxyTest, ANonHttpAnswerIs502) {
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (c) (void)WriteAll(c.get(), "SSH-2.0-OpenSSH_9.2\r\n\r\n");
  });
  auto c = Connect();
  auto req = Req<http::empty_body>(http::verb::get, l.port());
  http::write(c->s, req);
  http::response<http::string_body> res;
  http::read(c->s, c->buf, res);
  service.join();
  EXPECT_EQ(res.result_int(), 502u);
  EXPECT_NE(res.body().find("not HTTP"), std::string::npos) << res.body();
}

TEST_F(PortProxyTest, LargeBodiesBothWaysByteExact) {
  for (bool chunked : {false, true}) {
    SCOPED_TRACE(chunked ? "chunked" : "content-length");
    live_test::TcpListener l;
    ASSERT_TRUE(l.ok());
    const std::string up = live_test::Pattern(5 * 1024 * 1024 + 3);
    Received got;
    std::thread service([&] {
      UniqueFd c = l.Accept();
      if (!c) return;
      got = ReadRequest(c.get());
      std::string back(got.body.rbegin(), got.body.rend());
      (void)WriteAll(c.get(), "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(back.size()) +
                                  "\r\n\r\n" + back);
    });
    auto c = Connect();
    auto req = Req<http::string_body>(http::verb::post, l.port(), "/up");
    req.set(http::field::content_type, "application/octet-stream");
    req.body() = up;
    req.prepare_payload();
    if (chunked) req.chunked(true);
    // Written while the answer is read: neither may wait for the other.
    std::thread writer([&] {
      boost::system::error_code ec;
      http::write(c->s, req, ec);
    });
    http::response_parser<http::string_body> res;
    res.body_limit(boost::none);
    http::read(c->s, c->buf, res);
    writer.join();
    service.join();
    ASSERT_TRUE(got.ok);
    EXPECT_NE(got.head.find(chunked ? "Transfer-Encoding: chunked" : "Content-Length: "),
              std::string::npos)
        << got.head;
    EXPECT_TRUE(got.body == up) << got.body.size();
    EXPECT_EQ(res.get().result_int(), 200u);
    EXPECT_TRUE(res.get().body() == std::string(up.rbegin(), up.rend())) << res.get().body().size();
  }
  EXPECT_TRUE(Done(2));
}

TEST_F(PortProxyTest, AStreamedAnswerReachesTheClientLineByLine) {
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  UniqueFd go_r(go[0]), go_w(go[1]);
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    (void)ReadRequest(c.get());
    (void)WriteAll(c.get(),
                   "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n"
                   "b\r\n{\"line\":1}\n\r\n");
    // The next line only once the client has had the first.
    char b;
    pollfd p{go_r.get(), POLLIN, 0};
    if (::poll(&p, 1, 20000) == 1 && ::read(go_r.get(), &b, 1) == 1) {
      (void)WriteAll(c.get(), "b\r\n{\"line\":2}\n\r\n0\r\n\r\n");
    }
  });
  auto c = Connect();
  auto req = Req<http::string_body>(http::verb::post, l.port(), "/execute");
  req.set(http::field::content_type, "application/json");
  req.body() = "{\"code\":\"1+1\"}";
  req.prepare_payload();
  http::write(c->s, req);
  http::response_parser<http::string_body> res;
  http::read_header(c->s, c->buf, res);
  EXPECT_EQ(res.get()[http::field::content_type], "application/x-ndjson");
  while (res.get().body().find('\n') == std::string::npos) {
    boost::system::error_code ec;
    http::read_some(c->s, c->buf, res, ec);
    ASSERT_FALSE(ec) << ec.message();
  }
  EXPECT_EQ(res.get().body(), "{\"line\":1}\n");
  ASSERT_EQ(::write(go_w.get(), "x", 1), 1);
  http::read(c->s, c->buf, res);
  service.join();
  EXPECT_EQ(res.get().body(), "{\"line\":1}\n{\"line\":2}\n");
  c.reset();
  EXPECT_TRUE(Done(1));
}

TEST_F(PortProxyTest, ClientDisconnectLeaksNothing) {
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  const size_t agent_fds = OpenFds(agent_.pid());
  ASSERT_GT(agent_fds, 0u);
  std::atomic<bool> service_saw_close{false};
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    (void)ReadRequest(c.get());
    (void)WriteAll(c.get(), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    // An endless stream: it ends only when the proxy's tunnel is closed.
    const std::string chunk = "400\r\n" + std::string(1024, 'y') + "\r\n";
    while (WriteAll(c.get(), chunk).ok()) {
    }
    service_saw_close = true;
  });
  {
    auto c = Connect();
    auto req = Req<http::empty_body>(http::verb::get, l.port(), "/forever");
    http::write(c->s, req);
    http::response_parser<http::string_body> res;
    res.body_limit(boost::none);
    http::read_header(c->s, c->buf, res);
    EXPECT_EQ(res.get().result_int(), 200u);
    while (res.get().body().size() < 100000) {
      boost::system::error_code ec;
      http::read_some(c->s, c->buf, res, ec);
      ASSERT_FALSE(ec) << ec.message();
    }
  }                // the client goes away mid-stream
  service.join();  // its writes failed: the tunnel was closed
  EXPECT_TRUE(service_saw_close);
  EXPECT_TRUE(Done(1));
  EXPECT_EQ(proxy_->idle(), 0u);  // an exchange cut short never goes back
  // The agent closed its end of the tunnel and of the host connection.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (OpenFds(agent_.pid()) > agent_fds && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  // (At most: the readiness check's connection may still have been open
  // when the baseline was taken.)
  EXPECT_LE(OpenFds(agent_.pid()), agent_fds);
}

TEST_F(PortProxyTest, AWebSocketUpgradeCarriesTheNewProtocolBothWays) {
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  std::string head;
  std::thread service([&] {
    UniqueFd c = l.Accept();
    if (!c) return;
    // The head, then an echo of whatever follows, until the client's EOF.
    std::string in;
    char buf[4096];
    while (in.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::read(c.get(), buf, sizeof buf);
      if (n <= 0) return;
      in.append(buf, static_cast<size_t>(n));
    }
    head = in.substr(0, in.find("\r\n\r\n") + 4);
    (void)WriteAll(c.get(),
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\n\r\n");
    std::string rest = in.substr(head.size());
    if (!rest.empty()) (void)WriteAll(c.get(), rest);
    for (;;) {
      ssize_t n = ::read(c.get(), buf, sizeof buf);
      if (n <= 0) break;
      (void)WriteAll(c.get(), std::string_view(buf, static_cast<size_t>(n)));
    }
  });
  auto c = Connect();
  auto req = Req<http::empty_body>(http::verb::get, l.port(), "/ws");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "websocket");
  req.set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  http::write(c->s, req);
  http::response_parser<http::empty_body> res;
  http::read_header(c->s, c->buf, res);
  EXPECT_EQ(res.get().result_int(), 101u);
  EXPECT_EQ(res.get()[http::field::upgrade], "websocket");
  // Raw bytes both ways now.
  ASSERT_EQ(c->buf.size(), 0u);
  asio::write(c->s, asio::buffer(std::string("ping")));
  std::string got(4, '\0');
  asio::read(c->s, asio::buffer(got));
  EXPECT_EQ(got, "ping");
  c->s.socket().shutdown(tcp::socket::shutdown_send);
  boost::system::error_code ec;
  char b;
  c->s.socket().read_some(asio::buffer(&b, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
  service.join();
  EXPECT_NE(head.find("Upgrade: websocket\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Connection: Upgrade\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Sec-WebSocket-Key: "), std::string::npos) << head;
  EXPECT_TRUE(Done(1));
}

TEST_F(PortProxyTest, UnknownSandboxIs502) {
  // Connect fails: the router's check raced the sandbox's end.
  live_test::TcpListener l;
  ASSERT_TRUE(l.ok());
  auto c = Connect();
  auto req = Req<http::empty_body>(http::verb::get, l.port());
  req.set("X-Sandbox", "ffff");
  http::write(c->s, req);
  http::response<http::string_body> res;
  http::read(c->s, c->buf, res);
  EXPECT_EQ(res.result_int(), 502u);
  auto j = json::parse(res.body());
  EXPECT_EQ(j["code"], 502);
  EXPECT_EQ(j["sandboxId"], "ffff");
  EXPECT_NE(j["message"].get<std::string>().find("cannot be reached"), std::string::npos)
      << res.body();
  EXPECT_TRUE(Done(1));
}

}  // namespace
}  // namespace wb::daemon::e2b
