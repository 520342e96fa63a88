// The syscall policy of sandboxed commands, as data: a deny list on top of
// "allow", in the spirit of Docker's and Podman's default profiles. Denied
// calls fail with an errno (EPERM unless a rule says otherwise); nothing is
// killed. docs/security.md lists the default policy.
//
// A profile file (--security-opt seccomp=PATH) has the same shape:
//   {"deny": [{"syscall": "mount"},
//             {"syscall": "ioctl", "arg": 1, "op": "eq", "value": 21522},
//             {"syscall": "clone", "arg": 0, "op": "masked_eq", "mask": 268435456, "value":
//             268435456},
//             {"syscall": "clone3", "errno": "ENOSYS"}]}
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace wb::agent {

struct SeccompRule {
  std::string syscall;
  int errno_value = 0;  // 0: EPERM
  // Optional condition on one argument; the rule applies only when it holds.
  int arg = -1;  // -1: always
  enum class Op { kEq, kMaskedEq } op = Op::kEq;
  uint64_t mask = 0;
  uint64_t value = 0;
  std::string why;  // for the docs
};

struct SeccompPolicy {
  bool unconfined = false;
  std::vector<SeccompRule> deny;
};

// Conditions on an argument the kernel reads as 32 bits (ioctl's request)
// compare its low 32 bits only, in the default policy and in profiles alike:
// an "eq" there becomes a "masked_eq" with mask 0xffffffff.
SeccompPolicy DefaultSeccompPolicy();
// Whether the rule applies to a call whose argument `arg` has this value (as
// the compiled filter decides it).
bool RuleMatches(const SeccompRule& rule, uint64_t arg_value);
[[nodiscard]] Result<SeccompPolicy> ParseSeccompProfile(std::string_view json);
// "default", "unconfined", or a profile file's contents.
[[nodiscard]] Result<SeccompPolicy> SeccompPolicyFromOption(std::string_view option,
                                                            std::string_view file_text);
// Markdown table of the policy (docs/security.md is checked against it).
std::string SeccompPolicyTable(const SeccompPolicy& p);

}  // namespace wb::agent
