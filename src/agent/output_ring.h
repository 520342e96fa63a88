// The output ring of a kept process (docs/protocol.md, "Kept processes"):
// the newest `capacity` bytes of its output, both streams in the order they
// were produced, addressed by absolute byte offsets that count from the
// process's first output byte and never reset. Pure: no syscalls.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>

namespace wb::agent {

class OutputRing {
 public:
  explicit OutputRing(uint64_t capacity);

  // Appends bytes of one stream; the oldest bytes go once capacity is full.
  void Append(bool is_err, std::string_view bytes);
  // Calls emit with the kept bytes from `from` (clamped to [start, end]) on,
  // at most max_bytes of them, each call one stream's contiguous run.
  // Returns the offset after the last byte emitted.
  uint64_t Read(uint64_t from, uint64_t max_bytes,
                const std::function<void(bool is_err, std::string_view bytes)>& emit) const;
  // Forgets every kept byte (start() becomes end()); the offsets go on.
  void Release();

  uint64_t start() const { return start_; }  // the oldest kept byte
  uint64_t end() const { return end_; }      // one past the newest byte
  uint64_t capacity() const { return cap_; }
  // Memory held for the bytes (grows up to capacity as output comes).
  uint64_t held() const { return data_.size(); }

 private:
  uint64_t cap_;
  uint64_t start_ = 0, end_ = 0;
  std::string data_;  // byte at offset o lives at data_[o % cap_]
  // Where each stream run begins: (offset, is_err), ascending; the first
  // entry is at or before start_ (while any byte is kept).
  std::deque<std::pair<uint64_t, bool>> runs_;
};

}  // namespace wb::agent
