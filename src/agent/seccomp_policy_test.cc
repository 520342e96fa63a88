#include "agent/seccomp_policy.h"

#include <gtest/gtest.h>

#include "agent/caps.h"
#include "agent/seccomp.h"
#include "base/fs.h"
#include "tests/assert_ok.h"

namespace wb::agent {
namespace {

TEST(SeccompPolicyTest, DefaultDeniesTheDocumentedFamilies) {
  auto p = DefaultSeccompPolicy();
  EXPECT_FALSE(p.unconfined);
  auto has = [&](const std::string& name) {
    for (const auto& r : p.deny) {
      if (r.syscall == name) return true;
    }
    return false;
  };
  for (const char* s : {"init_module", "kexec_load", "reboot", "mount", "umount2", "bpf",
                        "perf_event_open", "keyctl", "userfaultfd", "swapon", "clock_settime",
                        "unshare", "clone", "clone3", "ioctl", "setns", "io_uring_setup"}) {
    EXPECT_TRUE(has(s)) << s;
  }
}

TEST(SeccompPolicyTest, CompilesToABpfProgram) {
  auto prog = CompileSeccomp(DefaultSeccompPolicy());
  ASSERT_OK(prog);
  EXPECT_GT(prog->size(), 10u);
  SeccompPolicy unconfined;
  unconfined.unconfined = true;
  auto none = CompileSeccomp(unconfined);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Issue 19, finding 11: ioctl's request is an unsigned int to the kernel but
// a 64-bit register to the filter: a rule on all 64 bits let
// TIOCSTI | 1 << 32 through. Rules on ioctl's request compare the low 32 bits.
TEST(SeccompPolicyTest, IoctlRulesMatchTheLow32BitsOnly) {
  int ioctl_rules = 0;
  for (const auto& r : DefaultSeccompPolicy().deny) {
    if (r.syscall != "ioctl") continue;
    ++ioctl_rules;
    EXPECT_EQ(r.arg, 1);
    EXPECT_EQ(r.op, SeccompRule::Op::kMaskedEq) << r.why;
    EXPECT_EQ(r.mask, 0xffffffffu) << r.why;
    EXPECT_TRUE(RuleMatches(r, r.value | (1ULL << 32))) << r.why;
    EXPECT_TRUE(RuleMatches(r, r.value | 0xffffffff00000000ULL)) << r.why;
    EXPECT_FALSE(RuleMatches(r, r.value + 1)) << r.why;
  }
  EXPECT_EQ(ioctl_rules, 2);
  // A profile's "eq" on ioctl's request is held to the same 32 bits.
  auto p = ParseSeccompProfile(R"({"deny":[{"syscall":"ioctl","arg":1,"op":"eq","value":21522},
      {"syscall":"ioctl","arg":1,"op":"masked_eq","mask":18446744073709551615,"value":21523}]})");
  ASSERT_TRUE(p.ok()) << p.error().ToString();
  EXPECT_TRUE(RuleMatches(p->deny[0], 21522 | (1ULL << 32)));
  EXPECT_TRUE(RuleMatches(p->deny[1], 21523 | (1ULL << 40)));
  // Other syscalls' 64-bit arguments keep all their bits.
  auto clone = ParseSeccompProfile(R"({"deny":[{"syscall":"clone","arg":0,"value":1}]})");
  ASSERT_TRUE(clone.ok());
  EXPECT_FALSE(RuleMatches(clone->deny[0], 1 | (1ULL << 32)));
}

TEST(SeccompPolicyTest, ProfileFileRoundTrip) {
  auto p = ParseSeccompProfile(R"({"deny":[{"syscall":"mkdir"},
      {"syscall":"ioctl","arg":1,"op":"eq","value":21522},
      {"syscall":"clone","arg":0,"op":"masked_eq","mask":268435456,"value":268435456},
      {"syscall":"clone3","errno":"ENOSYS"}]})");
  ASSERT_OK(p);
  ASSERT_EQ(p->deny.size(), 4u);
  EXPECT_EQ(p->deny[0].syscall, "mkdir");
  EXPECT_EQ(p->deny[0].arg, -1);
  EXPECT_EQ(p->deny[1].arg, 1);
  EXPECT_EQ(p->deny[1].value, 21522u);
  EXPECT_EQ(p->deny[2].op, SeccompRule::Op::kMaskedEq);
  EXPECT_EQ(p->deny[3].errno_value, ENOSYS);
  EXPECT_TRUE(CompileSeccomp(*p).ok());
}

TEST(SeccompPolicyTest, BadProfilesNameTheProblem) {
  struct Case {
    const char* json;
    const char* needle;
  };
  for (const Case& c : std::vector<Case>{
           {"nope", "invalid JSON"},
           {"{}", "deny"},
           {R"({"deny":[{}]})", "syscall"},
           {R"({"deny":[{"syscall":"x","errno":"EWHAT"}]})", "EWHAT"},
           {R"({"deny":[{"syscall":"x","arg":9,"value":1}]})", "arg must be 0-5"},
           {R"({"deny":[{"syscall":"x","arg":1}]})", "value"},
           {R"({"deny":[{"syscall":"x","arg":1,"op":"lt","value":1}]})", "op"},
           {R"({"deny":[{"syscall":"x","arg":1,"op":"masked_eq","value":1}]})", "mask"},
       }) {
    auto p = ParseSeccompProfile(c.json);
    ASSERT_FALSE(p.ok()) << c.json;
    EXPECT_NE(p.error().ToString().find(c.needle), std::string::npos) << p.error().ToString();
  }
}

TEST(SeccompPolicyTest, OptionSelectsThePolicy) {
  EXPECT_FALSE(SeccompPolicyFromOption("default", "")->unconfined);
  EXPECT_TRUE(SeccompPolicyFromOption("unconfined", "")->unconfined);
  EXPECT_EQ(SeccompPolicyFromOption("/x.json", R"({"deny":[{"syscall":"mkdir"}]})")->deny.size(),
            1u);
}

// docs/security.md lists the default policy and capabilities: keep it true.
TEST(SeccompPolicyTest, SecurityDocListsTheDefaultPolicy) {
  auto doc = ReadFile(std::string(WB_SOURCE_DIR) + "/docs/security.md");
  ASSERT_TRUE(doc.ok());
  EXPECT_NE(doc->find(SeccompPolicyTable(DefaultSeccompPolicy())), std::string::npos)
      << "regenerate the table in docs/security.md:\n"
      << SeccompPolicyTable(DefaultSeccompPolicy());
  EXPECT_NE(doc->find(CapNames(DefaultKeepCaps())), std::string::npos)
      << CapNames(DefaultKeepCaps());
}

}  // namespace
}  // namespace wb::agent
