// Unit tests of the vm driver's pure parts: the QEMU command line, the
// accelerator choice, QEMU's jail, module order, the initramfs archive, kernel lookup.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/vm/guest_kernel.h"
#include "sandbox/vm/initramfs.h"
#include "sandbox/vm/qemu_jail.h"
#include "sandbox/vm/qemu_plan.h"
#include "sandbox/vm/vm_driver.h"
#include "tests/assert_ok.h"

namespace wb::vm {
namespace {

// The value following flag in argv, for each occurrence.
std::vector<std::string> Values(const std::vector<std::string>& argv, const std::string& flag) {
  std::vector<std::string> out;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag) out.push_back(argv[i + 1]);
  }
  return out;
}

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

QemuPlan SamplePlan() {
  QemuPlan p;
  p.kernel = "/k/vmlinux";
  p.initrd = "/k/initrd.cpio";
  p.kernel_args = DefaultKernelArgs(Accel::kTcg);
  p.init_args = {"--guest", "--layers", "2"};
  p.disks = {{"/d/top.erofs", "wbl0"}, {"/d/a,b.erofs", "wbl1"}};
  p.agent_fd = 3;
  p.qmp_fd = 4;
  p.console_path = "/s/console.log";
  p.vcpus = 2;
  p.memory_mib = 256;
  return p;
}

TEST(QemuPlanTest, MinimalMachineWithoutDefaultsOrNetwork) {
  auto a = QemuArgv(SamplePlan());
  EXPECT_EQ(a[0], "/usr/bin/qemu-system-x86_64");
  for (const char* f : {"-nodefaults", "-no-user-config", "-no-reboot"})
    EXPECT_TRUE(Has(a, f)) << f;
  EXPECT_EQ(Values(a, "-M"), std::vector<std::string>{
                                 "microvm,x-option-roms=off,pit=on,pic=on,rtc=on,isa-serial=on"});
  EXPECT_EQ(Values(a, "-display"), std::vector<std::string>{"none"});
  EXPECT_TRUE(Values(a, "-netdev").empty());
  EXPECT_TRUE(Values(a, "-nic").empty());
  for (const auto& d : Values(a, "-device")) {
    EXPECT_EQ(d.find("pci"), std::string::npos) << d;
    EXPECT_EQ(d.find("net"), std::string::npos) << d;
  }
  EXPECT_EQ(Values(a, "-smp"), std::vector<std::string>{"2"});
  EXPECT_EQ(Values(a, "-m"), std::vector<std::string>{"256M"});
  EXPECT_EQ(Values(a, "-kernel"), std::vector<std::string>{"/k/vmlinux"});
  EXPECT_EQ(Values(a, "-initrd"), std::vector<std::string>{"/k/initrd.cpio"});
}

TEST(QemuPlanTest, EgressAddsOneVirtioNetDeviceOnTheInheritedPasstConnection) {
  QemuPlan p = SamplePlan();
  p.net_fd = 5;
  auto a = QemuArgv(p);
  EXPECT_EQ(Values(a, "-netdev"),
            std::vector<std::string>{"stream,id=net0,server=off,addr.type=fd,addr.str=5"});
  EXPECT_TRUE(Has(a, "virtio-net-device,netdev=net0"));
  EXPECT_TRUE(Values(a, "-nic").empty());
}

