// The exec channel between the host and warmbox-agent.
//
// A stream of frames: 1-byte type, 4-byte big-endian payload length, payload.
// Payloads are capped at kMaxFrame; a peer announcing more is cut off before
// anything is allocated. One exec per connection; heartbeats may repeat.
//
//   host -> agent  'H' heartbeat            agent -> host  'h' {"pid":..}
//                  'E' ExecRequest (JSON)                  'O' stdout bytes
//                  'I' stdin bytes                         'R' stderr bytes
//                  'C' close stdin                         'X' ExecExit (JSON)
//                                                          'F' error text
// See docs/protocol.md.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::proto {

inline constexpr uint32_t kMaxFrame = 16u << 20;
inline constexpr size_t kHeaderSize = 5;
inline constexpr uint64_t kDefaultOutputCap = 16u << 20;

enum class FrameType : char {
  kHeartbeat = 'H',
  kHeartbeatReply = 'h',
  kExec = 'E',
  kStdin = 'I',
  kStdinClose = 'C',
  kStdout = 'O',
  kStderr = 'R',
  kExit = 'X',
  kFailure = 'F',
  kIdentity = 'D',  // host -> guest agent: a VM clone's identity (docs/protocol.md)
  kIdentityReply = 'd',
  // Live sandboxes (docs/protocol.md, "Live sandboxes").
  kStarted = 'S',      // agent -> host {"pid":N,"offset":N}
  kAttach = 'A',       // host -> agent {"pid":N,"from":N}
  kResize = 'W',       // host -> agent {"rows":R,"cols":C}
  kSignal = 'K',       // host -> agent {"pid":N,"signal":N}
  kSignalReply = 'k',  // agent -> host {}
  kList = 'P',         // host -> agent (empty)
  kListReply = 'p',    // agent -> host {"processes":[...]}
  kClaim = 'M',        // host -> agent {"env":[..],"persist":true}
  kClaimReply = 'm',   // agent -> host {}
  kFile = 'L',         // host -> agent FileRequest
  kFileReply = 'l',    // agent -> host FileReply
  kFileEnd = 'x',      // agent -> host {"size":N}: end of a read
  kWatchEvents = 'V',  // agent -> host {"events":[...]}
  kOpError = 'e',      // agent -> host {"code":..,"errno":N,"message":..}
};

bool IsKnownFrameType(char c);

struct Frame {
  FrameType type;
  std::string payload;
};

// Appends one encoded frame to out. payload must be <= kMaxFrame.
void AppendFrame(std::string& out, FrameType type, std::string_view payload);
std::string EncodeFrame(FrameType type, std::string_view payload);

// Incremental decoder: Feed bytes as they arrive, then Next() until empty.
class FrameDecoder {
 public:
  // Returns an error (and stays failed) on an unknown type or oversize frame.
  [[nodiscard]] Result<void> Feed(std::string_view bytes);
  std::optional<Frame> Next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  [[nodiscard]] Result<void> Validate();
  std::string buf_;
  size_t pos_ = 0;
  std::deque<Frame> ready_;
  std::optional<Error> failed_;
};

struct ExecRequest {
  std::vector<std::string> argv;
  std::vector<std::string> env;             // "K=V", applied over the agent's defaults
  std::string cwd;                          // empty: "/"
  std::string user;                         // empty: root; "name", "uid", "uid:gid", "name:group"
  uint64_t timeout_ms = 0;                  // 0: none
  uint64_t output_cap = kDefaultOutputCap;  // per stream
  bool stdin = false;                       // host will send 'I'/'C'; else stdin is empty
  uint64_t nofile = 0;                      // RLIMIT_NOFILE; 0: the sandbox's default
};

struct ExecExit {
  int exit_code = 0;  // code, 128+signal, 137 on timeout, 127 when not started
  int signal = 0;
  bool timed_out = false;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::string error;  // why the program could not be started
  // Filled by the host, not the agent: the sandbox's cgroup counted an OOM
  // kill during the command.
  bool oom_killed = false;
};

std::string ToJson(const ExecRequest& r);
std::string ToJson(const ExecExit& e);
[[nodiscard]] Result<ExecRequest> ParseExecRequest(std::string_view json);
[[nodiscard]] Result<ExecExit> ParseExecExit(std::string_view json);

}  // namespace wb::proto
