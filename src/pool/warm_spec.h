// --warm IMG[=COUNT],... parsing, with the upstream's messages.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb {

struct WarmEntry {
  std::string image;
  size_t count = 0;
};

// Each arg may hold several comma-separated entries; whitespace around image
// and count is trimmed; count defaults to default_count. A later entry for the
// same image replaces an earlier one.
[[nodiscard]] Result<std::vector<WarmEntry>> ParseWarmSpecs(const std::vector<std::string>& args,
                                                            size_t default_count);

}  // namespace wb
