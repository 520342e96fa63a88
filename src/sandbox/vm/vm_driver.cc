#include "sandbox/vm/vm_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/child.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/agent_client.h"
#include "sandbox/ns/cgroup.h"
#include "sandbox/sandbox_dir.h"
#include "sandbox/vm/initramfs.h"
#include "sandbox/vm/layer_disk.h"

namespace wb::vm {

struct VmDriver::CgroupLayoutHolder {
  CgroupLayout layout;
};

namespace {

constexpr int kQuitGraceMs = 2000;
constexpr int kExitReportMs = 1000;
constexpr size_t kTailBytes = 2048;
constexpr size_t kFailedLogsKept = 8;

int64_t NowUs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

std::string VmDir(const std::string& state_dir) { return state_dir + "/vm"; }

// The last bytes of a file, from the start of a line, trimmed.
std::string Tail(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  std::string t = *text;
  if (t.size() > kTailBytes) {
    t = t.substr(t.size() - kTailBytes);
    size_t nl = t.find('\n');
    if (nl != std::string::npos) t = t.substr(nl + 1);
  }
  return std::string(Trim(t));
}

// The guest's last words: up to the first kernel panic line (its stack
// dump says nothing about our setup), the last few lines.
std::string ConsoleTail(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return "";
  std::vector<std::string> lines;
  for (const auto& l : Split(*text, '\n')) {
    if (Trim(l).empty()) continue;
    lines.push_back(std::string(Trim(l)));
    if (l.find("Kernel panic") != std::string::npos) break;
  }
  size_t from = lines.size() > 4 ? lines.size() - 4 : 0;
  std::string out;
  for (size_t i = from; i < lines.size(); ++i) out += (out.empty() ? "" : " | ") + lines[i];
  return out.size() > kTailBytes ? out.substr(out.size() - kTailBytes) : out;
}

// Keeps the console log of a VM that failed, for the operator.
void KeepFailedLog(const std::string& state_dir, const std::string& id,
                   const std::string& console) {
  if (!PathExists(console)) return;
  const std::string dir = FailedLogsDir(state_dir);
  if (!MkdirAll(dir, 0700).ok()) return;
  if (::rename(console.c_str(), (dir + "/" + id + ".console.log").c_str()) != 0) return;
  // The newest few only.
  std::vector<std::pair<int64_t, std::string>> logs;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      struct stat st;
      std::string p = dir + "/" + e->d_name;
      if (::stat(p.c_str(), &st) == 0)
        logs.emplace_back(int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec, p);
    }
    ::closedir(d);
  }
  std::sort(logs.rbegin(), logs.rend());
  for (size_t i = kFailedLogsKept; i < logs.size(); ++i) ::unlink(logs[i].second.c_str());
}

// QMP "quit": QEMU exits at once, cleanly. Best effort, bounded: the caller
// kills QEMU anyway if it is still there after the grace period. The
// connection must stay open until QEMU is gone: QEMU drops the queued
// commands of a client that hangs up.
UniqueFd QmpQuit(const std::string& socket_path) {
  auto fd = ConnectUnix(socket_path);
  if (!fd.ok()) return UniqueFd();
  (void)SetNonBlocking(fd->get());
  // Capabilities negotiation must precede any command; QEMU handles the two
  // in order, so both go in one write without waiting for the greeting.
  static const char kMsg[] = "{\"execute\":\"qmp_capabilities\"}\r\n{\"execute\":\"quit\"}\r\n";
  ssize_t n = ::send(fd->get(), kMsg, sizeof kMsg - 1, MSG_NOSIGNAL);
  (void)n;
  return std::move(*fd);
}

class VmSandbox : public Sandbox {
 public:
  ~VmSandbox() override {
    if (auto r = Destroy(); !r.ok()) spdlog::debug("destroy {}: {}", id_, r.error().ToString());
  }
  const std::string& id() const override { return id_; }

  Result<void> Heartbeat(int timeout_ms) override {
    if (destroyed_) return Fail("heartbeat", id_, "sandbox destroyed");
    return AgentHeartbeat(Endpoint(), timeout_ms);
  }

  proto::ExecRequest WithImageDefaults(const proto::ExecRequest& in) const override {
    proto::ExecRequest req = in;
    std::vector<std::string> env = image_.config.env;
    env.insert(env.end(), req.env.begin(), req.env.end());
    req.env = std::move(env);
    if (req.cwd.empty()) req.cwd = image_.config.working_dir;
    if (req.user.empty()) req.user = image_.config.user;
    return req;
  }

  Result<ExecOutcome> Exec(const proto::ExecRequest& req, ExecIo& io) override {
    if (destroyed_) return Fail("exec", id_, "sandbox destroyed");
    return AgentExec(Endpoint(), WithImageDefaults(req), io);
  }

