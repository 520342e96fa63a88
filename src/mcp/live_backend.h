// The MCP tools' Backend over the daemon's live sandboxes (LiveService):
// what both transports use, in the daemon process (the stdio transport
// reaches it through the daemon's socket).
#pragma once

#include "daemon/live_service.h"
#include "mcp/backend.h"
#include "proto/agent_proto.h"

namespace wb::mcp {

class LiveBackend : public Backend {
 public:
  explicit LiveBackend(daemon::LiveService& live) : live_(live) {}

  boost::asio::awaitable<Result<std::string>> CreateSandbox(SandboxSpec spec) override;
  boost::asio::awaitable<Result<void>> KillSandbox(std::string id) override;
  boost::asio::awaitable<Result<std::vector<SandboxSummary>>> ListSandboxes() override;
  boost::asio::awaitable<Result<CommandResult>> Run(std::string id, CommandSpec cmd) override;
  // Through the sandbox's code interpreter (port 49999, docs/services.md)
  // when one listens, for rich outputs; else the default (python3 -c ...).
  boost::asio::awaitable<Result<CodeResult>> RunCode(std::string id, std::string language,
                                                     std::string code,
                                                     uint64_t timeout_ms) override;
  boost::asio::awaitable<Result<std::string>> ReadFile(std::string id, std::string path) override;
  boost::asio::awaitable<Result<void>> WriteFile(std::string id, std::string path,
                                                 std::string data) override;
  boost::asio::awaitable<Result<std::vector<FileEntry>>> ListFiles(std::string id, std::string path,
                                                                   uint32_t depth) override;

 private:
  [[nodiscard]] Result<proto::FileRequest> FileRequestFor(const std::string& id, const char* op,
                                                          const std::string& path) const;
  daemon::LiveService& live_;
};

}  // namespace wb::mcp
