// pool_bench: latency, throughput and refill of a running warm-pool daemon,
// measured through the in-process client (wb::daemon::PoolClient), plus a bare
// posix_spawn+waitpid of /bin/true as the floor.
//
// Usage:
//   pool_bench --socket SOCK [--runs N] [--concurrency 1,4,16] [--per-level N]
//              [--refill-rounds N] [--size N] [--image NAME] [--daemon-log FILE]
//              [--warmup N] [--settle-timeout SECONDS] [--out FILE.json]
//
// Phases, in this order (the pool is settled before each: nothing creating,
// nothing active, idle back at --size):
//   bare        N x posix_spawn(/bin/true) + waitpid
//   sequential  N x Run({"/bin/true"}), one at a time
//   streamed    the same with streamed output (what `warmbox pool run` asks for)
//   throughput  for each concurrency C: --per-level runs split over C threads
//   refill      --refill-rounds x: a burst of `size` concurrent runs, then
//               status polled every 1 ms until idle is back at size
//
// With --daemon-log (the daemon's stderr, ideally at --log-level debug, whose
// lines carry microsecond timestamps) each phase also gets the daemon's own
// figures: the queue/acquire/exec split of its "run ..." lines and, for the
// refill, when the replacement sandboxes were ready by the daemon's clock.
//
// Percentiles interpolate linearly between the two nearest samples.
#include <spawn.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <latch>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/client.h"
#include "proto/pool_proto.h"

extern char** environ;

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "pool_bench: error: %s\n", msg.c_str());
  std::exit(1);
}

void Note(const std::string& msg) { std::fprintf(stderr, "pool_bench: %s\n", msg.c_str()); }

double MsSince(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// Seconds since local midnight, the clock of the daemon's log timestamps
// (spdlog's %H:%M:%S.%f, local time).
double TimeOfDay() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  tm lt{};
  time_t secs = ts.tv_sec;
  ::localtime_r(&secs, &lt);
  return lt.tm_hour * 3600.0 + lt.tm_min * 60.0 + lt.tm_sec + ts.tv_nsec / 1e9;
}

// ------------------------------------------------------------------ stats
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(pos));
  size_t hi = std::min(lo + 1, v.size() - 1);
  double frac = pos - static_cast<double>(lo);
  return v[lo] + (v[hi] - v[lo]) * frac;
}

json Summary(const std::vector<double>& ms) {
  json j;
  j["n"] = ms.size();
  if (ms.empty()) return j;
  double sum = 0;
  for (double x : ms) sum += x;
  j["p50_ms"] = Percentile(ms, 50);
  j["p90_ms"] = Percentile(ms, 90);
  j["p99_ms"] = Percentile(ms, 99);
  j["mean_ms"] = sum / static_cast<double>(ms.size());
  j["min_ms"] = *std::min_element(ms.begin(), ms.end());
  j["max_ms"] = *std::max_element(ms.begin(), ms.end());
  return j;
}

// ------------------------------------------------------------------ args
struct Args {
  std::string socket;
  std::string image;  // empty: the daemon's default
  std::string out;
  std::string daemon_log;
  size_t runs = 200;
  size_t warmup = 10;
  size_t per_level = 200;
  size_t refill_rounds = 5;
  size_t size = 0;  // 0: the settled idle count at start
  std::vector<size_t> concurrency{1, 4, 16};
  double settle_timeout_s = 60;
};

size_t ParseCount(const std::string& flag, const std::string& v, size_t min) {
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || errno || *end || v[0] == '-' || n < min) {
    Die(flag + " expects an integer >= " + std::to_string(min) + " (got '" + v + "')");
  }
  return static_cast<size_t>(n);
}

