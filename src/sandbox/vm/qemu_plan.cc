#include "sandbox/vm/qemu_plan.h"

#include <fcntl.h>
#include <unistd.h>

#include <cmath>

#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"

namespace wb::vm {

std::vector<std::string> DefaultKernelArgs(Accel accel) {
  std::vector<std::string> a = {
      "console=ttyS0",  // the console log (and the agent's last words)
      "panic=-1",       // a panic reboots at once, which -no-reboot turns into QEMU's exit
      "quiet",
      "reboot=t",  // the triple-fault reboot: no ACPI or keyboard controller to ask
      "8250.nr_uarts=1", "cryptomgr.notests", "random.trust_cpu=on",
  };
  if (accel == Accel::kTcg) {
    // Emulated, the TSC looks unstable and its calibration can hang the boot:
    // give the frequency and loops-per-jiffy instead of measuring them.
    for (const char* s :
         {"tsc=reliable", "no_timer_check", "tsc_early_khz=2000000", "lpj=4000000"}) {
      a.push_back(s);
    }
  }
  return a;
}

std::string QemuEscape(std::string_view v) {
  std::string out;
  for (char c : v) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

std::vector<std::string> QemuArgv(const QemuPlan& p) {
  std::vector<std::string> a = {p.qemu,     "-nodefaults", "-no-user-config",
                                "-display", "none",        "-no-reboot"};
  std::string machine = "microvm,x-option-roms=off,pit=on,pic=on,rtc=on,isa-serial=on";
  if (p.memory_backend) machine += ",memory-backend=mem";
  a.insert(a.end(), {"-M", machine});
  if (p.accel == Accel::kKvm) {
    a.insert(a.end(), {"-accel", "kvm", "-cpu", "host"});
  } else {
    a.insert(a.end(), {"-accel", "tcg,tb-size=" + std::to_string(p.tcg_tb_mib), "-cpu", "max"});
  }
  a.insert(a.end(), {"-smp", std::to_string(p.vcpus), "-m", std::to_string(p.memory_mib) + "M"});
  if (p.memory_backend) {
    a.insert(a.end(),
             {"-object", "memory-backend-file,id=mem,size=" + std::to_string(p.memory_mib) +
                             "M,mem-path=" + QemuEscape(p.memory_backend->mem_path) +
                             ",share=" + (p.memory_backend->share ? "on" : "off")});
  }
  if (p.seccomp_sandbox) {
    a.insert(a.end(),
             {"-sandbox",
              std::string("on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny,spawn=") +
                  (p.allow_spawn ? "allow" : "deny")});
  }
  a.insert(a.end(), {"-kernel", p.kernel});
  if (!p.initrd.empty()) a.insert(a.end(), {"-initrd", p.initrd});
  std::string cmdline;
  for (const auto& k : p.kernel_args) cmdline += (cmdline.empty() ? "" : " ") + k;
  if (!p.init_args.empty()) {
    cmdline += " --";
    for (const auto& k : p.init_args) cmdline += " " + k;
  }
  a.insert(a.end(), {"-append", cmdline});
  if (p.console_ringbuf_bytes) {
    a.insert(a.end(),
             {"-chardev", "ringbuf,id=console,size=" + std::to_string(p.console_ringbuf_bytes),
              "-serial", "chardev:console"});
  } else if (!p.console_path.empty()) {
    a.insert(a.end(), {"-chardev", "file,id=console,path=" + QemuEscape(p.console_path), "-serial",
                       "chardev:console"});
  }
  if (p.agent_fd >= 0) {
    a.insert(a.end(), {"-device", "virtio-serial-device", "-chardev",
                       "socket,id=agent,fd=" + std::to_string(p.agent_fd) + ",server=on,wait=off",
                       "-device", "virtserialport,chardev=agent,name=warmbox.agent"});
  }
  for (size_t i = 0; i < p.disks.size(); ++i) {
    const std::string id = "disk" + std::to_string(i);
    a.insert(
        a.end(),
        {"-drive",
         "id=" + id + ",file=" + QemuEscape(p.disks[i].path) + ",format=raw,if=none,readonly=on",
         "-device", "virtio-blk-device,drive=" + id + ",serial=" + QemuEscape(p.disks[i].serial)});
  }
  if (p.net_fd >= 0) {
    a.insert(
        a.end(),
        {"-netdev", "stream,id=net0,server=off,addr.type=fd,addr.str=" + std::to_string(p.net_fd),
         "-device", "virtio-net-device,netdev=net0"});
  }
  if (p.qmp_fd >= 0) {
    a.insert(a.end(),
             {"-chardev", "socket,id=qmp,fd=" + std::to_string(p.qmp_fd) + ",server=on,wait=off",
              "-mon", "chardev=qmp,mode=control"});
  }
  a.insert(a.end(), p.extra.begin(), p.extra.end());
  return a;
}

Result<Accel> ResolveAccel(std::string_view choice, bool kvm_usable) {
  if (choice == "tcg") return Accel::kTcg;
  if (choice == "kvm") return Accel::kKvm;
  if (choice == "auto" || choice.empty()) return kvm_usable ? Accel::kKvm : Accel::kTcg;
  return Fail("--accel", std::string(choice), "expected auto, kvm or tcg");
}

bool CpuinfoHasVirtualization(std::string_view cpuinfo) {
  for (const auto& line : Split(std::string(cpuinfo), '\n')) {
    if (!StartsWith(line, "flags")) continue;
    for (const auto& f : Split(line.substr(line.find(':') + 1), ' ')) {
      if (f == "vmx" || f == "svm") return true;
    }
  }
  return false;
}

bool KvmUsable() {
  UniqueFd fd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!fd) return false;
  auto info = ReadFile("/proc/cpuinfo");
  return info.ok() && CpuinfoHasVirtualization(*info);
}

uint32_t VcpusFor(double cpus, uint32_t host_cpus) {
  uint32_t n = cpus <= 0 ? 1 : static_cast<uint32_t>(std::ceil(cpus));
  if (host_cpus && n > host_cpus) n = host_cpus;
  return n ? n : 1;
}

}  // namespace wb::vm
