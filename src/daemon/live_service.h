// What the front ends (socket, HTTP) need from the daemon's live sandboxes
// (docs/live-sandboxes.md): their lifecycle, and a fresh agent connection
// for each process, file or watch operation. One implementation
// (live_registry.h); everything runs on the daemon's event loop.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "daemon/live_record.h"
#include "pool/agent_conn.h"
#include "sandbox/net/net_plan.h"

namespace wb::daemon {

struct LiveCreateRequest {
  std::optional<std::string> image;   // absent: the daemon's default
  std::optional<std::string> driver;  // absent: the daemon's --driver
  std::optional<uint64_t> timeout_s;  // absent: 300 (capped by --max-sandbox-timeout)
  std::vector<std::string> env;       // "K=V": default env of every process
  std::map<std::string, std::string> metadata;
  std::optional<uint64_t> memory_bytes, pids;
  std::optional<double> cpus;
  std::string user;  // default user of processes ("": the image's User, else root)
  std::string cwd;   // default working dir ("": the image's WorkingDir, else /)
  // The deferred main: absent = the image's Entrypoint+Cmd (none if the image
  // has none); an empty vector = --no-main.
  std::optional<std::vector<std::string>> main;
  std::string on_timeout = "kill";  // "kill" or "pause"
  // --network none (default) or egress with a policy (docs/network.md).
  NetworkSpec network;
};

enum class LiveState { kRunning, kPaused, kDead };
const char* LiveStateName(LiveState s);  // "running", "paused", "dead"

struct LiveInfo {
  std::string id;  // 32 hex digits
  std::string image, driver;
  LiveState state = LiveState::kRunning;
  std::string dead_reason;  // when kDead: why ("agent exited: signal 9", ...)
  int64_t created_ms = 0;   // wall clock
  int64_t expires_ms = 0;   // wall clock
  std::string on_timeout;   // "kill" or "pause"
  std::map<std::string, std::string> metadata;
  std::vector<std::string> env;
  std::string user, cwd;
  std::string access_token;  // E2B's envd access token (docs/e2b.md); not in ToJson
  uint64_t memory_bytes = 0, pids = 0;
  double cpus = 0;
  std::vector<std::string> main;  // empty: none
  int64_t main_pid = 0;           // 0: none
  std::optional<int> main_exit_code;
  std::vector<ServiceState> services;  // the image's services (docs/services.md)
  // From the sandbox's cgroups at the time of the call.
  uint64_t memory_current = 0, cpu_usage_us = 0, pids_current = 0;
  uint64_t disk_used = 0, disk_total = 0;  // the writable layer (ns), bytes
  // docs/network.md: the mode and policy in force; the counters with usage.
  NetworkSpec network;
  NetCounters net;
};

// {"id":..,"image":..,...}: the JSON both front ends send (docs/openapi.yaml).
std::string ToJson(const LiveInfo& i);

class LiveService {
 public:
  virtual ~LiveService() = default;
  // Claims a sandbox; errors: bad_request, no_image, busy (--max-sandboxes),
  // draining, internal.
  virtual boost::asio::awaitable<Result<LiveInfo>> Create(LiveCreateRequest req) = 0;
  // Sorted by creation time; filter: every pair must match the metadata.
  virtual std::vector<LiveInfo> List(const std::map<std::string, std::string>& filter) const = 0;
  virtual Result<LiveInfo> Inspect(const std::string& id) const = 0;  // not_found
  // Inspect without the resource usage (no cgroup reads): what the hot paths
  // (admitting each E2B envd request) need.
  virtual Result<LiveInfo> Lookup(const std::string& id) const { return Inspect(id); }
  virtual boost::asio::awaitable<Result<void>> Kill(const std::string& id) = 0;
  virtual Result<LiveInfo> SetTimeout(const std::string& id, uint64_t seconds) = 0;
  // failed_precondition when already in that state.
  virtual boost::asio::awaitable<Result<void>> Pause(const std::string& id) = 0;
  virtual boost::asio::awaitable<Result<void>> Resume(const std::string& id) = 0;
  // Replaces a live sandbox's network policy (docs/network.md, "Runtime
  // update"): spec.mode egress gives a sandbox without a network one, and
  // replaces the allow/deny lists of one with; mode none is refused on a
  // sandbox with a network (it cannot be taken away: deny everything
  // instead). Errors: not_found, bad_request, failed_precondition (dead, the
  // driver has no network, an update already in flight), internal.
  virtual boost::asio::awaitable<Result<LiveInfo>> UpdateNetwork(const std::string& id,
                                                                 NetworkSpec spec) {
    (void)spec;
    co_return Fail(ErrorCode::kFailedPrecondition, "update network", id,
                   "not supported by this service");
  }
  // A new connection to the sandbox's agent; not_found, failed_precondition
  // when paused or dead. The caller speaks the frames of docs/protocol.md.
  virtual boost::asio::awaitable<Result<std::unique_ptr<pool::AgentConn>>> Connect(
      const std::string& id) = 0;
  // The main process's log: the last `tail` lines (0: all that is kept), as
  // "<RFC 3339 time> <stream> <text>" lines. follow: called with every later
  // line until the returned handle is destroyed or the sandbox ends (then
  // on_line is called with std::nullopt).
  virtual Result<std::vector<std::string>> Logs(const std::string& id, size_t tail) const = 0;
  using LineFn = std::function<void(const std::optional<std::string>& line)>;
  virtual Result<std::shared_ptr<void>> FollowLogs(const std::string& id, LineFn on_line) = 0;
};

}  // namespace wb::daemon
