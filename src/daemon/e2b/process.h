// envd's Process service (process.Process), served from the sandbox's kept
// processes (docs/e2b.md, "envd: processes"; the agent's frames of
// docs/protocol.md). These are the pure parts: the requests as proto3 JSON,
// the events and answers, the Connect headers, the error mapping. The
// service itself is ServeProcess (envd.h).
//
// Requests follow proto3's JSON mapping as the SDKs' protobuf parsers do:
// unknown fields are ignored, null is the default, integers may be JSON
// numbers or numeric strings, enums a name or a number, bytes standard or
// URL-safe base64 with or without padding. Every field of this service is
// one word, so its lowerCamel and proto names are the same.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "proto/agent_proto.h"

namespace wb::daemon::e2b {

// ProcessSelector: {"pid":N} or {"tag":"..."} (one of them).
struct ProcessSelector {
  int64_t pid = 0;  // 0: by tag
  std::string tag;
};

// StartRequest:
// {"process":{"cmd","args","envs","cwd"},"stdin","pty":{"size":{"cols","rows"}},"tag"}.
struct StartRequest {
  std::string cmd;  // required
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> envs;  // sorted by name
  std::optional<std::string> cwd;                         // absent or "": the default
  bool stdin = true;  // absent: open, as envd (SDKs before envd 0.3.0 never send it)
  bool pty = false;
  uint32_t rows = 0, cols = 0;  // pty only; 0: the agent's default (24x80)
  std::string tag;
};
[[nodiscard]] Result<StartRequest> ParseStartRequest(std::string_view json);

// ConnectRequest and CloseStdinRequest: {"process":ProcessSelector}.
[[nodiscard]] Result<ProcessSelector> ParseSelectorRequest(std::string_view json);

// SendInputRequest: {"process":..,"input":{"stdin":"b64"}|{"pty":"b64"}}.
struct InputRequest {
  ProcessSelector process;
  bool pty = false;
  std::string data;
};
[[nodiscard]] Result<InputRequest> ParseSendInputRequest(std::string_view json);

// SendSignalRequest: {"process":..,"signal":"SIGNAL_SIGKILL"|9}. The enum's
// numbers are the signals' own (SIGTERM 15, SIGKILL 9); any number from 1 to
// 64 is taken, as proto3 enums are open.
struct SignalCall {
  ProcessSelector process;
  int signal = 0;
};
[[nodiscard]] Result<SignalCall> ParseSendSignalRequest(std::string_view json);

// UpdateRequest: {"process":..,"pty":{"size":{"cols","rows"}}}; no pty: nothing to do.
struct UpdateRequest {
  ProcessSelector process;
  std::optional<proto::ResizeRequest> size;
};
[[nodiscard]] Result<UpdateRequest> ParseUpdateRequest(std::string_view json);

// The agent's ExecRequest for a Start by user: keep (the process outlives
// the HTTP connection), argv cmd+args, env USER and LOGNAME of the user then
// envs (HOME is the agent's, from the sandbox's passwd), cwd resolved against
// the user's home (absent: default_cwd if set, else the home), timeout_ms
// the Connect deadline (0: none).
proto::ExecRequest StartExec(const StartRequest& r, std::string_view user,
                             std::string_view default_cwd, uint64_t timeout_ms);

// Events of a Start or Connect stream: {"event":{...}}.
std::string StartEventJson(int64_t pid);
// stream: "stdout", "stderr" or "pty".
std::string DataEventJson(std::string_view stream, std::string_view bytes);
std::string KeepaliveEventJson();
// {"event":{"end":{...}}} as envd (Go's os.ProcessState) words it, default
// fields omitted: {"exited":true,"status":"exit status 0"};
// {"exitCode":3,"exited":true,"status":"exit status 3","error":"exit status 3"};
// killed: {"exitCode":-1,"status":"signal: killed","error":"signal: killed"}.
std::string EndEventJson(const proto::ExecExit& e);
// Go's name of a signal ("killed", "terminated"); "signal N" when unnamed.
std::string GoSignalName(int signal);

// ListResponse: the running processes, {"processes":[{"pid","tag"?,
// "config":{"cmd","args"?,"cwd"}}]}. The agent does not keep a process's
// env, so config.envs is absent (empty).
std::string ProcessListJson(const std::vector<proto::ProcessInfo>& ps);

// proto3 bytes: standard or URL-safe base64, padded or not.
[[nodiscard]] Result<std::string> DecodeProtoBytes(std::string_view text, std::string_view field);

// Connect-Timeout-Ms: at most 10 digits (the Connect spec); absent or 0: none.
[[nodiscard]] Result<uint64_t> ParseTimeoutMs(std::optional<std::string_view> header);
// Keepalive-Ping-Interval (seconds, as the SDK sends it); absent: envd's 90 s.
inline constexpr std::chrono::seconds kDefaultKeepalive{90};
[[nodiscard]] Result<std::chrono::seconds> ParseKeepaliveInterval(
    std::optional<std::string_view> header);

// The Connect code of an agent error about starting (or finding) a process:
// an unknown user is unauthenticated (envd's "invalid username"), a cwd
// that does not exist invalid_argument (as envd), the rest by its code.
const char* StartErrorCode(const Error& e);

}  // namespace wb::daemon::e2b
