// TCP connections to the sandbox's ports (docs/protocol.md, "Ports"): the
// server side of T. The agent runs in the sandbox's network namespace (a VM
// guest's own stack, or the ns sandbox's namespace, whose loopback setup.cc
// and guest.cc bring up), so a connection it makes to 127.0.0.1:N reaches a
// service listening there (or on 0.0.0.0) without any network device or
// route from the host. One host connection carries one TCP connection:
//
//   T {"port":N}   connect to 127.0.0.1:N (refused: ::1:N), then t {} or e
//   I bytes        written to the socket (queued while the service is slow;
//                  the host's connection is not read past kStdinHighWater)
//   C              shutdown(SHUT_WR) once the queued bytes are written
//   socket bytes   O chunks, read only while little is queued for the host
//   socket EOF     x {"size":N} (bytes sent as O)
//
// The agent closes the connection once both directions have ended (x sent,
// and C passed on or the service stopped reading), or after e; the host's
// hang-up closes the socket.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/server_impl.h"

namespace wb::agent {
namespace {

Error TunnelError(const Tunnel& t, int err, const char* call) {
  const std::string addr =
      (t.ipv6 ? "[::1]:" : "127.0.0.1:") + std::to_string(static_cast<unsigned>(t.port));
  std::string detail;
  if (err == ECONNREFUSED) {
    detail = "nothing listens on port " + std::to_string(t.port) + " in the sandbox";
  }
  Error e = Fail(ErrorCode::kUnavailable, call, addr, detail);
  e.err = err;
  return e;
}

}  // namespace

void ServerImpl::StartTunnel(uint64_t conn_id, Conn& c, const proto::TunnelRequest& req) {
  c.tunnel = std::make_unique<Tunnel>();
  c.tunnel->port = req.port;
  TunnelConnect(conn_id, c);
}

void ServerImpl::TunnelConnect(uint64_t conn_id, Conn& c) {
  Tunnel& t = *c.tunnel;
  const int family = t.ipv6 ? AF_INET6 : AF_INET;
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return TunnelConnectFailed(conn_id, c, errno);
  // Small writes (an HTTP head, then its body) must not wait for the
  // previous segment's ACK: Nagle's delay applies on loopback too.
  int one = 1;
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r;
  if (t.ipv6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<uint16_t>(t.port));
    a.sin6_addr = in6addr_loopback;
    r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(t.port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  // Non-blocking: a listener whose backlog is full would otherwise hold the
  // whole agent in connect(2) for as long as the kernel retries the SYN.
  // On loopback the answer is usually immediate (0 or ECONNREFUSED).
  if (r != 0 && errno != EINPROGRESS) return TunnelConnectFailed(conn_id, c, errno);
  t.sock.fd = std::move(fd);
  if (r == 0) {
    Send(conn_id, FrameType::kTunnelReply, "{}");
    // I and C that came before the connection was made.
    TunnelWrite(c);
    return;
  }
  t.connecting = true;  // TunnelInterest asks for EPOLLOUT
}

void ServerImpl::TunnelConnectFailed(uint64_t conn_id, Conn& c, int err) {
  Tunnel& t = *c.tunnel;
  Unwatch(t.sock);
  t.connecting = false;
  if (!t.ipv6 && err == ECONNREFUSED) {
    // A service may listen on ::1 only (Node's "localhost", for one): try
    // that before saying nothing listens.
    t.ipv6 = true;
    t.refused = err;
    return TunnelConnect(conn_id, c);
  }
  if (t.refused) {
    // ::1 failed too (refused, or no IPv6 at all): the IPv4 refusal is the
    // answer.
    t.ipv6 = false;
    err = t.refused;
  }
  SendOpError(conn_id, TunnelError(t, err, "connect"));
}

void ServerImpl::TunnelInterest(uint64_t conn_id, Conn& c) {
  Tunnel& t = *c.tunnel;
  if (!t.sock.fd) return;
  uint32_t ev = 0;
  if (t.connecting) {
    ev = EPOLLOUT;
  } else {
    if (!t.read_eof && c.pending() < kTunnelHighWater) ev |= EPOLLIN;
    if (!t.to_service.empty()) ev |= EPOLLOUT;
  }
  if (ev == 0) {
    // Out of epoll rather than an empty interest: a socket the service has
    // reset reports EPOLLHUP|EPOLLERR whatever the interest, and the loop
    // would spin on it while the host drains its queue.
    if (t.sock.added) {
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, t.sock.fd.get(), nullptr);
      t.sock.added = false;
      t.sock.events = 0;
    }
    return;
  }
  SetInterest(t.sock, Tag(kTunnel, conn_id), ev);
}

void ServerImpl::OnTunnel(uint64_t conn_id, uint32_t events) {
  auto it = conns_.find(conn_id);
  if (it == conns_.end() || !it->second.tunnel) return;
  Conn& c = it->second;
  Tunnel& t = *c.tunnel;
  if (t.connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(t.sock.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY) return;
    if (err != 0) return TunnelConnectFailed(conn_id, c, err);
    t.connecting = false;
    Send(conn_id, FrameType::kTunnelReply, "{}");
    TunnelWrite(c);
    return;
  }
  if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
    TunnelWrite(c);
    it = conns_.find(conn_id);
    if (it == conns_.end() || !it->second.tunnel) return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) TunnelRead(conn_id, it->second);
}

