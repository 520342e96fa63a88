// bench/load: many concurrent clients against one pool daemon.
//
//   load --socket SOCK --daemon-pid PID [--levels 1,16,256,1000] [--runs-per-client 1]
//        [--cmd /bin/true] [--out FILE.json]
//
// For each level, that many client threads start together and each does its
// runs. Every request must either complete correctly (exit 0, expected
// output) or get a clear "busy" error; anything else is a failure. Reports
// throughput and latency percentiles per level, and the daemon's fds,
// threads and RSS before the first level and after the last one, once the
// pool has settled.
#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "base/strings.h"
#include "daemon/client.h"
#include "sandbox/cgroup.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  size_t fds = 0, threads = 0;
  uint64_t rss_kib = 0;
  size_t host_mounts = 0, cgroups = 0;  // host-wide: mountinfo lines, sandbox cgroup dirs
};

size_t Count(const std::string& dir, bool dirs_only = false) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      n += e->d_name[0] != '.' && (!dirs_only || e->d_type == DT_DIR);
    ::closedir(d);
  }
  return n;
}

// The daemon's fds but the user namespaces the ns driver keeps, one per uid
// slot it has used (sandbox/ns/idmap_mount.h): those are bounded by the
// slots, not by the runs, and taken lowest first; a level of more clients
// uses more of them once.
size_t CountFdsButUserNs(const std::string& dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[64] = {};
    ssize_t len = ::readlinkat(::dirfd(d), e->d_name, target, sizeof target - 1);
    if (len > 0 && std::strncmp(target, "user:[", 6) == 0) continue;
    ++n;
  }
  ::closedir(d);
  return n;
}

size_t CountCgroups() {
  auto layout = wb::HostCgroupLayout();
  if (!layout.ok()) return 0;
  size_t n = 0;
  for (const auto& p : wb::PlanSandboxCgroup(*layout, "x", wb::Limits{}, "").parents)
    n += Count(p, true);
  return n;
}

Sample MeasureOnce(pid_t pid) {
  Sample s;
  if (auto mi = wb::ReadFile("/proc/self/mountinfo"); mi.ok())
    s.host_mounts = wb::Split(*mi, '\n').size();
  s.cgroups = CountCgroups();
  std::string base = "/proc/" + std::to_string(pid);
  s.fds = CountFdsButUserNs(base + "/fd");
  s.threads = Count(base + "/task");
  if (auto st = wb::ReadFile(base + "/status"); st.ok()) {
    for (const auto& line : wb::Split(*st, '\n')) {
      if (wb::StartsWith(line, "VmRSS:")) {
        auto v = wb::ParseUint(wb::Trim(std::string_view(line).substr(6, line.size() - 9)), "rss");
        if (v.ok()) s.rss_kib = *v;
      }
    }
  }
  return s;
}

// A client's connection closes a moment after its reply: measure until two
// readings 20 ms apart agree.
Sample Measure(pid_t pid) {
  Sample a = MeasureOnce(pid);
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    Sample b = MeasureOnce(pid);
    if (b.fds == a.fds && b.threads == a.threads && b.cgroups == a.cgroups &&
        b.host_mounts == a.host_mounts)
      return b;
    a = b;
  }
  return a;
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Level {
  int clients = 0;
  int sent = 0, ok = 0, busy = 0, failed = 0;
  double seconds = 0;
  std::vector<double> ms;
  std::vector<std::string> failures;
};

struct Shared {
  std::string socket;
  std::vector<std::string> cmd;
  int runs = 1;
  Level* level = nullptr;
  std::mutex mu;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
};

