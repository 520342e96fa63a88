// What filesystem.cc shares with files.cc and the tests: one agent file
// operation, the stream headers, the watchers' bounds.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "daemon/live_service.h"
#include "proto/agent_proto.h"

namespace wb::daemon::e2b {

// ListDir's depth: 1 (the default) to 64, as the agent's list.
inline constexpr uint32_t kMaxListDepth = 64;

// The CreateWatcher trio (the Python SDK's watch). A watcher holds an agent
// watch; its events wait in the daemon until GetWatcherEvents takes them.
// At most kMaxWatchersPerSandbox per sandbox (resource_exhausted beyond);
// at most kMaxWatcherEvents events or kMaxWatcherBytes of them between two
// fetches (beyond, the watcher stops and its next fetch is
// resource_exhausted); one not fetched (nor created) for kWatcherIdle is
// removed; one whose watch ended (its sandbox did) answers the error for
// kFailedWatcherKept, then goes.
inline constexpr size_t kMaxWatchersPerSandbox = 32;
inline constexpr size_t kMaxWatcherEvents = 10000;
inline constexpr size_t kMaxWatcherBytes = 4u << 20;
inline constexpr std::chrono::milliseconds kWatcherIdle = std::chrono::minutes(10);
inline constexpr std::chrono::milliseconds kFailedWatcherKept = std::chrono::minutes(1);

// How many watchers the daemon holds (all sandboxes): for tests.
size_t LiveWatcherCount();
// {"watcherId":"..."}
std::string WatcherIdJson(const std::string& id);

// A server stream's headers: Connect-Timeout-Ms (absent: no deadline) and
// Keepalive-Ping-Interval (seconds; absent: 90, envd's default).
struct StreamHeaders {
  std::optional<std::chrono::milliseconds> timeout;
  std::chrono::milliseconds keepalive = std::chrono::seconds(90);
};
[[nodiscard]] Result<StreamHeaders> ParseStreamHeaders(std::optional<std::string_view> timeout_ms,
                                                       std::optional<std::string_view> keepalive_s);

// An agent file operation started: the L sent, the l read (its payload),
// the connection open for what follows (a read's O frames, a watch's V).
struct AgentFileConn {
  std::unique_ptr<pool::AgentConn> conn;
  std::string reply;
};
boost::asio::awaitable<Result<AgentFileConn>> OpenAgentFileOp(LiveService& live,
                                                              const std::string& id,
                                                              const proto::FileRequest& fr);
// One agent file operation (an L, its l): the reply's payload, or the
// agent's error (AgentError) or the connection's (unavailable).
boost::asio::awaitable<Result<std::string>> AgentFileOp(LiveService& live, const std::string& id,
                                                        const proto::FileRequest& fr);
boost::asio::awaitable<Result<proto::FileStat>> AgentStat(LiveService& live, const std::string& id,
                                                          const std::string& path,
                                                          const std::string& user);

}  // namespace wb::daemon::e2b
