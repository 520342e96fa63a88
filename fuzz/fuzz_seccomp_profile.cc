// `--security-opt seccomp=PATH`: the profile file's JSON (ParseSeccompProfile),
// and the docs table rendered from the policy it yields.
//
// Input: a profile file's contents.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/seccomp_policy.h"
#include "fuzz/fuzz_check.h"

using namespace wb::agent;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto p = ParseSeccompProfile(text);
  auto via_option = SeccompPolicyFromOption("/some/profile.json", text);
  FUZZ_CHECK(p.ok() == via_option.ok());
  if (!p.ok()) return 0;
  FUZZ_CHECK(!p->unconfined);
  for (const auto& r : p->deny) {
    FUZZ_CHECK(r.arg >= -1 && r.arg <= 5);
    FUZZ_CHECK(r.errno_value >= 0);
    if (r.arg < 0) FUZZ_CHECK(r.mask == 0 && r.value == 0);
  }
  std::string table = SeccompPolicyTable(*p);
  FUZZ_CHECK(!table.empty());
  return 0;
}