void* Client(void* arg) {
  auto* sh = static_cast<Shared*>(arg);
  ++sh->ready;
  while (!sh->go.load()) std::this_thread::yield();
  wb::daemon::PoolClient client(sh->socket);
  for (int i = 0; i < sh->runs; ++i) {
    wb::proto::RunRequest r;
    r.cmd = sh->cmd;
    auto t0 = Clock::now();
    auto resp = client.Run(r);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    std::lock_guard<std::mutex> lock(sh->mu);
    Level& l = *sh->level;
    ++l.sent;
    if (resp.ok() && !resp->error && resp->exit_code == 0) {
      ++l.ok;
      l.ms.push_back(ms);
    } else if (resp.ok() && resp->error && resp->error->find("busy") != std::string::npos) {
      ++l.busy;
    } else {
      ++l.failed;
      if (l.failures.size() < 5) {
        l.failures.push_back(resp.ok()
                                 ? resp->error.value_or("exit " + std::to_string(resp->exit_code))
                                 : resp.error().ToString());
      }
    }
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket, out, levels_arg = "1,16,256,1000", cmd = "/bin/true";
  pid_t daemon_pid = 0;
  int runs = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--socket")
      socket = v;
    else if (a == "--daemon-pid")
      daemon_pid = std::stoi(v);
    else if (a == "--levels")
      levels_arg = v;
    else if (a == "--runs-per-client")
      runs = std::stoi(v);
    else if (a == "--cmd")
      cmd = v;
    else if (a == "--out")
      out = v;
  }
  if (socket.empty() || daemon_pid <= 0) {
    std::fprintf(stderr,
                 "usage: load --socket SOCK --daemon-pid PID [--levels 1,16,256,1000] [--out F]\n");
    return 2;
  }
  wb::daemon::PoolClient probe(socket);
  auto settle = [&] {
    for (int i = 0; i < 20000; ++i) {
      auto st = probe.Status();
      bool quiet = st.ok();
      for (const auto& s : st.ok() ? *st : std::vector<wb::proto::ImageStat>{}) {
        quiet = quiet && s.active == 0 && s.creating == 0 && s.queued == 0;
      }
      if (quiet) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  settle();
  Sample before = Measure(daemon_pid);
  std::vector<Sample> samples{before};
  std::vector<Level> results;
  for (const auto& lv : wb::Split(levels_arg, ',')) {
    Level level;
    level.clients = std::stoi(lv);
    Shared sh;
    sh.socket = socket;
    sh.cmd = wb::Split(cmd, ' ');
    sh.runs = runs;
    sh.level = &level;
    std::vector<pthread_t> threads(static_cast<size_t>(level.clients));
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (auto& t : threads) pthread_create(&t, &attr, Client, &sh);
    while (sh.ready.load() < level.clients) std::this_thread::yield();
    auto t0 = Clock::now();
    sh.go = true;
    for (auto& t : threads) pthread_join(t, nullptr);
    level.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    results.push_back(std::move(level));
    settle();
    samples.push_back(Measure(daemon_pid));
  }
  settle();
  // The last client connections close a moment after their replies.
  Sample after = Measure(daemon_pid);
  auto same = [&] {
    return after.fds == before.fds && after.threads == before.threads &&
           after.host_mounts == before.host_mounts && after.cgroups == before.cgroups;
  };
  for (int i = 0; i < 2000 && !same(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    after = Measure(daemon_pid);
  }

  std::string json = "{\"levels\":[";
  std::printf("| clients | sent | ok | busy | failed | runs/s | p50 ms | p99 ms | max ms |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  int total_failed = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const Level& l = results[i];
    total_failed += l.failed;
    double rps = l.seconds > 0 ? l.ok / l.seconds : 0;
    double mx = l.ms.empty() ? 0 : *std::max_element(l.ms.begin(), l.ms.end());
    std::printf("| %d | %d | %d | %d | %d | %.0f | %.2f | %.2f | %.2f |\n", l.clients, l.sent, l.ok,
                l.busy, l.failed, rps, Pct(l.ms, 0.5), Pct(l.ms, 0.99), mx);
    for (const auto& f : l.failures) std::printf("  failure: %s\n", f.c_str());
    char buf[512];
    std::snprintf(
        buf, sizeof buf,
        "%s{\"clients\":%d,\"sent\":%d,\"ok\":%d,\"busy\":%d,\"failed\":%d,\"seconds\":%.3f,"
        "\"runs_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}",
        i ? "," : "", l.clients, l.sent, l.ok, l.busy, l.failed, l.seconds, rps, Pct(l.ms, 0.5),
        Pct(l.ms, 0.99), mx);
    json += buf;
  }
  json += "],\"samples\":[";
  std::printf(
      "\n| sample | daemon fds | threads | RSS KiB | host mounts | sandbox cgroups "
      "|\n|---|---:|---:|---:|---:|---:|\n");
  samples.back() = after;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Sample& m = samples[i];
    std::string name = i == 0                    ? "start"
                       : i + 1 == samples.size() ? "end"
                                                 : "after level " + std::to_string(i);
    std::printf("| %s | %zu | %zu | %llu | %zu | %zu |\n", name.c_str(), m.fds, m.threads,
                static_cast<unsigned long long>(m.rss_kib), m.host_mounts, m.cgroups);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%s{\"at\":\"%s\",\"fds\":%zu,\"threads\":%zu,\"rss_kib\":%llu,\"host_mounts\":%"
                  "zu,\"cgroups\":%zu}",
                  i ? "," : "", name.c_str(), m.fds, m.threads,
                  static_cast<unsigned long long>(m.rss_kib), m.host_mounts, m.cgroups);
    json += buf;
  }
  json += "]}\n";
  if (!out.empty()) (void)wb::WriteFileAtomic(out, json);
  return total_failed == 0 && same() ? 0 : 1;
}
