// live.json: what the daemon keeps on disk about a live sandbox
// (docs/live-sandboxes.md, "Record"), so that the next daemon can take it
// over. Pure: serialization and parsing, with clear errors for bad files;
// the registry (live_registry.h) reads and writes the file.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "sandbox/net/net_plan.h"

namespace wb::daemon {

inline constexpr const char* kLiveRecordFile = "live.json";

// A service of the image (docs/services.md), as found at the claim.
struct ServiceState {
  std::string name;
  int64_t pid = 0;
  std::optional<int> exit_code;  // set once it has exited
};

struct LiveRecord {
  int version = 1;
  std::string id;       // the live id: 32 lower-case hex digits
  std::string sandbox;  // the sandbox dir's short id
  std::string image, driver;
  int64_t created_ms = 0, expires_ms = 0;  // wall clock
  std::string on_timeout = "kill";         // "kill" or "pause"
  std::map<std::string, std::string> metadata;
  std::vector<std::string> env;
  std::string user, cwd;
  // The E2B envd access token (docs/e2b.md): 32 random hex digits; "" in
  // records of older daemons (no E2B access).
  std::string access_token;
  uint64_t memory_bytes = 0, pids = 0;
  double cpus = 0;
  std::vector<std::string> main;  // empty: none
  int64_t main_pid = 0;
  std::optional<int> main_exit_code;
  std::vector<ServiceState> services;
  uint64_t main_offset = 0;       // bytes of the main's output already in main.log
  std::string state = "running";  // "running" or "paused"
  // The network asked for (and its updates): a new daemon attaches it again
  // and publishes the ports again (docs/network.md, "Taking over").
  NetworkSpec network;
  pid_t host_pid = 0;       // the sandbox's host process ...
  uint64_t host_start = 0;  // ... and its /proc start time (pid reuse guard)
};

// [{"name":..,"pid":N,"running":bool,"exit_code":N|null}]: live.json's and
// inspect's form.
nlohmann::json ServicesJson(const std::vector<ServiceState>& services);
[[nodiscard]] Result<std::vector<ServiceState>> ParseServicesJson(const nlohmann::json& j);

// Whether id is a live id (32 lower-case hex digits).
bool IsLiveId(std::string_view id);

std::string ToJson(const LiveRecord& r);
// what: where the text came from, for the errors ("STATE/sandboxes/x/live.json").
[[nodiscard]] Result<LiveRecord> ParseLiveRecord(std::string_view text, const std::string& what);

// DIR/live.json, written atomically (temp file, rename), mode 0600.
[[nodiscard]] Result<void> WriteLiveRecord(const std::string& dir, const LiveRecord& r);
[[nodiscard]] Result<LiveRecord> ReadLiveRecord(const std::string& dir);

}  // namespace wb::daemon
