// A synchronous QMP client (QEMU's JSON monitor) for the snapshot work:
// one command at a time, events skipped. Every wait is bounded.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "base/fd.h"

namespace wb::vm {

class Qmp {
 public:
  // Connects, reads the greeting and negotiates capabilities.
  [[nodiscard]] static Result<Qmp> Connect(const std::string& socket_path, int timeout_ms);
  // {"execute":cmd,"arguments":args}; the "return" member, or the error.
  [[nodiscard]] Result<nlohmann::json> Execute(const std::string& cmd,
                                               const nlohmann::json& args = nullptr);
  // Polls query-migrate until "completed" (or fails on "failed"/timeout).
  [[nodiscard]] Result<void> WaitMigration(int timeout_ms);

 private:
  [[nodiscard]] Result<nlohmann::json> ReadMessage();
  UniqueFd fd_;
  std::string path_, buf_;
  int timeout_ms_ = 0;
};

}  // namespace wb::vm
