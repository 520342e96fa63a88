#include "sandbox/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <functional>

#include "base/fs.h"
#include "base/strings.h"

namespace wb {
namespace {

const char* const kV1Controllers[] = {"memory", "pids", "cpu"};

std::string JoinPath(std::string a, std::string_view b) {
  while (!a.empty() && a.back() == '/') a.pop_back();
  if (b.empty() || b == "/") return a.empty() ? "/" : a;
  if (b.front() != '/') a += '/';
  a += b;
  return a;
}

// The path of `self` relative to a mount whose root is `root`.
std::string RelativeTo(const std::string& self, const std::string& root) {
  if (root == "/" || root.empty()) return self;
  if (self == root) return "/";
  if (StartsWith(self, root) && self[root.size()] == '/') return self.substr(root.size());
  return "/";  // our cgroup is outside the mount (nested container): use its root
}

}  // namespace

Result<CgroupLayout> ParseCgroupLayout(std::string_view mountinfo, std::string_view self_cgroup,
                                       std::string_view v2_controllers) {
  CgroupLayout l;
  std::map<std::string, std::string> self_v1;  // controller -> path
  for (const auto& line : Split(self_cgroup, '\n')) {
    auto f = Split(line, ':');
    if (f.size() < 3) continue;
    std::string path = line.substr(f[0].size() + f[1].size() + 2);
    if (f[0] == "0" && f[1].empty()) {
      l.unified_self = path;
    } else {
      for (const auto& c : Split(f[1], ',')) self_v1[c] = path;
    }
  }
  for (const auto& line : Split(mountinfo, '\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto left = Split(line.substr(0, dash), ' ');
    auto right = Split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    const std::string& root = left[3];
    const std::string& mnt = left[4];
    if (right[0] == "cgroup2") {
      if (l.unified_mount.empty()) {
        l.unified_mount = mnt;
        l.unified_self = RelativeTo(l.unified_self.empty() ? "/" : l.unified_self, root);
      }
    } else if (right[0] == "cgroup") {
      for (const auto& opt : Split(right[2], ',')) {
        if (opt == "freezer" && l.v1_freezer_mount.empty()) {
          auto it = self_v1.find("freezer");
          l.v1_freezer_self =
              JoinPath(mnt, RelativeTo(it == self_v1.end() ? "/" : it->second, root));
          l.v1_freezer_mount = mnt;
        }
        for (const char* c : kV1Controllers) {
          if (opt == c && !l.v1_dir_of_self.count(c)) {
            auto it = self_v1.find(c);
            std::string self = it == self_v1.end() ? "/" : it->second;
            l.v1_dir_of_self[c] = JoinPath(mnt, RelativeTo(self, root));
            l.v1_mount[c] = mnt;
          }
        }
      }
    }
  }
  // Pure v2 when the v2 hierarchy has the controllers and v1 has none of them.
  bool has_mem = false;
  for (const auto& c : Split(Trim(v2_controllers), ' ')) {
    if (c.empty()) continue;
    l.unified_controllers.push_back(c);
    has_mem |= c == "memory";
  }
  l.unified_has_controllers = !l.unified_mount.empty() && has_mem && l.v1_dir_of_self.empty();
  if (l.unified_mount.empty() && l.v1_dir_of_self.empty()) {
    return Fail("cgroups", "/proc/self/mountinfo", "no cgroup hierarchy is mounted");
  }
  return l;
}

CgroupPlan PlanSandboxCgroup(const CgroupLayout& l, const std::string& id, const Limits& lim,
                             const std::string& parent_override) {
  CgroupPlan p;
  const uint64_t period = 100000;
  uint64_t quota = lim.cpus > 0 ? static_cast<uint64_t>(std::ceil(lim.cpus * period)) : 0;
  if (quota && quota < 1000) quota = 1000;  // the kernel's minimum quota (1 ms)
  if (!l.unified_mount.empty()) {
    std::string parent =
        parent_override.empty()
            ? JoinPath(l.unified_has_controllers ? l.unified_mount
                                                 : JoinPath(l.unified_mount, l.unified_self),
                       "warmbox")
            : JoinPath(l.unified_mount, parent_override);
    p.parents.push_back(parent);
    p.v2_dir = JoinPath(parent, id);
    p.dirs.push_back(p.v2_dir);
    if (l.unified_has_controllers) {
      // Controllers must be enabled on the way down before a child can use them.
      // Enable what the host offers of memory, pids and cpu.
      std::string enable;
      bool has_pids = false, has_cpu = false;
      for (const auto& c : l.unified_controllers) {
        if (c == "memory" || c == "pids" || c == "cpu") enable += (enable.empty() ? "+" : " +") + c;
        has_pids |= c == "pids";
        has_cpu |= c == "cpu";
      }
      p.writes.push_back({JoinPath(l.unified_mount, "cgroup.subtree_control"), enable, true});
      p.writes.push_back({JoinPath(parent, "cgroup.subtree_control"), enable, false});
      p.writes.push_back(
          {JoinPath(p.v2_dir, "memory.max"), std::to_string(lim.memory_bytes), false});
      p.writes.push_back({JoinPath(p.v2_dir, "memory.swap.max"), "0", true});
      if (has_pids)
        p.writes.push_back({JoinPath(p.v2_dir, "pids.max"), std::to_string(lim.pids), false});
      if (quota && has_cpu) {
        p.writes.push_back({JoinPath(p.v2_dir, "cpu.max"),
                            std::to_string(quota) + " " + std::to_string(period), false});
      }
      return p;
    }
  }
  for (const auto& [ctl, self_dir] : l.v1_dir_of_self) {
    std::string parent;
    if (parent_override.empty()) {
      parent = JoinPath(self_dir, "warmbox");
    } else {
      // The override is relative to the hierarchy's mount point.
      auto m = l.v1_mount.find(ctl);
      parent =
          JoinPath(m != l.v1_mount.end() ? m->second : "/sys/fs/cgroup/" + ctl, parent_override);
    }
    p.parents.push_back(parent);
    std::string dir = JoinPath(parent, id);
    p.dirs.push_back(dir);
    p.attach.push_back(JoinPath(dir, "cgroup.procs"));
    p.thread_moves.emplace_back(JoinPath(dir, "tasks"), JoinPath(self_dir, "tasks"));
    if (ctl == "memory") {
      p.writes.push_back(
          {JoinPath(dir, "memory.limit_in_bytes"), std::to_string(lim.memory_bytes), false});
      // RAM + swap capped at the same value: no swap use on top of the limit.
      p.writes.push_back(
          {JoinPath(dir, "memory.memsw.limit_in_bytes"), std::to_string(lim.memory_bytes), true});
    } else if (ctl == "pids") {
      p.writes.push_back({JoinPath(dir, "pids.max"), std::to_string(lim.pids), false});
    } else if (ctl == "cpu" && quota) {
      p.writes.push_back({JoinPath(dir, "cpu.cfs_period_us"), std::to_string(period), false});
      p.writes.push_back({JoinPath(dir, "cpu.cfs_quota_us"), std::to_string(quota), false});
    }
  }
  if (l.unified_mount.empty() && !l.v1_freezer_self.empty()) {
    // No cgroup2 (whose cgroup.freeze pauses): the v1 freezer does.
    std::string parent = parent_override.empty() ? JoinPath(l.v1_freezer_self, "warmbox")
                                                 : JoinPath(l.v1_freezer_mount, parent_override);
    p.parents.push_back(parent);
    std::string dir = JoinPath(parent, id);
    p.dirs.push_back(dir);
    p.attach.push_back(JoinPath(dir, "cgroup.procs"));
    p.thread_moves.emplace_back(JoinPath(dir, "tasks"), JoinPath(l.v1_freezer_self, "tasks"));
  }
  return p;
}

size_t SweepOrphanCgroups(const CgroupLayout& layout, const std::string& parent_override,
                          int min_age_s) {
  size_t removed = 0;
  const time_t now = ::time(nullptr);
  for (const auto& parent : PlanSandboxCgroup(layout, "x", Limits{}, parent_override).parents) {
    DIR* d = ::opendir(parent.c_str());
    if (!d) continue;
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && e->d_name[0] != '.') names.push_back(e->d_name);
    }
    ::closedir(d);
    for (const auto& n : names) {
      std::string dir = parent + "/" + n;
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0 || now - st.st_mtime < min_age_s) continue;
      auto procs = ReadFile(dir + "/cgroup.procs");
      if (!procs.ok() || !Trim(*procs).empty()) continue;
      if (::rmdir(dir.c_str()) == 0) ++removed;
    }
  }
  return removed;
}