  Result<void> SetLimits(const Limits& limits) override {
    if (destroyed_) return Fail("set limits", id_, "sandbox destroyed");
    // The VM's RAM and vCPUs are fixed at boot; a run may ask for less (the
    // guest has no more to give), not for more.
    if (limits.memory_bytes > (memory_mib_ << 20)) {
      return Fail("set limits", id_,
                  "the vm driver cannot raise memory above the VM's " +
                      std::to_string(memory_mib_) +
                      " MiB after boot (start the pool with a larger --memory)");
    }
    return Ok();
  }

  AgentEndpoint endpoint() const override { return Endpoint(); }

  Result<void> Destroy() override {
    if (destroyed_) return Ok();
    destroyed_ = true;
    if (qemu_.running()) {
      UniqueFd qmp = QmpQuit(dir_ + "/qmp.sock");
      pollfd p{qemu_.pidfd(), POLLIN, 0};
      int r;
      do {
        r = ::poll(&p, 1, kQuitGraceMs);
      } while (r < 0 && errno == EINTR);
      qemu_.KillAndReap();
    }
    spdlog::debug("{}: qemu gone", id_);
    Result<void> result = cgroup_.Remove();
    if (dir_.empty()) return result;
    auto rm = RemoveTree(dir_);
    if (result.ok() && !rm.ok()) result = rm.error();
    return result;
  }

  AgentEndpoint Endpoint() const { return AgentEndpoint{dir_ + "/agent.sock", qemu_.pidfd()}; }

  std::string id_;
  std::string dir_;
  Image image_;
  uint64_t memory_mib_ = 0;
  ChildProcess qemu_;
  Cgroup cgroup_;  // removed once QEMU is gone (Destroy)
  bool destroyed_ = false;
};

// The thread ids of a process.
std::vector<pid_t> ListTasks(pid_t pid) {
  std::vector<pid_t> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      auto v = ParseUint(e->d_name, "tid");
      if (v.ok()) out.push_back(static_cast<pid_t>(*v));
    }
    ::closedir(d);
  }
  return out;
}

// "6.1 ms" etc. from guest microseconds.
std::string Ms(double us) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f", us / 1000.0);
  return b;
}

}  // namespace

std::string FailedLogsDir(const std::string& state_dir) { return VmDir(state_dir) + "/failed"; }

Result<VmInfo> ResolveVmInfo(const VmDriverOptions& opts) {
  VmInfo info;
  const std::string root = opts.kernel_root.empty() ? KernelRoot() : opts.kernel_root;
  info.kernel = WB_TRY(FindGuestKernel(root, opts.kernel));
  info.kvm_usable = KvmUsable();
  info.accel = WB_TRY(ResolveAccel(opts.accel, info.kvm_usable));
  if (!opts.initrd.empty()) {
    if (!PathExists(opts.initrd)) return Fail("--initrd", opts.initrd, "no such file");
    info.initrd = opts.initrd;
  } else {
    if (!PathExists(opts.agent_path)) {
      return Fail("vm driver", opts.agent_path,
                  "warmbox-agent not found (build it, or set WARMBOX_AGENT)");
    }
    info.initrd =
        WB_TRY(EnsureInitramfs(VmDir(opts.state_dir) + "/initrd", opts.agent_path, info.kernel));
  }
  return info;
}

Result<std::unique_ptr<VmDriver>> VmDriver::Open(VmDriverOptions opts, ImageStore* store) {
  if (::geteuid() != 0) {
    return Fail("vm driver", "uid " + std::to_string(::geteuid()),
                "needs root (it builds image disks in the sandboxes' uid range); run as root");
  }
  if (!PathExists(opts.qemu))
    return Fail("vm driver", opts.qemu, "QEMU not found (scripts/setup installs qemu-system-x86)");
  // The image disks are built in the sandboxes' uid range (layer_disk.h),
  // which must be able to walk to the cache: searchable, not readable.
  for (const std::string& d : {opts.state_dir, VmDir(opts.state_dir),
                               VmDir(opts.state_dir) + "/disks", SandboxesDir(opts.state_dir)}) {
    WB_CHECK(MkdirAll(d, 0711));
    struct stat st;
    if (::stat(d.c_str(), &st) != 0) return Errno("stat", d);
    if (!(st.st_mode & S_IXOTH) && ::chmod(d.c_str(), (st.st_mode & 07777) | 0011) != 0)
      return Errno("chmod", d);
  }
  auto drv = std::unique_ptr<VmDriver>(new VmDriver());
  drv->info_ = WB_TRY(ResolveVmInfo(opts));
  drv->opts_ = std::move(opts);
  drv->store_ = store;
  drv->layout_ = std::make_shared<CgroupLayoutHolder>();
  drv->layout_->layout = WB_TRY(HostCgroupLayout());
  GcReport gc = CollectGarbage(drv->opts_.state_dir);
  if (gc.removed) spdlog::debug("removed {} leftover sandbox(es)", gc.removed);
  if (size_t n = SweepOrphanCgroups(drv->layout_->layout, drv->opts_.cgroup_parent)) {
    spdlog::debug("removed {} orphaned sandbox cgroup(s)", n);
  }
  return drv;
}

