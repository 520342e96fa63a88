// `warmbox pool start --warm IMG[=COUNT],...` (ParseWarmSpecs).
//
// Input: one --warm argument per line; the default count is 2 (the CLI passes
// --size, default 2).
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/strings.h"
#include "fuzz/fuzz_check.h"
#include "pool/warm_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string> args = wb::Split(text, '\n');
  constexpr size_t kDefault = 2;

  auto r = wb::ParseWarmSpecs(args, kDefault);
  if (!r.ok()) return 0;
  std::set<std::string> seen;
  std::string again_arg;
  for (const auto& e : *r) {
    FUZZ_CHECK(!e.image.empty());
    FUZZ_CHECK(wb::Trim(e.image) == e.image);
    FUZZ_CHECK(e.image.find_first_of(",=") == std::string::npos);
    FUZZ_CHECK(e.count > 0);
    FUZZ_CHECK(seen.insert(e.image).second);  // a later entry replaced an earlier one
    if (!again_arg.empty()) again_arg += ',';
    again_arg += e.image + "=" + std::to_string(e.count);
  }
  // The entries, written back as one --warm argument, parse to the same list.
  auto again = wb::ParseWarmSpecs({again_arg}, kDefault);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->size() == r->size());
  for (size_t i = 0; i < r->size(); ++i) {
    FUZZ_CHECK((*again)[i].image == (*r)[i].image);
    FUZZ_CHECK((*again)[i].count == (*r)[i].count);
  }
  return 0;
}
