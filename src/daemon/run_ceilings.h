// Daemon-wide ceilings on what one run may ask for (docs/security.md): a
// run's own memory, pids, cpus, open files, output cap and timeout are
// refused above them, as a bad request naming the field and the ceiling,
// before any sandbox is touched. Pure and unit-tested.
#pragma once

#include <cstdint>

#include "base/error.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

struct RunCeilings {
  uint64_t memory_bytes = uint64_t{8} << 30;  // --max-run-memory
  uint64_t pids = 32768;                      // --max-run-pids
  double cpus = 0;                            // --max-run-cpus; 0 = the host's CPUs
  uint64_t nofile = 65536;                    // --max-run-nofile
  uint64_t output_cap = uint64_t{64} << 20;   // --max-run-output, per stream
  uint64_t timeout_ms = 24 * 3600 * 1000;     // --max-run-timeout
};

// Fails (kInvalidArgument) on the first field of run above its ceiling.
[[nodiscard]] Result<void> CheckRunCeilings(const proto::RunRequest& run, const RunCeilings& c);

}  // namespace wb::daemon
