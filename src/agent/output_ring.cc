#include "agent/output_ring.h"

#include <algorithm>
#include <cstring>

namespace wb::agent {

OutputRing::OutputRing(uint64_t capacity) : cap_(std::max<uint64_t>(capacity, 1)) {}

void OutputRing::Append(bool is_err, std::string_view bytes) {
  if (bytes.empty()) return;
  if (runs_.empty() || runs_.back().second != is_err) runs_.emplace_back(end_, is_err);
  // Only the last cap_ bytes of a huge append can be kept.
  if (bytes.size() > cap_) {
    end_ += bytes.size() - cap_;
    bytes.remove_prefix(bytes.size() - cap_);
  }
  while (!bytes.empty()) {
    uint64_t idx = end_ % cap_;
    uint64_t n = std::min<uint64_t>(bytes.size(), cap_ - idx);
    // Before the first wrap the buffer grows as output comes (idx is then
    // data_.size()): an idle process holds no more than it wrote.
    if (idx + n > data_.size()) data_.resize(idx + n);
    std::memcpy(data_.data() + idx, bytes.data(), n);
    end_ += n;
    bytes.remove_prefix(n);
  }
  start_ = std::max(start_, end_ > cap_ ? end_ - cap_ : 0);
  // Drop runs that ended before start_ (keep the one start_ falls in).
  while (runs_.size() > 1 && runs_[1].first <= start_) runs_.pop_front();
}

uint64_t OutputRing::Read(uint64_t from, uint64_t max_bytes,
                          const std::function<void(bool, std::string_view)>& emit) const {
  uint64_t pos = std::clamp(from, start_, end_);
  uint64_t stop = end_ - pos > max_bytes ? pos + max_bytes : end_;
  // The run pos falls in: the last one beginning at or before it.
  auto run = std::upper_bound(runs_.begin(), runs_.end(), pos,
                              [](uint64_t o, const auto& r) { return o < r.first; });
  if (run != runs_.begin()) --run;
  while (pos < stop) {
    auto next = run + 1;
    uint64_t run_end = next == runs_.end() ? end_ : next->first;
    uint64_t seg_end = std::min(stop, run_end);
    while (pos < seg_end) {
      uint64_t idx = pos % cap_;
      uint64_t n = std::min(seg_end - pos, cap_ - idx);
      emit(run->second, std::string_view(data_.data() + idx, n));
      pos += n;
    }
    run = next;
  }
  return pos;
}

void OutputRing::Release() {
  start_ = end_;
  runs_.clear();
  std::string().swap(data_);
}

}  // namespace wb::agent
