#include "agent/guest.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/setup.h"
#include "base/fs.h"
#include "base/strings.h"

namespace wb::agent {
namespace {

uint64_t BootUs() {
  timespec ts;
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

Result<void> Mount(const std::string& src, const std::string& target, const char* type,
                   unsigned long flags, const std::string& data) {
  if (::mount(src.empty() ? nullptr : src.c_str(), target.c_str(), type, flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    return Errno(std::string("mount ") + (type ? type : "move"),
                 src + " -> " + target + (data.empty() ? "" : " [" + data + "]"));
  }
  return Ok();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadTrimmed(const std::string& path) {
  auto t = ReadFile(path);
  return t.ok() ? std::string(Trim(*t)) : "";
}

// Devices appear when their drivers' probes (and, for ports, the host's
// answers on the control queue) have run, which is asynchronous to module
// loading; sysfs cannot be watched with inotify. So: look again every
// millisecond, within a bound.
void Pause() {
  timespec ts{0, 1000000};
  ::nanosleep(&ts, nullptr);
}

Result<void> LoadModules(const std::string& cmdline) {
  for (const auto& file : ListDir(kGuestModulesDir)) {
    // "NN-name.ko": the host numbered them in dependency order.
    std::string name = file.substr(file.find('-') + 1);
    if (name.size() > 3 && name.compare(name.size() - 3, 3, ".ko") == 0)
      name.resize(name.size() - 3);
    const std::string path = std::string(kGuestModulesDir) + "/" + file;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Errno("open", path);
    const std::string params = ModuleParamsFromCmdline(cmdline, name);
    if (::syscall(SYS_finit_module, fd.get(), params.c_str(), 0) != 0 && errno != EEXIST) {
      return Errno("finit_module", name + (params.empty() ? "" : " " + params));
    }
    fd.reset();
    ::unlink(path.c_str());  // the initramfs is RAM: give it back
  }
  return Ok();
}

Result<UniqueFd> OpenPort(int wait_ms) {
  const std::string cls = "/sys/class/virtio-ports";
  for (int waited = 0;; ++waited) {
    for (const auto& port : ListDir(cls)) {
      if (ReadTrimmed(cls + "/" + port + "/name") != kGuestPortName) continue;
      // Non-blocking: the agent's loop is edge-triggered on it.
      UniqueFd fd(::open(("/dev/" + port).c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
      if (fd) return fd;
      if (errno != ENOENT) return Errno("open", "/dev/" + port);
    }
    if (waited >= wait_ms) {
      return Fail("open port", kGuestPortName,
                  "no virtio-serial port of that name after " + std::to_string(wait_ms) + " ms");
    }
    Pause();
  }
}

Result<std::string> FindDisk(const std::string& serial, int wait_ms) {
  for (int waited = 0;; ++waited) {
    for (const auto& dev : ListDir("/sys/block")) {
      if (!StartsWith(dev, "vd")) continue;
      if (ReadTrimmed("/sys/block/" + dev + "/serial") == serial && PathExists("/dev/" + dev)) {
        return "/dev/" + dev;
      }
    }
    if (waited >= wait_ms) {
      return Fail("find disk", serial,
                  "no virtio-blk disk with that serial after " + std::to_string(wait_ms) + " ms");
    }
    Pause();
  }
}

sockaddr_in Inet4(const std::string& addr) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, addr.c_str(), &a.sin_addr);
  return a;
}

// The guest's one NIC (virtio-net: its probe is asynchronous to the module's
// load), configured with ioctls: address, netmask, up, then the default
// route through the gateway (which needs the interface up and the gateway on
// its subnet). passt answers ARP for the gateway and carries every packet
// to the host, where the policy is.
Result<void> ConfigureNet(const GuestNet& n, int wait_ms) {
  std::string ifname;
  for (int waited = 0; ifname.empty(); ++waited) {
    for (const auto& dev : ListDir("/sys/class/net")) {
      if (dev != "lo") {
        ifname = dev;
        break;
      }
    }
    if (!ifname.empty()) break;
    if (waited >= wait_ms) {
      return Fail("configure network", n.addr,
                  "no network interface after " + std::to_string(wait_ms) + " ms");
    }
    Pause();
  }
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return Errno("socket", "AF_INET");
  ifreq ifr;
  auto reset = [&] {
    std::memset(&ifr, 0, sizeof ifr);
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  };
  reset();
  sockaddr_in a = Inet4(n.addr);
  std::memcpy(&ifr.ifr_addr, &a, sizeof a);
  if (::ioctl(s.get(), SIOCSIFADDR, &ifr) != 0) return Errno("ioctl(SIOCSIFADDR)", ifname);
  reset();
  sockaddr_in m{};
  m.sin_family = AF_INET;
  m.sin_addr.s_addr = n.prefix == 0 ? 0 : htonl(~uint32_t{0} << (32 - n.prefix));
  std::memcpy(&ifr.ifr_netmask, &m, sizeof m);
  if (::ioctl(s.get(), SIOCSIFNETMASK, &ifr) != 0) return Errno("ioctl(SIOCSIFNETMASK)", ifname);
  reset();
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return Errno("ioctl(SIOCGIFFLAGS)", ifname);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return Errno("ioctl(SIOCSIFFLAGS)", ifname);
  rtentry rt;
  std::memset(&rt, 0, sizeof rt);
  sockaddr_in any{};
  any.sin_family = AF_INET;
  std::memcpy(&rt.rt_dst, &any, sizeof any);
  std::memcpy(&rt.rt_genmask, &any, sizeof any);
  sockaddr_in gw = Inet4(n.gateway);
  std::memcpy(&rt.rt_gateway, &gw, sizeof gw);
  rt.rt_flags = RTF_UP | RTF_GATEWAY;
  if (::ioctl(s.get(), SIOCADDRT, &rt) != 0)
    return Errno("ioctl(SIOCADDRT)", "default via " + n.gateway);
  // The resolver: a fresh file (an image's symlink there is replaced; we
  // are chrooted into the guest's root, so nothing outside it is reachable).
  WB_RETURN_IF_ERROR(MkdirAll("/etc", 0755));
  (void)::unlink("/etc/resolv.conf");
  return WriteFileAtomic("/etc/resolv.conf",
                         "# warmbox: the sandbox's resolver\nnameserver " + n.resolver + "\n",
                         0644);
}

}  // namespace

Result<GuestNet> ParseGuestNet(std::string_view s) {
  auto parts = Split(std::string(s), ',');
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, "--net", std::string(s), why);
  };
  if (parts.size() != 3) return bad("expected ADDR/PREFIX,GATEWAY,RESOLVER");
  size_t slash = parts[0].find('/');
  if (slash == std::string::npos) return bad("expected ADDR/PREFIX first");
  GuestNet n;
  n.addr = parts[0].substr(0, slash);
  auto prefix = ParseUint(parts[0].substr(slash + 1), "--net prefix");
  if (!prefix.ok() || *prefix > 32) return bad("prefix: expected 0 to 32");
  n.prefix = static_cast<int>(*prefix);
  n.gateway = parts[1];
  n.resolver = parts[2];
  in_addr tmp;
  for (const std::string* a : {&n.addr, &n.gateway, &n.resolver}) {
    if (::inet_pton(AF_INET, a->c_str(), &tmp) != 1) return bad("not an IPv4 address: " + *a);
  }
  return n;
}

std::string GuestTimings::ToJson() const {
  return "\"boot\":{\"init_us\":" + std::to_string(init_us) +
         ",\"modules_us\":" + std::to_string(modules_us) +
         ",\"port_us\":" + std::to_string(port_us) + ",\"rootfs_us\":" + std::to_string(rootfs_us) +
         "}";
}

std::string ModuleParamsFromCmdline(std::string_view cmdline, std::string_view module) {
  auto norm = [](std::string_view s) {
    std::string out(s);
    std::replace(out.begin(), out.end(), '-', '_');
    return out;
  };
  const std::string want = norm(module) + ".";
  std::string out;
  for (const auto& word : Split(std::string(Trim(cmdline)), ' ')) {
    // Words after "--" count too: they are init's argv, but QEMU appends a
    // microvm's virtio_mmio.device= entries after everything.
    size_t dot = word.find('.');
    size_t eq = word.find('=');
    if (dot == std::string::npos || (eq != std::string::npos && eq < dot)) continue;
    if (norm(word.substr(0, dot + 1)) != want || dot + 1 == word.size() || word[dot + 1] == '=')
      continue;
    if (!out.empty()) out += ' ';
    out += word.substr(dot + 1);
  }
  return out;
}

Result<GuestResult> SetUpGuest(const GuestSetup& s) {
  GuestResult r;
  r.timings.init_us = BootUs();
  // The kernel gave us the initramfs as "/" and nothing else. devtmpfs first:
  // the kernel creates the nodes of the port and the disks there as their
  // drivers register them.
  for (const char* d : {"/dev", "/proc", "/sys"}) WB_RETURN_IF_ERROR(MkdirAll(d, 0755));
  WB_RETURN_IF_ERROR(Mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"));
  WB_RETURN_IF_ERROR(Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  WB_RETURN_IF_ERROR(Mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  const std::string cmdline = ReadTrimmed("/proc/cmdline");

  WB_RETURN_IF_ERROR(LoadModules(cmdline));
  r.timings.modules_us = BootUs();

  // The host's channel before anything slow: the host is already connected
  // and waiting; what it sent stays queued until we serve.
  r.port = WB_TRY(OpenPort(s.wait_ms));
  r.timings.port_us = BootUs();

  // The image: one read-only erofs disk per layer, top layer first.
  std::string lower;
  for (int i = 0; i < s.layers; ++i) {
    const std::string dev = WB_TRY(FindDisk(kGuestDiskSerialPrefix + std::to_string(i), s.wait_ms));
    const std::string dir = "/layers/" + std::to_string(i);
    WB_RETURN_IF_ERROR(MkdirAll(dir, 0755));
    WB_RETURN_IF_ERROR(Mount(dev, dir, "erofs", MS_RDONLY | MS_NODEV, ""));
    lower += (lower.empty() ? "" : ":") + dir;
  }
  // The writable layer: a size-capped tmpfs, gone with the VM.
  WB_RETURN_IF_ERROR(MkdirAll("/upper", 0755));
  WB_RETURN_IF_ERROR(Mount("tmpfs", "/upper", "tmpfs", MS_NOSUID | MS_NODEV,
                           "mode=0755,size=" + std::to_string(s.tmpfs_bytes)));
  for (const char* d : {"/upper/upper", "/upper/work", "/newroot"})
    WB_RETURN_IF_ERROR(MkdirAll(d, 0755));
  WB_RETURN_IF_ERROR(Mount("overlay", "/newroot", "overlay", MS_NOSUID,
                           "lowerdir=" + lower + ",upperdir=/upper/upper,workdir=/upper/work"));

  // Switch root. The initramfs is the kernel's rootfs, which cannot be
  // pivoted away: move the new root over "/" and chroot into it (what
  // busybox's switch_root does). /proc and /sys move along first.
  for (const char* d : {"/dev", "/proc", "/sys", "/tmp"})
    WB_RETURN_IF_ERROR(MkdirAll(std::string("/newroot") + d, 0755));
  // Commands get the ns driver's /dev, not the devtmpfs: it holds every
  // device the guest kernel has (userfaultfd, kmsg, mem, the disks). The
  // minimal one binds its nodes from the devtmpfs, which is then detached:
  // the port's open fd and the disks' mounts need no path to their nodes.
  WB_RETURN_IF_ERROR(SetUpDev("/newroot/dev"));
  if (::umount2("/dev", MNT_DETACH) != 0) return Errno("umount2", "/dev");
  for (const char* d : {"/proc", "/sys"}) {
    WB_RETURN_IF_ERROR(Mount(d, std::string("/newroot") + d, nullptr, MS_MOVE, ""));
  }
  if (::chdir("/newroot") != 0) return Errno("chdir", "/newroot");
  WB_RETURN_IF_ERROR(Mount("/newroot", "/", nullptr, MS_MOVE, ""));
  if (::chroot(".") != 0) return Errno("chroot", "/newroot");
  if (::chdir("/") != 0) return Errno("chdir", "/");

  if (::chmod("/tmp", 01777) != 0) return Errno("chmod", "/tmp");
  WB_RETURN_IF_ERROR(Mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
                           "mode=1777,size=" + std::to_string(s.tmpfs_bytes)));
  // Guest root is real root of the guest kernel: a writable /proc/sys or
  // /sys lets even a command without capabilities hand the kernel a program
  // to run as full root (kernel.core_pattern, /sys/kernel/uevent_helper).
  // The ns driver's proc masks, and sysfs read-only; the agent only reads
  // them from here on, and commands cannot undo either (no CAP_SYS_ADMIN,
  // mount and umount denied by seccomp).
  WB_RETURN_IF_ERROR(MaskProc("/proc"));
  WB_RETURN_IF_ERROR(Mount("sysfs", "/sys", nullptr,
                           MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  if (!s.hostname.empty() && ::sethostname(s.hostname.data(), s.hostname.size()) != 0) {
    return Errno("sethostname", s.hostname);
  }
  WB_RETURN_IF_ERROR(LoopbackUp());
  if (!s.net.empty()) WB_RETURN_IF_ERROR(ConfigureNet(WB_TRY(ParseGuestNet(s.net)), s.wait_ms));
  r.timings.rootfs_us = BootUs();
  return r;
}

}  // namespace wb::agent
