// Capabilities of the agent and its commands inside the user namespace.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"

namespace wb::agent {

// Docker's default set without NET_RAW, MKNOD and AUDIT_WRITE (no network,
// no device nodes and no audit in a sandbox): CHOWN, DAC_OVERRIDE, FOWNER,
// FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, SETFCAP.
uint64_t DefaultKeepCaps();
std::string CapNames(uint64_t mask);  // "CHOWN,DAC_OVERRIDE,..."

// Whether this process may change its bounding set (CAP_SETPCAP effective).
bool CanDropCaps();

// Drops every capability outside keep from the bounding set (so no exec can
// regain it) and from the permitted, effective and inheritable sets, and
// clears the ambient set. The agent calls it once, after its setup; its
// commands inherit the result.
// self_extra: capabilities the agent itself keeps in its permitted and
// effective sets but not in the bounding or inheritable sets, so no command
// has them after its execve (a VM guest's agent keeps SYS_ADMIN and SYS_TIME
// until the clone identity is applied; DropOwnCaps then removes them).
[[nodiscard]] Result<void> DropCapsTo(uint64_t keep, uint64_t self_extra = 0);
// Removes caps from this process's permitted and effective sets.
[[nodiscard]] Result<void> DropOwnCaps(uint64_t caps);
// CAP_SYS_ADMIN | CAP_SYS_TIME: what applying an identity (identity.h) needs.
uint64_t IdentityCaps();

}  // namespace wb::agent
