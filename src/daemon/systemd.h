// systemd integration without libsystemd (the CLI is static and Debian ships
// no static libsystemd): socket activation (sd_listen_fds(3)) and readiness
// notification (sd_notify(3)). Both protocols are small and stable.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::daemon {

struct ActivationFd {
  int fd = -1;
  std::string name;  // from LISTEN_FDNAMES ("" when absent)
};

// Pure: the fds passed to this process, from the values of LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES (nullptr when unset). Empty when the
// variables are absent or meant for another process.
[[nodiscard]] Result<std::vector<ActivationFd>> PlanActivationFds(const char* listen_pid,
                                                                  const char* listen_fds,
                                                                  const char* listen_fdnames,
                                                                  long self_pid);

struct ListenFds {
  int pool = -1;  // the Unix socket of the pool protocol
  int http = -1;  // the HTTP API's TCP socket
};

// Takes the sockets systemd passed (told apart by family: AF_UNIX is the
// pool, AF_INET/AF_INET6 the HTTP API; names "pool"/"http" must agree), marks them
// close-on-exec and unsets the variables so that no child inherits them.
[[nodiscard]] Result<ListenFds> TakeActivationFds();

// Sends state ("READY=1", "STOPPING=1", "STATUS=...") to $NOTIFY_SOCKET.
// A no-op without one. Best effort: a failure is logged at debug and ignored,
// as sd_notify's callers do.
void Notify(std::string_view state);

}  // namespace wb::daemon
