// A fixed-bucket histogram of durations in seconds, rendered in Prometheus'
// cumulative form. Not thread-safe: each lives on one thread (the daemon's loop).
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace wb {

class Histogram {
 public:
  // Upper bounds (seconds) shared by every warmbox histogram: 0.5 ms (a warm
  // run) to 5 min (a long command or a slow VM boot).
  static constexpr std::array<double, 16> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 300};

  void Observe(double seconds);
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  // Observations <= kBounds[i] (cumulative).
  uint64_t CumulativeAt(size_t i) const;

  // Appends NAME_bucket{LABELS,le="..."} ..., NAME_sum and NAME_count lines.
  // labels is "" or a rendered label list without braces (image="busybox").
  void Render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::array<uint64_t, kBounds.size()> buckets_{};  // non-cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

}  // namespace wb
