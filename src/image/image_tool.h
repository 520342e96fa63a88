// Running the image helper (warmbox-image: pull, import), which is linked
// dynamically against libarchive and libcurl and so lives outside the static
// warmbox binary. The CLI and the pool daemon exec it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb {

struct ImageToolCall {
  std::string tool_path;  // warmbox-image
  std::string state_dir;
  uint32_t uid_base = 0;
  std::vector<std::string> args;      // the verb and its options: "pull", "--insecure"
  std::vector<std::string> operands;  // REF or FILE: after "--", never read as options
};

// Runs the helper to completion with its output captured; on failure the
// error carries the helper's own message (its last stderr line).
[[nodiscard]] Result<void> RunImageTool(const ImageToolCall& call);
// Runs it on our stdio (the CLI: progress on the terminal, the helper prints
// its own error); returns its exit code.
[[nodiscard]] Result<int> ExecImageTool(const ImageToolCall& call);

}  // namespace wb
