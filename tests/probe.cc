// warmbox-probe: a static helper that the isolation tests run inside a
// sandbox. Each command makes one attempt and prints "OK" or the errno name.
//
//   probe syscall NAME          a harmless call of a denied-by-policy syscall
//   probe connect IP PORT       TCP connect
//   probe kill PID              kill(PID, 0)
//   probe ptrace PID            PTRACE_ATTACH
//   probe listen-abstract NAME SECONDS
//                               listen on an abstract Unix socket, print
//                               "LISTENING", then stay SECONDS
//   probe connect-abstract NAME
//   probe fds                   the open fds (busybox's ls may run inside sh)
//   probe inotify MAX [hold]    inotify_init1 up to MAX times: prints how many
//                               succeeded ("N" or, with hold, "FILLED N"
//                               then keeps them until stdin ends)
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int Report(long rc) {
  if (rc >= 0) {
    std::printf("OK\n");
  } else {
    const char* name = strerrorname_np(errno);
    std::printf("%s\n", name ? name : std::to_string(errno).c_str());
  }
  return 0;
}

long Syscall(const std::string& name) {
  if (name == "getpid") return ::getpid();
  if (name == "mount") return ::mount("none", "/tmp", "tmpfs", 0, nullptr);
  if (name == "umount") return ::umount2("/proc", MNT_DETACH);
  if (name == "unshare-user") return ::unshare(CLONE_NEWUSER);
  if (name == "unshare-files") return ::unshare(CLONE_FILES);
  if (name == "clone-newuser") {
    long pid = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) ::_exit(0);
    return pid;
  }
  if (name == "init_module") return ::syscall(SYS_init_module, nullptr, 0, "");
  if (name == "finit_module") return ::syscall(SYS_finit_module, 0, "", 0);
  if (name == "kexec_load") return ::syscall(SYS_kexec_load, 0, 0, nullptr, 0);
  if (name == "bpf") {
    union bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    return ::syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
  }
  if (name == "perf_event_open") {
    perf_event_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    return ::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  }
  if (name == "keyctl") return ::syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0);
  if (name == "add_key") return ::syscall(SYS_add_key, "user", "x", "y", 1, -2);
  if (name == "reboot") {
    return ::syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_CAD_OFF,
                     nullptr);
  }
  if (name == "swapon") return ::swapon("/nonexistent", 0);
  if (name == "clock_settime") {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return ::clock_settime(CLOCK_REALTIME, &ts);
  }
  if (name == "tiocsti") {
    char c = 'x';
    return ::ioctl(0, TIOCSTI, &c);
  }
  if (name == "tiocsti-high") {
    // The kernel reads the request as an unsigned int: the upper half is
    // ignored by it, and must be by the filter too (issue 19, finding 11).
    char c = 'x';
    return ::syscall(SYS_ioctl, 0, static_cast<unsigned long>(TIOCSTI) | (1UL << 32), &c);
  }
  if (name == "userfaultfd") return ::syscall(SYS_userfaultfd, 0);
  if (name == "io_uring_setup") {
    char params[120];
    std::memset(params, 0, sizeof params);
    return ::syscall(SYS_io_uring_setup, 1, params);
  }
  if (name == "setns") {
    int fd = ::open("/proc/self/ns/uts", O_RDONLY);
    return ::setns(fd, 0);
  }
  if (name == "ptrace-pid1") return ::ptrace(PTRACE_ATTACH, 1, nullptr, nullptr);
  std::fprintf(stderr, "probe: unknown syscall %s\n", name.c_str());
  ::_exit(2);
}

int AbstractSocket(const std::string& name, bool listen, int seconds = 0) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (!listen) return Report(::connect(fd, reinterpret_cast<sockaddr*>(&addr), len));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd, 1) != 0)
    return Report(-1);
  std::printf("LISTENING\n");
  std::fflush(stdout);
  ::sleep(static_cast<unsigned>(seconds));
  return 0;
}

// The fds this process holds, one a line, without the one reading them.
int ListFds() {
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return Report(-1);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.' || std::atoi(e->d_name) == ::dirfd(d)) continue;
    std::printf("%s\n", e->d_name);
  }
  ::closedir(d);
  return 0;
}

// Kernel quotas (issue 19, finding 5): how many inotify instances this uid
// may have, optionally held until stdin ends.
int Inotify(int max, bool hold) {
  int n = 0;
  while (n < max && ::syscall(SYS_inotify_init1, IN_CLOEXEC) >= 0) ++n;
  if (!hold) {
    std::printf("%d\n", n);
    return 0;
  }
  std::printf("FILLED %d\n", n);
  std::fflush(stdout);
  char buf[64];
  while (::read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "fds") return ListFds();
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: probe syscall NAME | connect IP PORT | kill PID | ptrace PID | ...\n");
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "syscall") return Report(Syscall(argv[2]));
  if (cmd == "kill") return Report(::kill(std::stoi(argv[2]), 0));
  if (cmd == "ptrace") return Report(::ptrace(PTRACE_ATTACH, std::stoi(argv[2]), nullptr, nullptr));
  if (cmd == "listen-abstract")
    return AbstractSocket(argv[2], true, argc > 3 ? std::stoi(argv[3]) : 2);
  if (cmd == "connect-abstract") return AbstractSocket(argv[2], false);
  if (cmd == "inotify") return Inotify(std::stoi(argv[2]), argc > 3);
  if (cmd == "connect" && argc >= 4) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(argv[3])));
    ::inet_pton(AF_INET, argv[2], &addr.sin_addr);
    return Report(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
  }
  std::fprintf(stderr, "probe: unknown command %s\n", cmd.c_str());
  return 2;
}
