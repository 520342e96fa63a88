#include "tests/vm_fixture.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "base/fs.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/assert_ok.h"
#include "tests/test_util.h"

namespace wb::testing {

std::string VmProbe() {
  if (::geteuid() != 0) return "needs root";
  if (!PathExists("/usr/bin/qemu-system-x86_64"))
    return "qemu-system-x86_64 not installed (scripts/setup)";
  if (!PathExists(vm::KernelRoot() + "/current/vmlinux"))
    return "no guest kernel in " + vm::KernelRoot() + " (run scripts/setup)";
  if (!PathExists("/usr/bin/mkfs.erofs")) return "mkfs.erofs not installed (scripts/setup)";
  return "";
}

ExecOutcome ExecIn(Sandbox& sb, const proto::ExecRequest& req, const std::string* stdin_data) {
  ExecIo io;
  if (stdin_data) {
    io.stdin_data = *stdin_data;
    io.has_stdin_data = true;
  }
  auto r = sb.Exec(req, io);
  EXPECT_OK(r);
  return r.ok() ? std::move(*r) : ExecOutcome{};
}

ExecOutcome ShIn(Sandbox& sb, const std::string& script, uint64_t timeout_ms) {
  proto::ExecRequest req;
  req.argv = {"sh", "-c", script};
  req.timeout_ms = timeout_ms;
  return ExecIn(sb, req);
}

std::set<pid_t> QemuPids(uint32_t uid_base) {
  const uint32_t top = uid_base + kUidCount - 1;
  return PidsWithUidIn(top, top + 1);
}

VmEnv::VmEnv(const std::string& name, uint32_t uid_base)
    : state(MakeTempDir("wb-" + name + "-test")),
      cgroup_parent("/warmbox-test-" + name + "-" + std::to_string(::getpid())),
      store(std::make_unique<ImageStore>(state, uid_base)) {}

VmEnv::~VmEnv() {
  store.reset();
  if (!state.empty()) (void)RemoveTree(state);
  if (auto layout = HostCgroupLayout(); layout.ok()) {
    for (const auto& p : PlanSandboxCgroup(*layout, "x", Limits{}, cgroup_parent).parents) {
      ::rmdir(p.c_str());
    }
  }
}

vm::VmDriverOptions VmEnv::Options() const {
  vm::VmDriverOptions o;
  o.state_dir = state;
  o.agent_path = BuildDir() + "/warmbox-agent";
  o.ready_total_ms = kVmBootMs;
  o.cgroup_parent = cgroup_parent;
  return o;
}

}  // namespace wb::testing
