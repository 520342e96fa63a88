// The warm-pool daemon: `warmbox pool start`. Its lifecycle (sockets,
// signals, systemd notifications, start, drain and stop); the front ends are
// socket_server.h and http_server.h, the runs run_executor.h.
#pragma once

#include <string>

#include "base/error.h"
#include "daemon/options.h"

namespace wb::daemon {

// Serves until stopped (SIGINT, SIGTERM or a stop request); returns the exit code.
[[nodiscard]] Result<int> RunDaemon(const DaemonOptions& opts);

// /run/warmbox/pool.sock for root, $XDG_RUNTIME_DIR/warmbox/pool.sock otherwise.
std::string DefaultSocketPath();

}  // namespace wb::daemon
