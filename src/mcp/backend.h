// What the MCP tools (tools.h) need from warmbox: the live-sandbox
// operations, in the tools' own terms. One implementation serves both
// transports (live_backend.h, over the daemon's LiveService); tests use a
// fake. Everything runs on the daemon's event loop.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb::mcp {

struct SandboxSpec {
  std::string image;                            // "" = kDefaultImage
  std::optional<uint64_t> timeout_s;            // absent: the daemon's default
  std::map<std::string, std::string> metadata;  // created_by=mcp is added
  std::vector<std::string> env;                 // "K=V"
};

struct SandboxSummary {
  std::string id, image, state;
  int64_t created_ms = 0, expires_ms = 0;
  std::map<std::string, std::string> metadata;
};

struct CommandSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"
  std::string cwd;               // "": the sandbox's default
  uint64_t timeout_ms = 0;
};

struct CommandResult {
  std::string stdout_data, stderr_data;  // capped at kMaxOutput each
  bool stdout_truncated = false, stderr_truncated = false;
  int exit_code = 0;
  bool timed_out = false;
  // The program could not be started (exit_code 127; why in stderr_data).
  bool not_started = false;
};

// A rich output of run_code (an image, HTML...): what the code interpreter
// (issue 16) returns besides text. mime "image/png" data is base64.
struct RichOutput {
  std::string mime;
  std::string data;
};

struct CodeResult {
  CommandResult command;
  std::vector<RichOutput> outputs;
};

struct FileEntry {
  std::string path, type;  // type: file, dir, symlink, other
  uint64_t size = 0;
};

// Per stream, what a command's result keeps (the rest is counted, not kept).
inline constexpr size_t kMaxOutput = 1u << 20;
// The largest file read_file returns.
inline constexpr uint64_t kMaxReadBytes = 8u << 20;
// The template MCP sandboxes use unless told otherwise (built on first use).
inline constexpr const char* kDefaultImage = "base";

class Backend {
 public:
  virtual ~Backend() = default;
  // Errors carry their codes (not_found, busy, no image...) and a message.
  virtual boost::asio::awaitable<Result<std::string>> CreateSandbox(SandboxSpec spec) = 0;
  virtual boost::asio::awaitable<Result<void>> KillSandbox(std::string id) = 0;
  virtual boost::asio::awaitable<Result<std::vector<SandboxSummary>>> ListSandboxes() = 0;
  // A program that cannot be started is kNotFound naming it.
  virtual boost::asio::awaitable<Result<CommandResult>> Run(std::string id, CommandSpec cmd) = 0;
  // The seam for the code interpreter (issue 16): code in a language, with
  // rich outputs. The default (tools.cc) runs python3 -c, node -e or bash -c
  // through Run; a backend with an interpreter overrides it.
  virtual boost::asio::awaitable<Result<CodeResult>> RunCode(std::string id, std::string language,
                                                             std::string code, uint64_t timeout_ms);
  // Errors past kMaxReadBytes are resource_exhausted.
  virtual boost::asio::awaitable<Result<std::string>> ReadFile(std::string id,
                                                               std::string path) = 0;
  virtual boost::asio::awaitable<Result<void>> WriteFile(std::string id, std::string path,
                                                         std::string data) = 0;
  virtual boost::asio::awaitable<Result<std::vector<FileEntry>>> ListFiles(std::string id,
                                                                           std::string path,
                                                                           uint32_t depth) = 0;
};

// The command RunCode's default runs for a language: python -> python3 -c,
// javascript -> node -e, bash -> bash -c; nullopt for another language.
std::optional<std::vector<std::string>> CodeCommand(const std::string& language,
                                                    const std::string& code);

}  // namespace wb::mcp
