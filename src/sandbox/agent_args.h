// The command line of warmbox-agent, for both drivers: the ns driver's argv
// of the agent it spawns, the vm driver's init arguments of the guest's
// /init. A vm snapshot template's key covers KeyArgs(), derived from the same
// fields, so the argv and the key cannot drift apart. Pure and unit-tested.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wb {

struct AgentArgs {
  enum class Mode {
    kNs,     // argv of the agent spawned in new namespaces (--ns-setup)
    kGuest,  // init arguments of the agent as a guest's /init (--guest)
  };
  Mode mode = Mode::kNs;
  // kNs: the listening socket's fd, the scratch dir, the overlay's lowerdir.
  int listen_fd = 3;
  std::string scratch;
  std::string lower;
  // kNs, instead of lower: inherited fds of idmapped layer mounts, top first.
  std::vector<int> lower_fds;
  // kGuest: how many layer disks the guest mounts.
  size_t layers = 0;
  uint64_t tmpfs_size = 0;
  std::string hostname;
  std::string seccomp = "default";
  uint64_t nofile = 1024;
  // kGuest, --network egress: "ADDR/PREFIX,GATEWAY,RESOLVER" for the guest's
  // one NIC (agent/guest.h); "" = no network.
  std::string net;

  // kNs: the full argv (argv[0] "warmbox-agent" first); kGuest: the init
  // arguments (the kernel runs /init with them).
  std::vector<std::string> Argv() const;
  // What a vm snapshot template is keyed on: every argument but the mode
  // flag and the hostname (a clone is given its own; agent/identity.h).
  std::vector<std::string> KeyArgs() const;

 private:
  std::vector<std::string> Build(bool for_key) const;
};

}  // namespace wb
