#include "base/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace wb {

void InitLogging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("warmbox");
  logger->set_pattern(level == "debug" || level == "trace" ? "warmbox: %H:%M:%S.%f %l: %v"
                                                            : "warmbox: %l: %v");
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

}  // namespace wb
