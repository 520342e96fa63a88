#include "tests/test_util.h"

#include <dirent.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/child.h"
#include "base/fd.h"
#include "base/fs.h"
#include "base/strings.h"

namespace wb::testing {

ProcResult RunProcess(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                      const std::string* stdin_data) {
  ProcResult res;
  auto out = MakePipe(), err = MakePipe(), in = MakePipe();
  if (!out.ok() || !err.ok() || !in.ok()) return res;
  SpawnOptions o;
  o.path = argv[0];
  o.argv = argv;
  // env adds to ours, and wins over it.
  for (char** e = environ; *e; ++e) {
    std::string_view kv = *e;
    bool overridden = false;
    for (const auto& x : env)
      overridden |= x.substr(0, x.find('=') + 1) == kv.substr(0, kv.find('=') + 1);
    if (!overridden) o.env.push_back(*e);
  }
  for (const auto& kv : env) o.env.push_back(kv);
  o.fds = {{out->write.get(), 1}, {err->write.get(), 2}};
  if (stdin_data) o.fds.push_back({in->read.get(), 0});
  auto child = ChildProcess::Spawn(o);
  if (!child.ok()) {
    res.err = child.error().ToString();
    return res;
  }
  out->write.reset();
  err->write.reset();
  in->read.reset();
  std::string_view pending = stdin_data ? std::string_view(*stdin_data) : std::string_view();
  if (!stdin_data) in->write.reset();
  (void)SetNonBlocking(in->write.get());
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd p[3] = {{out->read.get(), POLLIN, 0}, {err->read.get(), POLLIN, 0}, {-1, POLLOUT, 0}};
    if (in->write.valid()) p[2].fd = in->write.get();
    if (!out_open) p[0].fd = -1;
    if (!err_open) p[1].fd = -1;
    if (::poll(p, 3, -1) < 0) continue;
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = ::read(p[i].fd, buf, sizeof buf);
        if (n <= 0)
          (i == 0 ? out_open : err_open) = false;
        else
          (i == 0 ? res.out : res.err).append(buf, static_cast<size_t>(n));
      }
    }
    if (p[2].fd >= 0 && (p[2].revents & (POLLOUT | POLLERR))) {
      ssize_t n = pending.empty() ? 0 : ::write(p[2].fd, pending.data(), pending.size());
      if (n > 0) pending.remove_prefix(static_cast<size_t>(n));
      if (pending.empty() || n < 0) in->write.reset();
    }
  }
  in->write.reset();
  auto st = child->Wait();
  if (st.ok()) res.code = st->ShellCode();
  return res;
}

std::string BuildDir() { return WB_BUILD_DIR; }

std::string MakeTempDir(const std::string& prefix) {
  std::string t = "/tmp/" + prefix + "-XXXXXX";
  char* r = ::mkdtemp(t.data());
  return r ? std::string(r) : std::string();
}

std::set<pid_t> PidsWithUidIn(uint32_t lo, uint32_t hi) {
  std::set<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    auto pid = ParseUint(e->d_name, "pid");
    if (!pid.ok()) continue;
    struct stat st;
    std::string p = std::string("/proc/") + e->d_name;
    if (::stat(p.c_str(), &st) == 0 && st.st_uid >= lo && st.st_uid < hi) {
      out.insert(static_cast<pid_t>(*pid));
    }
  }
  ::closedir(d);
  return out;
}

std::set<pid_t> SandboxRootPids(uint32_t base, uint32_t slots) {
  std::set<pid_t> out;
  const uint64_t hi = uint64_t{base} + (uint64_t{slots} + 1) * 65536;
  for (pid_t pid : PidsWithUidIn(base, static_cast<uint32_t>(hi))) {
    struct stat st;
    if (::stat(("/proc/" + std::to_string(pid)).c_str(), &st) == 0 &&
        (st.st_uid - base) % 65536 == 0)
      out.insert(pid);
  }
  return out;
}

int CountOpenFds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n - 1;  // the DIR's own fd
}

std::multiset<std::string> MountPoints() {
  std::multiset<std::string> out;
  auto text = ReadFile("/proc/self/mountinfo");
  if (!text.ok()) return out;
  for (const auto& line : Split(*text, '\n')) {
    auto f = Split(line, ' ');
    if (f.size() > 4) out.insert(f[4]);
  }
  return out;
}

namespace {
void Walk(const std::string& dir, std::set<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> subs;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == ".." || e->d_type != DT_DIR) continue;
    subs.push_back(dir + "/" + n);
  }
  ::closedir(d);
  for (const auto& s : subs) {
    out.insert(s);
    Walk(s, out);
  }
}
}  // namespace

std::set<std::string> DirsBelow(const std::string& root) {
  std::set<std::string> out;
  Walk(root, out);
  return out;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  return out;
}

std::vector<pid_t> ProcessesMentioning(const std::string& text) {
  std::vector<pid_t> out;
  for (const auto& n : Entries("/proc")) {
    auto pid = ParseUint(n, "pid");
    if (!pid.ok()) continue;
    auto cmd = ReadFile("/proc/" + n + "/cmdline");
    if (cmd.ok() && cmd->find(text) != std::string::npos) out.push_back(static_cast<pid_t>(*pid));
  }
  return out;
}

pid_t ParentOf(pid_t pid) {
  auto st = ReadFile("/proc/" + std::to_string(pid) + "/status");
  if (!st.ok()) return 0;
  for (const auto& line : Split(*st, '\n')) {
    if (StartsWith(line, "PPid:")) {
      auto v = ParseUint(Trim(std::string_view(line).substr(5)), "ppid");
      return v.ok() ? static_cast<pid_t>(*v) : 0;
    }
  }
  return 0;
}

std::vector<pid_t> ChildrenMentioning(pid_t parent, const std::string& text) {
  std::vector<pid_t> out;
  for (pid_t p : ProcessesMentioning(text)) {
    if (ParentOf(p) == parent) out.push_back(p);
  }
  return out;
}

std::string SandboxProbe() {
  if (::geteuid() != 0) return "needs root (uid maps of a 65536-id range, cgroups)";
  auto fs = ReadFile("/proc/filesystems");
  if (!fs.ok() || fs->find("overlay") == std::string::npos) return "overlayfs not available";
  auto maxns = ReadFile("/proc/sys/user/max_user_namespaces");
  if (maxns.ok() && Trim(*maxns) == "0") return "user namespaces disabled (max_user_namespaces=0)";
  if (!PathExists("/bin/busybox")) return "/bin/busybox missing (run scripts/setup)";
  return "";
}

}  // namespace wb::testing
