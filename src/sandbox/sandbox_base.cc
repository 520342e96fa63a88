#include "sandbox/sandbox_base.h"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "sandbox/agent_client.h"
#include "sandbox/run_policy.h"
#include "sandbox/sandbox_dir.h"

namespace wb {

SandboxBase::~SandboxBase() {
  if (auto r = Destroy(); !r.ok()) spdlog::debug("destroy {}: {}", id_, r.error().ToString());
}

AgentEndpoint SandboxBase::endpoint() const {
  return AgentEndpoint{dir_ + "/agent.sock", process_.pidfd()};
}

Result<proto::ExecRequest> SandboxBase::PrepareExec(const proto::ExecRequest& req) const {
  return wb::PrepareExec(image_, req);
}

Result<ExecOutcome> SandboxBase::Exec(const proto::ExecRequest& req, ExecIo& io) {
  if (destroyed_) return Fail("exec", id_, "sandbox destroyed");
  proto::ExecRequest prepared = WB_TRY(PrepareExec(req));
  OomWatch oom(*this);
  auto out = AgentExec(endpoint(), prepared, io);
  if (out.ok() && oom.Fired()) out->exit.oom_killed = true;
  return out;
}

Result<void> SandboxBase::SetLimits(const Limits& limits) {
  if (destroyed_) return Fail("set limits", id_, "sandbox destroyed");
  return ApplyLimits(limits);
}

Result<void> SandboxBase::Destroy() {
  if (destroyed_) return Ok();
  destroyed_ = true;
  if (process_.running()) {
    if (stop_hook_) stop_hook_(*this);
    // The ns driver's process is PID 1 of the sandbox's pid namespace: SIGKILL
    // to it kills every process in it, and reaping it returns only after they
    // are gone; the mount namespace (tmpfs, overlay) dies with the last one.
    process_.KillAndReap();
  }
  spdlog::debug("{}: process gone", id_);
  Result<void> result = Ok();
  std::optional<NetworkSpec> gone;
  if (net_) {
    result = net_->Destroy();
    if (result.ok() && net_->attached()) gone = net_->spec();
    net_.reset();
    spdlog::debug("{}: network removed", id_);
  }
  if (auto cg = cgroup_.Remove(); !cg.ok() && result.ok()) result = cg.error();
  spdlog::debug("{}: cgroups removed", id_);
  if (release_hook_) {
    auto r = release_hook_();
    if (result.ok() && !r.ok()) result = r.error();
  }
  if (!dir_.empty()) {
    auto rm = RemoveTree(dir_);
    spdlog::debug("{}: dir removed", id_);
    if (result.ok() && !rm.ok()) result = rm.error();
  }
  if (gone && result.ok() && network_gone_hook_) network_gone_hook_(*gone);
  return result;
}

Result<void> SandboxBase::UpdateNetwork(const std::vector<std::string>& allow_out,
                                        const std::vector<std::string>& deny_out) {
  if (destroyed_) return Fail(ErrorCode::kFailedPrecondition, "update network", id_, "destroyed");
  if (!net_) return Sandbox::UpdateNetwork(allow_out, deny_out);
  return net_->Update(allow_out, deny_out);
}

Result<NetCounters> SandboxBase::NetworkCounters() const {
  if (!net_ || destroyed_) return NetCounters{};
  return net_->Counters();
}

NetCounterSource SandboxBase::network_counter_source() const {
  if (!net_ || destroyed_) return {};
  return net_->counter_source();
}

Result<void> SandboxBase::Pause(bool paused) {
  if (destroyed_) return Fail(ErrorCode::kFailedPrecondition, "pause", id_, "sandbox destroyed");
  return cgroup_.Freeze(paused);
}

void SandboxBase::Abandon() {
  destroyed_ = true;
  process_.Abandon();
  cgroup_ = Cgroup();  // an empty one: nothing to remove
}

Result<void> SandboxBase::AdoptHome(const AdoptSpec& spec) {
  SandboxRecord rec = WB_TRY(ReadSandboxRecord(spec.dir));
  if (rec.id.empty()) return Fail("adopt", spec.dir, "owner.json names no sandbox id");
  ChildProcess p = WB_TRY(ChildProcess::Adopt(spec.pid));
  // The pidfd pins the process: if the start time matches now, it is the one recorded.
  if (ProcessStartTime(spec.pid) != spec.start_time) {
    p.Abandon();
    return Fail(
        ErrorCode::kNotFound, "adopt", spec.dir,
        "process " + std::to_string(spec.pid) + " is gone (or another process has its pid)");
  }
  if (auto w = WriteSandboxRecord(
          spec.dir, SandboxRecord{rec.id, ::getpid(), ProcessStartTime(::getpid()), rec.cgroups});
      !w.ok()) {
    p.Abandon();  // not taken over: left as it was
    return w.error();
  }
  id_ = rec.id;
  home_ = dir_ = spec.dir;
  process_ = std::move(p);
  cgroup_ = Cgroup::FromDirs(rec.cgroups);
  return Ok();
}

Result<void> SandboxBase::AssignId(const std::string& state_dir) {
  id_ = WB_TRY(RandomHex(6));
  home_ = SandboxesDir(state_dir) + "/" + id_;
  return Ok();
}

Result<void> SandboxBase::MakeHome(mode_t mode, const CgroupPlan& plan) {
  if (::mkdir(home_.c_str(), mode) != 0) return Errno("mkdir", home_);  // not ours: never removed
  dir_ = home_;
  WB_RETURN_IF_ERROR(WriteSandboxRecord(
      dir_, SandboxRecord{id_, ::getpid(), ProcessStartTime(::getpid()), plan.dirs}));
  // Before anything mounts the image's dirs: image rm and prune keep what a
  // sandbox dir records (image/store.h).
  WB_RETURN_IF_ERROR(RecordLowerDirs(dir_, image_));
  cgroup_ = WB_TRY(Cgroup::Apply(plan));
  spdlog::debug("{}: dir and cgroups made", id_);
  return Ok();
}

void SandboxBase::RestoreNormalPriority() {
  // Nice values are per thread: every thread of the process (QEMU's vCPU
  // threads were created by its main thread with its value).
  for (pid_t tid : ListTasks(process_.pid())) {
    if (::getpriority(PRIO_PROCESS, static_cast<id_t>(tid)) != 0 &&
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 0) != 0) {
      spdlog::debug("{}: setpriority({}): {}", id_, tid, std::strerror(errno));
    }
  }
}

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

Result<void> MakeWalkableDirs(const std::vector<std::string>& dirs) {
  for (const std::string& d : dirs) {
    WB_RETURN_IF_ERROR(MkdirAll(d, 0711));
    struct stat st;
    if (::stat(d.c_str(), &st) != 0) return Errno("stat", d);
    if (!(st.st_mode & S_IXOTH) && ::chmod(d.c_str(), (st.st_mode & 07777) | 0011) != 0) {
      return Errno("chmod", d);
    }
  }
  return Ok();
}

Result<CgroupLayout> PrepareSandboxHost(const std::string& state_dir,
                                        const std::string& cgroup_parent) {
  CgroupLayout layout = WB_TRY(HostCgroupLayout());
  GcReport gc = CollectGarbage(state_dir);
  if (gc.removed) spdlog::debug("removed {} leftover sandbox(es)", gc.removed);
  if (size_t n = SweepOrphanCgroups(layout, cgroup_parent)) {
    spdlog::debug("removed {} orphaned sandbox cgroup(s)", n);
  }
  return layout;
}

}  // namespace wb