void Usage(FILE* f) {
  std::fprintf(
      f,
      "usage: pool_bench --socket SOCK [--runs N] [--concurrency 1,4,16] [--per-level N]\n"
      "                  [--refill-rounds N] [--size N] [--image NAME] [--daemon-log FILE]\n"
      "                  [--warmup N] [--settle-timeout SECONDS] [--out FILE.json]\n");
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      Usage(stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      Usage(stderr);
      Die("missing value for " + k);
    }
    std::string v = argv[++i];
    if (k == "--socket") {
      a.socket = v;
    } else if (k == "--image") {
      a.image = v;
    } else if (k == "--out") {
      a.out = v;
    } else if (k == "--daemon-log") {
      a.daemon_log = v;
    } else if (k == "--runs") {
      a.runs = ParseCount(k, v, 2);
    } else if (k == "--warmup") {
      a.warmup = ParseCount(k, v, 0);
    } else if (k == "--per-level") {
      a.per_level = ParseCount(k, v, 1);
    } else if (k == "--refill-rounds") {
      a.refill_rounds = ParseCount(k, v, 1);
    } else if (k == "--size") {
      a.size = ParseCount(k, v, 1);
    } else if (k == "--settle-timeout") {
      a.settle_timeout_s = static_cast<double>(ParseCount(k, v, 1));
    } else if (k == "--concurrency") {
      a.concurrency.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) a.concurrency.push_back(ParseCount(k, item, 1));
      if (a.concurrency.empty()) Die("--concurrency expects a list like 1,4,16");
    } else {
      Usage(stderr);
      Die("unknown option " + k);
    }
  }
  if (a.socket.empty()) {
    Usage(stderr);
    Die("--socket is required");
  }
  return a;
}

// ------------------------------------------------------------------ daemon
class Daemon {
 public:
  explicit Daemon(const Args& a) : args_(a) {}

  // One run of /bin/true; dies on any failure (a benchmark of errors is useless).
  // stream: output as frames, the way `warmbox pool run` asks for it.
  double RunTrue(wb::daemon::PoolClient& c, bool stream = false) const {
    wb::proto::RunRequest req;
    req.cmd = {"/bin/true"};
    if (!args_.image.empty()) req.image = args_.image;
    auto t0 = Clock::now();
    auto r = stream ? c.Run(std::move(req), [](bool, std::string_view) {}) : c.Run(std::move(req));
    auto t1 = Clock::now();
    if (!r.ok()) Die("pool run: " + r.error().ToString());
    if (r->error) Die("pool run: daemon error: " + *r->error);
    if (r->exit_code != 0) Die("pool run: /bin/true exited " + std::to_string(r->exit_code));
    return MsSince(t0, t1);
  }

  wb::proto::ImageStat Stat(wb::daemon::PoolClient& c) const {
    auto st = c.Status();
    if (!st.ok()) Die("pool status: " + st.error().ToString());
    for (const auto& s : *st) {
      if (s.image == image_) return s;
    }
    Die("pool status: no pool for image '" + image_ + "'");
  }

  // The image whose pool we measure: --image, or the daemon's only pool.
  void ResolveImage(wb::daemon::PoolClient& c) {
    if (!args_.image.empty()) {
      image_ = args_.image;
      return;
    }
    auto st = c.Status();
    if (!st.ok()) Die("pool status: " + st.error().ToString());
    if (st->size() != 1) {
      Die("the daemon has " + std::to_string(st->size()) + " pools; pass --image to pick one");
    }
    image_ = (*st)[0].image;
  }
  const std::string& image() const { return image_; }

