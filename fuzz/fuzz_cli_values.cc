// The CLI's value parsers: ParseSize (--memory, --disk, --output-cap),
// ParseSeconds (--timeout, --queue-timeout) and ParseUint (--pids, --nofile,
// --userns-base, ...), and what the CLI then does with their results.
//
// Input: one option value, given to all three parsers.
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/strings.h"
#include "fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto v = wb::ParseUint(text, "--pids"); v.ok()) {
    FUZZ_CHECK(wb::Trim(text).find_first_not_of("0123456789") == std::string_view::npos);
    auto again = wb::ParseUint(std::to_string(*v), "--pids");
    FUZZ_CHECK(again.ok() && *again == *v);
  }

  if (auto v = wb::ParseSize(text, "--memory"); v.ok()) {
    // Exact for byte counts a double holds exactly.
    if (*v < (uint64_t{1} << 53)) {
      auto again = wb::ParseSize(std::to_string(*v), "--memory");
      FUZZ_CHECK(again.ok() && *again == *v);
    }
  }

  if (auto s = wb::ParseSeconds(text, "--timeout"); s.ok()) {
    FUZZ_CHECK(*s > 0 && std::isfinite(*s));
    // The conversions the CLI applies (src/cli/run.cc, src/cli/pool.cc), and
    // the timers' milliseconds to nanoseconds: UBSan reports a value they
    // cannot represent.
    volatile uint64_t timeout_ms = static_cast<uint64_t>(std::ceil(*s * 1000));
    auto queue_timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(*s * 1000)));
    volatile int64_t ns = std::chrono::nanoseconds(queue_timeout).count();
    (void)timeout_ms;
    (void)ns;
  }
  return 0;
}
