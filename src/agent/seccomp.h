// Compiling a SeccompPolicy to a BPF program with libseccomp (ahead of any
// fork), and loading it in a child just before execve.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "agent/seccomp_policy.h"
#include "base/error.h"

namespace wb::agent {

// Empty program for an unconfined policy. Syscalls unknown to this
// architecture are skipped; syscalls of other ABIs (x32, i386) are killed.
[[nodiscard]] Result<std::vector<sock_filter>> CompileSeccomp(const SeccompPolicy& policy);

}  // namespace wb::agent
