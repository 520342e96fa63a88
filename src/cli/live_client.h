// The CLI's side of a live sandbox's process and file operations: one
// connection to the daemon per operation (daemon::PoolClient::OpenLive),
// then the agent's frames over it (docs/protocol.md), read and written
// blocking.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/fd.h"
#include "proto/agent_proto.h"

namespace wb::cli {

class LiveConn {
 public:
  // Sends request (a live op, proto/live_ops.h) to the daemon at socket.
  [[nodiscard]] static Result<LiveConn> Open(const std::string& socket,
                                             const nlohmann::json& request);

  int fd() const { return fd_.get(); }
  [[nodiscard]] Result<void> Send(proto::FrameType type, std::string_view payload);
  // The next frame; blocks. An error at EOF names what was awaited.
  [[nodiscard]] Result<proto::Frame> Next();
  // Feeds what is readable now (after poll said so); false at EOF.
  [[nodiscard]] Result<bool> ReadSome();
  std::optional<proto::Frame> Pop() { return dec_.Next(); }

 private:
  UniqueFd fd_;
  proto::FrameDecoder dec_;
};

// The error an agent's `e` (or `F`) frame carries, with its code.
Error OpError(const proto::Frame& f);
// One frame that must be `want` (else the `e`/`F` error, or a protocol error).
[[nodiscard]] Result<std::string> Expect(LiveConn& c, proto::FrameType want);

// "ID:PATH" -> {ID, PATH}; nullopt when s is a local path.
std::optional<std::pair<std::string, std::string>> SplitRemote(const std::string& s);

// The daemon socket of a verb's --socket option ("" = the default).
std::string SocketOrDefault(const std::string& s);

}  // namespace wb::cli
