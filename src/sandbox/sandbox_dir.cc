#include "sandbox/sandbox_dir.h"

#include <dirent.h>
#include <sys/stat.h>
#include <time.h>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/cgroup.h"
#include "sandbox/net/net_attach.h"
#include "sandbox/ns/uid_slots.h"

namespace wb {

std::string SandboxesDir(const std::string& state_dir) { return state_dir + "/sandboxes"; }

uint64_t ProcessStartTime(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return 0;
  // The comm field may contain spaces and parens: fields start after the last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  auto fields = Split(std::string_view(*stat).substr(close + 2), ' ');
  // starttime is field 22; fields[0] here is field 3.
  if (fields.size() < 20) return 0;
  auto v = ParseUint(fields[19], "starttime");
  return v.ok() ? *v : 0;
}

Result<void> WriteSandboxRecord(const std::string& dir, const SandboxRecord& rec) {
  nlohmann::json j = {{"id", rec.id},
                      {"owner_pid", rec.owner_pid},
                      {"owner_start", rec.owner_start},
                      {"cgroups", rec.cgroups}};
  return WriteFileAtomic(dir + "/owner.json", j.dump() + "\n", 0600);
}

Result<SandboxRecord> ReadSandboxRecord(const std::string& dir) {
  std::string text = WB_TRY(ReadFile(dir + "/owner.json"));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Fail("parse", dir + "/owner.json", "invalid JSON");
  SandboxRecord r;
  if (j.contains("id") && j["id"].is_string()) r.id = j["id"].get<std::string>();
  if (j.contains("owner_pid") && j["owner_pid"].is_number_integer())
    r.owner_pid = j["owner_pid"].get<pid_t>();
  if (j.contains("owner_start") && j["owner_start"].is_number_unsigned()) {
    r.owner_start = j["owner_start"].get<uint64_t>();
  }
  if (j.contains("cgroups") && j["cgroups"].is_array()) {
    for (const auto& c : j["cgroups"]) {
      // Only cgroupfs paths are ever removed from a record.
      if (c.is_string() && StartsWith(c.get<std::string>(), "/sys/fs/cgroup/")) {
        r.cgroups.push_back(c.get<std::string>());
      }
    }
  }
  return r;
}

bool LiveSandboxAlive(const std::string& dir) {
  auto text = ReadFile(dir + "/live.json");
  if (!text.ok()) return false;
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  auto pid = j.find("host_pid");
  auto start = j.find("host_start");
  if (pid == j.end() || start == j.end() || !pid->is_number_integer() ||
      !start->is_number_unsigned() || pid->get<int64_t>() <= 0) {
    return false;
  }
  return ProcessStartTime(pid->get<pid_t>()) == start->get<uint64_t>();
}

GcReport CollectGarbage(const std::string& state_dir) {
  GcReport rep;
  std::string base = SandboxesDir(state_dir);
  DIR* d = ::opendir(base.c_str());
  if (!d) return rep;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    std::string dir = base + "/" + n;
    if (LiveSandboxAlive(dir)) {
      ++rep.kept;
      continue;
    }
    auto rec = ReadSandboxRecord(dir);
    if (rec.ok()) {
      if (rec->owner_pid > 0 && ProcessStartTime(rec->owner_pid) == rec->owner_start) {
        ++rep.kept;
        continue;
      }
    } else {
      // No record yet: a sandbox being created right now writes it within
      // microseconds of mkdir, so only a dir older than a minute is a leftover.
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0 || ::time(nullptr) - st.st_mtime < 60) {
        ++rep.kept;
        continue;
      }
    }
    KillStaleResolver(dir);  // an egress sandbox's dnsmasq outlives its daemon
    if (rec.ok()) {
      if (auto r = RemoveCgroupDirs(rec->cgroups); !r.ok())
        rep.errors.push_back(r.error().ToString());
    }
    if (auto r = RemoveTree(dir); !r.ok()) {
      rep.errors.push_back(r.error().ToString());
      continue;
    }
    ++rep.removed;
  }
  // The uid slots of the sandboxes just removed (and of any lost before).
  SweepUidSlots(state_dir);
  return rep;
}

}  // namespace wb
