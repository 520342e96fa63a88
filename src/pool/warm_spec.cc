#include "pool/warm_spec.h"

#include "base/strings.h"

namespace wb {

Result<std::vector<WarmEntry>> ParseWarmSpecs(const std::vector<std::string>& args,
                                              size_t default_count) {
  std::vector<WarmEntry> out;
  for (const auto& arg : args) {
    for (const auto& raw : Split(arg, ',')) {
      std::string entry(Trim(raw));
      if (entry.empty()) continue;
      WarmEntry e;
      size_t eq = entry.find('=');
      e.image = std::string(Trim(std::string_view(entry).substr(0, eq)));
      if (e.image.empty()) return Fail("--warm", "", "missing image in '" + entry + "'");
      e.count = default_count;
      if (eq != std::string::npos) {
        std::string_view count = Trim(std::string_view(entry).substr(eq + 1));
        auto n = ParseUint(count, "--warm");
        if (!n.ok()) return Fail("--warm", "", "invalid warm count in '" + entry + "'");
        if (*n == 0) return Fail("--warm", "", "count must be > 0 (in '" + entry + "')");
        e.count = static_cast<size_t>(*n);
      }
      std::erase_if(out, [&](const WarmEntry& w) { return w.image == e.image; });
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace wb
