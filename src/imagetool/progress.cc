#include "imagetool/progress.h"

#include <cstdio>

namespace wb::imagetool {

void Progress::Update(const std::string& label, uint64_t done, uint64_t total) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (done != total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  std::fprintf(stderr, "\r%s: %7.1f / %.1f MB", label.c_str(), static_cast<double>(done) / 1e6,
               static_cast<double>(total) / 1e6);
  std::fflush(stderr);
}

void Progress::Done(const std::string& label, const std::string& what) {
  if (!enabled_) return;
  std::fprintf(stderr, "\r%s: %-30s\n", label.c_str(), what.c_str());
}

}  // namespace wb::imagetool