TEST(QemuPlanTest, TcgGetsASmallTranslationCacheAndTscHints) {
  QemuPlan p = SamplePlan();
  auto a = QemuArgv(p);
  EXPECT_EQ(Values(a, "-accel"), std::vector<std::string>{"tcg,tb-size=64"});
  EXPECT_EQ(Values(a, "-cpu"), std::vector<std::string>{"max"});
  const std::string cmdline = Values(a, "-append").at(0);
  for (const char* k :
       {"console=ttyS0", "panic=-1", "tsc_early_khz=2000000", "lpj=4000000", "tsc=reliable"}) {
    EXPECT_NE(cmdline.find(k), std::string::npos) << k << " in " << cmdline;
  }
  // init's arguments come after "--", last.
  EXPECT_NE(cmdline.find(" -- --guest --layers 2"), std::string::npos) << cmdline;
  EXPECT_EQ(cmdline.substr(cmdline.size() - 10), "--layers 2");

  p.accel = Accel::kKvm;
  p.kernel_args = DefaultKernelArgs(Accel::kKvm);
  a = QemuArgv(p);
  EXPECT_EQ(Values(a, "-accel"), std::vector<std::string>{"kvm"});
  EXPECT_EQ(Values(a, "-cpu"), std::vector<std::string>{"host"});
  EXPECT_EQ(Values(a, "-append").at(0).find("tsc_early_khz"), std::string::npos);
}

TEST(QemuPlanTest, ChannelQmpConsoleAndDisks) {
  auto a = QemuArgv(SamplePlan());
  auto chardevs = Values(a, "-chardev");
  EXPECT_TRUE(Has(chardevs, "socket,id=agent,fd=3,server=on,wait=off"));
  EXPECT_TRUE(Has(chardevs, "socket,id=qmp,fd=4,server=on,wait=off"));
  EXPECT_TRUE(Has(chardevs, "file,id=console,path=/s/console.log"));
  EXPECT_EQ(Values(a, "-serial"), std::vector<std::string>{"chardev:console"});
  EXPECT_EQ(Values(a, "-mon"), std::vector<std::string>{"chardev=qmp,mode=control"});
  auto devices = Values(a, "-device");
  EXPECT_TRUE(Has(devices, "virtio-serial-device"));
  EXPECT_TRUE(Has(devices, "virtserialport,chardev=agent,name=warmbox.agent"));
  EXPECT_TRUE(Has(devices, "virtio-blk-device,drive=disk0,serial=wbl0"));
  EXPECT_TRUE(Has(devices, "virtio-blk-device,drive=disk1,serial=wbl1"));
  auto drives = Values(a, "-drive");
  ASSERT_EQ(drives.size(), 2u);
  EXPECT_EQ(drives[0], "id=disk0,file=/d/top.erofs,format=raw,if=none,readonly=on");
  // A comma in a path is doubled, or QEMU would read an option there.
  EXPECT_EQ(drives[1], "id=disk1,file=/d/a,,b.erofs,format=raw,if=none,readonly=on");
}

TEST(QemuPlanTest, SeccompSandboxAndSpawn) {
  QemuPlan p = SamplePlan();
  EXPECT_EQ(Values(QemuArgv(p), "-sandbox"),
            std::vector<std::string>{
                "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny,spawn=deny"});
  p.allow_spawn = true;
  EXPECT_NE(Values(QemuArgv(p), "-sandbox").at(0).find("spawn=allow"), std::string::npos);
  p.seccomp_sandbox = false;
  EXPECT_TRUE(Values(QemuArgv(p), "-sandbox").empty());
}

TEST(QemuPlanTest, MemoryBackendForSnapshots) {
  QemuPlan p = SamplePlan();
  EXPECT_TRUE(Values(QemuArgv(p), "-object").empty());
  p.memory_backend = MemoryBackend{"/dev/shm/tpl", true};
  p.extra = {"-incoming", "defer"};
  auto a = QemuArgv(p);
  EXPECT_NE(Values(a, "-M").at(0).find(",memory-backend=mem"), std::string::npos);
  EXPECT_EQ(Values(a, "-object"),
            std::vector<std::string>{
                "memory-backend-file,id=mem,size=256M,mem-path=/dev/shm/tpl,share=on"});
  EXPECT_EQ(a[a.size() - 2], "-incoming");
  EXPECT_EQ(a.back(), "defer");
  p.memory_backend->share = false;
  EXPECT_NE(Values(QemuArgv(p), "-object").at(0).find("share=off"), std::string::npos);
}

