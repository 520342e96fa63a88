#include "base/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <nlohmann/json.hpp>

namespace wb {

namespace {

LogFormat g_format = LogFormat::kText;
// The fields of the LogEvent being formatted on this thread (spdlog formats
// synchronously, in the calling thread).
thread_local const std::initializer_list<LogField>* t_fields = nullptr;

std::string JsonString(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// %* in the JSON pattern: "msg":"<escaped>" and the event's fields.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string out =
        "\"msg\":" + JsonString(std::string_view(msg.payload.data(), msg.payload.size()));
    if (t_fields) {
      for (const auto& f : *t_fields)
        out += "," + JsonString(f.key) + ":" + (f.number ? f.value : JsonString(f.value));
    }
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

void InitLogging(const std::string& level, LogFormat format) {
  g_format = format;
  auto logger = spdlog::stderr_logger_mt("warmbox");
  if (format == LogFormat::kJson) {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l",%*})");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern(level == "debug" || level == "trace" ? "warmbox: %H:%M:%S.%f %l: %v"
                                                             : "warmbox: %l: %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(logger);
}

void LogEvent(spdlog::level::level_enum level, std::string_view msg,
              std::initializer_list<LogField> fields) {
  if (!spdlog::should_log(level)) return;
  if (g_format == LogFormat::kJson) {
    t_fields = &fields;
    spdlog::log(level, "{}", msg);
    t_fields = nullptr;
    return;
  }
  std::string line(msg);
  for (const auto& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    // Quote values that would not read back as one token.
    if (f.value.empty() || f.value.find_first_of(" \"=") != std::string::npos) {
      line += JsonString(f.value);
    } else {
      line += f.value;
    }
  }
  spdlog::log(level, "{}", line);
}

}  // namespace wb
