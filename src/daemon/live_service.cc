// ToJson(LiveInfo) until the live registry (live_registry.cc) brings its
// own: the same fields, in the same order. Removed when that is merged.
#include "daemon/live_service.h"

#include <nlohmann/json.hpp>

namespace wb::daemon {

const char* LiveStateName(LiveState s) {
  switch (s) {
    case LiveState::kRunning:
      return "running";
    case LiveState::kPaused:
      return "paused";
    case LiveState::kDead:
      return "dead";
  }
  return "dead";
}

std::string ToJson(const LiveInfo& i) {
  using nlohmann::json;
  json j{{"id", i.id},
         {"image", i.image},
         {"driver", i.driver},
         {"state", LiveStateName(i.state)},
         {"created_ms", i.created_ms},
         {"expires_ms", i.expires_ms},
         {"on_timeout", i.on_timeout},
         {"metadata", i.metadata},
         {"env", i.env},
         {"user", i.user},
         {"cwd", i.cwd},
         {"memory_bytes", i.memory_bytes},
         {"pids", i.pids},
         {"cpus", i.cpus},
         {"main", i.main},
         {"main_pid", i.main_pid},
         {"main_exit_code", i.main_exit_code ? json(*i.main_exit_code) : json(nullptr)},
         {"memory_current", i.memory_current},
         {"cpu_usage_us", i.cpu_usage_us},
         {"pids_current", i.pids_current}};
  if (i.state == LiveState::kDead) j["dead_reason"] = i.dead_reason;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace wb::daemon
