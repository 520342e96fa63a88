// warmbox vm kernel: what the vm driver boots.
#include <cstdio>

#include "base/fs.h"
#include "cli/verbs.h"
#include "sandbox/vm/guest_kernel.h"
#include "sandbox/vm/vm_driver.h"

namespace wb::cli {

Action AddVm(CLI::App& app) {
  auto d = std::make_shared<DriverChoice>();
  CLI::App* vm = app.add_subcommand("vm", "the vm driver's guest kernel");
  vm->require_subcommand(1);
  CLI::App* kernel =
      vm->add_subcommand("kernel", "show the guest kernel, initramfs and accelerator in use");
  AddDriverOptions(kernel, *d, false);
  return [=](const GlobalOptions& g) -> int {
    auto info = vm::ResolveVmInfo(VmOptions(g, *d));
    if (!info.ok()) return ReportError(info.error());
    std::printf("kernel root  %s\n", vm::KernelRoot().c_str());
    std::printf("version      %s\n", info->kernel.version.c_str());
    std::printf("vmlinux      %s\n", info->kernel.vmlinux.c_str());
    std::printf("initrd       %s\n", info->initrd.c_str());
    std::printf("modules      ");
    for (size_t i = 0; i < info->kernel.modules.size(); ++i) {
      const auto& m = info->kernel.modules[i];
      std::printf("%s%s", i ? " " : "", m.substr(m.rfind('/') + 1).c_str());
    }
    std::printf("\naccel        %s (KVM %s)\n", info->accel == vm::Accel::kKvm ? "kvm" : "tcg",
                info->kvm_usable ? "usable" : "not usable: no /dev/kvm or no vmx/svm CPU flag");
    return 0;
  };
}

}  // namespace wb::cli
