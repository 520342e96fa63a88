// Logging for host binaries (spdlog). Libraries log at debug at most; the
// place that handles an error logs it once.
#pragma once

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>

namespace wb {

enum class LogFormat { kText, kJson };

// level: trace|debug|info|warn|error|off. Logs go to stderr, as text
// ("warmbox: info: msg k=v") or one JSON object per line
// ({"time":"...Z","level":"info","msg":"...","k":"v"}).
void InitLogging(const std::string& level, LogFormat format = LogFormat::kText);

struct LogField {
  std::string_view key;
  std::string value;
  bool number = false;  // a JSON number (value is its text), not a string
};

// An event with fields: "msg k=v k=v" in text, separate keys in JSON.
void LogEvent(spdlog::level::level_enum level, std::string_view msg,
              std::initializer_list<LogField> fields);

}  // namespace wb
