#include "sandbox/ns/ns_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "base/child.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/agent_client.h"
#include "sandbox/ns/cgroup.h"
#include "sandbox/sandbox_dir.h"

namespace wb {

struct NsDriver::CgroupLayoutHolder {
  CgroupLayout layout;
};

namespace {

class NsSandbox : public Sandbox {
 public:
  ~NsSandbox() override {
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
    if (req.argv.empty() && image_.config.entrypoint.empty() && image_.config.cmd.empty()) {
      return Fail("run", image_.name,
                  "missing command (the image has no Cmd or Entrypoint): warmbox run [OPTIONS] -- "
                  "CMD [ARG...]");
    }
    const uint64_t ooms = OomKills();
    auto out = AgentExec(Endpoint(), WithImageDefaults(req), io);
    if (out.ok() && OomKills() > ooms) out->exit.oom_killed = true;
    return out;
  }

  Result<void> SetLimits(const Limits& limits) override {
    if (destroyed_) return Fail("set limits", id_, "sandbox destroyed");
    // The creation plan with other values; only the files of our own cgroup
    // dirs are written (the parents' controller switches are already on).
    CgroupPlan plan = PlanSandboxCgroup(layout_, id_, limits, cgroup_parent_);
    for (const auto& w : plan.writes) {
      bool ours = false;
      for (const auto& d : plan.dirs) ours |= StartsWith(w.file, d + "/");
      if (!ours || (w.optional && !PathExists(w.file))) continue;
      auto r = WriteFile(w.file, w.value);
      if (!r.ok() && !w.optional) return r.error().Wrap("set limits of " + id_);
    }
    // Unlimited CPU is no write in the plan: lift a quota set before.
    if (limits.cpus <= 0) {
      for (const auto& d : plan.dirs) {
        if (PathExists(d + "/cpu.max")) (void)WriteFile(d + "/cpu.max", "max");
        if (PathExists(d + "/cpu.cfs_quota_us")) (void)WriteFile(d + "/cpu.cfs_quota_us", "-1");
      }
    }
    return Ok();
  }

  uint64_t OomKills() const override {
    uint64_t n = 0;
    for (const auto& d : cgroup_.dirs()) {
      // v1: memory.oom_control; v2: memory.events. Both have "oom_kill N".
      for (const char* f : {"/memory.oom_control", "/memory.events"}) {
        auto text = ReadFile(d + f);
        if (!text.ok()) continue;
        for (const auto& line : Split(*text, '\n')) {
          if (!StartsWith(line, "oom_kill ")) continue;
          auto v = ParseUint(line.substr(9), "oom_kill");
          if (v.ok()) n += *v;
        }
      }
    }
    return n;
  }

  AgentEndpoint endpoint() const override { return Endpoint(); }

  Result<void> Destroy() override {
    if (destroyed_) return Ok();
    destroyed_ = true;
    // SIGKILL to PID 1 of the pid namespace: the kernel kills every process
    // in it, and reaping PID 1 returns only after they are gone. The mount
    // namespace (with the tmpfs and overlay) dies with its last process.
    agent_.KillAndReap();
    spdlog::debug("{}: agent reaped", id_);
    Result<void> result = cgroup_.Remove();
    spdlog::debug("{}: cgroups removed", id_);
    auto rm = RemoveTree(dir_);
    spdlog::debug("{}: dir removed", id_);
    if (result.ok() && !rm.ok()) result = rm.error();
    return result;
  }

  AgentEndpoint Endpoint() const { return AgentEndpoint{dir_ + "/agent.sock", agent_.pidfd()}; }

