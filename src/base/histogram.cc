#include "base/histogram.h"

#include <cstdio>

namespace wb {

void Histogram::Observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // NaN and clock oddities count as 0
  ++count_;
  sum_ += seconds;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    if (seconds <= kBounds[i]) {
      ++buckets_[i];
      return;
    }
  }
  // Above the last bound: only in +Inf (count_).
}

uint64_t Histogram::CumulativeAt(size_t i) const {
  uint64_t n = 0;
  for (size_t k = 0; k <= i && k < buckets_.size(); ++k) n += buckets_[k];
  return n;
}

void Histogram::Render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  char num[64];
  uint64_t cum = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    cum += buckets_[i];
    std::snprintf(num, sizeof num, "%g", kBounds[i]);
    out += name + "_bucket{" + labels + sep + "le=\"" + num + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_bucket{" + labels + sep + "le=\"+Inf\"} " + std::to_string(count_) + "\n";
  std::snprintf(num, sizeof num, "%.9g", sum_);
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += name + "_sum" + braces + " " + num + "\n";
  out += name + "_count" + braces + " " + std::to_string(count_) + "\n";
}

}  // namespace wb