TEST(QemuPlanTest, AcceleratorChoice) {
  EXPECT_EQ(*ResolveAccel("auto", true), Accel::kKvm);
  EXPECT_EQ(*ResolveAccel("auto", false), Accel::kTcg);
  EXPECT_EQ(*ResolveAccel("tcg", true), Accel::kTcg);
  EXPECT_EQ(*ResolveAccel("kvm", false), Accel::kKvm);  // an explicit override wins
  auto bad = ResolveAccel("hvf", true);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("expected auto, kvm or tcg"), std::string::npos);

  EXPECT_TRUE(CpuinfoHasVirtualization("processor\t: 0\nflags\t\t: fpu vme vmx sse\n"));
  EXPECT_TRUE(CpuinfoHasVirtualization("flags\t\t: fpu svm\n"));
  // A paravirtual, nested KVM: /dev/kvm opens but the CPU has neither flag.
  EXPECT_FALSE(CpuinfoHasVirtualization("flags\t\t: fpu vme hypervisor svmx\nvmx flags\t: ept\n"));
  EXPECT_FALSE(CpuinfoHasVirtualization(""));
}

TEST(QemuPlanTest, VcpusFromTheCpuQuota) {
  EXPECT_EQ(VcpusFor(0, 8), 1u);
  EXPECT_EQ(VcpusFor(0.5, 8), 1u);
  EXPECT_EQ(VcpusFor(1.5, 8), 2u);
  EXPECT_EQ(VcpusFor(16, 2), 2u);
}

TEST(GuestKernelTest, ModulesLoadAfterTheirDependencies) {
  const std::string dep =
      "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
      "kernel/drivers/virtio/virtio_ring.ko\n"
      "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\n"
      "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
      "kernel/drivers/virtio/virtio_ring.ko:\n"
      "kernel/lib/libcrc32c.ko:\n";
  auto order = ModuleLoadOrder(dep);
  ASSERT_OK(order);
  EXPECT_EQ(*order, (std::vector<std::string>{
                        "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                        "kernel/drivers/virtio/virtio_mmio.ko", "kernel/lib/libcrc32c.ko",
                        "kernel/fs/erofs/erofs.ko"}));
  auto cycle = ModuleLoadOrder("a.ko: b.ko\nb.ko: a.ko\n");
  ASSERT_FALSE(cycle.ok());
  EXPECT_NE(cycle.error().ToString().find("cycle"), std::string::npos);
  auto missing = ModuleLoadOrder("a.ko: b.ko\n");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("b.ko"), std::string::npos);
  EXPECT_FALSE(ModuleLoadOrder("no colon here\n").ok());
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/wb-vm-unit-XXXXXX";
    path_ = ::mkdtemp(t) ? t : "";
  }
  ~TempDir() { (void)RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(GuestKernelTest, FindsTheCurrentKernelAndHonoursOverrides) {
  TempDir d;
  ASSERT_FALSE(d.path().empty());
  auto missing = FindGuestKernel(d.path(), "");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("scripts/setup"), std::string::npos);

  const std::string v = d.path() + "/6.1.0-9-amd64";
  ASSERT_TRUE(MkdirAll(v + "/modules/kernel", 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(v + "/vmlinux", "ELF").ok());
  ASSERT_TRUE(WriteFileAtomic(v + "/modules.dep", "kernel/b.ko: kernel/a.ko\nkernel/a.ko:\n").ok());
  ASSERT_EQ(::symlink("6.1.0-9-amd64", (d.path() + "/current").c_str()), 0);
  auto k = FindGuestKernel(d.path(), "");
  ASSERT_OK(k);
  EXPECT_EQ(k->version, "6.1.0-9-amd64");
  EXPECT_EQ(k->vmlinux, v + "/vmlinux");
  EXPECT_EQ(k->modules,
            (std::vector<std::string>{v + "/modules/kernel/a.ko", v + "/modules/kernel/b.ko"}));

  auto over = FindGuestKernel(d.path(), v + "/modules.dep");
  ASSERT_TRUE(over.ok());
  EXPECT_EQ(over->vmlinux, v + "/modules.dep");
  auto bad = FindGuestKernel(d.path(), "/nonexistent/vmlinux");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("--kernel(/nonexistent/vmlinux): no such file"),
            std::string::npos);
}

