// The port proxy (daemon/e2b/port_proxy.h) served in the test process, in
// place of the daemon's router: an HTTP listener on 127.0.0.1 whose sessions
// read a request's head and hand it to ProxyToPort (with a TunnelPool of
// their own), one request after another while ProxyToPort keeps the
// connection. `X-Port: N` names the
// port (the router's E2b-Sandbox-Port); `X-Sandbox: ID` the sandbox (default
// the one the LiveService knows). The LiveService's Connect reaches an agent
// socket given by path: a test agent's, or a real sandbox's (agent.sock of an
// ns sandbox, live.sock of a vm one).
#pragma once

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "daemon/e2b/port_proxy.h"
#include "daemon/live_service.h"
#include "pool/agent_conn.h"

namespace wb::testing {

// One sandbox, id, whose agent listens on sock: only Connect is served.
class SocketLive : public daemon::LiveService {
 public:
  SocketLive(std::string id, std::string sock) : id_(std::move(id)), sock_(std::move(sock)) {}
  boost::asio::awaitable<Result<daemon::LiveInfo>> Create(daemon::LiveCreateRequest) override {
    co_return Fail(ErrorCode::kInternal, "create", "", "not in this test");
  }
  std::vector<daemon::LiveInfo> List(const std::map<std::string, std::string>&) const override {
    return {};
  }
  Result<daemon::LiveInfo> Inspect(const std::string& id) const override {
    return Fail(ErrorCode::kNotFound, "sandbox", id, "not in this test");
  }
  boost::asio::awaitable<Result<void>> Kill(const std::string& id) override {
    co_return Fail(ErrorCode::kNotFound, "sandbox", id, "not in this test");
  }
  Result<daemon::LiveInfo> SetTimeout(const std::string& id, uint64_t) override {
    return Inspect(id);
  }
  boost::asio::awaitable<Result<void>> Pause(const std::string& id) override {
    co_return Fail(ErrorCode::kNotFound, "sandbox", id, "not in this test");
  }
  boost::asio::awaitable<Result<void>> Resume(const std::string& id) override {
    co_return Fail(ErrorCode::kNotFound, "sandbox", id, "not in this test");
  }
  boost::asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Connect(
      const std::string& id) override {
    if (id != id_) co_return Fail(ErrorCode::kNotFound, "sandbox", id, "no such sandbox");
    // (Named, not temporaries in the co_await: GCC 12 frees those twice.)
    auto ex = co_await boost::asio::this_coro::executor;
    AgentEndpoint ep{sock_};
    auto conn = co_await pool::AgentConn::Connect(ex, ep);
    co_return conn;
  }
  Result<std::vector<std::string>> Logs(const std::string& id, size_t) const override {
    return Inspect(id).error();
  }
  Result<std::shared_ptr<void>> FollowLogs(const std::string& id, LineFn) override {
    return Inspect(id).error();
  }
  const std::string& id() const { return id_; }

 private:
  std::string id_, sock_;
};

class ProxyServer {
 public:
  using tcp = boost::asio::ip::tcp;
  explicit ProxyServer(
      daemon::LiveService& live, std::string id,
      std::chrono::milliseconds idle_timeout = daemon::e2b::TunnelPool::kDefaultIdleTimeout)
      : live_(live),
        id_(std::move(id)),
        acceptor_(io_, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
        tunnels_(idle_timeout) {
    port_ = acceptor_.local_endpoint().port();
    boost::asio::co_spawn(io_, Accept(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~ProxyServer() {
    boost::asio::post(io_, [this] { acceptor_.close(); });
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return port_; }
  // Sessions (client connections) that have ended, and how many exchanges
  // ProxyToPort kept the connection after.
  int done() const { return done_.load(); }
  int kept() const { return kept_.load(); }
  // Tunnels idle in the pool now.
  size_t idle() const { return tunnels_.idle(); }
  // Waits (bounded) until n sessions have ended.
  bool Done(int n, int ms = 10000) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (done_.load() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }

 private:
  boost::asio::awaitable<void> Accept() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket s = co_await acceptor_.async_accept(
          boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) co_return;
      boost::asio::co_spawn(io_, Session(std::move(s)), boost::asio::detached);
    }
  }
  boost::asio::awaitable<void> Session(tcp::socket sock) {
    namespace http = boost::beast::http;
    boost::beast::tcp_stream s(std::move(sock));
    boost::beast::flat_buffer buf;
    for (;;) {
      daemon::e2b::Parser parser;
      parser.body_limit(boost::none);
      boost::system::error_code ec;
      co_await http::async_read_header(s, buf, parser,
                                       boost::asio::redirect_error(boost::asio::use_awaitable, ec));
      if (ec) break;
      daemon::LiveInfo sb;
      sb.id = id_;
      if (auto other = parser.get().find("X-Sandbox"); other != parser.get().end()) {
        sb.id = std::string(other->value());
      }
      uint16_t target = 0;
      if (auto p = parser.get().find("X-Port"); p != parser.get().end()) {
        target = static_cast<uint16_t>(std::stoi(std::string(p->value())));
      }
      const bool again = co_await daemon::e2b::ProxyToPort(
          s, buf, parser, live_, sb, target, std::chrono::milliseconds(10000), &tunnels_);
      if (!again) break;
      ++kept_;
    }
    ++done_;
  }

  daemon::LiveService& live_;
  std::string id_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  // After io_: closed before it (the destructor stops io_ first).
  daemon::e2b::TunnelPool tunnels_;
  std::thread thread_;
  uint16_t port_ = 0;
  std::atomic<int> done_{0}, kept_{0};
};

}  // namespace wb::testing