Result<std::unique_ptr<Sandbox>> VmDriver::Create(const SandboxSpec& spec) {
  if (spec.security.seccomp != "default" && spec.security.seccomp != "unconfined") {
    return Fail(
        "vm driver", spec.security.seccomp,
        "seccomp profile files are not supported by the vm driver yet (use default or unconfined)");
  }
  const int64_t t0 = NowUs();
  auto sb = std::make_unique<VmSandbox>();
  sb->image_ = WB_TRY(store_->Get(spec.image));
  std::vector<QemuDisk> disks;
  for (size_t i = 0; i < sb->image_.lower_dirs.size(); ++i) {
    std::string disk = WB_TRY(EnsureLayerDisk(VmDir(opts_.state_dir) + "/disks",
                                              sb->image_.lower_dirs[i], sb->image_.uid_base));
    disks.push_back({disk, "wbl" + std::to_string(i)});
  }
  const int64_t t_disks = NowUs();
  sb->id_ = WB_TRY(RandomHex(6));
  sb->dir_ = SandboxesDir(opts_.state_dir) + "/" + sb->id_;
  if (::mkdir(sb->dir_.c_str(), 0700) != 0) {
    Error e = Errno("mkdir", sb->dir_);
    sb->dir_.clear();  // not ours: never remove it
    return e;
  }
  // From here on the sandbox's destructor removes whatever exists.
  // QEMU runs in the sandbox's cgroups, as the ns driver's agent does: its
  // CPU quota is the VM's (--cpus), its memory limit the guest's RAM plus
  // QEMU's own overhead, and the record lets gc kill a leftover VM.
  Limits qemu_limits = spec.limits;
  qemu_limits.memory_bytes =
      (std::max<uint64_t>(spec.limits.memory_bytes >> 20, 64) << 20) + opts_.qemu_overhead_bytes;
  CgroupPlan cg_plan =
      PlanSandboxCgroup(layout_->layout, sb->id_, qemu_limits, opts_.cgroup_parent);
  WB_CHECK(WriteSandboxRecord(
      sb->dir_, SandboxRecord{sb->id_, ::getpid(), ProcessStartTime(::getpid()), cg_plan.dirs}));
  sb->cgroup_ = WB_TRY(Cgroup::Apply(cg_plan));
  const std::string console = sb->dir_ + "/console.log", qemu_log = sb->dir_ + "/qemu.log";
  UniqueFd agent_listener = WB_TRY(ListenUnix(sb->dir_ + "/agent.sock"));
  UniqueFd qmp_listener = WB_TRY(ListenUnix(sb->dir_ + "/qmp.sock"));
  UniqueFd qemu_err(::open(qemu_log.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!qemu_err) return Errno("create", qemu_log);

  QemuPlan plan;
  plan.qemu = opts_.qemu;
  plan.accel = info_.accel;
  long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  plan.vcpus = VcpusFor(spec.limits.cpus, ncpu > 0 ? static_cast<uint32_t>(ncpu) : 1);
  plan.memory_mib = std::max<uint64_t>(spec.limits.memory_bytes >> 20, 64);
  sb->memory_mib_ = plan.memory_mib;
  plan.kernel = info_.kernel.vmlinux;
  plan.initrd = info_.initrd;
  plan.kernel_args = DefaultKernelArgs(plan.accel);
  plan.init_args = {"--guest",
                    "--layers",
                    std::to_string(disks.size()),
                    "--tmpfs-size",
                    std::to_string(spec.limits.disk_bytes),
                    "--hostname",
                    sb->id_,
                    "--seccomp",
                    spec.security.seccomp,
                    "--nofile",
                    std::to_string(spec.security.nofile)};
  plan.disks = disks;
  plan.agent_fd = 3;
  plan.qmp_fd = 4;
  plan.console_path = console;

  SpawnOptions o;
  o.path = plan.qemu;
  o.argv = QemuArgv(plan);
  o.fds = {{agent_listener.get(), 3}, {qmp_listener.get(), 4}, {qemu_err.get(), 2}};
  o.pdeath_signal = SIGKILL;  // the VM dies with its host process
  o.file_size_limit = opts_.console_cap;
  o.cgroup_fd = sb->cgroup_.clone_fd();  // cgroup v2: born there
  o.hold_until_released = true;          // v1: moved there before it execs
  spdlog::debug("{}: {}", sb->id_, [&] {
    std::string s;
    for (const auto& a : o.argv) s += (s.empty() ? "" : " ") + a;
    return s;
  }());
  const int64_t t_spawn = NowUs();
  sb->qemu_ = WB_TRY(ChildProcess::Spawn(o));
  sb->cgroup_.CloseCloneFd();
  WB_CHECK(sb->cgroup_.Attach(sb->qemu_.pid()));
  WB_CHECK(sb->qemu_.Release());
  // QEMU's copies are the only ones: connects fail once it is gone.
  agent_listener.reset();
  qmp_listener.reset();
  qemu_err.reset();

  // One heartbeat, waiting as long as a boot may take: the host's connection
  // is queued on the socket before QEMU even accepts it, and QEMU's exit
  // (its pidfd) ends the wait at once.
  auto ready = AgentHeartbeatReply(sb->Endpoint(), opts_.ready_total_ms);
  if (!ready.ok()) {
    // One line: what the wait saw, how QEMU ended, and the last words of
    // QEMU and of the guest's console.
    std::string why = ready.error().ToString();
    // QEMU closes the channel while it exits, a moment before it can be
    // reaped: give a dying QEMU that moment, so its status is reported.
    pollfd p{sb->qemu_.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, kExitReportMs) == 1) {
      auto st = sb->qemu_.Wait();
      if (st.ok()) why += "; qemu " + st->Describe();
    }
    if (std::string t = Tail(qemu_log); !t.empty()) why += "; qemu stderr: " + t;
    if (std::string t = ConsoleTail(console); !t.empty()) {
      why += "; console (kept in " + FailedLogsDir(opts_.state_dir) + "/" + sb->id_ +
             ".console.log): " + t;
    }
    Error e = Fail("create vm sandbox", spec.image, why);
    sb->qemu_.KillAndReap();
    KeepFailedLog(opts_.state_dir, sb->id_, console);
    (void)sb->Destroy();
    return e;
  }
  const int64_t t_ready = NowUs();
  // A creation at a lower priority (the pool's refills run at nice 10) hands
  // the VM back the normal priority once it is ready, as the ns driver does
  // with its agent. Nice values are per thread: every QEMU thread (the vCPU
  // threads were created by the main thread with its value).
  for (const auto& tid : ListTasks(sb->qemu_.pid())) {
    if (::getpriority(PRIO_PROCESS, static_cast<id_t>(tid)) != 0 &&
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 0) != 0) {
      spdlog::debug("{}: setpriority({}): {}", sb->id_, tid, std::strerror(errno));
    }
  }
  // Warm-up: under emulation (TCG) a VM's first command costs ~100 ms more
  // than the next, as QEMU translates the paths it takes for the first time
  // (the agent's request handling, the seccomp filter, fork, exec, exit).
  // A sandbox runs one command, so every warm run would pay that; one run of
  // the agent's own binary (no file of the image is needed) pays
  // it here, before the sandbox is handed out.
  {
    proto::ExecRequest warm;
    // The command's own /proc/self/exe: until it execs, that is the agent
    // (PID 1's is not open to commands: the agent is non-dumpable).
    warm.argv = {"/proc/self/exe", "--warmup"};
    warm.timeout_ms = static_cast<uint64_t>(opts_.ready_total_ms);
    ExecIo io;
    auto w = AgentExec(sb->Endpoint(), warm, io);
    if (!w.ok() || w->exit.exit_code != 0) {
      spdlog::debug("vm {}: warm-up: {}", sb->id_,
                    w.ok() ? "exit " + std::to_string(w->exit.exit_code) + ": " + w->stderr_data
                           : w.error().ToString());
    }
  }
  const int64_t t_warm = NowUs();
  auto j = nlohmann::json::parse(*ready, nullptr, false);
  if (!j.is_discarded() && j.contains("boot") && j["boot"].is_object()) {
    const auto& b = j["boot"];
    auto us = [&](const char* k) { return b.value(k, 0.0); };
    spdlog::debug(
        "vm {}: ready in {} ms (disks {} ms; guest clock: kernel until /init {} ms, modules {} ms, "
        "port {} ms, rootfs {} ms; qemu start and agent answer {} ms; warm-up {} ms)",
        sb->id_, Ms(static_cast<double>(t_ready - t0)), Ms(static_cast<double>(t_disks - t0)),
        Ms(us("init_us")), Ms(us("modules_us") - us("init_us")),
        Ms(us("port_us") - us("modules_us")), Ms(us("rootfs_us") - us("port_us")),
        Ms(static_cast<double>(t_ready - t_spawn) - us("rootfs_us")),
        Ms(static_cast<double>(t_warm - t_ready)));
  }
  return std::unique_ptr<Sandbox>(std::move(sb));
}

}  // namespace wb::vm