TEST(InitramfsTest, CpioNewcReadsBackWithCpio) {
  if (!PathExists("/usr/bin/cpio") && !PathExists("/bin/cpio"))
    GTEST_SKIP() << "cpio is not installed";
  TempDir d;
  ASSERT_FALSE(d.path().empty());
  std::vector<CpioEntry> e = {{"dev", S_IFDIR | 0755, "", 0, 0},
                              {"dev/console", S_IFCHR | 0600, "", 5, 1},
                              {"init", S_IFREG | 0755, "#!/bin/sh\necho hi\n", 0, 0},
                              {"lib/x.ko", S_IFREG | 0644, std::string(1001, 'x'), 0, 0}};
  const std::string archive = CpioNewc(e);
  EXPECT_EQ(archive.size() % 4, 0u);
  ASSERT_TRUE(WriteFileAtomic(d.path() + "/a.cpio", archive).ok());
  SpawnOptions o;
  o.path = "/bin/sh";
  o.argv = {"sh", "-c", "cpio -itv < " + d.path() + "/a.cpio 2>&1"};
  auto out = MakePipe();
  ASSERT_TRUE(out.ok());
  o.fds = {{out->write.get(), 1}};
  auto c = ChildProcess::Spawn(o);
  ASSERT_TRUE(c.ok());
  out->write.reset();
  auto text = ReadAll(out->read.get());
  ASSERT_TRUE(text.ok());
  auto st = c->Wait();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->code, 0) << *text;
  EXPECT_NE(text->find("crw-------"), std::string::npos) << *text;
  EXPECT_NE(text->find("5,   1"), std::string::npos) << *text;
  EXPECT_NE(text->find("1001"), std::string::npos) << *text;
  for (const char* n : {" dev\n", " dev/console\n", " init\n", " lib/x.ko\n"}) {
    EXPECT_NE(text->find(n), std::string::npos) << n << " in " << *text;
  }
}

TEST(InitramfsTest, AgentIsInitAndModulesAreNumberedInLoadOrder) {
  TempDir d;
  ASSERT_FALSE(d.path().empty());
  ASSERT_TRUE(WriteFileAtomic(d.path() + "/agent", "AGENT").ok());
  ASSERT_TRUE(WriteFileAtomic(d.path() + "/virtio_ring.ko", "R").ok());
  ASSERT_TRUE(WriteFileAtomic(d.path() + "/virtio.ko", "V").ok());
  GuestKernel k{"v", "/vmlinux", {d.path() + "/virtio_ring.ko", d.path() + "/virtio.ko"}};
  auto e = InitramfsEntries(d.path() + "/agent", k);
  ASSERT_OK(e);
  auto find = [&](const std::string& n) -> const CpioEntry* {
    for (const auto& x : *e) {
      if (x.name == n) return &x;
    }
    return nullptr;
  };
  ASSERT_NE(find("init"), nullptr);
  EXPECT_EQ(find("init")->data, "AGENT");
  ASSERT_NE(find("lib/modules/00-virtio_ring.ko"), nullptr);
  ASSERT_NE(find("lib/modules/01-virtio.ko"), nullptr);
  ASSERT_NE(find("dev/console"), nullptr);
  // Cached: built once, the same path while nothing changes, a new one after.
  auto p1 = EnsureInitramfs(d.path() + "/cache", d.path() + "/agent", k);
  ASSERT_OK(p1);
  auto p2 = EnsureInitramfs(d.path() + "/cache", d.path() + "/agent", k);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(*p1, *p2);
  ASSERT_TRUE(WriteFileAtomic(d.path() + "/agent", "AGENT v2").ok());
  auto p3 = EnsureInitramfs(d.path() + "/cache", d.path() + "/agent", k);
  ASSERT_TRUE(p3.ok());
  EXPECT_NE(*p1, *p3);
}

}  // namespace
}  // namespace wb::vm

