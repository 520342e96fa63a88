// The pool socket protocol, wire-compatible with the A3S Box pool:
// one request and one response per connection; each message is a frame of a
// 4-byte little-endian length and that many bytes of UTF-8 JSON. Requests are
// capped at kMaxRequest bytes: a larger length is refused before anything is
// allocated. See docs/protocol.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::proto {

inline constexpr uint32_t kMaxRequest = 8u << 20;
// The smallest memory limit a run may ask for.
inline constexpr uint64_t kMinMemory = 4u << 20;
// Responses carry up to two capped output streams as number arrays.
inline constexpr uint32_t kMaxResponse = 256u << 20;

struct RunRequest {
  std::optional<std::string> image;  // absent or null: the daemon's default
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "K=V"
  std::string workdir;
  std::string user;
  std::optional<std::string> stdin_data;
  uint64_t timeout_ms = 0;
  bool stream = false;  // output as frames while the command runs
  // This run's limits, applied to the sandbox before the command starts
  // (default: the daemon's).
  std::optional<uint64_t> memory_bytes, pids, output_cap, nofile;
  std::optional<double> cpus;
  // Extension: "ns" or "vm"; absent or null: the daemon's --driver.
  std::optional<std::string> driver;
  // Extension: the run's network (docs/network.md), as sandbox_create's
  // {"mode","allow_out","deny_out"}: the shape is checked here, the mode and
  // entries by the daemon (sandbox/net/net_plan.h). Absent: none.
  struct Network {
    std::string mode = "none";
    std::vector<std::string> allow_out, deny_out;
    bool operator==(const Network&) const = default;
  };
  std::optional<Network> network;
};

// kLive: a process or file operation on a live sandbox (proto/live_ops.h).
enum class Op { kRun, kStatus, kStop, kLive };

struct PoolRequest {
  Op op = Op::kStatus;
  RunRequest run;
  // status: "" or "json" (the pools), "prometheus" ({"format":"prometheus","metrics":"<text>"}).
  std::string format;
  std::string live_op;  // kLive: the op's name ("exec", ...)
  // stop: leave the live sandboxes running for the next daemon (pool stop --keep-sandboxes).
  bool keep_sandboxes = false;
};

[[nodiscard]] Result<PoolRequest> ParsePoolRequest(std::string_view json);
std::string ToJson(const PoolRequest& r);

struct RunResponse {
  std::string stdout_data, stderr_data;
  int exit_code = -1;
  std::optional<std::string> error;
  // Extensions (upstream clients ignore unknown fields):
  bool timed_out = false;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  bool oom_killed = false;
  std::string sandbox;  // id of the sandbox that ran it
  // With error: what kind of failure, the same word on every front end
  // ("bad_request", "no_image", "busy", "draining", "internal", ...;
  // docs/errors.md). Upstream clients ignore it.
  std::string kind;
};

// {"stdout":[..],"stderr":[..],"exit_code":N,"error":null|"..."} plus the extensions.
std::string ToJson(const RunResponse& r);
RunResponse ErrorResponse(std::string message, std::string kind = "");

// A streamed run's frames: chunks, then one RunResponse with empty outputs.
//   {"stream":"stdout","data":[..]} / {"stream":"stderr","data":[..]}
std::string StreamChunkJson(bool is_stderr, std::string_view data);

struct StreamFrame {
  enum Kind { kStdout, kStderr, kFinal } kind;
  std::string data;   // chunk bytes
  RunResponse final;  // when kFinal
};
[[nodiscard]] Result<StreamFrame> ParseStreamFrame(std::string_view json);

struct ImageStat {
  std::string image;
  std::string driver = "ns";  // a pool is per image and driver
  uint64_t idle = 0, active = 0, queued = 0, max = 0;
  uint64_t total_created = 0, total_acquired = 0, total_evicted = 0;
  uint64_t hits = 0, misses = 0, failed_creations = 0, rejected_busy = 0, creating = 0;
  uint64_t peak_active = 0;  // most runs in flight at once
  // vm pools with --snapshot: the template (TemplateStatus); "" = no snapshot.
  std::string template_state;
  uint64_t clones = 0, clone_failures = 0, template_failures = 0;
  std::string template_error;
};
std::string StatusJson(const std::vector<ImageStat>& images);
[[nodiscard]] Result<std::vector<ImageStat>> ParseStatus(std::string_view json);

std::string EncodePoolFrame(std::string_view json);
// Length from a 4-byte little-endian header; error above cap.
[[nodiscard]] Result<uint32_t> DecodePoolLength(const unsigned char hdr[4], uint32_t cap);

// Appends data as a JSON array of numbers ("[104,105]") without building a
// JSON tree: outputs run to many MiB.
void AppendByteArray(std::string& out, std::string_view data);
// The numbers alone ("104,105"), a comma first unless first: an array
// written in pieces (daemon/run_output.h).
void AppendByteNumbers(std::string& out, std::string_view data, bool first);

}  // namespace wb::proto
