#include "daemon/systemd.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"
#include "base/strings.h"

namespace wb::daemon {

namespace {
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
}

Result<std::vector<ActivationFd>> PlanActivationFds(const char* listen_pid, const char* listen_fds,
                                                    const char* listen_fdnames, long self_pid) {
  std::vector<ActivationFd> out;
  if (!listen_pid || !listen_fds) return out;
  auto pid = ParseUint(listen_pid, "LISTEN_PID");
  if (!pid.ok())
    return Fail("socket activation", "LISTEN_PID", std::string("not a pid: ") + listen_pid);
  // The variables are inherited by every descendant; only the process
  // systemd started (or systemd-socket-activate exec'd) owns the fds.
  if (static_cast<long>(*pid) != self_pid) return out;
  auto n = ParseUint(listen_fds, "LISTEN_FDS");
  if (!n.ok() || *n > 64)
    return Fail("socket activation", "LISTEN_FDS", std::string("bad count: ") + listen_fds);
  std::vector<std::string> names;
  if (listen_fdnames && *listen_fdnames) names = Split(listen_fdnames, ':');
  for (uint64_t i = 0; i < *n; ++i) {
    out.push_back({kListenFdsStart + static_cast<int>(i), i < names.size() ? names[i] : ""});
  }
  return out;
}

Result<ListenFds> TakeActivationFds() {
  auto plan =
      WB_TRY(PlanActivationFds(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                               std::getenv("LISTEN_FDNAMES"), static_cast<long>(::getpid())));
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  ListenFds out;
  for (const auto& a : plan) {
    // systemd passes them without FD_CLOEXEC (they had to survive its exec);
    // set it at once so no sandbox or helper inherits a listening socket.
    if (::fcntl(a.fd, F_SETFD, FD_CLOEXEC) != 0)
      return Errno("fcntl(FD_CLOEXEC)", "fd " + std::to_string(a.fd));
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(a.fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      return Errno("getsockname", "activation fd " + std::to_string(a.fd));
    }
    // The family decides (one .socket unit gives all its sockets one name);
    // an explicit name must agree with it.
    const bool unix_socket = ss.ss_family == AF_UNIX;
    if (!unix_socket && ss.ss_family != AF_INET && ss.ss_family != AF_INET6) {
      return Fail("socket activation", "fd " + std::to_string(a.fd),
                  "expected a Unix socket (the pool) or a TCP socket (the HTTP API)");
    }
    if ((a.name == "pool" && !unix_socket) || (a.name == "http" && unix_socket)) {
      return Fail("socket activation", a.name,
                  "the pool socket must be a Unix stream socket, the http socket a TCP one");
    }
    int& slot = unix_socket ? out.pool : out.http;
    if (slot >= 0) {
      return Fail("socket activation", "fd " + std::to_string(a.fd),
                  std::string("two ") + (unix_socket ? "Unix" : "TCP") +
                      " sockets; pass one of each at most");
    }
    slot = a.fd;
  }
  return out;
}

void Notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t n = std::strlen(path);
  if (n >= sizeof addr.sun_path || (path[0] != '/' && path[0] != '@')) {
    spdlog::debug("NOTIFY_SOCKET {}: not a usable socket path", path);
    return;
  }
  std::memcpy(addr.sun_path, path, n);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return;
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
               reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    spdlog::debug("sd_notify {}: {}", path, std::strerror(errno));
  }
}

}  // namespace wb::daemon
