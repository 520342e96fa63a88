// Progress on a terminal (bytes/total per layer, one line each, redrawn at
// most ten times a second); silence otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace wb::imagetool {

class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  void Update(const std::string& label, uint64_t done, uint64_t total);
  void Done(const std::string& label, const std::string& what);
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace wb::imagetool
