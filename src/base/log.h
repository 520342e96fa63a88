// Logging for host binaries (spdlog). Libraries log at debug at most; the
// place that handles an error logs it once.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace wb {

// level: trace|debug|info|warn|error|off. Logs go to stderr.
void InitLogging(const std::string& level);

}  // namespace wb
