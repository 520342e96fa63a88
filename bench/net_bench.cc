// net_bench: what --network egress costs (issue 17; docs/network.md,
// "Figures"). Traffic goes only inside namespaces this bench makes
// (tests/net_internet.h: it moves itself into its own network namespace D,
// "the host", linked to I, "the internet", by a veth pair).
//
//  - throughput: a download of --bytes (default 1 GiB) from I's HTTP server,
//    by the same busybox nc, directly from D and from a sandbox with
//    --network egress (through slirp4netns and the policy's rules);
//  - connection setup: --conns sequential HTTP/1.0 requests to I (a
//    connection each, nc started each time), both ways: time per connection;
//  - creation: NsDriver::Create with --network none and egress, interleaved
//    (--runs each); Destroy is not timed.
//
// Usage (root): net_bench [--bytes N] [--conns N] [--runs N] [--uid-base B]
//   --uid-base defaults to net_test's range (tests/uid_ranges.h: its ids
//   above the slots are the network helpers' groups): run it under the
//   root-tests lock, never beside that test.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/strings.h"
#include "image/store.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"
#include "tests/net_internet.h"
#include "tests/test_util.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "net_bench: error: %s\n", msg.c_str());
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string LoadAvg() {
  auto r = wb::ReadFile("/proc/loadavg");
  return r.ok() ? std::string(wb::Trim(*r)) : "?";
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t bytes = 1ull << 30;
  int conns = 50, runs = 40;
  uint32_t base = 1810000000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) Die("missing value for " + a);
    if (a == "--bytes") {
      bytes = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--conns") {
      conns = std::atoi(argv[++i]);
    } else if (a == "--runs") {
      runs = std::atoi(argv[++i]);
    } else if (a == "--uid-base") {
      base = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else {
      Die("unknown argument " + a);
    }
  }
  if (bytes == 0 || conns < 1 || runs < 1) Die("--bytes, --conns and --runs must be positive");
  if (::geteuid() != 0) Die("must run as root");
  for (const char* tool :
       {"/usr/bin/slirp4netns", "/usr/sbin/nft", "/usr/sbin/dnsmasq", "/bin/busybox"}) {
    if (!wb::PathExists(tool)) Die(std::string(tool) + " missing: run scripts/setup");
  }
  auto self = wb::SelfDir();
  if (!self.ok()) Die(self.error().ToString());
  char tmpl[] = "/tmp/wb-net-bench.XXXXXX";
  if (!::mkdtemp(tmpl)) Die("mkdtemp");
  const std::string state = tmpl;
  if (::chmod(state.c_str(), 0711) != 0) Die("chmod " + state);
  const std::string load_start = LoadAvg();
  auto internet = wb::testing::TestInternet::Start(state);
  if (!internet.ok()) Die(internet.error().ToString());

  wb::ImageStore store(state, base);
  const std::string cgroup_parent = "/warmbox-net-bench-" + std::to_string(::getpid());
  wb::NsDriverOptions o;
  o.state_dir = state;
  o.agent_path = *self + "/warmbox-agent";
  o.uid_base = base;
  o.cgroup_parent = cgroup_parent;
  o.net.table = "warmbox_bench";
  o.net.dns_upstreams = {"198.51.100.53"};
  auto driver = wb::NsDriver::Open(o, &store);
  if (!driver.ok()) Die(driver.error().ToString());
  wb::SandboxSpec egress;
  egress.network.mode = wb::NetworkMode::kEgress;
  // The documentation ranges are among the default denies: allow the
  // server explicitly, as a user would allow a CIDR.
  egress.network.allow_out = {"198.51.100.10/32"};

  // The same scripts both ways (busybox sh and nc in the sandbox, busybox
  // sh and nc on the host).
  const std::string download = "printf 'GET /bytes/" + std::to_string(bytes) +
                               " HTTP/1.0\\r\\n\\r\\n' | nc 198.51.100.10 8080 | wc -c";
  const std::string requests = "i=0; while [ $i -lt " + std::to_string(conns) +
                               " ]; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 198.51.100.10 80 "
                               ">/dev/null || exit 1; i=$((i+1)); done";
  auto on_host = [&](const std::string& script) {
    auto t0 = Clock::now();
    auto r = wb::testing::RunProcess({"/bin/busybox", "sh", "-c", script},
                                     {"PATH=/usr/local/bin:/usr/bin:/bin"});
    double s = Seconds(t0);
    if (r.code != 0) Die("on the host: " + script + ": " + r.err);
    return std::make_pair(s, r.out);
  };
  auto sb = (*driver)->Create(egress);
  if (!sb.ok()) Die(sb.error().ToString());
  auto in_sandbox = [&](const std::string& script) {
    wb::proto::ExecRequest req;
    req.argv = {"sh", "-c", script};
    req.timeout_ms = 600000;
    wb::ExecIo io;
    auto t0 = Clock::now();
    auto r = (*sb)->Exec(req, io);
    double s = Seconds(t0);
    if (!r.ok()) Die(r.error().ToString());
    if (r->exit.exit_code != 0) Die("in the sandbox: " + script + ": " + r->stderr_data);
    return std::make_pair(s, r->stdout_data);
  };
  const uint64_t expect = bytes +
                          std::string("HTTP/1.0 200 OK\r\nContent-Length: \r\n\r\n").size() +
                          std::to_string(bytes).size();
  std::vector<double> mb_direct, mb_egress;
  for (int i = 0; i < 3; ++i) {
    auto d = on_host(download);
    auto e = in_sandbox(download);
    for (auto* got : {&d.second, &e.second}) {
      if (std::strtoull(got->c_str(), nullptr, 10) != expect)
        Die("download: got " + *got + " bytes, expected " + std::to_string(expect));
    }
    mb_direct.push_back(static_cast<double>(bytes) / (1 << 20) / d.first);
    mb_egress.push_back(static_cast<double>(bytes) / (1 << 20) / e.first);
  }
  auto lat_direct = on_host(requests).first * 1000 / conns;
  auto lat_egress = in_sandbox(requests).first * 1000 / conns;
  if (auto r = (*sb)->Destroy(); !r.ok()) Die(r.error().ToString());
  sb->reset();

  std::vector<double> t_none, t_egress;
  auto once = [&](const wb::SandboxSpec& spec, std::vector<double>* out) {
    auto t0 = Clock::now();
    auto s = (*driver)->Create(spec);
    double ms = Seconds(t0) * 1000;
    if (!s.ok()) Die(s.error().ToString());
    if (out) out->push_back(ms);
    if (auto r = (*s)->Destroy(); !r.ok()) Die(r.error().ToString());
  };
  once(wb::SandboxSpec{}, nullptr);  // warm-up
  once(egress, nullptr);
  for (int i = 0; i < runs; ++i) {
    if (i % 2) {
      once(wb::SandboxSpec{}, &t_none);
      once(egress, &t_egress);
    } else {
      once(egress, &t_egress);
      once(wb::SandboxSpec{}, &t_none);
    }
  }
  driver->reset();
  internet->reset();
  (void)wb::RemoveTree(state);
  if (auto layout = wb::HostCgroupLayout(); layout.ok()) {
    for (const auto& p : wb::PlanSandboxCgroup(*layout, "x", wb::Limits{}, cgroup_parent).parents) {
      ::rmdir(p.c_str());
    }
  }
  const double td = Median(mb_direct), te = Median(mb_egress);
  const double cn = Median(t_none), ce = Median(t_egress);
  std::printf("net_bench (load average at start: %s; at end: %s)\n", load_start.c_str(),
              LoadAvg().c_str());
  std::printf(
      "download of %llu bytes, MiB/s (median of 3): direct %.1f, egress %.1f, "
      "egress/direct %.2f (target >= 0.50)\n",
      static_cast<unsigned long long>(bytes), td, te, te / td);
  std::printf(
      "connection + HTTP/1.0 request, ms each (%d sequential, nc each): direct %.2f, "
      "egress %.2f, egress/direct %.2f\n",
      conns, lat_direct, lat_egress, lat_egress / lat_direct);
  std::printf(
      "create, ms (median of %d, interleaved): none %.1f, egress %.1f, egress/none "
      "%.2f (target <= 2)\n",
      runs, cn, ce, ce / cn);
  return 0;
}
