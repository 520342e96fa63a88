// A blocking client of the pool socket (the CLI, tests, benchmarks).
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

// Whether a client of user `me` may trust the daemon socket at path: the
// socket and its directory must belong to root or to `me`. Anyone else could
// have created them first (the default /tmp/warmbox-UID/pool.sock is in a
// directory every user may write) and would then see every request, its
// environment included. A missing socket in a trusted directory is left to
// connect to report.
[[nodiscard]] Result<void> CheckSocketOwner(const std::string& path, uid_t me);

class PoolClient {
 public:
  explicit PoolClient(std::string socket_path) : socket_(std::move(socket_path)) {}

  // Runs a command. With on_chunk set the run is streamed and chunks arrive as
  // produced (the response then has empty outputs); otherwise the response
  // holds the outputs.
  [[nodiscard]] Result<proto::RunResponse> Run(
      proto::RunRequest req,
      const std::function<void(bool is_stderr, std::string_view)>& on_chunk = {});
  [[nodiscard]] Result<std::vector<proto::ImageStat>> Status();
  [[nodiscard]] Result<void> Stop();
  // A live sandbox's process or file operation (proto/live_ops.h): sends the
  // request and, once the daemon answers {"ok":true}, returns the connection,
  // which then carries the agent's frames (docs/protocol.md). A refusal is an
  // error with the code of the daemon's kind.
  [[nodiscard]] Result<UniqueFd> OpenLive(std::string_view request_json);
  [[nodiscard]] Result<void> Stop(bool keep_sandboxes = false);
  // One request, then every response frame to on_frame until it returns
  // false or the daemon closes the connection (streamed live-sandbox logs).
  [[nodiscard]] Result<void> Stream(std::string_view request_json,
                                    const std::function<bool(const std::string&)>& on_frame);
  // One request, one raw response body (for tests of the wire format).
  [[nodiscard]] Result<std::string> RoundTrip(std::string_view request_json);

 private:
  Result<int> Connect();
  std::string socket_;
};

}  // namespace wb::daemon
