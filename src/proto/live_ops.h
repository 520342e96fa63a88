// The process and file operations on a live sandbox, as the pool socket
// carries them (docs/protocol.md, "Live sandbox operations"): a JSON request
// names the sandbox and the operation; the daemon answers {"ok":true} (or an
// error with its kind) and the connection then carries the agent's frames
// both ways. Parsing is pure: the daemon turns a request into the first frame
// it sends the agent and the frames it lets the client send after it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "proto/agent_proto.h"

namespace wb::proto {

enum class LiveOp { kExec, kAttach, kPs, kSignal, kFs };

struct LiveOpRequest {
  LiveOp op = LiveOp::kExec;
  std::string sandbox;  // the live id (\"id\" on the wire)
  // The first frame for the agent. For exec, the JSON is completed by the
  // daemon (the sandbox's default user and cwd) before it is sent: see exec.
  FrameType first = FrameType::kExec;
  std::string payload;
  // exec only: the request as parsed; user/cwd empty = the sandbox's defaults.
  ExecRequest exec;
  // Frame types the client may send after the daemon's {"ok":true}.
  std::vector<FrameType> client_frames;
};

// Whether op names one of these operations ("exec", "attach", "ps",
// "signal", "fs").
bool IsLiveOp(std::string_view op);

// Errors are kInvalidArgument and name the field.
[[nodiscard]] Result<LiveOpRequest> ParseLiveOpRequest(std::string_view json);

// The ExecRequest JSON the agent gets for a live exec: keep is always set
// (a client that goes away never kills the process).
std::string LiveExecJson(const LiveOpRequest& r);

// "TERM", "SIGTERM", "term", "15" -> 15; errors name the value.
[[nodiscard]] Result<int> ParseSignal(std::string_view s);

// The daemon's first answer: {"ok":true}.
inline constexpr std::string_view kLiveOpOk = R"({"ok":true})";

}  // namespace wb::proto
