// Host side of the exec channel (proto/agent_proto.h).
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"
#include "base/fd.h"
#include "sandbox/driver.h"

namespace wb {

[[nodiscard]] Result<UniqueFd> ConnectUnix(const std::string& path);
// A listening socket at path, mode 0600 (backlog 64).
[[nodiscard]] Result<UniqueFd> ListenUnix(const std::string& path);

// One heartbeat on a new connection. Fails when the agent does not answer
// within timeout_ms or dies.
[[nodiscard]] Result<void> AgentHeartbeat(const AgentEndpoint& ep, int timeout_ms);
// The same, returning the agent's answer (JSON).
[[nodiscard]] Result<std::string> AgentHeartbeatReply(const AgentEndpoint& ep, int timeout_ms);

// One request frame, one reply frame of the given type (a Failure frame or
// any other is an error carrying its payload).
[[nodiscard]] Result<std::string> AgentRequest(const AgentEndpoint& ep, proto::FrameType type,
                                               std::string_view payload, proto::FrameType reply,
                                               int timeout_ms);

// Readiness: heartbeats with a short per-attempt timeout until one answers,
// the agent dies (fails at once) or total_ms passes (fails).
[[nodiscard]] Result<void> WaitAgentReady(const AgentEndpoint& ep, int attempt_ms, int total_ms);

// Runs one command. Output is streamed to io's callbacks or collected.
// Hanging up (destroying the connection) makes the agent kill the command.
[[nodiscard]] Result<ExecOutcome> AgentExec(const AgentEndpoint& ep, const proto::ExecRequest& req,
                                            ExecIo& io);

}  // namespace wb
