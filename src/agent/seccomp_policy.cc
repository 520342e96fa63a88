#include "agent/seccomp_policy.h"

#include <linux/sched.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace wb::agent {
namespace {

SeccompRule Deny(std::string name, std::string why, int err = 0) {
  SeccompRule r;
  r.syscall = std::move(name);
  r.errno_value = err;
  r.why = std::move(why);
  return r;
}

// The filter sees each argument as a 64-bit register, but the kernel reads
// some as 32-bit ints and ignores the upper half: ioctl's request is an
// unsigned int, so TIOCSTI | 1 << 32 is TIOCSTI to the kernel, and a rule
// comparing all 64 bits would let it through. Conditions on such an argument
// compare its low 32 bits only.
bool Is32BitArg(std::string_view syscall, int arg) { return syscall == "ioctl" && arg == 1; }

SeccompRule NarrowTo32Bits(SeccompRule r) {
  if (!Is32BitArg(r.syscall, r.arg)) return r;
  r.mask = r.op == SeccompRule::Op::kEq ? 0xffffffffu : (r.mask & 0xffffffffu);
  r.op = SeccompRule::Op::kMaskedEq;
  r.value &= 0xffffffffu;
  return r;
}

SeccompRule DenyIf(std::string name, int arg, SeccompRule::Op op, uint64_t mask, uint64_t value,
                   std::string why) {
  SeccompRule r = Deny(std::move(name), std::move(why));
  r.arg = arg;
  r.op = op;
  r.mask = mask;
  r.value = value;
  return NarrowTo32Bits(std::move(r));
}

struct ErrnoName {
  const char* name;
  int value;
};
constexpr ErrnoName kErrnos[] = {
    {"EPERM", EPERM}, {"ENOSYS", ENOSYS}, {"EACCES", EACCES}, {"EINVAL", EINVAL}};

}  // namespace

bool RuleMatches(const SeccompRule& rule, uint64_t arg_value) {
  if (rule.arg < 0) return true;
  if (rule.op == SeccompRule::Op::kEq) return arg_value == rule.value;
  return (arg_value & rule.mask) == rule.value;
}

SeccompPolicy DefaultSeccompPolicy() {
  using Op = SeccompRule::Op;
  SeccompPolicy p;
  auto& d = p.deny;
  for (const char* s : {"init_module", "finit_module", "delete_module"})
    d.push_back(Deny(s, "kernel modules"));
  for (const char* s : {"kexec_load", "kexec_file_load", "reboot"})
    d.push_back(Deny(s, "replace or stop the kernel"));
  for (const char* s : {"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen",
                        "fsconfig", "fsmount", "fspick", "mount_setattr"}) {
    d.push_back(Deny(s, "mounts (the agent set them up; the command may not change them)"));
  }
  d.push_back(Deny("bpf", "eBPF programs"));
  d.push_back(
      Deny("perf_event_open", "performance counters (side channels, kernel attack surface)"));
  d.push_back(Deny("userfaultfd", "user page-fault handling (a staple of kernel exploits)"));
  for (const char* s : {"io_uring_setup", "io_uring_enter", "io_uring_register"}) {
    d.push_back(Deny(s, "io_uring (large kernel attack surface)"));
  }
  for (const char* s : {"keyctl", "add_key", "request_key"})
    d.push_back(Deny(s, "kernel keyrings (not namespaced)"));
  for (const char* s : {"swapon", "swapoff"}) d.push_back(Deny(s, "swap"));
  for (const char* s : {"clock_settime", "clock_adjtime", "settimeofday", "adjtimex"}) {
    d.push_back(Deny(s, "the host's clock"));
  }
  for (const char* s : {"acct", "quotactl", "quotactl_fd", "syslog", "lookup_dcookie", "vhangup",
                        "iopl", "ioperm", "open_by_handle_at", "name_to_handle_at", "fanotify_init",
                        "setns", "nfsservctl", "uselib"}) {
    d.push_back(Deny(s, "host-wide or legacy interfaces"));
  }
  // New user namespaces inside: unshare/clone with CLONE_NEWUSER. clone3 passes
  // its flags in memory, which a filter cannot read: ENOSYS makes libc fall
  // back to clone, whose flags are checked.
  d.push_back(
      DenyIf("unshare", 0, Op::kMaskedEq, CLONE_NEWUSER, CLONE_NEWUSER, "new user namespaces"));
  d.push_back(
      DenyIf("clone", 0, Op::kMaskedEq, CLONE_NEWUSER, CLONE_NEWUSER, "new user namespaces"));
  d.push_back(Deny("clone3", "flags unreadable by the filter: libc falls back to clone", ENOSYS));
  d.push_back(DenyIf("ioctl", 1, Op::kEq, 0, TIOCSTI, "TIOCSTI: typing into another terminal"));
  d.push_back(DenyIf("ioctl", 1, Op::kEq, 0, TIOCLINUX, "TIOCLINUX: console control"));
  return p;
}