Result<CgroupLayout> HostCgroupLayout() {
  std::string mountinfo = WB_TRY(ReadFile("/proc/self/mountinfo"));
  std::string self = WB_TRY(ReadFile("/proc/self/cgroup"));
  std::string ctl;
  for (const char* root :
       {"/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/unified/cgroup.controllers"}) {
    auto r = ReadFile(root);
    if (r.ok()) {
      ctl = *r;
      break;
    }
  }
  return ParseCgroupLayout(mountinfo, self, ctl);
}

Cgroup::~Cgroup() {
  if (!removed_) (void)Remove();
}

Result<Cgroup> Cgroup::Apply(const CgroupPlan& plan) {
  Cgroup cg;
  cg.plan_ = plan;
  for (const auto& d : plan.parents) WB_RETURN_IF_ERROR(MkdirAll(d, 0755));
  cg.removed_ = false;  // from here on, the destructor cleans up
  for (const auto& d : plan.dirs) {
    if (::mkdir(d.c_str(), 0755) != 0) return Errno("mkdir", d);
  }
  for (const auto& w : plan.writes) {
    if (w.optional && !PathExists(w.file)) continue;
    auto r = WriteFile(w.file, w.value);
    if (!r.ok() && !w.optional) return r.error();
  }
  if (!plan.v2_dir.empty()) {
    cg.v2_fd_ = UniqueFd(::open(plan.v2_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg.v2_fd_) return Errno("open", plan.v2_dir);
  }
  return cg;
}

Result<void> Cgroup::Attach(pid_t pid) {
  for (const auto& f : plan_.attach) WB_RETURN_IF_ERROR(WriteFile(f, std::to_string(pid)));
  return Ok();
}

Result<Cgroup::CloneMoves> Cgroup::OpenCloneMoves() const {
  CloneMoves m;
  for (const auto& [in, out] : plan_.thread_moves) {
    m.in.emplace_back(::open(in.c_str(), O_WRONLY | O_CLOEXEC));
    if (!m.in.back()) return Errno("open", in);
    m.out.emplace_back(::open(out.c_str(), O_WRONLY | O_CLOEXEC));
    if (!m.out.back()) return Errno("open", out);
  }
  return m;
}

uint64_t Cgroup::OomKills() const {
  uint64_t n = 0;
  for (const auto& d : plan_.dirs) {
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

Cgroup Cgroup::FromDirs(const std::vector<std::string>& dirs) {
  Cgroup cg;
  cg.plan_.dirs = dirs;
  for (const auto& d : dirs) {
    if (cg.plan_.v2_dir.empty() && PathExists(d + "/cgroup.freeze")) cg.plan_.v2_dir = d;
  }
  cg.removed_ = false;
  return cg;
}

namespace {

// Polls (1 ms steps, bounded) until pred holds.
bool WaitFor(const std::function<bool()>& pred, int timeout_ms) {
  for (int waited = 0;; ++waited) {
    if (pred()) return true;
    if (waited >= timeout_ms) return false;
    timespec ts{0, 1000000};
    ::nanosleep(&ts, nullptr);
  }
}

bool EventsSayFrozen(const std::string& dir, bool frozen) {
  auto text = ReadFile(dir + "/cgroup.events");
  if (!text.ok()) return false;
  for (const auto& line : Split(*text, '\n')) {
    if (StartsWith(line, "frozen ")) return Trim(line.substr(7)) == (frozen ? "1" : "0");
  }
  return false;
}

uint64_t ReadCounter(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return 0;
  auto v = ParseUint(Trim(*text), path);
  return v.ok() ? *v : 0;
}

}  // namespace

Result<void> Cgroup::Freeze(bool frozen, int timeout_ms) {
  std::string v2;
  for (const auto& d : plan_.dirs) {
    if (PathExists(d + "/cgroup.freeze")) {
      v2 = d;
      break;
    }
  }
  if (!v2.empty()) {
    WB_RETURN_IF_ERROR(WriteFile(v2 + "/cgroup.freeze", frozen ? "1" : "0"));
    if (!WaitFor([&] { return EventsSayFrozen(v2, frozen); }, timeout_ms)) {
      return Fail(ErrorCode::kDeadlineExceeded, frozen ? "freeze" : "thaw", v2,
                  "cgroup.events did not say frozen " + std::string(frozen ? "1" : "0") +
                      " within " + std::to_string(timeout_ms) + " ms");
    }
    return Ok();
  }
  for (const auto& d : plan_.dirs) {
    if (!PathExists(d + "/freezer.state")) continue;
    const std::string want = frozen ? "FROZEN" : "THAWED";
    WB_RETURN_IF_ERROR(WriteFile(d + "/freezer.state", want));
    bool done = WaitFor(
        [&] {
          auto st = ReadFile(d + "/freezer.state");
          return st.ok() && Trim(*st) == want;
        },
        timeout_ms);
    if (!done) {
      return Fail(
          ErrorCode::kDeadlineExceeded, frozen ? "freeze" : "thaw", d,
          "freezer.state did not become " + want + " within " + std::to_string(timeout_ms) + " ms");
    }
    return Ok();
  }
  return Fail(ErrorCode::kFailedPrecondition, "freeze", plan_.dirs.empty() ? "" : plan_.dirs[0],
              "the sandbox has no cgroup v2 dir (cgroup.freeze) and no v1 freezer cgroup");
}

ResourceUsage Cgroup::Usage() const {
  ResourceUsage u;
  for (const auto& d : plan_.dirs) {
    if (!u.memory_bytes) {
      if (PathExists(d + "/memory.current"))
        u.memory_bytes = ReadCounter(d + "/memory.current");
      else if (PathExists(d + "/memory.usage_in_bytes"))
        u.memory_bytes = ReadCounter(d + "/memory.usage_in_bytes");
    }
    if (!u.pids && PathExists(d + "/pids.current")) u.pids = ReadCounter(d + "/pids.current");
    if (!u.cpu_usage_us) {
      if (PathExists(d + "/cpuacct.usage")) {
        u.cpu_usage_us = ReadCounter(d + "/cpuacct.usage") / 1000;
      } else if (auto stat = ReadFile(d + "/cpu.stat"); stat.ok()) {
        for (const auto& line : Split(*stat, '\n')) {
          if (!StartsWith(line, "usage_usec ")) continue;
          auto v = ParseUint(Trim(line.substr(11)), "usage_usec");
          if (v.ok()) u.cpu_usage_us = *v;
        }
      }
    }
  }
  return u;
}

Result<void> Cgroup::Remove() {
  if (removed_) return Ok();
  removed_ = true;
  v2_fd_.reset();
  return RemoveCgroupDirs(plan_.dirs);
}

Result<void> RemoveCgroupDirs(const std::vector<std::string>& dirs) {
  // Kill first everywhere (cgroup.kill on v2; each listed pid on v1), then
  // remove. A dying task leaves its cgroups a moment after it is reaped, so
  // rmdir may see EBUSY briefly: retry for a bounded time.
  for (const auto& d : dirs) {
    if (!PathExists(d)) continue;
    if (PathExists(d + "/cgroup.kill")) {
      (void)WriteFile(d + "/cgroup.kill", "1");
    } else if (auto procs = ReadFile(d + "/cgroup.procs"); procs.ok()) {
      for (const auto& line : Split(*procs, '\n')) {
        auto pid = ParseUint(line, "pid");
        if (pid.ok() && *pid > 0) ::kill(static_cast<pid_t>(*pid), SIGKILL);
      }
    }
  }
  Result<void> result = Ok();
  for (const auto& d : dirs) {
    for (int attempt = 0;; ++attempt) {
      if (::rmdir(d.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY || attempt >= 2000) {
        if (result.ok()) result = Errno("rmdir", d);
        break;
      }
      timespec ts{0, 1000000};  // 1 ms, up to 2 s in all
      ::nanosleep(&ts, nullptr);
    }
  }
  return result;
}

}  // namespace wb
