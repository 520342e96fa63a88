// Options shared by every verb, and the exit-code contract of the CLI.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "image/store.h"
#include "sandbox/driver.h"
#include "sandbox/vm/vm_driver.h"

namespace CLI {
class App;
}

namespace wb::cli {

// Docker's convention: warmbox's own failures exit 125, so they never collide
// with the exit codes of the command that ran in the sandbox.
inline constexpr int kExitWarmboxError = 125;

struct GlobalOptions {
  std::string state_dir;       // --state-dir, $WARMBOX_STATE_DIR, /var/lib/warmbox
  std::string userns_base;     // --userns-base, $WARMBOX_USERNS_BASE
  std::string uid_slots_text;  // --uid-slots, $WARMBOX_UID_SLOTS
  std::string log_level = "warn";
  // Resolved by Finish():
  uint32_t uid_base = 0;
  uint32_t uid_slots = 0;       // sandbox uid ranges (sandbox/ns/uid_slots.h)
  std::string agent_path;       // $WARMBOX_AGENT or next to this binary
  std::string image_tool_path;  // $WARMBOX_IMAGE_TOOL or warmbox-image next to this binary
  std::string cgroup_parent;    // $WARMBOX_CGROUP_PARENT
};

// Fills defaults from the environment and validates.
[[nodiscard]] Result<void> Finish(GlobalOptions& g);

// --security-opt values ("seccomp=default|unconfined|PATH") and --nofile.
[[nodiscard]] Result<SecurityOptions> ParseSecurityOptions(const std::vector<std::string>& opts,
                                                           const std::string& nofile);

// --driver and the vm driver's options (run, pool start, vm kernel).
struct DriverChoice {
  std::string driver = "ns";  // ns or vm
  std::string accel = "auto";
  std::string kernel, initrd;
  bool snapshot = false;  // vm: clones of a snapshot template
};
void AddDriverOptions(CLI::App* sub, DriverChoice& d, bool with_driver = true);
[[nodiscard]] Result<void> ValidateDriver(const std::string& driver);
vm::VmDriverOptions VmOptions(const GlobalOptions& g, const DriverChoice& d);
[[nodiscard]] Result<std::unique_ptr<Driver>> OpenDriver(const GlobalOptions& g,
                                                         const DriverChoice& d, ImageStore* store);

// --network, --allow-out, --deny-out, -p (docs/network.md): run, pool run,
// sandbox create.
struct NetworkChoice {
  std::string mode = "none";
  std::vector<std::string> allow_out, deny_out, publish;
};
void AddNetworkOptions(CLI::App* sub, NetworkChoice& n, bool with_publish = true);
// Parsed and checked: a policy without --network egress is refused (it would
// silently do nothing). Ports (-p) go with any mode: the daemon publishes them.
[[nodiscard]] Result<NetworkSpec> ParseNetworkChoice(const NetworkChoice& n);

// Prints "warmbox: <error>" and returns kExitWarmboxError.
int ReportError(const Error& e);

}  // namespace wb::cli