void ServerImpl::TunnelFrame(Conn& c, const proto::Frame& f) {
  Tunnel& t = *c.tunnel;
  if (f.type == FrameType::kStdin) {
    // After C, or once the service stopped reading, bytes have nowhere to go.
    if (!t.write_done && !t.shut_pending) t.to_service += f.payload;
  } else {
    t.shut_pending = true;
  }
  if (!t.connecting) TunnelWrite(c);
}

void ServerImpl::TunnelWrite(Conn& c) {
  Tunnel& t = *c.tunnel;
  if (t.connecting || !t.sock.fd || t.write_done) return;
  size_t off = 0;
  while (off < t.to_service.size()) {
    ssize_t n = ::send(t.sock.fd.get(), t.to_service.data() + off, t.to_service.size() - off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) {
      // EPIPE, ECONNRESET: the service closed its end. What the host still
      // sends is dropped; what the service sent is still read (TunnelRead
      // reports the reset, if any, after the bytes before it).
      t.to_service.clear();
      t.write_done = true;
      off = 0;
      break;
    }
    off += static_cast<size_t>(n);
  }
  t.to_service.erase(0, off);
  if (t.to_service.empty() && t.shut_pending && !t.write_done) {
    // The host's end of input: the service reads EOF, and may still answer.
    ::shutdown(t.sock.fd.get(), SHUT_WR);
    t.write_done = true;
  }
  if (t.read_eof && t.write_done) c.close_after_flush = true;
}

void ServerImpl::TunnelRead(uint64_t conn_id, Conn& c) {
  Tunnel& t = *c.tunnel;
  // Backpressure: a chunk more only while little is queued for the host
  // (TunnelInterest stops asking meanwhile), so a slow host slows the
  // service through TCP's own window.
  char buf[kReadChunk];
  while (!t.read_eof && t.sock.fd && c.pending() < kTunnelHighWater) {
    ssize_t n = ::recv(t.sock.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) return SendOpError(conn_id, TunnelError(t, errno, "recv"));
    if (n == 0) {
      t.read_eof = true;
      Send(conn_id, FrameType::kFileEnd, proto::ToJson(proto::FileEnd{t.sent}));
      if (t.write_done) c.close_after_flush = true;
      return;
    }
    t.sent += static_cast<uint64_t>(n);
    Send(conn_id, FrameType::kStdout, std::string_view(buf, static_cast<size_t>(n)));
  }
}

}  // namespace wb::agent
