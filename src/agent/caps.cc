#include "agent/caps.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/strings.h"

namespace wb::agent {
namespace {

const char* const kNames[] = {"CHOWN",
                              "DAC_OVERRIDE",
                              "DAC_READ_SEARCH",
                              "FOWNER",
                              "FSETID",
                              "KILL",
                              "SETGID",
                              "SETUID",
                              "SETPCAP",
                              "LINUX_IMMUTABLE",
                              "NET_BIND_SERVICE",
                              "NET_BROADCAST",
                              "NET_ADMIN",
                              "NET_RAW",
                              "IPC_LOCK",
                              "IPC_OWNER",
                              "SYS_MODULE",
                              "SYS_RAWIO",
                              "SYS_CHROOT",
                              "SYS_PTRACE",
                              "SYS_PACCT",
                              "SYS_ADMIN",
                              "SYS_BOOT",
                              "SYS_NICE",
                              "SYS_RESOURCE",
                              "SYS_TIME",
                              "SYS_TTY_CONFIG",
                              "MKNOD",
                              "LEASE",
                              "AUDIT_WRITE",
                              "AUDIT_CONTROL",
                              "SETFCAP",
                              "MAC_OVERRIDE",
                              "MAC_ADMIN",
                              "SYSLOG",
                              "WAKE_ALARM",
                              "BLOCK_SUSPEND",
                              "AUDIT_READ",
                              "PERFMON",
                              "BPF",
                              "CHECKPOINT_RESTORE"};

int LastCap() {
  auto t = ReadFile("/proc/sys/kernel/cap_last_cap");
  if (t.ok()) {
    auto v = ParseUint(Trim(*t), "cap_last_cap");
    if (v.ok() && *v < 64) return static_cast<int>(*v);
  }
  return CAP_LAST_CAP;
}

}  // namespace

uint64_t DefaultKeepCaps() {
  uint64_t m = 0;
  for (int c : {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID,
                CAP_SETUID, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_SETFCAP}) {
    m |= uint64_t{1} << c;
  }
  return m;
}

std::string CapNames(uint64_t mask) {
  std::string out;
  for (int c = 0; c < 64; ++c) {
    if (!(mask & (uint64_t{1} << c))) continue;
    if (!out.empty()) out += ',';
    out += c < static_cast<int>(sizeof kNames / sizeof kNames[0]) ? kNames[c] : std::to_string(c);
  }
  return out;
}

bool CanDropCaps() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  return data[CAP_SETPCAP / 32].effective & (1u << (CAP_SETPCAP % 32));
}

uint64_t IdentityCaps() { return (uint64_t{1} << CAP_SYS_ADMIN) | (uint64_t{1} << CAP_SYS_TIME); }

Result<void> DropOwnCaps(uint64_t caps) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return Errno("capget", "");
  for (int i = 0; i < 2; ++i) {
    uint32_t k = static_cast<uint32_t>(caps >> (32 * i));
    data[i].permitted &= ~k;
    data[i].effective &= ~k;
  }
  if (::syscall(SYS_capset, &hdr, data) != 0) return Errno("capset", CapNames(caps));
  return Ok();
}

Result<void> DropCapsTo(uint64_t keep, uint64_t self_extra) {
  const int last = LastCap();
  for (int c = 0; c <= last; ++c) {
    if (keep & (uint64_t{1} << c)) continue;
    if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
      return Errno("prctl(PR_CAPBSET_DROP)", CapNames(uint64_t{1} << c));
  }
  // EINVAL: a kernel without ambient capabilities; nothing to clear then.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return Errno("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", "");
  }
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return Errno("capget", "");
  for (int i = 0; i < 2; ++i) {
    uint32_t k = static_cast<uint32_t>((keep | self_extra) >> (32 * i));
    data[i].permitted &= k;
    data[i].effective &= k;
    data[i].inheritable = 0;
  }
  if (::syscall(SYS_capset, &hdr, data) != 0) return Errno("capset", CapNames(keep));
  return Ok();
}

}  // namespace wb::agent
