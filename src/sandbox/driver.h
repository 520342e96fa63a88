// The Driver interface: how warmbox makes and uses a sandbox, whatever
// isolates it (namespaces today, microVMs later).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "proto/agent_proto.h"

namespace wb {

// Where the host reaches a sandbox's agent.
struct AgentEndpoint {
  std::string socket_path;
  // A pidfd of the agent (or its VM): readable when it dies, which ends any
  // wait at once instead of at a timeout. -1: none.
  int liveness_fd = -1;
};

struct Limits {
  uint64_t memory_bytes = 512ull << 20;  // RAM (and no swap beyond it)
  uint64_t pids = 1024;
  double cpus = 0;                   // CPU quota in cores, 0 = unlimited
  uint64_t disk_bytes = 1ull << 30;  // writable layer (tmpfs upper)
};

struct SecurityOptions {
  std::string seccomp = "default";  // "default", "unconfined" or a profile file
  uint64_t nofile = 1024;           // RLIMIT_NOFILE of commands
};

struct SandboxSpec {
  std::string image = "busybox";
  Limits limits;
  SecurityOptions security;
};

// Where a command's stdin comes from and where its output goes.
struct ExecIo {
  int stdin_fd = -1;       // streamed until EOF; -1: empty stdin
  std::string stdin_data;  // used when stdin_fd < 0 and has_stdin_data
  bool has_stdin_data = false;
  // When readable (e.g. a signalfd), the run is abandoned: the connection is
  // dropped, so the agent kills the command. -1: none.
  int cancel_fd = -1;
  // Called as output arrives; when unset, output is collected in ExecOutcome.
  std::function<void(std::string_view)> on_stdout, on_stderr;
};

struct ExecOutcome {
  proto::ExecExit exit;
  std::string stdout_data, stderr_data;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;  // destroys the sandbox if still up
  virtual const std::string& id() const = 0;
  // For asynchronous clients (the pool daemon) that speak the protocol themselves.
  virtual AgentEndpoint endpoint() const = 0;
  // Image config defaults (env, workdir, user) applied to a request.
  virtual proto::ExecRequest WithImageDefaults(const proto::ExecRequest& req) const = 0;
  [[nodiscard]] virtual Result<void> Heartbeat(int timeout_ms) = 0;
  [[nodiscard]] virtual Result<ExecOutcome> Exec(const proto::ExecRequest& req, ExecIo& io) = 0;
  // Changes the memory, pids and CPU limits of a running sandbox (a run's own
  // limits on a pre-booted sandbox). The disk limit is fixed at creation.
  [[nodiscard]] virtual Result<void> SetLimits(const Limits& limits) = 0;
  // OOM kills counted by the sandbox's memory cgroup so far.
  virtual uint64_t OomKills() const { return 0; }
  // Kills everything inside and removes every trace on the host.
  [[nodiscard]] virtual Result<void> Destroy() = 0;
};

class Driver {
 public:
  virtual ~Driver() = default;
  // Returns a sandbox whose agent has answered a heartbeat.
  [[nodiscard]] virtual Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) = 0;
};

}  // namespace wb
