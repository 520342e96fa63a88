#include "sandbox/vm/guest_kernel.h"

#include <limits.h>
#include <stdlib.h>

#include <cstdlib>
#include <functional>
#include <map>

#include "base/fs.h"
#include "base/strings.h"

namespace wb::vm {

Result<std::vector<std::string>> ModuleLoadOrder(const std::string& modules_dep) {
  std::map<std::string, std::vector<std::string>> deps;
  std::vector<std::string> listed;  // file order, for a stable result
  for (const auto& raw : Split(modules_dep, '\n')) {
    std::string_view line = Trim(raw);
    if (line.empty() || line.front() == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      return Fail("modules.dep", std::string(line), "expected 'module.ko: deps'");
    std::string mod(Trim(line.substr(0, colon)));
    std::vector<std::string> d;
    for (const auto& w : Split(std::string(line.substr(colon + 1)), ' ')) {
      if (!Trim(w).empty()) d.emplace_back(Trim(w));
    }
    if (!deps.emplace(mod, std::move(d)).second) return Fail("modules.dep", mod, "listed twice");
    listed.push_back(mod);
  }
  std::vector<std::string> order;
  std::map<std::string, int> state;  // 1 visiting, 2 done
  std::function<Result<void>(const std::string&)> visit =
      [&](const std::string& m) -> Result<void> {
    int& st = state[m];
    if (st == 2) return Ok();
    if (st == 1) return Fail("modules.dep", m, "dependency cycle");
    st = 1;
    auto it = deps.find(m);
    if (it == deps.end()) return Fail("modules.dep", m, "a dependency without a line of its own");
    for (const auto& d : it->second) WB_RETURN_IF_ERROR(visit(d));
    state[m] = 2;
    order.push_back(m);
    return Ok();
  };
  for (const auto& m : listed) WB_RETURN_IF_ERROR(visit(m));
  return order;
}

std::string KernelRoot() {
  const char* env = std::getenv("WARMBOX_KERNEL_ROOT");
  return env && *env ? env : kDefaultKernelRoot;
}

Result<GuestKernel> FindGuestKernel(const std::string& kernel_root,
                                    const std::string& kernel_override) {
  const std::string current = kernel_root + "/current";
  char buf[PATH_MAX];
  GuestKernel k;
  if (::realpath(current.c_str(), buf) == nullptr) {
    if (!kernel_override.empty()) {
      // A custom kernel with everything built in.
      if (!PathExists(kernel_override)) return Fail("--kernel", kernel_override, "no such file");
      k.version = "custom";
      k.vmlinux = kernel_override;
      return k;
    }
    return Fail(
        "guest kernel", current,
        "not found: run scripts/setup (it fetches Debian's kernel package for the vm driver), "
        "or pass --kernel");
  }
  const std::string dir = buf;
  k.version = dir.substr(dir.rfind('/') + 1);
  k.vmlinux = dir + "/vmlinux";
  if (!kernel_override.empty()) {
    if (!PathExists(kernel_override)) return Fail("--kernel", kernel_override, "no such file");
    k.vmlinux = kernel_override;
  } else if (!PathExists(k.vmlinux)) {
    return Fail("guest kernel", k.vmlinux, "missing: run scripts/setup again");
  }
  std::string dep = WB_TRY(ReadFile(dir + "/modules.dep"));
  for (const auto& m : WB_TRY(ModuleLoadOrder(dep))) k.modules.push_back(dir + "/modules/" + m);
  return k;
}

}  // namespace wb::vm