namespace wb::vm {
namespace {

TEST(TemplateKeyTest, EveryPartChangesTheKey) {
  auto key = [](std::vector<std::string> layers, std::string kernel, std::string initrd,
                std::string agent, uint32_t vcpus, uint64_t mem, std::vector<std::string> init,
                Accel a) {
    return TemplateKeyHash(TemplateKeyText(layers, kernel, initrd, agent, vcpus, mem, init, a));
  };
  const std::string base = key({"l1", "l2"}, "k", "i", "a", 1, 256, {"--layers", "2"}, Accel::kTcg);
  EXPECT_EQ(base.size(), 16u);
  EXPECT_EQ(base, key({"l1", "l2"}, "k", "i", "a", 1, 256, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l3"}, "k", "i", "a", 1, 256, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k2", "i", "a", 1, 256, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k", "i2", "a", 1, 256, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k", "i", "a2", 1, 256, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k", "i", "a", 2, 256, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k", "i", "a", 1, 512, {"--layers", "2"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k", "i", "a", 1, 256, {"--layers", "3"}, Accel::kTcg));
  EXPECT_NE(base, key({"l1", "l2"}, "k", "i", "a", 1, 256, {"--layers", "2"}, Accel::kKvm));
}

TEST(QemuPlanTest, TemplateAndCloneArgs) {
  QemuPlan p;
  p.kernel = "vmlinux";
  p.memory_backend = MemoryBackend{"/dev/shm/warmbox-tpl-x", false};
  p.console_ringbuf_bytes = 65536;
  p.allow_spawn = true;
  p.extra = {"-incoming", "defer"};
  std::string all;
  for (const auto& a : QemuArgv(p)) all += a + " ";
  EXPECT_NE(
      all.find("memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/warmbox-tpl-x,share=off"),
      std::string::npos)
      << all;
  EXPECT_NE(all.find("memory-backend=mem"), std::string::npos);
  EXPECT_NE(all.find("ringbuf,id=console,size=65536"), std::string::npos);
  EXPECT_EQ(all.find("file,id=console"), std::string::npos);
  EXPECT_NE(all.find("spawn=allow"), std::string::npos);
  EXPECT_NE(all.find("-incoming defer"), std::string::npos);
}

// A merged-/usr host, as Debian 12's.
HostSystem MergedUsr() {
  return {{"/usr"}, {{"/bin", "usr/bin"}, {"/lib", "usr/lib"}, {"/lib64", "usr/lib64"}}};
}

QemuPlan ClonePlan() {
  QemuPlan p;
  p.kernel = "/var/lib/warmbox/kernel/6.1/vmlinux";
  p.initrd = "/var/lib/warmbox/vm/initrd/i.cpio";
  p.disks = {{"/var/lib/warmbox/vm/disks/layer-a.erofs", "wbl0"},
             {"/var/lib/warmbox/vm/disks/layer-b.erofs", "wbl1"}};
  p.memory_backend = MemoryBackend{"/dev/shm/warmbox-tpl-k", false};
  p.console_ringbuf_bytes = 65536;
  p.agent_fd = 3;
  p.qmp_fd = 4;
  return p;
}

const JailEntry* Find(const Jail& j, const std::string& path) {
  for (const auto& e : j.entries) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

TEST(QemuJail, MapsEveryHostPathIntoTheJail) {
  JailInput in{"/var/lib/warmbox/sandboxes/s1/jail", 1000065535, 1000065535,
               "/var/lib/warmbox/vm/templates/k/state", false};
  auto j = PlanQemuJail(ClonePlan(), MergedUsr(), in);
  ASSERT_OK(j);
  EXPECT_EQ(j->jail.root, in.root);
  EXPECT_EQ(j->jail.uid, 1000065535u);
  EXPECT_EQ(j->jail.gid, 1000065535u);
  // QEMU's argv names only the jail's paths: nothing of the host's state dir.
  const auto argv = QemuArgv(j->plan);
  for (const auto& a : argv) EXPECT_EQ(a.find("/var/lib/warmbox"), std::string::npos) << a;
  EXPECT_EQ(j->plan.qemu, "/usr/bin/qemu-system-x86_64");  // from the bound /usr
  EXPECT_EQ(Values(argv, "-kernel"), std::vector<std::string>{"/vm/kernel"});
  EXPECT_EQ(Values(argv, "-initrd"), std::vector<std::string>{"/vm/initrd"});
  auto drives = Values(argv, "-drive");
  ASSERT_EQ(drives.size(), 2u);
  EXPECT_NE(drives[0].find("file=/vm/disk0,"), std::string::npos) << drives[0];
  EXPECT_NE(drives[1].find("file=/vm/disk1,"), std::string::npos) << drives[1];
  EXPECT_NE(Values(argv, "-object")[0].find("mem-path=/vm/ram,share=off"), std::string::npos);
  // The VM's files: read-only but the RAM file (QEMU 7.2 opens it read-write).
  struct Want {
    const char* path;
    const char* source;
    bool writable;
  };
  for (const Want& w : {Want{"/vm/kernel", "/var/lib/warmbox/kernel/6.1/vmlinux", false},
                        Want{"/vm/initrd", "/var/lib/warmbox/vm/initrd/i.cpio", false},
                        Want{"/vm/disk0", "/var/lib/warmbox/vm/disks/layer-a.erofs", false},
                        Want{"/vm/disk1", "/var/lib/warmbox/vm/disks/layer-b.erofs", false},
                        Want{"/vm/ram", "/dev/shm/warmbox-tpl-k", true},
                        Want{"/vm/state", "/var/lib/warmbox/vm/templates/k/state", false}}) {
    const JailEntry* e = Find(j->jail, w.path);
    ASSERT_NE(e, nullptr) << w.path;
    EXPECT_EQ(e->kind, JailEntry::Kind::kBind);
    EXPECT_EQ(e->source, w.source);
    EXPECT_EQ(e->writable, w.writable) << w.path;
    EXPECT_FALSE(e->devices) << w.path;
    EXPECT_FALSE(e->exec) << w.path;
  }
  // The system: /usr read-only with exec, the links as the host has them.
  const JailEntry* usr = Find(j->jail, "/usr");
  ASSERT_NE(usr, nullptr);
  EXPECT_FALSE(usr->writable);
  EXPECT_TRUE(usr->exec);
  EXPECT_FALSE(usr->devices);
  const JailEntry* lib64 = Find(j->jail, "/lib64");
  ASSERT_NE(lib64, nullptr);
  EXPECT_EQ(lib64->kind, JailEntry::Kind::kSymlink);
  EXPECT_EQ(lib64->source, "usr/lib64");
  // /dev: three devices, no /dev/kvm under TCG, no console file (ring buffer).
  std::vector<std::string> devs;
  for (const auto& e : j->jail.entries) {
    if (StartsWith(e.path, "/dev/")) {
      devs.push_back(e.path);
      EXPECT_EQ(e.kind, JailEntry::Kind::kDevice) << e.path;
      EXPECT_EQ(e.source, e.path);
    }
  }
  EXPECT_EQ(devs, (std::vector<std::string>{"/dev/null", "/dev/zero", "/dev/urandom"}));
  EXPECT_EQ(Find(j->jail, "/vm/console"), nullptr);
  // Parents come before what they hold.
  size_t dev_at = 0, vm_at = 0, i = 0;
  for (const auto& e : j->jail.entries) {
    if (e.path == "/dev") dev_at = i;
    if (e.path == "/vm") vm_at = i;
    if (StartsWith(e.path, "/dev/")) {
      EXPECT_GT(i, dev_at);
    }
    if (StartsWith(e.path, "/vm/")) {
      EXPECT_GT(i, vm_at);
    }
    ++i;
  }
}

TEST(QemuJail, ColdBootTemplateAndKvm) {
  QemuPlan p;
  p.accel = Accel::kKvm;
  p.kernel = "/k/vmlinux";
  p.console_path = "/s/sb/console.log";
  JailInput in{"/s/sb/jail", 7, 8, "", false};
  auto j = PlanQemuJail(p, MergedUsr(), in);
  ASSERT_OK(j);
  const JailEntry* console = Find(j->jail, "/vm/console");
  ASSERT_NE(console, nullptr);
  EXPECT_TRUE(console->writable);
  EXPECT_EQ(console->source, "/s/sb/console.log");
  EXPECT_NE(Values(QemuArgv(j->plan), "-chardev")[0].find("path=/vm/console"), std::string::npos);
  const JailEntry* kvm = Find(j->jail, "/dev/kvm");
  ASSERT_NE(kvm, nullptr);
  EXPECT_EQ(kvm->kind, JailEntry::Kind::kDevice);
  ASSERT_NE(Find(j->jail, "/dev"), nullptr);
  EXPECT_EQ(Find(j->jail, "/dev")->kind, JailEntry::Kind::kDevDir);
  EXPECT_EQ(Find(j->jail, "/vm/initrd"), nullptr);
  EXPECT_EQ(Find(j->jail, "/vm/state"), nullptr);
  // A template writes its state file.
  JailInput tin{"/s/sb/jail", 7, 8, "/t/state.tmp", true};
  auto t = PlanQemuJail(p, MergedUsr(), tin);
  ASSERT_OK(t);
  ASSERT_NE(Find(t->jail, "/vm/state"), nullptr);
  EXPECT_TRUE(Find(t->jail, "/vm/state")->writable);
}

TEST(QemuJail, QemuOutsideTheSystemDirsIsBoundAlone) {
  QemuPlan p;
  p.kernel = "/k/vmlinux";
  p.qemu = "/opt/qemu/bin/qemu-system-x86_64";
  auto j = PlanQemuJail(p, MergedUsr(), JailInput{"/j", 7, 7});
  ASSERT_OK(j);
  EXPECT_EQ(j->plan.qemu, "/vm/qemu");
  const JailEntry* q = Find(j->jail, "/vm/qemu");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->source, "/opt/qemu/bin/qemu-system-x86_64");
  EXPECT_TRUE(q->exec);
  EXPECT_FALSE(q->writable);
  // Through a merged-/usr link it is in /usr: run from there.
  p.qemu = "/bin/qemu-system-x86_64";
  auto l = PlanQemuJail(p, MergedUsr(), JailInput{"/j", 7, 7});
  ASSERT_OK(l);
  EXPECT_EQ(l->plan.qemu, "/bin/qemu-system-x86_64");
  EXPECT_EQ(Find(l->jail, "/vm/qemu"), nullptr);
}

TEST(QemuJail, RefusesRootAndRelativePaths) {
  QemuPlan p;
  p.kernel = "/k/vmlinux";
  auto root = PlanQemuJail(p, MergedUsr(), JailInput{"/j", 0, 7});
  ASSERT_FALSE(root.ok());
  EXPECT_NE(root.error().ToString().find("must not be 0"), std::string::npos);
  auto rel_root = PlanQemuJail(p, MergedUsr(), JailInput{"jail", 7, 7});
  ASSERT_FALSE(rel_root.ok());
  EXPECT_NE(rel_root.error().ToString().find("the jail root must be an absolute host path"),
            std::string::npos)
      << rel_root.error().ToString();
  p.kernel = "vmlinux";
  auto rel = PlanQemuJail(p, MergedUsr(), JailInput{"/j", 7, 7});
  ASSERT_FALSE(rel.ok());
  EXPECT_NE(rel.error().ToString().find("vmlinux"), std::string::npos);
  EXPECT_NE(rel.error().ToString().find("the kernel"), std::string::npos);
}

}  // namespace
}  // namespace wb::vm
