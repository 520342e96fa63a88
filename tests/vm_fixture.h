// What the vm driver's tests share: the probe, and VmEnv, the state dir,
// image store and cgroup parent of one test's (or one suite's) VMs, removed
// with it. The two test files keep their own fixture shapes (vm_test boots one
// VM per suite, vm_snapshot_test a driver per test) around a VmEnv.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "image/store.h"
#include "sandbox/driver.h"
#include "sandbox/vm/vm_driver.h"

namespace wb::testing {

inline constexpr int kVmBootMs = 120000;  // TCG under load can be very slow

// "" when VMs can be booted here, else the reason to skip.
std::string VmProbe();

// The QEMUs of a uid range's VMs: jailed, they run as the range's top id
// (vm::JailIdsOf) and their command lines name no host path.
std::set<pid_t> QemuPids(uint32_t uid_base);

// Exec in sb; an exec failure fails the test (non-fatal) and gives an empty outcome.
ExecOutcome ExecIn(Sandbox& sb, const proto::ExecRequest& req,
                   const std::string* stdin_data = nullptr);
ExecOutcome ShIn(Sandbox& sb, const std::string& script, uint64_t timeout_ms = 0);

class VmEnv {
 public:
  // name: "vm" gives /tmp/wb-vm-test.XXXXXX and cgroups under
  // /warmbox-test-vm-<pid>; uid_base is the binary's range.
  VmEnv(const std::string& name, uint32_t uid_base);
  ~VmEnv();  // the store, the state dir, the (empty) cgroup parents
  VmEnv(const VmEnv&) = delete;
  VmEnv& operator=(const VmEnv&) = delete;

  // Driver options on this env's state dir and cgroup parent, with the
  // built agent and kVmBootMs.
  vm::VmDriverOptions Options() const;

  const std::string state;
  const std::string cgroup_parent;
  std::unique_ptr<ImageStore> store;
};

}  // namespace wb::testing
