#include "sandbox/agent_args.h"

namespace wb {

std::vector<std::string> AgentArgs::Build(bool for_key) const {
  std::vector<std::string> a;
  auto flag = [&](const char* name, std::string value) {
    a.emplace_back(name);
    a.push_back(std::move(value));
  };
  if (mode == Mode::kNs) {
    if (!for_key) a.emplace_back("warmbox-agent");
    flag("--listen-fd", std::to_string(listen_fd));
    a.emplace_back("--ns-setup");
    flag("--scratch", scratch);
    if (lower_fds.empty()) {
      flag("--lower", lower);
    } else {
      std::string fds;
      for (int fd : lower_fds) fds += (fds.empty() ? "" : ",") + std::to_string(fd);
      flag("--lower-fds", fds);
    }
  } else {
    if (!for_key) a.emplace_back("--guest");
    flag("--layers", std::to_string(layers));
    if (!net.empty()) flag("--net", net);
  }
  flag("--tmpfs-size", std::to_string(tmpfs_size));
  if (!for_key) flag("--hostname", hostname);
  flag("--seccomp", seccomp);
  flag("--nofile", std::to_string(nofile));
  return a;
}

std::vector<std::string> AgentArgs::Argv() const { return Build(false); }
std::vector<std::string> AgentArgs::KeyArgs() const { return Build(true); }

}  // namespace wb