Result<SeccompPolicy> ParseSeccompProfile(std::string_view text) {
  using nlohmann::json;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Fail("seccomp profile", "", "invalid JSON (expected an object)");
  auto deny = j.find("deny");
  if (deny == j.end() || !deny->is_array())
    return Fail("seccomp profile", "deny", "expected an array of rules");
  SeccompPolicy p;
  for (const auto& r : *deny) {
    if (!r.is_object() || !r.contains("syscall") || !r["syscall"].is_string()) {
      return Fail("seccomp profile", "deny", "each rule needs a \"syscall\" name");
    }
    SeccompRule rule;
    rule.syscall = r["syscall"].get<std::string>();
    if (r.contains("errno")) {
      if (!r["errno"].is_string())
        return Fail("seccomp profile", rule.syscall, "errno must be a name like \"EPERM\"");
      std::string name = r["errno"].get<std::string>();
      bool found = false;
      for (const auto& e : kErrnos) {
        if (name == e.name) {
          rule.errno_value = e.value;
          found = true;
        }
      }
      if (!found) return Fail("seccomp profile", rule.syscall, "unsupported errno " + name);
    }
    if (r.contains("arg")) {
      if (!r["arg"].is_number_unsigned() || r["arg"].get<uint64_t>() > 5) {
        return Fail("seccomp profile", rule.syscall, "arg must be 0-5");
      }
      rule.arg = static_cast<int>(r["arg"].get<uint64_t>());
      std::string op = r.contains("op") && r["op"].is_string() ? r["op"].get<std::string>() : "eq";
      if (op == "eq") {
        rule.op = SeccompRule::Op::kEq;
      } else if (op == "masked_eq") {
        rule.op = SeccompRule::Op::kMaskedEq;
        if (!r.contains("mask") || !r["mask"].is_number_unsigned()) {
          return Fail("seccomp profile", rule.syscall, "masked_eq needs a \"mask\"");
        }
        rule.mask = r["mask"].get<uint64_t>();
      } else {
        return Fail("seccomp profile", rule.syscall, "op must be eq or masked_eq");
      }
      if (!r.contains("value") || !r["value"].is_number_unsigned()) {
        return Fail("seccomp profile", rule.syscall, "an arg condition needs a \"value\"");
      }
      rule.value = r["value"].get<uint64_t>();
    }
    p.deny.push_back(NarrowTo32Bits(std::move(rule)));
  }
  return p;
}

Result<SeccompPolicy> SeccompPolicyFromOption(std::string_view option, std::string_view file_text) {
  if (option == "default" || option.empty()) return DefaultSeccompPolicy();
  if (option == "unconfined") {
    SeccompPolicy p;
    p.unconfined = true;
    return p;
  }
  return ParseSeccompProfile(file_text);
}

std::string SeccompPolicyTable(const SeccompPolicy& p) {
  std::string out = "| syscall | condition | errno | why |\n|---|---|---|---|\n";
  for (const auto& r : p.deny) {
    std::string cond = "always";
    if (r.arg >= 0) {
      cond = "arg" + std::to_string(r.arg) +
             (r.op == SeccompRule::Op::kMaskedEq ? " & " + std::to_string(r.mask) : std::string()) +
             " == " + std::to_string(r.value);
    }
    std::string err = "EPERM";
    for (const auto& e : kErrnos) {
      if (r.errno_value == e.value) err = e.name;
    }
    out += "| `" + r.syscall + "` | " + cond + " | " + err + " | " + r.why + " |\n";
  }
  return out;
}

}  // namespace wb::agent
