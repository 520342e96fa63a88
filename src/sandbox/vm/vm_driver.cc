#include "sandbox/vm/vm_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "agent/identity.h"
#include "base/child.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/agent_client.h"
#include "sandbox/ns/cgroup.h"
#include "sandbox/sandbox_dir.h"
#include "sandbox/vm/initramfs.h"
#include "sandbox/vm/layer_disk.h"
#include "sandbox/vm/qmp.h"

namespace wb::vm {

struct VmDriver::TemplatePaths {
  std::string key, key_text, dir, state, lock, ram, templates;
};

struct VmDriver::CgroupLayoutHolder {
  CgroupLayout layout;
};

namespace {

constexpr int kQuitGraceMs = 2000;
constexpr int kExitReportMs = 1000;
constexpr size_t kTailBytes = 2048;
constexpr size_t kFailedLogsKept = 8;
constexpr const char* kTemplateHostname = "warmbox-template";
constexpr uint32_t kRingbufBytes = 64 * 1024;
constexpr int kMigrateMs = 60000;

// getrandom(2) until full.
Result<void> FillRandom(std::string& buf) {
  size_t off = 0;
  while (off < buf.size()) {
    ssize_t n = ::getrandom(buf.data() + off, buf.size() - off, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("getrandom", std::to_string(buf.size()));
    off += static_cast<size_t>(n);
  }
  return Ok();
}

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

std::string TailOf(const std::string& qemu_log) {
  std::string t = Tail(qemu_log);
  return t.empty() ? "" : "; qemu stderr: " + t;
}

// "path:size:mtime" of a file: what the key says about an input.
std::string FileId(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return path + ":missing";
  return path + ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
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
    return image_.config.Apply(in);
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
  std::snprintf(b, sizeof b, "%.1f", us / 1000.0);
  return b;
}

}  // namespace

std::string TemplateKeyText(const std::vector<std::string>& layer_dirs,
                            const std::string& kernel_id, const std::string& initrd_id,
                            const std::string& agent_id, uint32_t vcpus, uint64_t memory_mib,
                            const std::vector<std::string>& init_args, Accel accel) {
  std::string k = "warmbox-template-v1\n";
  for (const auto& l : layer_dirs) k += "layer " + l + "\n";
  k += "kernel " + kernel_id + "\ninitrd " + initrd_id + "\nagent " + agent_id + "\n";
  k += "vcpus " + std::to_string(vcpus) + "\nmemory_mib " + std::to_string(memory_mib) + "\n";
  k += "init";
  for (const auto& a : init_args) k += " " + a;
  k += std::string("\naccel ") + (accel == Accel::kKvm ? "kvm" : "tcg") + "\n";
  return k;
}

std::string TemplateKeyHash(const std::string& key_text) {
  // FNV-1a 64: a name, not a security boundary; the full key text is stored
  // beside the template and compared before use, so a collision is caught.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key_text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
  return b;
}

std::string FailedLogsDir(const std::string& state_dir) { return VmDir(state_dir) + "/failed"; }

// A QEMU started but not yet waited for (a clone's: waiting in -incoming defer).
struct VmDriver::Spawned {
  std::unique_ptr<VmSandbox> sb;
  int64_t t0 = 0, t_disks = 0, t_spawn = 0;
  std::string console, qemu_log;
  std::string key;  // a pre-started clone's template key, and its limits
  uint64_t pids = 0;
  double cpus = 0;
};

VmDriver::~VmDriver() = default;

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
    WB_RETURN_IF_ERROR(MkdirAll(d, 0711));
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

Result<std::unique_ptr<Sandbox>> VmDriver::Boot(const SandboxSpec& spec, Mode mode,
                                                const TemplatePaths* t) {
  return Finish(spec, mode, t, WB_TRY(Spawn(spec, mode, t)));
}

Result<std::unique_ptr<VmDriver::Spawned>> VmDriver::Spawn(const SandboxSpec& spec, Mode mode,
                                                           const TemplatePaths* t) {
  if (spec.security.seccomp != "default" && spec.security.seccomp != "unconfined") {
    return Fail(
        "vm driver", spec.security.seccomp,
        "seccomp profile files are not supported by the vm driver yet (use default or unconfined)");
  }
  const int64_t t0 = NowUs();
  auto sp = std::make_unique<Spawned>();
  sp->sb = std::make_unique<VmSandbox>();
  VmSandbox* sb = sp->sb.get();
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
  WB_RETURN_IF_ERROR(WriteSandboxRecord(
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
                    mode == Mode::kCold ? sb->id_ : std::string(kTemplateHostname),
                    "--seccomp",
                    spec.security.seccomp,
                    "--nofile",
                    std::to_string(spec.security.nofile)};
  plan.disks = disks;
  plan.agent_fd = 3;
  plan.qmp_fd = 4;
  plan.console_path = console;
  if (mode != Mode::kCold) {
    // The RAM file (template) and the migration stream (written by QEMU's
    // child "cat") must not meet RLIMIT_FSIZE, so the console, which the
    // guest controls, is bounded in QEMU's memory instead of by the limit.
    plan.console_ringbuf_bytes = kRingbufBytes;
    plan.allow_spawn = true;  // exec: migration spawns /bin/sh -c "cat ..."
    plan.memory_backend = MemoryBackend{t->ram, mode == Mode::kTemplate};
    if (mode == Mode::kClone) plan.extra = {"-incoming", "defer"};
  }

  SpawnOptions o;
  o.path = plan.qemu;
  o.argv = QemuArgv(plan);
  o.fds = {{agent_listener.get(), 3}, {qmp_listener.get(), 4}, {qemu_err.get(), 2}};
  o.pdeath_signal = SIGKILL;  // the VM dies with its host process
  o.file_size_limit = mode == Mode::kCold ? opts_.console_cap : 0;
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
  WB_RETURN_IF_ERROR(sb->cgroup_.Attach(sb->qemu_.pid()));
  WB_RETURN_IF_ERROR(sb->qemu_.Release());
  // QEMU's copies are the only ones: connects fail once it is gone.
  agent_listener.reset();
  qmp_listener.reset();
  qemu_err.reset();
  sp->t0 = t0;
  sp->t_disks = t_disks;
  sp->t_spawn = t_spawn;
  sp->console = console;
  sp->qemu_log = qemu_log;
  return sp;
}

Result<std::unique_ptr<Sandbox>> VmDriver::Finish(const SandboxSpec& spec, Mode mode,
                                                  const TemplatePaths* t,
                                                  std::unique_ptr<Spawned> sp) {
  std::unique_ptr<VmSandbox> sb = std::move(sp->sb);
  const int64_t t0 = sp->t0, t_disks = sp->t_disks, t_spawn = sp->t_spawn;
  const std::string console = sp->console, qemu_log = sp->qemu_log;
  const int64_t t_finish = NowUs();  // a pre-started clone: QEMU has been waiting since t_spawn
  int64_t t_restored = t_finish, t_identity = 0;

  if (mode == Mode::kClone) {
    // The clone's QEMU waits (-incoming defer) with the template's RAM mapped
    // privately; the device state comes from the state file. x-ignore-shared
    // must be set on both ends: the stream carries no RAM pages.
    auto restore = [&]() -> Result<void> {
      Qmp q = WB_TRY(Qmp::Connect(sb->dir_ + "/qmp.sock", opts_.ready_total_ms));
      WB_TRY(q.Execute("migrate-set-capabilities",
                       {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}}));
      WB_TRY(q.Execute("migrate-incoming", {{"uri", "exec:cat " + t->state}}));
      // The load runs in QEMU's main loop; once done, the VM is paused
      // (or already running) and is resumed.
      const int64_t deadline = NowUs() + int64_t{opts_.ready_total_ms} * 1000;
      for (;;) {
        auto st = WB_TRY(q.Execute("query-status"));
        std::string s = st.value("status", "");
        spdlog::debug("{}: clone status {}", sb->id_, s);
        if (s == "running") return Ok();
        if (s == "paused" || s == "postmigrate" || s == "prelaunch") {
          WB_TRY(q.Execute("cont"));
          return Ok();
        }
        if (s != "inmigrate") return Fail("restore", t->state, "clone in state " + s);
        if (NowUs() > deadline)
          return Fail("restore", t->state, "still loading after the ready timeout");
        timespec ts{0, 1000 * 1000};
        ::nanosleep(&ts, nullptr);
      }
    };
    auto restored = restore();
    t_restored = NowUs();
    if (auto& r = restored; !r.ok()) {
      Error e = Fail("restore vm clone", spec.image, r.error().ToString() + TailOf(qemu_log));
      (void)sb->Destroy();
      return e;
    }
  }
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
  if (mode == Mode::kTemplate)
    return std::unique_ptr<Sandbox>(std::move(sb));  // no command may run
  if (mode == Mode::kClone) {
    // Before the first command: the clone's own id, hostname, entropy and
    // wall clock (agent/identity.h); until then it is the template.
    std::string entropy(64, '\0');
    WB_RETURN_IF_ERROR(FillRandom(entropy));
    agent::Identity ident{sb->id_, sb->id_, entropy, 0};
    timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    ident.realtime_ns = int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
    auto r = AgentRequest(sb->Endpoint(), proto::FrameType::kIdentity, agent::IdentityToJson(ident),
                          proto::FrameType::kIdentityReply, opts_.ready_total_ms);
    if (!r.ok()) {
      Error e = Fail("identity of vm clone", sb->id_, r.error().ToString());
      (void)sb->Destroy();
      return e;
    }
    t_identity = NowUs();
  }
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
  if (mode == Mode::kClone) {
    spdlog::debug(
        "vm clone {}: ready in {} ms (restore {} ms, resume to heartbeat {} ms, identity {} ms, "
        "warm-up {} ms)",
        sb->id_, Ms(static_cast<double>(t_warm - t_finish)),
        Ms(static_cast<double>(t_restored - t_finish)),
        Ms(static_cast<double>(t_ready - t_restored)),
        Ms(static_cast<double>(t_identity - t_ready)),
        Ms(static_cast<double>(t_warm - t_identity)));
  }
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

namespace wb::vm {

TemplateStatus VmDriver::template_status() const {
  std::lock_guard<std::mutex> l(tmpl_mu_);
  return tmpl_;
}

Result<std::unique_ptr<Sandbox>> VmDriver::Create(const SandboxSpec& spec) {
  if (opts_.snapshot) {
    bool fallback;
    {
      std::lock_guard<std::mutex> l(tmpl_mu_);
      fallback = tmpl_.state == "fallback";
    }
    if (!fallback) {
      auto c = CreateClone(spec);
      if (c.ok()) return c;
      // Counted (and the template invalidated) in CreateClone; this sandbox
      // is booted cold so that the pool's refill still gets one.
    }
  }
  return Boot(spec, Mode::kCold, nullptr);
}

void VmDriver::NoteTemplateFailure(const std::string& key, const Error& e) {
  std::lock_guard<std::mutex> l(tmpl_mu_);
  tmpl_.key = key;
  tmpl_.failures++;
  tmpl_.last_error = e.ToString();
  if (tmpl_.failures >= opts_.template_max_failures) {
    if (tmpl_.state != "fallback") {
      spdlog::warn("vm snapshot templates: {} failure(s), falling back to cold boots; last: {}",
                   tmpl_.failures, tmpl_.last_error);
    }
    tmpl_.state = "fallback";
  } else {
    tmpl_.state = "failed";
  }
}

Result<std::unique_ptr<Sandbox>> VmDriver::CreateClone(const SandboxSpec& spec) {
  Image image = WB_TRY(store_->Get(spec.image));
  long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  const uint32_t vcpus = VcpusFor(spec.limits.cpus, ncpu > 0 ? static_cast<uint32_t>(ncpu) : 1);
  const uint64_t mem = std::max<uint64_t>(spec.limits.memory_bytes >> 20, 64);
  TemplatePaths t;
  t.key_text =
      TemplateKeyText(image.lower_dirs, FileId(info_.kernel.vmlinux), FileId(info_.initrd),
                      FileId(opts_.agent_path), vcpus, mem,
                      {"--layers", std::to_string(image.lower_dirs.size()), "--tmpfs-size",
                       std::to_string(spec.limits.disk_bytes), "--seccomp", spec.security.seccomp,
                       "--nofile", std::to_string(spec.security.nofile)},
                      info_.accel);
  t.key = TemplateKeyHash(t.key_text);
  t.templates = VmDir(opts_.state_dir) + "/templates";
  t.dir = t.templates + "/" + t.key;
  t.state = t.dir + "/state";
  t.lock = t.templates + "/" + t.key + ".lock";
  t.ram = opts_.shm_dir + "/warmbox-tpl-" + t.key;
  // The state path goes to a shell ("exec:cat PATH"): plain characters only.
  for (char c : t.state) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' || c == '_' ||
          c == '.'))
      return Fail("vm template", t.state,
                  "the state dir path has characters a shell would interpret");
  }
  if (auto r = EnsureTemplate(spec, t); !r.ok()) {
    NoteTemplateFailure(t.key, r.error());
    spdlog::debug("vm template {}: {}", t.key, r.error().ToString());
    return r.error();
  }
  // A QEMU started ahead for this key (and these limits) saves its start-up;
  // any other is stale and goes.
  std::unique_ptr<Spawned> pre, stale;
  {
    std::lock_guard<std::mutex> l(tmpl_mu_);
    if (prestarted_ && prestarted_->key == t.key && prestarted_->pids == spec.limits.pids &&
        prestarted_->cpus == spec.limits.cpus && prestarted_->sb->qemu_.running()) {
      pollfd p{prestarted_->sb->qemu_.pidfd(), POLLIN, 0};
      if (::poll(&p, 1, 0) == 0) pre = std::move(prestarted_);
    }
    stale = std::move(prestarted_);
  }
  stale.reset();  // destroyed outside the lock (QMP quit)
  Result<std::unique_ptr<Sandbox>> c = Fail("clone", t.key, "not started");
  if (!pre) {
    auto sp = Spawn(spec, Mode::kClone, &t);
    if (sp.ok())
      pre = std::move(*sp);
    else
      c = sp.error();
  }
  if (pre) c = Finish(spec, Mode::kClone, &t, std::move(pre));
  if (c.ok()) {
    // The next clone's QEMU starts now, while this one is handed out.
    auto next = Spawn(spec, Mode::kClone, &t);
    if (next.ok()) {
      (*next)->key = t.key;
      (*next)->pids = spec.limits.pids;
      (*next)->cpus = spec.limits.cpus;
      std::lock_guard<std::mutex> l(tmpl_mu_);
      stale = std::move(prestarted_);
      prestarted_ = std::move(*next);
    } else {
      spdlog::debug("pre-start of a clone QEMU: {}", next.error().ToString());
    }
  }
  stale.reset();
  if (!c.ok()) {
    // A template whose clones fail is not trusted again: removed, rebuilt on
    // the next creation (until the failures reach the fallback).
    {
      std::lock_guard<std::mutex> l(tmpl_mu_);
      tmpl_.clone_failures++;
    }
    NoteTemplateFailure(t.key, c.error());
    (void)RemoveTree(t.dir);
    ::unlink(t.ram.c_str());
    return c.error();
  }
  std::lock_guard<std::mutex> l(tmpl_mu_);
  tmpl_.clones++;
  return c;
}

Result<void> VmDriver::EnsureTemplate(const SandboxSpec& spec, const TemplatePaths& t) {
  std::lock_guard<std::mutex> build(build_mu_);
  auto valid = [&] {
    auto k = ReadFile(t.dir + "/key");
    struct stat st;
    return k.ok() && *k == t.key_text && PathExists(t.state) && ::stat(t.ram.c_str(), &st) == 0;
  };
  if (valid()) {
    std::lock_guard<std::mutex> l(tmpl_mu_);
    if (tmpl_.key != t.key || tmpl_.state != "ready") {
      tmpl_.key = t.key;
      tmpl_.state = "ready";
    }
    return Ok();
  }
  WB_RETURN_IF_ERROR(MkdirAll(t.templates, 0700));
  // Builds of one key are serialised across processes: the second waits and
  // then finds the first's template.
  UniqueFd lock(::open(t.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) return Errno("open", t.lock);
  if (::flock(lock.get(), LOCK_EX) != 0) return Errno("flock", t.lock);
  if (valid()) return Ok();
  {
    std::lock_guard<std::mutex> l(tmpl_mu_);
    tmpl_.key = t.key;
    tmpl_.state = "building";
  }
  const int64_t t0 = NowUs();
  // Whatever a failed build left is not used: removed first.
  (void)RemoveTree(t.dir);
  ::unlink(t.ram.c_str());
  WB_RETURN_IF_ERROR(MkdirAll(t.dir, 0700));
  // Created here, 0600, before QEMU opens it: QEMU would create it 0644, and
  // the file is the template guest's whole memory.
  {
    UniqueFd ram(::open(t.ram.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!ram) return Errno("create", t.ram);
  }
  auto vm = WB_TRY(Boot(spec, Mode::kTemplate, &t));
  auto* sb = static_cast<VmSandbox*>(vm.get());
  const std::string tmp = t.state + ".tmp";
  auto save = [&]() -> Result<void> {
    Qmp q = WB_TRY(Qmp::Connect(sb->dir_ + "/qmp.sock", opts_.ready_total_ms));
    // Paused first, so the RAM file is not written while the device state
    // is saved: the two must describe the same instant.
    WB_TRY(q.Execute("stop"));
    WB_TRY(q.Execute("migrate-set-capabilities",
                     {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}}));
    WB_TRY(q.Execute("migrate", {{"uri", "exec:cat > " + tmp}}));
    WB_RETURN_IF_ERROR(q.WaitMigration(kMigrateMs));
    return Ok();
  };
  auto r = save();
  (void)vm->Destroy();  // QEMU quits; the RAM file stays (share=on: it is the file)
  if (!r.ok()) return Fail("build vm template", t.key, r.error().ToString());
  // Durable before it is named: a crash leaves state.tmp, which is never used.
  {
    UniqueFd f(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f || ::fsync(f.get()) != 0) return Errno("fsync", tmp);
  }
  WB_RETURN_IF_ERROR(WriteFileAtomic(t.dir + "/key", t.key_text, 0600));
  if (::rename(tmp.c_str(), t.state.c_str()) != 0) return Errno("rename", tmp);
  {
    UniqueFd d(::open(t.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (d) (void)::fsync(d.get());
  }
  spdlog::info("vm template {} built in {} ms", t.key, Ms(static_cast<double>(NowUs() - t0)));
  // Templates of other keys are unused now (one key per driver): removed,
  // unless another process holds their lock (building or using them).
  if (DIR* d = ::opendir(t.templates.c_str())) {
    std::vector<std::string> others;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n[0] == '.' || n == t.key || n == t.key + ".lock" || n.size() < 16) continue;
      if (n.size() == 16) others.push_back(n);
    }
    ::closedir(d);
    for (const auto& k : others) {
      UniqueFd ol(
          ::open((t.templates + "/" + k + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
      if (!ol || ::flock(ol.get(), LOCK_EX | LOCK_NB) != 0) continue;
      (void)RemoveTree(t.templates + "/" + k);
      ::unlink((opts_.shm_dir + "/warmbox-tpl-" + k).c_str());
      ::unlink((t.templates + "/" + k + ".lock").c_str());
    }
  }
  std::lock_guard<std::mutex> l(tmpl_mu_);
  tmpl_.state = "ready";
  return Ok();
}

}  // namespace wb::vm
