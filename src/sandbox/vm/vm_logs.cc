#include "sandbox/vm/vm_logs.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <utility>
#include <vector>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/vm/vm_driver.h"
#include "sandbox/vm/vm_sandbox.h"

namespace wb::vm {
namespace {

constexpr size_t kTailBytes = 2048;
constexpr size_t kFailedLogsKept = 8;

}  // namespace

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

std::string FailedLogsDir(const std::string& state_dir) { return VmDir(state_dir) + "/failed"; }

}  // namespace wb::vm
