#include "daemon/published_ports.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <set>

#include "base/log.h"
#include "daemon/e2b/port_proxy.h"
#include "proto/agent_proto.h"

namespace wb::daemon {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

std::string HostPort(const PublishedPort& p) {
  const bool v6 = p.host_addr.find(':') != std::string::npos;
  return (v6 ? "[" + p.host_addr + "]" : p.host_addr) + ":" + std::to_string(p.host_port);
}

std::string Whole(const PublishedPort& p) { return HostPort(p) + ":" + std::to_string(p.port); }

}  // namespace

Result<void> CheckPublishedPorts(const std::vector<PublishedPort>& ports) {
  for (size_t i = 0; i < ports.size(); ++i) {
    const PublishedPort& p = ports[i];
    if (p.host_port < kFirstPublishablePort) {
      return Fail(ErrorCode::kInvalidArgument, "-p", Whole(p),
                  "host port " + std::to_string(p.host_port) +
                      " is privileged; publish on a host port of 1024 or above");
    }
    for (size_t j = 0; j < i; ++j) {
      if (ports[j].host_port == p.host_port && ports[j].host_addr == p.host_addr) {
        return Fail(ErrorCode::kInvalidArgument, "-p", Whole(p),
                    HostPort(p) + " is published twice");
      }
    }
  }
  return Ok();
}

struct PublishedPorts::State {
  struct Conn {
    explicit Conn(tcp::socket s) : sock(std::move(s)) {}
    tcp::socket sock;
    std::unique_ptr<pool::AgentConn> agent;
  };
  explicit State(asio::io_context& i) : io(i) {}
  asio::io_context& io;
  std::vector<PublishedPort> ports;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::set<std::shared_ptr<Conn>> conns;
  bool closed = false;
};

namespace {

using State = PublishedPorts::State;

// An abortive close: the host's client sees a reset, not a clean end, when
// the sandbox's side failed (nothing listens, the service reset).
void Reset(tcp::socket& s) {
  error_code ec;
  s.set_option(asio::socket_base::linger(true, 0), ec);
  s.close(ec);
}

asio::awaitable<void> Relay(std::shared_ptr<State> st, std::shared_ptr<State::Conn> c,
                            LiveService* live, std::string id, uint16_t port) {
  auto tunnel = co_await e2b::OpenPortTunnel(*live, id, port);
  if (!tunnel.ok() || st->closed || !c->sock.is_open()) {
    if (!tunnel.ok())
      spdlog::debug("published port {} of {}: {}", port, id, tunnel.error().ToString());
    Reset(c->sock);
    st->conns.erase(c);
    co_return;
  }
  c->agent = std::move(*tunnel);
  pool::AgentConn& agent = *c->agent;
  tcp::socket& sock = c->sock;
  // The service's bytes to the client; its EOF half-closes the client's
  // connection (the client may still send); a failure resets it, which ends
  // feed() too.
  auto pump = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto f = co_await agent.ReadFrame();
      if (!f.ok()) break;
      if (f->type == proto::FrameType::kFileEnd) {
        error_code ec;
        sock.shutdown(tcp::socket::shutdown_send, ec);
        co_return;
      }
      if (f->type != proto::FrameType::kStdout) break;
      error_code ec;
      co_await asio::async_write(sock, asio::buffer(f->payload),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    Reset(sock);
  };
  // The client's bytes to the service; its EOF is the service's (C); a
  // failure (a reset, Close()) hangs up on the agent, which closes the
  // service's connection and ends pump().
  auto feed = [&]() -> asio::awaitable<void> {
    std::vector<char> piece(64 << 10);
    for (;;) {
      error_code ec;
      size_t n = co_await sock.async_read_some(asio::buffer(piece),
                                               asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::eof) {
        const std::string none;
        (void)co_await agent.Send(proto::FrameType::kStdinClose, none);
        co_return;
      }
      if (ec) break;
      const std::string_view data(piece.data(), n);
      if (!(co_await agent.Send(proto::FrameType::kStdin, data)).ok()) break;
    }
    agent.Close();
  };
  using namespace asio::experimental::awaitable_operators;
  co_await (pump() && feed());
  agent.Close();
  error_code ec;
  sock.close(ec);
  st->conns.erase(c);
}

asio::awaitable<void> AcceptLoop(std::shared_ptr<State> st, size_t index, LiveService* live,
                                 std::string id) {
  tcp::acceptor& acc = *st->acceptors[index];
  const uint16_t port = st->ports[index].port;
  asio::steady_timer backoff(st->io);
  for (;;) {
    tcp::socket s(st->io);
    error_code ec;
    co_await acc.async_accept(s, asio::redirect_error(asio::use_awaitable, ec));
    if (st->closed || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of fds, say: the listener stays; the next accept in 100 ms.
      spdlog::warn("published port {} of {}: accept: {}", HostPort(st->ports[index]), id,
                   ec.message());
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (st->closed) co_return;
      continue;
    }
    // Asio accepts without SOCK_CLOEXEC; the daemon's spawns close every
    // fd above 2 anyway (close_range), this keeps the rule for all of them.
    (void)::fcntl(s.native_handle(), F_SETFD, FD_CLOEXEC);
    auto c = std::make_shared<State::Conn>(std::move(s));
    st->conns.insert(c);
    asio::co_spawn(st->io, Relay(st, c, live, id, port), asio::detached);
  }
}

}  // namespace

