#include "sandbox/vm/qemu_jail.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>

#include "base/strings.h"

namespace wb::vm {

HostSystem HostSystemLayout() {
  HostSystem s;
  for (const char* p : {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st;
    if (::lstat(p, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char buf[PATH_MAX];
      ssize_t n = ::readlink(p, buf, sizeof buf - 1);
      if (n > 0) s.links.emplace_back(p, std::string(buf, static_cast<size_t>(n)));
    } else if (S_ISDIR(st.st_mode)) {
      s.dirs.emplace_back(p);
    }
  }
  return s;
}

namespace {

bool Under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && StartsWith(path, dir) && path[dir.size()] == '/';
}

Result<void> CheckAbsolute(const std::string& what, const std::string& path) {
  if (path.empty() || path[0] != '/')
    return Fail(ErrorCode::kInvalidArgument, "qemu jail", path,
                what + " must be an absolute host path");
  return Ok();
}

}  // namespace

Result<JailedQemu> PlanQemuJail(QemuPlan plan, const HostSystem& sys, const JailInput& in) {
  if (in.uid == 0 || in.gid == 0)
    return Fail(ErrorCode::kInvalidArgument, "qemu jail",
                std::to_string(in.uid) + ":" + std::to_string(in.gid),
                "QEMU's uid and gid must not be 0");
  WB_RETURN_IF_ERROR(CheckAbsolute("the jail root", in.root));
  JailedQemu out;
  Jail& j = out.jail;
  j.root = in.root;
  j.uid = in.uid;
  j.gid = in.gid;
  using K = JailEntry::Kind;
  auto bind = [&](std::string path, std::string source, bool writable) {
    j.entries.push_back({K::kBind, std::move(path), std::move(source), writable, false, false});
  };
  bool qemu_in_system = false;
  for (const auto& d : sys.dirs) {
    WB_RETURN_IF_ERROR(CheckAbsolute("a system dir", d));
    // QEMU's loader, libraries and modules are executable code.
    j.entries.push_back({K::kBind, d, d, false, false, true});
    if (Under(plan.qemu, d)) qemu_in_system = true;
  }
  for (const auto& [path, target] : sys.links) {
    WB_RETURN_IF_ERROR(CheckAbsolute("a system link", path));
    j.entries.push_back({K::kSymlink, path, target});
    // A link into a bound dir (merged /usr: /usr/bin via /bin) counts too.
    if (!target.empty() && target[0] != '/' && Under(plan.qemu, path)) {
      for (const auto& d : sys.dirs) {
        if (Under("/" + target + plan.qemu.substr(path.size()), d)) qemu_in_system = true;
      }
    }
  }
  // The devices glib and QEMU open, and nothing else of the host's /dev:
  // nodes of QEMU's user's own, as the host's /dev/kvm may be root's only.
  j.entries.push_back({K::kDevDir, "/dev"});
  std::vector<std::string> devs = {"/dev/null", "/dev/zero", "/dev/urandom"};
  if (plan.accel == Accel::kKvm) devs.push_back("/dev/kvm");
  for (const auto& d : devs) j.entries.push_back({K::kDevice, d, d});
  j.entries.push_back({K::kDir, kJailVmDir});
  const std::string vm = kJailVmDir;
  WB_RETURN_IF_ERROR(CheckAbsolute("QEMU", plan.qemu));
  if (!qemu_in_system) {
    j.entries.push_back({K::kBind, vm + "/qemu", plan.qemu, false, false, true});
    plan.qemu = vm + "/qemu";
  }
  WB_RETURN_IF_ERROR(CheckAbsolute("the kernel", plan.kernel));
  bind(vm + "/kernel", plan.kernel, false);
  plan.kernel = vm + "/kernel";
  if (!plan.initrd.empty()) {
    WB_RETURN_IF_ERROR(CheckAbsolute("the initrd", plan.initrd));
    bind(vm + "/initrd", plan.initrd, false);
    plan.initrd = vm + "/initrd";
  }
  for (size_t i = 0; i < plan.disks.size(); ++i) {
    WB_RETURN_IF_ERROR(CheckAbsolute("a disk", plan.disks[i].path));
    const std::string p = vm + "/disk" + std::to_string(i);
    bind(p, plan.disks[i].path, false);
    plan.disks[i].path = p;
  }
  if (!plan.console_ringbuf_bytes && !plan.console_path.empty()) {
    WB_RETURN_IF_ERROR(CheckAbsolute("the console file", plan.console_path));
    bind(vm + "/console", plan.console_path, true);
    plan.console_path = vm + "/console";
  }
  if (plan.memory_backend) {
    WB_RETURN_IF_ERROR(CheckAbsolute("the RAM file", plan.memory_backend->mem_path));
    bind(vm + "/ram", plan.memory_backend->mem_path, true);
    plan.memory_backend->mem_path = vm + "/ram";
  }
  if (!in.state_path.empty()) {
    WB_RETURN_IF_ERROR(CheckAbsolute("the state file", in.state_path));
    bind(kJailState, in.state_path, in.state_writable);
  }
  out.plan = std::move(plan);
  return out;
}

}  // namespace wb::vm
