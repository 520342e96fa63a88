// Starting a command: the agent's only fork. Shared by pool runs (one exec
// per connection) and kept processes (live sandboxes), with or without a
// pseudo-terminal.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/users.h"
#include "base/error.h"
#include "base/fd.h"

namespace wb::agent {

inline constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The last KEY=value of env for key.
std::optional<std::string> LookupEnv(const std::vector<std::string>& env, std::string_view key);
// base with each layer's KEY=VALUE entries applied in order, a later entry
// replacing an earlier one of the same key.
std::vector<std::string> MergeEnv(std::vector<std::string> base,
                                  const std::vector<const std::vector<std::string>*>& layers);

struct SpawnSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // final: nothing is added
  std::string cwd;               // "" is "/"
  Credentials cred;
  uint64_t nofile = 1024;  // RLIMIT_NOFILE (soft and hard, capped by the agent's hard limit)
  const std::vector<sock_filter>* seccomp = nullptr;  // loaded last; empty/null: none
  // A new pseudo-terminal from /dev/ptmx as controlling terminal and stdio.
  bool tty = false;
  uint16_t rows = 24, cols = 80;
};

struct Spawned {
  pid_t pid = -1;
  // The agent's ends, non-blocking. Pipes: in (write end), out, err (read
  // ends). tty: out is the terminal's master, in a second fd of it (its own
  // epoll interest), err invalid.
  UniqueFd in, out, err;
  // Non-empty when the child failed before execve (it exits 127): the call
  // and errno, e.g. "chdir(/x): No such file or directory".
  std::string start_error;
};

// Resolves argv[0] on $PATH of spec.env, forks and execs. An error means
// nothing was started (no such program, no pipes, no fork, no terminal):
// not_found / permission_denied for the program, else from errno.
[[nodiscard]] Result<Spawned> SpawnCommand(const SpawnSpec& spec);

}  // namespace wb::agent