Result<std::unique_ptr<PublishedPorts>> PublishedPorts::Listen(
    asio::io_context& io, const std::vector<PublishedPort>& ports) {
  WB_RETURN_IF_ERROR(CheckPublishedPorts(ports));
  auto p = std::unique_ptr<PublishedPorts>(new PublishedPorts());
  p->state_ = std::make_shared<State>(io);
  p->state_->ports = ports;
  for (const auto& port : ports) {
    error_code ec;
    auto addr = asio::ip::make_address(port.host_addr, ec);
    if (ec) {
      return Fail(ErrorCode::kInvalidArgument, "-p", Whole(port),
                  "HOSTADDR " + port.host_addr + " is not an IP address");
    }
    const tcp::endpoint ep(addr, port.host_port);
    auto acc = std::make_unique<tcp::acceptor>(io);
    // Close-on-exec from the start (Asio's own open does not set it).
    // SO_REUSEADDR: a port a killed sandbox published is free again at once
    // (its connections' TIME_WAIT does not hold it); two listeners still
    // cannot share it.
    const int fd = ::socket(addr.is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      p->Close();
      return Errno("socket", Whole(port));
    }
    acc->assign(ep.protocol(), fd, ec);
    if (ec) ::close(fd);
    if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && addr.is_v6()) acc->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acc->bind(ep, ec);
    if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      Error e =
          Fail(CodeForErrno(ec.value()), "-p", Whole(port),
               ec.value() == EADDRINUSE
                   ? HostPort(port) + " is in use (another process or sandbox listens there)"
               : ec.value() == EADDRNOTAVAIL ? HostPort(port) + ": the host has no such address"
                                             : "listen on " + HostPort(port) + ": " + ec.message());
      e.err = ec.value();
      if (ec.value() == EADDRINUSE) e.code = ErrorCode::kAlreadyExists;
      if (ec.value() == EADDRNOTAVAIL) e.code = ErrorCode::kInvalidArgument;
      p->Close();
      return e;
    }
    p->state_->acceptors.push_back(std::move(acc));
  }
  return p;
}

void PublishedPorts::Start(LiveService& live, std::string id) {
  for (size_t i = 0; i < state_->acceptors.size(); ++i) {
    asio::co_spawn(state_->io, AcceptLoop(state_, i, &live, id), asio::detached);
  }
}

void PublishedPorts::Close() {
  if (!state_ || state_->closed) return;
  state_->closed = true;
  error_code ec;
  for (auto& a : state_->acceptors) a->close(ec);
  for (const auto& c : state_->conns) {
    Reset(c->sock);
    if (c->agent) c->agent->Close();
  }
  state_->conns.clear();
}

const std::vector<PublishedPort>& PublishedPorts::ports() const { return state_->ports; }

PublishedPorts::~PublishedPorts() { Close(); }

}  // namespace wb::daemon
