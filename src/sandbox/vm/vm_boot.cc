// Booting one VM: Spawn starts QEMU (a clone's waits for its state); Finish
// restores a clone, waits for the agent, gives a clone its identity, renices
// and warms the VM up.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include "agent/identity.h"
#include "base/child.h"
#include "base/fs.h"
#include "base/log.h"
#include "sandbox/agent_client.h"
#include "sandbox/vm/layer_disk.h"
#include "sandbox/vm/qmp.h"
#include "sandbox/vm/vm_driver.h"
#include "sandbox/vm/vm_logs.h"
#include "sandbox/vm/vm_sandbox.h"

namespace wb::vm {
namespace {

constexpr int kExitReportMs = 1000;
constexpr uint32_t kRingbufBytes = 64 * 1024;

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

// When each step of Finish ended (NowUs), for the debug log.
struct BootTimes {
  int64_t t0 = 0, disks = 0, spawn = 0;  // Spawn's
  int64_t finish = 0, restored = 0, ready = 0, identity = 0, warm = 0;
};

void LogReady(const std::string& id, bool clone, const BootTimes& t, const std::string& heartbeat) {
  if (clone) {
    spdlog::debug(
        "vm clone {}: ready in {} ms (restore {} ms, resume to heartbeat {} ms, identity {} ms, "
        "warm-up {} ms)",
        id, Ms(static_cast<double>(t.warm - t.finish)),
        Ms(static_cast<double>(t.restored - t.finish)),
        Ms(static_cast<double>(t.ready - t.restored)),
        Ms(static_cast<double>(t.identity - t.ready)),
        Ms(static_cast<double>(t.warm - t.identity)));
  }
  auto j = nlohmann::json::parse(heartbeat, nullptr, false);
  if (!j.is_discarded() && j.contains("boot") && j["boot"].is_object()) {
    const auto& b = j["boot"];
    auto us = [&](const char* k) { return b.value(k, 0.0); };
    spdlog::debug(
        "vm {}: ready in {} ms (disks {} ms; guest clock: kernel until /init {} ms, modules {} ms, "
        "port {} ms, rootfs {} ms; qemu start and agent answer {} ms; warm-up {} ms)",
        id, Ms(static_cast<double>(t.ready - t.t0)), Ms(static_cast<double>(t.disks - t.t0)),
        Ms(us("init_us")), Ms(us("modules_us") - us("init_us")),
        Ms(us("port_us") - us("modules_us")), Ms(us("rootfs_us") - us("port_us")),
        Ms(static_cast<double>(t.ready - t.spawn) - us("rootfs_us")),
        Ms(static_cast<double>(t.warm - t.ready)));
  }
}

}  // namespace

namespace {

// A taken passt group id, given back when the sandbox object goes.
struct NetGid {
  NetGid(std::shared_ptr<VmDriver::NetGids> g, uint32_t i) : gids(std::move(g)), index(i) {}
  NetGid(const NetGid&) = delete;
  NetGid& operator=(const NetGid&) = delete;
  std::shared_ptr<VmDriver::NetGids> gids;
  uint32_t index;
  ~NetGid() {
    std::lock_guard<std::mutex> lock(gids->mu);
    gids->used[index] = false;
  }
};

}  // namespace

Result<void> VmDriver::AttachVmNetwork(const SandboxSpec& spec, VmSandbox& sb, UniqueFd& conn) {
  std::shared_ptr<NetGid> gid;
  {
    std::lock_guard<std::mutex> lock(net_gids_->mu);
    for (uint32_t i = 0; i < kVmNetGids && !gid; ++i) {
      if (net_gids_->used[i]) continue;
      net_gids_->used[i] = true;
      gid = std::make_shared<NetGid>(net_gids_, i);
    }
  }
  if (!gid) {
    return Fail(ErrorCode::kBusy, "attach network", sb.id_,
                "every vm network slot (" + std::to_string(kVmNetGids) + ") is taken");
  }
  NetAttachOptions no;
  no.host = opts_.net;
  no.host.helper_gid_first = net_gid_base_;
  no.host.helper_gid_last = net_gid_base_ + kVmNetGids - 1;
  no.dir = sb.dir_;
  no.tag = sb.id_;
  no.gid = net_gid_base_ + gid->index;
  VmNetwork vn = WB_TRY(SandboxNetwork::AttachVm(no, spec.network));
  // The sandbox owns it from here: its Destroy kills passt and dnsmasq
  // after QEMU, and removes the rules.
  sb.net_ = std::move(vn.net);
  sb.net_slot_ = gid;
  conn = std::move(vn.qemu_end);
  spdlog::debug("{}: network attached (passt, gid {})", sb.id_, no.gid);
  return Ok();
}

Result<std::unique_ptr<Sandbox>> VmDriver::Boot(const SandboxSpec& spec, Mode mode,
                                                const TemplatePaths* t) {
  return Finish(spec, mode, t, WB_TRY(Spawn(spec, mode, t)));
}

Result<std::unique_ptr<VmDriver::Spawned>> VmDriver::Spawn(const SandboxSpec& spec, Mode mode,
                                                           const TemplatePaths* t) {
  if (spec.security.profile_file() && !kCapabilities.seccomp_profile_files) {
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
  WB_RETURN_IF_ERROR(sb->AssignId(opts_.state_dir));
  // QEMU runs in the sandbox's cgroups, as the ns driver's agent does: its
  // CPU quota is the VM's (--cpus), its memory limit the guest's RAM plus
  // QEMU's own overhead, and the record lets gc kill a leftover VM.
  Limits qemu_limits = spec.limits;
  qemu_limits.memory_bytes = (MemoryMibOf(spec.limits) << 20) + opts_.qemu_overhead_bytes;
  WB_RETURN_IF_ERROR(sb->MakeHome(
      0700, PlanSandboxCgroup(layout_->layout, sb->id_, qemu_limits, opts_.cgroup_parent)));
  // From here on the sandbox's destructor removes whatever exists.
  const std::string console = sb->dir_ + "/console.log", qemu_log = sb->dir_ + "/qemu.log";
  UniqueFd agent_listener = WB_TRY(ListenUnix(sb->dir_ + "/agent.sock"));
  UniqueFd qmp_listener = WB_TRY(ListenUnix(sb->dir_ + "/qmp.sock"));
  UniqueFd qemu_err(::open(qemu_log.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!qemu_err) return Errno("create", qemu_log);
  // QEMU runs jailed (qemu_jail.h) as an unprivileged user: what it opens by
  // path is made here and given to that user; the sockets and its stderr
  // are passed as fds.
  const auto [jail_uid, jail_gid] = JailIdsOf(opts_, sb->image_.uid_base);
  const std::string jail_root = sb->dir_ + "/jail";
  if (::mkdir(jail_root.c_str(), 0700) != 0) return Errno("mkdir", jail_root);
  if (mode == Mode::kCold) {
    UniqueFd c(::open(console.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!c) return Errno("create", console);
    if (::fchown(c.get(), jail_uid, jail_gid) != 0) return Errno("fchown", console);
  }

  // --network egress: the sandbox's rules and resolver, and its passt,
  // before QEMU, which gets a connection to that passt as fd 5.
  UniqueFd net_conn;
  if (spec.network.mode == NetworkMode::kEgress) {
    if (mode != Mode::kCold) {
      return Fail(ErrorCode::kFailedPrecondition, "create sandbox", "--network egress",
                  "snapshot templates and clones carry no network interface");
    }
    WB_RETURN_IF_ERROR(AttachVmNetwork(spec, *sb, net_conn));
  }

  QemuPlan plan;
  plan.qemu = opts_.qemu;
  plan.accel = info_.accel;
  plan.vcpus = VcpusOf(spec.limits);
  plan.memory_mib = MemoryMibOf(spec.limits);
  sb->memory_mib_ = plan.memory_mib;
  plan.kernel = info_.kernel.vmlinux;
  plan.initrd = info_.initrd;
  plan.kernel_args = DefaultKernelArgs(plan.accel);
  AgentArgs guest_args =
      GuestAgentArgs(spec, disks.size(), mode == Mode::kCold ? sb->id_ : kTemplateHostname);
  if (net_conn) {
    guest_args.net = std::string(kVmGuestAddr) + "/" + std::to_string(kVmGuestPrefix) + "," +
                     kVmGateway + "," + kSandboxResolver;
    plan.net_fd = 5;
  }
  plan.init_args = guest_args.Argv();
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

  JailInput jin;
  jin.root = jail_root;
  jin.uid = jail_uid;
  jin.gid = jail_gid;
  if (mode == Mode::kTemplate) {
    jin.state_path = t->state + ".tmp";  // made by EnsureTemplate, for QEMU's user
    jin.state_writable = true;
  } else if (mode == Mode::kClone) {
    jin.state_path = t->state;
  }
  JailedQemu jailed = WB_TRY(PlanQemuJail(std::move(plan), host_system_, jin));

  SpawnOptions o;
  o.path = jailed.plan.qemu;
  o.argv = QemuArgv(jailed.plan);
  o.jail = std::move(jailed.jail);
  // Its own mount namespace for the jail; its own pid, network, IPC and UTS
  // namespaces so that it can neither signal nor see other processes (the
  // other VMs' QEMUs included, whatever their uid), nor reach the host's
  // abstract Unix sockets, SysV IPC or hostname. Its sockets are fds.
  o.clone_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  o.fds = {{agent_listener.get(), 3}, {qmp_listener.get(), 4}, {qemu_err.get(), 2}};
  if (net_conn) o.fds.push_back({net_conn.get(), 5});
  // The VM dies with its host process, unless it may become a live sandbox
  // that must outlive a killed daemon (outlive_owner): the parent-death
  // signal cannot be cleared from outside QEMU at the claim, as the ns
  // agent clears its own, so the daemon's VMs never get it, and the next
  // start's gc kills the unclaimed ones a killed daemon leaves.
  o.pdeath_signal = opts_.outlive_owner && mode != Mode::kTemplate ? 0 : SIGKILL;
  o.file_size_limit = mode == Mode::kCold ? opts_.console_cap : 0;
  o.cgroup_fd = sb->cgroup_.clone_fd();  // cgroup v2: born there
  o.hold_until_released = true;          // v1: moved there before it execs
  spdlog::debug("{}: {}", sb->id_, [&] {
    std::string s;
    for (const auto& a : o.argv) s += (s.empty() ? "" : " ") + a;
    return s;
  }());
  const int64_t t_spawn = NowUs();
  sb->process_ = WB_TRY(ChildProcess::Spawn(o));
  sb->cgroup_.CloseCloneFd();
  WB_RETURN_IF_ERROR(sb->cgroup_.Attach(sb->process_.pid()));
  WB_RETURN_IF_ERROR(sb->process_.Release());
  // QEMU's copies are the only ones: connects fail once it is gone.
  agent_listener.reset();
  qmp_listener.reset();
  qemu_err.reset();
  net_conn.reset();
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
  BootTimes times{sp->t0, sp->t_disks, sp->t_spawn};
  times.finish = NowUs();  // a pre-started clone: QEMU has been waiting since t_spawn
  times.restored = times.finish;
  if (mode == Mode::kClone) {
    auto restored = RestoreClone(*sp, *t);
    times.restored = NowUs();
    if (!restored.ok()) {
      Error e =
          Fail("restore vm clone", spec.image, restored.error().ToString() + TailOf(sp->qemu_log));
      (void)sp->sb->Destroy();
      return e;
    }
  }
  const std::string heartbeat = WB_TRY(AwaitAgent(spec, *sp));
  times.ready = NowUs();
  if (mode == Mode::kTemplate)
    return std::unique_ptr<Sandbox>(std::move(sp->sb));  // no command may run
  if (mode == Mode::kClone) {
    WB_RETURN_IF_ERROR(SendIdentity(*sp));
    times.identity = NowUs();
  }
  // A creation at a lower priority (the pool's refills run at nice 10) hands
  // the VM back the normal priority once it is ready, as the ns driver does
  // with its agent.
  sp->sb->RestoreNormalPriority();
  WarmUp(*sp);
  times.warm = NowUs();
  LogReady(sp->sb->id(), mode == Mode::kClone, times, heartbeat);
  return std::unique_ptr<Sandbox>(std::move(sp->sb));
}

Result<void> VmDriver::RestoreClone(Spawned& sp, const TemplatePaths& t) {
  // The clone's QEMU waits (-incoming defer) with the template's RAM mapped
  // privately; the device state comes from the state file. x-ignore-shared
  // must be set on both ends: the stream carries no RAM pages.
  VmSandbox* sb = sp.sb.get();
  Qmp q = WB_TRY(Qmp::Connect(sb->dir_ + "/qmp.sock", opts_.ready_total_ms));
  WB_TRY(q.Execute("migrate-set-capabilities",
                   {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}}));
  // The state file as QEMU's jail shows it (qemu_jail.h).
  WB_TRY(q.Execute("migrate-incoming", {{"uri", std::string("exec:cat ") + kJailState}}));
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
    if (s != "inmigrate") return Fail("restore", t.state, "clone in state " + s);
    if (NowUs() > deadline)
      return Fail("restore", t.state, "still loading after the ready timeout");
    timespec ts{0, 1000 * 1000};
    ::nanosleep(&ts, nullptr);
  }
}

// Returns the agent's heartbeat answer (its boot timings); on failure, one
// error that says why, with the sandbox destroyed and its console log kept.
Result<std::string> VmDriver::AwaitAgent(const SandboxSpec& spec, Spawned& sp) {
  VmSandbox* sb = sp.sb.get();
  const std::string& console = sp.console;
  const std::string& qemu_log = sp.qemu_log;
  // One heartbeat, waiting as long as a boot may take: the host's connection
  // is queued on the socket before QEMU even accepts it, and QEMU's exit
  // (its pidfd) ends the wait at once.
  auto ready = AgentHeartbeatReply(sb->endpoint(), opts_.ready_total_ms);
  if (!ready.ok()) {
    // One line: what the wait saw, how QEMU ended, and the last words of
    // QEMU and of the guest's console.
    std::string why = ready.error().ToString();
    // QEMU closes the channel while it exits, a moment before it can be
    // reaped: give a dying QEMU that moment, so its status is reported.
    pollfd p{sb->process_.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, kExitReportMs) == 1) {
      auto st = sb->process_.Wait();
      if (st.ok()) why += "; qemu " + st->Describe();
    }
    if (std::string t = Tail(qemu_log); !t.empty()) why += "; qemu stderr: " + t;
    if (std::string t = ConsoleTail(console); !t.empty()) {
      why += "; console (kept in " + FailedLogsDir(opts_.state_dir) + "/" + sb->id_ +
             ".console.log): " + t;
    }
    Error e = Fail("create vm sandbox", spec.image, why);
    sb->process_.KillAndReap();
    KeepFailedLog(opts_.state_dir, sb->id_, console);
    (void)sb->Destroy();
    return e;
  }
  return std::move(*ready);
}

Result<void> VmDriver::SendIdentity(Spawned& sp) {
  VmSandbox* sb = sp.sb.get();
  // Before the first command: the clone's own id, hostname, entropy and
  // wall clock (agent/identity.h); until then it is the template.
  std::string entropy(64, '\0');
  WB_RETURN_IF_ERROR(FillRandom(entropy));
  agent::Identity ident{sb->id_, sb->id_, entropy, 0};
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  ident.realtime_ns = int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
  auto r = AgentRequest(sb->endpoint(), proto::FrameType::kIdentity, agent::IdentityToJson(ident),
                        proto::FrameType::kIdentityReply, opts_.ready_total_ms);
  if (!r.ok()) {
    Error e = Fail("identity of vm clone", sb->id_, r.error().ToString());
    (void)sb->Destroy();
    return e;
  }
  return Ok();
}

void VmDriver::WarmUp(Spawned& sp) {
  VmSandbox* sb = sp.sb.get();
  // Warm-up: under emulation (TCG) a VM's first command costs ~100 ms more
  // than the next, as QEMU translates the paths it takes for the first time
  // (the agent's request handling, the seccomp filter, fork, exec, exit).
  // A sandbox runs one command, so every warm run would pay that; one run of
  // the agent's own binary (no file of the image is needed) pays
  // it here, before the sandbox is handed out.
  proto::ExecRequest warm;
  // The command's own /proc/self/exe: until it execs, that is the agent
  // (PID 1's is not open to commands: the agent is non-dumpable).
  warm.argv = {"/proc/self/exe", "--warmup"};
  warm.timeout_ms = static_cast<uint64_t>(opts_.ready_total_ms);
  ExecIo io;
  auto w = AgentExec(sb->endpoint(), warm, io);
  if (!w.ok() || w->exit.exit_code != 0) {
    spdlog::debug("vm {}: warm-up: {}", sb->id_,
                  w.ok() ? "exit " + std::to_string(w->exit.exit_code) + ": " + w->stderr_data
                         : w.error().ToString());
  }
}

}  // namespace wb::vm
