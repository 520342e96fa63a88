// The agent's exec server: one thread, one epoll loop.
//
// Because the same thread forks exec children and reaps with
// waitpid(-1, WNOHANG), an exec handler's exit status can never be stolen: a
// child is entered in the exec table before the loop can run waitpid again,
// and every reaped pid that is not in the table is an orphan. SIGCHLD arrives
// through a signalfd (no polling), and one SIGCHLD reaps every exited child,
// so one exited child never holds up the others.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb::agent {

struct ServerOptions {
  int listen_fd = -1;  // a listening SOCK_STREAM socket, inherited
  // Instead of listen_fd, in a VM: an open virtio-serial port. It is one byte
  // stream for the life of the agent: the host's connections to QEMU's end
  // come and go, but the agent never sees their boundaries reliably (the
  // open/close notices travel on another virtqueue than the data), so it
  // serves the port as a single connection whose frames follow each other:
  // after an X the next E may come. See docs/protocol.md ("In a VM").
  int port_fd = -1;
  std::string heartbeat_extra;  // JSON members appended to the 'h' answer

  bool pid1 = false;     // PID 1 of a pid namespace: SIGTERM kills all
  std::string hostname;  // for $HOSTNAME
  std::string passwd_path = "/etc/passwd";
  std::string group_path = "/etc/group";
  int term_grace_ms = 2000;  // SIGTERM -> SIGKILL grace on shutdown
  uint64_t setup_us = 0;     // how long sandbox setup took, for heartbeats
  // Loaded in each command just before execve (empty: none), after
  // no_new_privs, which every command gets.
  std::vector<sock_filter> seccomp;
  uint64_t nofile = 1024;  // RLIMIT_NOFILE of commands (soft and hard)
  // Capabilities held only for the identity message (caps.h), dropped after
  // it or at the first command.
  uint64_t identity_caps = 0;
};

class Server {
 public:
  virtual ~Server() = default;
  // Serves until SIGTERM/SIGINT; returns the agent's exit code.
  [[nodiscard]] virtual Result<int> Run() = 0;
};

[[nodiscard]] Result<std::unique_ptr<Server>> CreateServer(const ServerOptions& opts);

}  // namespace wb::agent
