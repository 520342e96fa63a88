// Per-sandbox cgroups on cgroup v2, or on the v1/v2 hybrid of hosts like ours
// (limits in the v1 memory/pids/cpu hierarchies, the process tracked in the
// controller-less v2 hierarchy for cgroup.kill and clone3(CLONE_INTO_CGROUP)).
//
// Planning (which dirs, which files, which values) is pure and unit-tested;
// Cgroup::Apply makes the syscalls.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/fd.h"
#include "sandbox/driver.h"

namespace wb {

struct CgroupLayout {
  std::string unified_mount;                     // cgroup2 mount point, "" if none
  std::string unified_self;                      // our cgroup path in it ("/" ...)
  bool unified_has_controllers = false;          // pure v2: limits live here
  std::vector<std::string> unified_controllers;  // cgroup.controllers of the v2 root
  // v1: controller ("memory") -> our own cgroup dir in its hierarchy.
  std::map<std::string, std::string> v1_dir_of_self;
  // v1: controller -> its mount point.
  std::map<std::string, std::string> v1_mount;
  // v1 freezer: our own cgroup dir in its hierarchy and its mount point ("" if
  // not mounted). Used for pause only where there is no cgroup2 mount (whose
  // cgroup.freeze works with or without controllers).
  std::string v1_freezer_self, v1_freezer_mount;
};

// Reads /proc/self/mountinfo and /proc/self/cgroup text.
[[nodiscard]] Result<CgroupLayout> ParseCgroupLayout(std::string_view mountinfo,
                                                     std::string_view self_cgroup,
                                                     std::string_view v2_controllers);

struct CgroupWrite {
  std::string file;
  std::string value;
  bool optional = false;  // skipped if the file does not exist (memsw, swap.max)
};

struct CgroupPlan {
  std::vector<std::string> parents;  // created if missing, kept
  std::vector<std::string> dirs;     // the sandbox's own cgroups, removed at teardown
  std::vector<CgroupWrite> writes;   // in order
  std::string v2_dir;                // clone target and cgroup.kill, "" if no cgroup2
  std::vector<std::string> attach;   // cgroup.procs files to write the pid into (v1)
  // v1, one per attach: {the sandbox's "tasks" file, ours in that hierarchy}.
  // A process spawned by a thread that sits in the sandbox's v1 cgroups is
  // born there (Cgroup::OpenCloneMoves).
  std::vector<std::pair<std::string, std::string>> thread_moves;
};

// parent_override: a delegated parent path relative to each hierarchy root
// (e.g. "/warmbox.slice"); empty: "<our cgroup>/warmbox" on v1, "/warmbox" on v2.
CgroupPlan PlanSandboxCgroup(const CgroupLayout& layout, const std::string& id,
                             const Limits& limits, const std::string& parent_override);

// Lives as long as the sandbox; Remove() kills what is left and removes the dirs.
class Cgroup {
 public:
  Cgroup() = default;
  Cgroup(Cgroup&&) = default;
  Cgroup& operator=(Cgroup&&) = default;
  ~Cgroup();

  [[nodiscard]] static Result<Cgroup> Apply(const CgroupPlan& plan);
  int clone_fd() const { return v2_fd_.get(); }
  // The clone is done: the directory fd is not needed any more.
  void CloseCloneFd() { v2_fd_.reset(); }
  [[nodiscard]] Result<void> Attach(pid_t pid);
  // For a child born in the v1 cgroups instead (SpawnOptions::
  // clone_in_tasks_fds, clone_out_tasks_fds): the sandbox's "tasks" files and
  // ours, open for writing. Empty when there is no v1 hierarchy.
  struct CloneMoves {
    std::vector<UniqueFd> in, out;
  };
  [[nodiscard]] Result<CloneMoves> OpenCloneMoves() const;
  [[nodiscard]] Result<void> Remove();
  const std::vector<std::string>& dirs() const { return plan_.dirs; }
  // OOM kills counted in the memory cgroup so far (v1 memory.oom_control,
  // v2 memory.events: both have "oom_kill N").
  uint64_t OomKills() const;
  // Freezes (true) or thaws every process of the sandbox: cgroup v2's
  // cgroup.freeze, waiting (bounded) until cgroup.events says "frozen 1";
  // else the v1 freezer's freezer.state (FROZEN/THAWED), waiting the same way.
  [[nodiscard]] Result<void> Freeze(bool frozen, int timeout_ms = 5000);
  // Memory, CPU and pids counted by the sandbox's cgroups now.
  ResourceUsage Usage() const;
  // The cgroups of a sandbox made by an earlier process (re-adoption): the
  // dirs of its owner record; removed by Remove like those of Apply.
  static Cgroup FromDirs(const std::vector<std::string>& dirs);

 private:
  CgroupPlan plan_;
  UniqueFd v2_fd_;
  bool removed_ = true;
};

// Kills every process in the given cgroup dirs and removes them (gc).
[[nodiscard]] Result<void> RemoveCgroupDirs(const std::vector<std::string>& dirs);

// Removes sandbox cgroups (children of warmbox's parents) that hold no
// process and are older than min_age_s: leftovers whose state dir is gone
// (removed by hand, say). Live sandboxes always hold their agent; a sandbox
// being created holds nothing for a few microseconds, hence the age. Returns
// how many were removed.
size_t SweepOrphanCgroups(const CgroupLayout& layout, const std::string& parent_override,
                          int min_age_s = 60);

// The layout of this host, read once.
[[nodiscard]] Result<CgroupLayout> HostCgroupLayout();

}  // namespace wb
