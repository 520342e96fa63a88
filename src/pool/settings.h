// Settings of the warm pools (kept apart from the Asio-heavy pool headers).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "sandbox/driver.h"

namespace wb::pool {

struct PoolSettings {
  size_t size = 2;                                 // idle sandboxes kept per image
  size_t max = 8;                                  // concurrent runs per image (permits)
  uint64_t ttl_s = 300;                            // idle TTL, 0 = none
  std::chrono::milliseconds queue_timeout{30000};  // wait for a permit, then "busy"
  size_t queue_limit = 256;                        // waiters per image, then "busy" at once
  // A hung idle agent is caught after this long; generous, so that a busy
  // host does not evict healthy sandboxes.
  std::chrono::milliseconds health_timeout{2000};
  size_t refill_parallel = 2;  // creations in flight per pool for refill
  Limits limits;
  SecurityOptions security;
};

}  // namespace wb::pool
