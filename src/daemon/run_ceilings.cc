#include "daemon/run_ceilings.h"

#include <sstream>
#include <string>

namespace wb::daemon {
namespace {

template <typename T>
std::string Text(T v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

template <typename T>
Result<void> AtMost(const char* field, const std::optional<T>& asked, T ceiling, const char* flag) {
  if (!asked || *asked <= ceiling) return Ok();
  return Fail(
      ErrorCode::kInvalidArgument, "bad request", field,
      Text(*asked) + " is above the daemon's ceiling of " + Text(ceiling) + " (" + flag + ")");
}

}  // namespace

Result<void> CheckRunCeilings(const proto::RunRequest& run, const RunCeilings& c) {
  WB_RETURN_IF_ERROR(AtMost("memory", run.memory_bytes, c.memory_bytes, "--max-run-memory"));
  WB_RETURN_IF_ERROR(AtMost("pids", run.pids, c.pids, "--max-run-pids"));
  if (c.cpus > 0) WB_RETURN_IF_ERROR(AtMost("cpus", run.cpus, c.cpus, "--max-run-cpus"));
  WB_RETURN_IF_ERROR(AtMost("nofile", run.nofile, c.nofile, "--max-run-nofile"));
  WB_RETURN_IF_ERROR(AtMost("output_cap", run.output_cap, c.output_cap, "--max-run-output"));
  std::optional<uint64_t> timeout;
  if (run.timeout_ms) timeout = run.timeout_ms;
  WB_RETURN_IF_ERROR(AtMost("timeout_ms", timeout, c.timeout_ms, "--max-run-timeout"));
  return Ok();
}

}  // namespace wb::daemon