  std::string id_;
  std::string dir_;
  CgroupLayout layout_;
  std::string cgroup_parent_;
  Image image_;
  ChildProcess agent_;
  Cgroup cgroup_;
  bool destroyed_ = false;
};

}  // namespace

Result<std::unique_ptr<NsDriver>> NsDriver::Open(NsDriverOptions opts, ImageStore* store) {
  if (::geteuid() != 0) {
    return Fail("ns driver", "uid " + std::to_string(::geteuid()),
                "needs root (it maps a uid range and manages cgroups); run as root");
  }
  if (!PathExists(opts.agent_path)) {
    return Fail("ns driver", opts.agent_path,
                "warmbox-agent not found (build it, or set WARMBOX_AGENT)");
  }
  WB_RETURN_IF_ERROR(MkdirAll(opts.state_dir, 0755));
  // The sandbox's uid range must be able to walk to the image and scratch
  // dirs: state dirs we own are made searchable (not readable) by others.
  for (const std::string& d : {opts.state_dir, SandboxesDir(opts.state_dir)}) {
    WB_RETURN_IF_ERROR(MkdirAll(d, 0711));
    struct stat st;
    if (::stat(d.c_str(), &st) != 0) return Errno("stat", d);
    if (!(st.st_mode & S_IXOTH) && ::chmod(d.c_str(), (st.st_mode & 07777) | 0011) != 0) {
      return Errno("chmod", d);
    }
  }
  // ...and every directory above it must let them through.
  for (size_t pos = opts.state_dir.find('/', 1); pos != std::string::npos;
       pos = opts.state_dir.find('/', pos + 1)) {
    std::string up = opts.state_dir.substr(0, pos);
    struct stat st;
    if (::stat(up.c_str(), &st) == 0 && !(st.st_mode & S_IXOTH)) {
      return Fail("state dir", opts.state_dir,
                  "the sandboxes' uid range cannot reach it: " + up +
                      " is not searchable by others (chmod o+x it, or choose another --state-dir)");
    }
  }
  auto drv = std::unique_ptr<NsDriver>(new NsDriver());
  drv->opts_ = std::move(opts);
  drv->store_ = store;
  drv->layout_ = std::make_shared<CgroupLayoutHolder>();
  drv->layout_->layout = WB_TRY(HostCgroupLayout());
  // Leftovers of crashed warmbox processes go first.
  GcReport gc = CollectGarbage(drv->opts_.state_dir);
  if (gc.removed) spdlog::debug("removed {} leftover sandbox(es)", gc.removed);
  if (size_t n = SweepOrphanCgroups(drv->layout_->layout, drv->opts_.cgroup_parent)) {
    spdlog::debug("removed {} orphaned sandbox cgroup(s)", n);
  }
  return drv;
}

Result<std::unique_ptr<Sandbox>> NsDriver::Create(const SandboxSpec& spec) {
  auto sb = std::make_unique<NsSandbox>();
  sb->image_ = WB_TRY(store_->Get(spec.image));
  sb->id_ = WB_TRY(RandomHex(6));
  sb->dir_ = SandboxesDir(opts_.state_dir) + "/" + sb->id_;
  const uint32_t base = opts_.uid_base;

  if (::mkdir(sb->dir_.c_str(), 0711) != 0) {
    Error e = Errno("mkdir", sb->dir_);
    sb->dir_.clear();  // not ours: never remove it
    return e;
  }
  // From here on the sandbox's destructor removes whatever exists.
  sb->layout_ = layout_->layout;
  sb->cgroup_parent_ = opts_.cgroup_parent;
  CgroupPlan plan = PlanSandboxCgroup(layout_->layout, sb->id_, spec.limits, opts_.cgroup_parent);
  SandboxRecord rec{sb->id_, ::getpid(), ProcessStartTime(::getpid()), plan.dirs};
  WB_RETURN_IF_ERROR(WriteSandboxRecord(sb->dir_, rec));
  const std::string scratch = sb->dir_ + "/scratch";
  if (::mkdir(scratch.c_str(), 0700) != 0) return Errno("mkdir", scratch);
  if (::chown(scratch.c_str(), base, base) != 0) return Errno("chown", scratch);
  spdlog::debug("{}: dir ready", sb->id_);
  sb->cgroup_ = WB_TRY(Cgroup::Apply(plan));
  spdlog::debug("{}: cgroups made", sb->id_);

  UniqueFd listener = WB_TRY(ListenUnix(sb->dir_ + "/agent.sock"));
  Pipe errpipe = WB_TRY(MakePipe());

  std::string lower;
  for (const auto& l : sb->image_.lower_dirs) lower += (lower.empty() ? "" : ":") + l;
  // mount(2) takes at most a page of options (lowerdir=...,upperdir=...).
  if (lower.size() > 3800) {
    return Fail(
        "create sandbox", spec.image,
        std::to_string(sb->image_.lower_dirs.size()) +
            " layers do not fit in one overlay mount's options (a page); use a shorter --state-dir "
            "or an image with fewer layers");
  }
  SpawnOptions o;
  o.path = opts_.agent_path;
  o.argv = {"warmbox-agent",
            "--listen-fd",
            "3",
            "--ns-setup",
            "--scratch",
            scratch,
            "--lower",
            lower,
            "--tmpfs-size",
            std::to_string(spec.limits.disk_bytes),
            "--hostname",
            sb->id_,
            "--seccomp",
            spec.security.seccomp,
            "--nofile",
            std::to_string(spec.security.nofile)};
  // The cgroup namespace is made by the agent once it sits in all its cgroups.
  o.clone_flags =
      CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  o.cgroup_fd = sb->cgroup_.clone_fd();
  o.fds = {{listener.get(), 3}, {errpipe.write.get(), 2}};
  o.pdeath_signal = SIGKILL;  // the sandbox dies with its host process
  o.hold_until_released = true;
  o.become_userns_root = true;
  sb->agent_ = WB_TRY(ChildProcess::Spawn(o));
  spdlog::debug("{}: cloned", sb->id_);
  listener.reset();  // the agent's copy is the only one: connects fail once it dies
  sb->cgroup_.CloseCloneFd();
  errpipe.write.reset();

  // The child waits until its uid/gid maps and v1 cgroups are in place.
  // Writing the maps as host root allows a 65536-id range and setgroups.
  const std::string proc = "/proc/" + std::to_string(sb->agent_.pid());
  const std::string map = "0 " + std::to_string(base) + " " + std::to_string(kUidCount) + "\n";
  WB_RETURN_IF_ERROR(WriteFile(proc + "/uid_map", map));
  WB_RETURN_IF_ERROR(WriteFile(proc + "/gid_map", map));
  // The OOM killer should take the command that ran out of memory, not the
  // agent (its commands reset theirs to 0 before they exec). Best effort: it
  // needs CAP_SYS_RESOURCE, which some hosts (containers) do not grant.
  if (auto r = WriteFile(proc + "/oom_score_adj", "-998"); !r.ok()) {
    spdlog::debug("{}: {}", sb->id_, r.error().ToString());
  }
  spdlog::debug("{}: id maps written", sb->id_);
  WB_RETURN_IF_ERROR(sb->cgroup_.Attach(sb->agent_.pid()));
  spdlog::debug("{}: attached to v1 cgroups", sb->id_);
  WB_RETURN_IF_ERROR(sb->agent_.Release());
  spdlog::debug("{}: agent exec'd", sb->id_);

  auto ready = WaitAgentReady(sb->Endpoint(), opts_.ready_attempt_ms, opts_.ready_total_ms);
  if (!ready.ok()) {
    // Say why: the agent's own words and its exit status, when it died.
    (void)SetNonBlocking(errpipe.read.get());
    char buf[4096];
    ssize_t n = ::read(errpipe.read.get(), buf, sizeof buf);
    std::string words = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!words.empty() && words.back() == '\n') words.pop_back();
    std::string status;
    pollfd p{sb->agent_.pidfd(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) {
      auto st = sb->agent_.Wait();
      if (st.ok()) status = "agent " + st->Describe();
    }
    Error e = ready.error();
    if (!status.empty()) e.detail += "; " + status;
    if (!words.empty()) e.detail += ": " + words;
    return e.Wrap("create sandbox from image " + spec.image);
  }
  // A creation at a lower priority (the pool's refills) hands the agent,
  // and so every command it starts, back the normal priority.
  if (::getpriority(PRIO_PROCESS, static_cast<id_t>(sb->agent_.pid())) != 0 &&
      ::setpriority(PRIO_PROCESS, static_cast<id_t>(sb->agent_.pid()), 0) != 0) {
    spdlog::debug("{}: setpriority: {}", sb->id_, std::strerror(errno));
  }
  spdlog::debug("{}: ready", sb->id_);
  return std::unique_ptr<Sandbox>(std::move(sb));
}

}  // namespace wb
