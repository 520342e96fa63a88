// Test helpers for the live sandboxes' frames: an agent spawned as a plain
// process on a listening socket, and a blocking frame connection to it with
// bounded waits (no sleeps stand in for synchronisation).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "proto/agent_proto.h"
#include "sandbox/agent_client.h"

namespace wb::live_test {

using proto::Frame;
using proto::FrameType;

// One connection to the agent, frame by frame.
class Wire {
 public:
  explicit Wire(const std::string& sock) {
    // The agent closes after an error (`e`) while a test may still be
    // sending an upload: that write must fail with EPIPE, not kill the test.
    ::signal(SIGPIPE, SIG_IGN);
    auto fd = ConnectUnix(sock);
    if (fd.ok()) fd_ = std::move(*fd);
  }
  bool ok() const { return fd_.valid(); }
  void Send(FrameType t, std::string_view payload = "") {
    (void)WriteAll(fd_.get(), proto::EncodeFrame(t, payload));
  }
  // The next frame, or nullopt at EOF or after ms.
  std::optional<Frame> Next(int ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      if (auto f = dec_.Next()) return f;
      if (eof_) return std::nullopt;
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, left) <= 0) continue;
      char buf[65536];
      ssize_t n = ::read(fd_.get(), buf, sizeof buf);
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      if (!dec_.Feed(std::string_view(buf, static_cast<size_t>(n))).ok()) eof_ = true;
    }
  }
  // The next frame, which must be of type t (else nullopt).
  std::optional<std::string> Expect(FrameType t, int ms = 10000) {
    auto f = Next(ms);
    if (!f || f->type != t) {
      last_unexpected_ = f ? std::string(1, static_cast<char>(f->type)) + " " + f->payload : "none";
      return std::nullopt;
    }
    return f->payload;
  }
  // O/R frames until X (returned) or something else (nullopt).
  struct Output {
    std::string out, err;
    std::optional<proto::ExecExit> exit;
  };
  Output UntilExit(int ms = 20000) {
    Output o;
    while (auto f = Next(ms)) {
      if (f->type == FrameType::kStdout) {
        o.out += f->payload;
      } else if (f->type == FrameType::kStderr) {
        o.err += f->payload;
      } else {
        if (f->type == FrameType::kExit) {
          auto x = proto::ParseExecExit(f->payload);
          if (x.ok()) o.exit = *x;
        }
        break;
      }
    }
    return o;
  }
  // O frames until their concatenation contains needle; returns all of it.
  std::optional<std::string> UntilOutput(const std::string& needle, std::string* seen = nullptr,
                                         int ms = 10000) {
    std::string all = seen ? *seen : "";
    while (all.find(needle) == std::string::npos) {
      auto f = Next(ms);
      if (!f || (f->type != FrameType::kStdout && f->type != FrameType::kStderr)) {
        if (seen) *seen = all;
        return std::nullopt;
      }
      all += f->payload;
    }
    if (seen) *seen = all;
    return all;
  }
  // Waits (bounded) for the agent to close its end.
  bool ClosedByAgent(int ms = 5000) {
    while (auto f = Next(ms)) {
    }
    return eof_;
  }
  int fd() const { return fd_.get(); }
  const std::string& last_unexpected() const { return last_unexpected_; }

 private:
  UniqueFd fd_;
  proto::FrameDecoder dec_;
  bool eof_ = false;
  std::string last_unexpected_;
};

// A TCP socket bound to a loopback address (127.0.0.1, or ::1 only), port
// chosen by the kernel, and listening unless told not to (then a connection
// to its port is refused, and no one else takes the port meanwhile).
class TcpListener {
 public:
  explicit TcpListener(bool ipv6 = false, bool listen = true) {
    fd_ = UniqueFd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int r;
    if (ipv6) {
      int one = 1;
      ::setsockopt(fd_.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_addr = in6addr_loopback;
      r = ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t len = sizeof a;
      ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin6_port);
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      r = ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
      socklen_t len = sizeof a;
      ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
      port_ = ntohs(a.sin_port);
    }
    ok_ = r == 0 && (!listen || ::listen(fd_.get(), 16) == 0);
  }
  bool ok() const { return ok_; }
  uint16_t port() const { return port_; }
  // The next connection (bounded wait).
  UniqueFd Accept(int ms = 10000) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return UniqueFd();
    return UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  }

 private:
  UniqueFd fd_;
  uint16_t port_ = 0;
  bool ok_ = false;
};

// Reads until EOF (bounded); what came.
inline std::string ReadToEof(int fd, int ms = 20000) {
  std::string all;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) != 1) return all + "<timeout>";
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return all;
    all.append(buf, static_cast<size_t>(n));
  }
}

// n bytes of a pattern that does not repeat within 2 KiB.
inline std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 131 + (i >> 11));
  return s;
}

// An agent serving a fresh socket, killed at the end.
class TestAgent {
 public:
  bool Start() {
    char tmpl[] = "/tmp/wb-live-test-XXXXXX";
    if (!::mkdtemp(tmpl)) return false;
    dir_ = tmpl;
    sock_ = dir_ + "/agent.sock";
    UniqueFd l(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_.c_str());
    if (::bind(l.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return false;
    if (::listen(l.get(), 128) != 0) return false;
    SpawnOptions o;
    o.path = std::string(WB_BUILD_DIR) + "/warmbox-agent";
    o.argv = {"warmbox-agent", "--listen-fd", "3", "--hostname", "testbox"};
    o.fds = {{l.get(), 3}};
    o.pdeath_signal = SIGKILL;
    auto c = ChildProcess::Spawn(o);
    if (!c.ok()) return false;
    child_ = std::move(*c);
    return WaitAgentReady(AgentEndpoint{sock_, child_.pidfd()}, 1000, 10000).ok();
  }
  ~TestAgent() {
    child_.KillAndReap();
    if (!dir_.empty()) (void)RemoveTree(dir_);
  }
  const std::string& sock() const { return sock_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return child_.pid(); }
  AgentEndpoint ep() const { return AgentEndpoint{sock_, child_.pidfd()}; }

 private:
  std::string dir_, sock_;
  ChildProcess child_;
};

}  // namespace wb::live_test