  // Waits until nothing is being created or run (teardowns done: a permit is
  // held until its sandbox is gone) and idle >= want (0: until idle is stable).
  wb::proto::ImageStat Settle(wb::daemon::PoolClient& c, size_t want) const {
    auto deadline = Clock::now() + std::chrono::duration<double>(args_.settle_timeout_s);
    wb::proto::ImageStat s = Stat(c);
    const uint64_t failed0 = s.failed_creations;
    for (;;) {
      s = Stat(c);
      if (s.failed_creations > failed0 && s.idle < std::max<size_t>(want, 1)) {
        Die("the daemon failed to create " + std::to_string(s.failed_creations - failed0) +
            " sandbox(es) while the pool was refilling (see the daemon's log)");
      }
      bool quiet = s.creating == 0 && s.active == 0 && s.queued == 0;
      if (quiet && (want == 0 ? s.idle > 0 : s.idle >= want)) return s;
      if (Clock::now() > deadline) {
        Die("the pool did not settle within " +
            std::to_string(static_cast<int>(args_.settle_timeout_s)) + " s (idle " +
            std::to_string(s.idle) + "/" + std::to_string(want) + ", creating " +
            std::to_string(s.creating) + ", active " + std::to_string(s.active) +
            ", failed creations " + std::to_string(s.failed_creations) + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

 private:
  const Args& args_;
  std::string image_;
};

// ------------------------------------------------------------------ daemon log
// Lines: "warmbox: HH:MM:SS.ffffff LEVEL: MSG" (debug pattern) or
// "warmbox: LEVEL: MSG" (info pattern, no time).
struct LogLine {
  std::optional<double> tod;
  std::string msg;
};

class DaemonLog {
 public:
  explicit DaemonLog(std::string path) : path_(std::move(path)) {}
  bool enabled() const { return !path_.empty(); }

  uint64_t Offset() const {
    if (!enabled()) return 0;
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return 0;
    return static_cast<uint64_t>(st.st_size);
  }

  std::vector<LogLine> Lines(uint64_t from, uint64_t to) const {
    std::vector<LogLine> out;
    if (!enabled() || to <= from) return out;
    std::ifstream f(path_, std::ios::binary);
    if (!f) return out;
    f.seekg(static_cast<std::streamoff>(from));
    std::string buf(to - from, '\0');
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    buf.resize(static_cast<size_t>(f.gcount()));
    std::stringstream ss(buf);
    std::string line;
    while (std::getline(ss, line)) {
      if (line.rfind("warmbox: ", 0) != 0) continue;
      std::string rest = line.substr(9);
      LogLine l;
      int h, m;
      double s;
      char colon;
      if (rest.size() > 15 && rest[2] == ':' && rest[5] == ':' &&
          std::sscanf(rest.c_str(), "%d:%d:%lf%c", &h, &m, &s, &colon) == 4) {
        l.tod = h * 3600.0 + m * 60.0 + s;
        rest = rest.substr(rest.find(' ') + 1);
      }
      size_t c = rest.find(": ");
      if (c == std::string::npos) continue;
      l.msg = rest.substr(c + 2);
      out.push_back(std::move(l));
    }
    return out;
  }

  // The daemon's split of each run: "run image=.. sandbox=.. exit=0 warm
  // queue=0.00ms acquire=0.15ms exec=1.51ms".
  static json RunSplit(const std::vector<LogLine>& lines) {
    std::vector<double> queue, acquire, exec, total;
    size_t warm = 0, cold = 0;
    for (const auto& l : lines) {
      if (l.msg.rfind("run image=", 0) != 0) continue;
      auto field = [&](const char* key) -> std::optional<double> {
        size_t p = l.msg.find(key);
        if (p == std::string::npos) return std::nullopt;
        return std::strtod(l.msg.c_str() + p + std::strlen(key), nullptr);
      };
      auto q = field(" queue="), a = field(" acquire="), e = field(" exec=");
      if (!q || !a || !e) continue;
      queue.push_back(*q);
      acquire.push_back(*a);
      exec.push_back(*e);
      total.push_back(*q + *a + *e);
      if (l.msg.find(" warm ") != std::string::npos) ++warm;
      if (l.msg.find(" cold ") != std::string::npos) ++cold;
    }
    json j;
    j["runs_logged"] = total.size();
    if (total.empty()) return j;
    j["warm"] = warm;
    j["cold"] = cold;
    j["queue_ms"] = Summary(queue);
    j["acquire_ms"] = Summary(acquire);
    j["exec_ms"] = Summary(exec);
    j["total_ms"] = Summary(total);
    return j;
  }

  // Sandboxes created within lines: id -> (first "ID: dir ready", "ID: ready").
  static std::map<std::string, std::pair<double, double>> Creations(
      const std::vector<LogLine>& lines) {
    std::map<std::string, std::pair<double, double>> started, out;
    for (const auto& l : lines) {
      if (!l.tod) continue;
      size_t c = l.msg.find(": ");
      if (c == std::string::npos) continue;
      std::string id = l.msg.substr(0, c), what = l.msg.substr(c + 2);
      if (what == "dir ready") started[id] = {*l.tod, NAN};
      if (what == "ready" && started.count(id)) out[id] = {started[id].first, *l.tod};
    }
    return out;
  }

 private:
  std::string path_;
};

// ------------------------------------------------------------------ phases
json BareSpawn(size_t runs, size_t warmup) {
  const char* path = "/bin/true";
  char* const argv[] = {const_cast<char*>("true"), nullptr};
  std::vector<double> ms;
  ms.reserve(runs);
  for (size_t i = 0; i < warmup + runs; ++i) {
    auto t0 = Clock::now();
    pid_t pid;
    int rc = ::posix_spawn(&pid, path, nullptr, nullptr, argv, environ);
    if (rc != 0) Die(std::string("posix_spawn /bin/true: ") + std::strerror(rc));
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) Die(std::string("waitpid: ") + std::strerror(errno));
    }
    auto t1 = Clock::now();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("/bin/true failed");
    if (i >= warmup) ms.push_back(MsSince(t0, t1));
  }
  return Summary(ms);
}

// Stat counters that moved during a phase.
json Delta(const wb::proto::ImageStat& a, const wb::proto::ImageStat& b) {
  json j;
  j["hits"] = b.hits - a.hits;
  j["misses"] = b.misses - a.misses;
  j["created"] = b.total_created - a.total_created;
  j["evicted"] = b.total_evicted - a.total_evicted;
  j["failed_creations"] = b.failed_creations - a.failed_creations;
  j["rejected_busy"] = b.rejected_busy - a.rejected_busy;
  j["peak_active_total"] = b.peak_active;  // the daemon keeps only an all-time peak
  return j;
}

// `total` runs over `threads` threads, each in a loop; returns every latency.
struct Load {
  std::vector<double> ms;
  double wall_s = 0;
};

Load RunLoad(const Daemon& d, const std::string& socket, size_t threads, size_t total) {
  std::vector<std::vector<double>> per(threads);
  std::latch ready(static_cast<std::ptrdiff_t>(threads));
  std::latch go(1);
  std::vector<std::thread> ts;
  for (size_t t = 0; t < threads; ++t) {
    size_t n = total / threads + (t < total % threads ? 1 : 0);
    ts.emplace_back([&, t, n] {
      wb::daemon::PoolClient c(socket);
      per[t].reserve(n);
      ready.count_down();
      go.wait();
      for (size_t i = 0; i < n; ++i) per[t].push_back(d.RunTrue(c));
    });
  }
  ready.wait();
  auto t0 = Clock::now();
  go.count_down();
  for (auto& t : ts) t.join();
  auto t1 = Clock::now();
  Load l;
  l.wall_s = MsSince(t0, t1) / 1000.0;
  for (auto& v : per) l.ms.insert(l.ms.end(), v.begin(), v.end());
  return l;
}

std::string Fmt(const json& j, const char* key, int prec = 2) {
  if (!j.contains(key) || !j[key].is_number()) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, j[key].get<double>());
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = ParseArgs(argc, argv);
  wb::daemon::PoolClient client(a.socket);
  Daemon d(a);
  DaemonLog log(a.daemon_log);
  d.ResolveImage(client);

  // Size: the settled idle count, unless given.
  auto s0 = d.Settle(client, a.size);
  if (a.size == 0) {
    // Stable for a moment: nothing is still coming.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    s0 = d.Settle(client, 0);
    a.size = s0.idle;
  }
  Note("image " + d.image() + ", size " + std::to_string(a.size) + ", max " +
       std::to_string(s0.max));
  if (*std::max_element(a.concurrency.begin(), a.concurrency.end()) > s0.max) {
    Note("note: a concurrency level exceeds the daemon's --max (" + std::to_string(s0.max) +
         "): runs beyond it queue");
  }

  json out;
  {
    utsname u{};
    ::uname(&u);
    out["host"] = {{"nproc", ::sysconf(_SC_NPROCESSORS_ONLN)}, {"kernel", u.release}};
  }
  out["socket"] = a.socket;
  out["image"] = d.image();
  out["size"] = a.size;
  out["max"] = s0.max;
  out["runs"] = a.runs;
  out["warmup"] = a.warmup;
  out["percentiles"] = "linear interpolation between closest ranks";

  // --- d. bare fork+exec, first: no threads exist yet.
  Note("bare posix_spawn+waitpid of /bin/true x" + std::to_string(a.runs));
  out["bare_spawn"] = BareSpawn(a.runs, a.warmup);

  // --- a. sequential in-process latency.
  Note("warm-up: " + std::to_string(a.warmup) + " runs");
  for (size_t i = 0; i < a.warmup; ++i) (void)d.RunTrue(client);
  {
    auto before = d.Settle(client, a.size);
    uint64_t off = log.Offset();
    Note("sequential: " + std::to_string(a.runs) + " runs of /bin/true");
    std::vector<double> ms;
    ms.reserve(a.runs);
    for (size_t i = 0; i < a.runs; ++i) ms.push_back(d.RunTrue(client));
    auto after = d.Settle(client, a.size);
    json j = Summary(ms);
    j["pool"] = Delta(before, after);
    if (log.enabled()) j["daemon"] = DaemonLog::RunSplit(log.Lines(off, log.Offset()));
    out["sequential"] = j;
  }

  // --- a'. the same, streamed (what the CLI does): the CLI's extra cost
  // beyond this is its own process start.
  {
    auto before = d.Settle(client, a.size);
    uint64_t off = log.Offset();
    Note("sequential, streamed: " + std::to_string(a.runs) + " runs of /bin/true");
    std::vector<double> ms;
    ms.reserve(a.runs);
    for (size_t i = 0; i < a.runs; ++i) ms.push_back(d.RunTrue(client, /*stream=*/true));
    auto after = d.Settle(client, a.size);
    json j = Summary(ms);
    j["pool"] = Delta(before, after);
    if (log.enabled()) j["daemon"] = DaemonLog::RunSplit(log.Lines(off, log.Offset()));
    out["sequential_streamed"] = j;
  }

  // --- b. throughput per concurrency level.
  out["throughput"] = json::array();
  for (size_t c : a.concurrency) {
    auto before = d.Settle(client, a.size);
    uint64_t off = log.Offset();
    Note("throughput: " + std::to_string(a.per_level) + " runs over " + std::to_string(c) +
         " thread(s)");
    Load l = RunLoad(d, a.socket, c, a.per_level);
    auto after_load = d.Stat(client);
    auto after = d.Settle(client, a.size);
    json j = Summary(l.ms);
    j["concurrency"] = c;
    j["wall_s"] = l.wall_s;
    j["runs_per_s"] = static_cast<double>(l.ms.size()) / l.wall_s;
    j["pool"] = Delta(before, after);
    j["idle_at_end"] = after_load.idle;
    if (log.enabled()) j["daemon"] = DaemonLog::RunSplit(log.Lines(off, log.Offset()));
    out["throughput"].push_back(j);
  }

  // --- c. refill after a burst of `size` concurrent runs.
  {
    json rounds = json::array();
    std::vector<double> client_ms, daemon_ms, burst_ms, create_ms, span_ms;
    for (size_t r = 0; r < a.refill_rounds; ++r) {
      auto before = d.Settle(client, a.size);
      // Let the settled pool sit briefly so no creation overlaps the burst.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      uint64_t off = log.Offset();
      double tod_start = TimeOfDay();
      Load l = RunLoad(d, a.socket, a.size, a.size);
      auto burst_end = Clock::now();
      double tod_end = TimeOfDay();
      // Poll every 1 ms until idle is back at size.
      size_t polls = 0, min_idle = SIZE_MAX;
      double restored = NAN;
      auto next = burst_end;
      auto deadline = burst_end + std::chrono::duration<double>(a.settle_timeout_s);
      for (;;) {
        auto s = d.Stat(client);
        ++polls;
        min_idle = std::min<size_t>(min_idle, s.idle);
        auto now = Clock::now();
        if (s.idle >= a.size) {
          restored = MsSince(burst_end, now);
          break;
        }
        if (now > deadline) Die("refill: idle did not return to " + std::to_string(a.size));
        next += std::chrono::milliseconds(1);
        if (next > now) std::this_thread::sleep_until(next);
      }
      auto after = d.Settle(client, a.size);
      json j;
      j["burst_runs"] = a.size;
      j["burst_ms"] = l.wall_s * 1000.0;
      j["refill_after_burst_ms"] = restored;
      j["status_polls"] = polls;
      j["min_idle_seen_after_burst"] = min_idle;
      j["pool"] = Delta(before, after);
      client_ms.push_back(restored);
      burst_ms.push_back(l.wall_s * 1000.0);
      if (log.enabled()) {
        auto lines = log.Lines(off, log.Offset());
        auto made = DaemonLog::Creations(lines);
        if (!made.empty()) {
          double first_start = INFINITY, last_ready = -INFINITY;
          std::vector<double> cm;
          for (const auto& [id, se] : made) {
            first_start = std::min(first_start, se.first);
            last_ready = std::max(last_ready, se.second);
            cm.push_back((se.second - se.first) * 1000.0);
            create_ms.push_back((se.second - se.first) * 1000.0);
          }
          json dj;
          dj["sandboxes_created"] = made.size();
          dj["create_ms"] = Summary(cm);
          dj["first_create_after_burst_start_ms"] = (first_start - tod_start) * 1000.0;
          dj["refill_span_ms"] = (last_ready - first_start) * 1000.0;
          dj["last_ready_after_burst_end_ms"] = (last_ready - tod_end) * 1000.0;
          daemon_ms.push_back((last_ready - tod_end) * 1000.0);
          span_ms.push_back((last_ready - first_start) * 1000.0);
          j["daemon"] = dj;
        }
        j["daemon_runs"] = DaemonLog::RunSplit(lines);
      }
      rounds.push_back(j);
    }
    json rj;
    rj["rounds"] = rounds;
    rj["refill_after_burst_ms"] = Summary(client_ms);
    rj["burst_ms"] = Summary(burst_ms);
    rj["poll_interval_ms"] = 1;
    if (!daemon_ms.empty()) {
      rj["daemon_last_ready_after_burst_end_ms"] = Summary(daemon_ms);
      rj["daemon_refill_span_ms"] = Summary(span_ms);
      rj["daemon_create_ms"] = Summary(create_ms);
    }
    out["refill"] = rj;
  }

  auto final_stat = d.Stat(client);
  out["final_status"] = {{"idle", final_stat.idle},
                         {"total_created", final_stat.total_created},
                         {"total_acquired", final_stat.total_acquired},
                         {"hits", final_stat.hits},
                         {"misses", final_stat.misses},
                         {"failed_creations", final_stat.failed_creations},
                         {"peak_active", final_stat.peak_active}};
  const json& bare = out["bare_spawn"];
  const json& seq = out["sequential"];
  out["ratios"] = {
      {"inprocess_p50_over_bare_p50", seq["p50_ms"].get<double>() / bare["p50_ms"].get<double>()}};

  // --- report
  std::printf("\n### pool_bench (image %s, size %zu, max %llu, %ld cpus)\n\n", d.image().c_str(),
              a.size, static_cast<unsigned long long>(s0.max), ::sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("| measurement | runs | p50 ms | p90 ms | p99 ms | runs/s | warm/cold |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---|\n");
  auto hc = [](const json& j) {
    if (!j.contains("pool")) return std::string("-");
    return std::to_string(j["pool"]["hits"].get<uint64_t>()) + "/" +
           std::to_string(j["pool"]["misses"].get<uint64_t>());
  };
  std::printf("| bare posix_spawn+waitpid /bin/true | %zu | %s | %s | %s | - | - |\n", a.runs,
              Fmt(bare, "p50_ms", 3).c_str(), Fmt(bare, "p90_ms", 3).c_str(),
              Fmt(bare, "p99_ms", 3).c_str());
  std::printf(
      "| in-process PoolClient::Run /bin/true, sequential | %zu | %s | %s | %s | %.0f | %s |\n",
      a.runs, Fmt(seq, "p50_ms", 3).c_str(), Fmt(seq, "p90_ms", 3).c_str(),
      Fmt(seq, "p99_ms", 3).c_str(), 1000.0 / seq["mean_ms"].get<double>(), hc(seq).c_str());
  const json& sst = out["sequential_streamed"];
  std::printf(
      "| in-process, sequential, streamed (as the CLI) | %zu | %s | %s | %s | %.0f | %s |\n",
      a.runs, Fmt(sst, "p50_ms", 3).c_str(), Fmt(sst, "p90_ms", 3).c_str(),
      Fmt(sst, "p99_ms", 3).c_str(), 1000.0 / sst["mean_ms"].get<double>(), hc(sst).c_str());
  for (const auto& j : out["throughput"]) {
    std::printf("| concurrency %zu (%zu runs) | %zu | %s | %s | %s | %.0f | %s |\n",
                j["concurrency"].get<size_t>(), a.per_level, j["n"].get<size_t>(),
                Fmt(j, "p50_ms", 3).c_str(), Fmt(j, "p90_ms", 3).c_str(),
                Fmt(j, "p99_ms", 3).c_str(), j["runs_per_s"].get<double>(), hc(j).c_str());
  }
  const json& rf = out["refill"];
  std::printf("\n| refill after a burst of %zu runs (%zu rounds) | p50 ms | min ms | max ms |\n",
              a.size, a.refill_rounds);
  std::printf("|---|---:|---:|---:|\n");
  auto row3 = [](const char* name, const json& j) {
    std::printf("| %s | %s | %s | %s |\n", name, Fmt(j, "p50_ms").c_str(), Fmt(j, "min_ms").c_str(),
                Fmt(j, "max_ms").c_str());
  };
  row3("burst duration (client)", rf["burst_ms"]);
  row3("burst end -> status shows idle = size (client, 1 ms polls)", rf["refill_after_burst_ms"]);
  if (rf.contains("daemon_last_ready_after_burst_end_ms")) {
    row3("burst end -> last replacement ready (daemon log)",
         rf["daemon_last_ready_after_burst_end_ms"]);
    row3("first replacement started -> last ready (daemon log)", rf["daemon_refill_span_ms"]);
    row3("one sandbox creation, 'dir ready' -> 'ready' (daemon log)", rf["daemon_create_ms"]);
  }
  if (seq.contains("daemon") && seq["daemon"].contains("total_ms")) {
    std::printf(
        "\n| daemon's split of the runs (log) | queue p50 | acquire p50 | exec p50 | sum p50 | p99 "
        "sum |\n");
    std::printf("|---|---:|---:|---:|---:|---:|\n");
    auto split = [](const std::string& name, const json& dj) {
      if (!dj.contains("total_ms")) return;
      std::printf("| %s | %s | %s | %s | %s | %s |\n", name.c_str(),
                  Fmt(dj["queue_ms"], "p50_ms").c_str(), Fmt(dj["acquire_ms"], "p50_ms").c_str(),
                  Fmt(dj["exec_ms"], "p50_ms").c_str(), Fmt(dj["total_ms"], "p50_ms").c_str(),
                  Fmt(dj["total_ms"], "p99_ms").c_str());
    };
    split("sequential", seq["daemon"]);
    if (sst.contains("daemon")) split("sequential, streamed", sst["daemon"]);
    for (const auto& j : out["throughput"]) {
      if (j.contains("daemon"))
        split("concurrency " + std::to_string(j["concurrency"].get<size_t>()), j["daemon"]);
    }
  }
  std::printf("\nin-process p50 / bare fork+exec p50 = %.2fx\n",
              out["ratios"]["inprocess_p50_over_bare_p50"].get<double>());

  if (!a.out.empty()) {
    std::ofstream f(a.out);
    f << out.dump(2) << "\n";
    if (!f) Die("cannot write " + a.out);
    Note("wrote " + a.out);
  }
  return 0;
}
