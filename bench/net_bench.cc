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
//  - creation: NsDriver::Create with --network none, with egress whose
//    network is made at the create, and with egress whose network was made
//    ahead (a second driver with NsDriverOptions::spare_network, as the
//    daemon's: each Destroy leaves a settled network for the same policy),
//    interleaved (--runs each), each --gap-ms (100) after the last Destroy
//    returned, and back to back; Destroy is not timed;
//  - attach: Sandbox::AttachNetwork on a running sandbox (what a pool's
//    claim with a network does), network made at the attach or ahead.
//
// Usage (root): net_bench [--bytes N] [--conns N] [--runs N] [--gap-ms N] [--uid-base B]
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
#include "sandbox/ns/uid_slots.h"
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
  int conns = 50, runs = 40, gap = 100;
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
    } else if (a == "--gap-ms") {
      gap = std::atoi(argv[++i]);
    } else if (a == "--uid-base") {
      base = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else {
      Die("unknown argument " + a);
    }
  }
  if (bytes == 0 || conns < 1 || runs < 1 || gap < 0)
    Die("--bytes, --conns and --runs must be positive, --gap-ms not negative");
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
  // The daemon's kind: its own table and helper groups (above the first's).
  wb::NsDriverOptions ahead_o = o;
  ahead_o.spare_network = true;
  ahead_o.net.table = "warmbox_bench_ahead";
  ahead_o.net_gid_base = wb::SlotBase(base, o.uid_slots + 1) + 4096;
  auto ahead = wb::NsDriver::Open(ahead_o, &store);
  if (!ahead.ok()) Die(ahead.error().ToString());
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

  // Creation. What a create costs the kernel depends on how long ago the
  // previous one moved a process between cgroups (a v1 cgroup.procs write
  // waits for an RCU grace period unless another ran within about one), and
  // an egress Destroy takes longer than a plain one: creates back to back
  // would time the Destroy before them as much as themselves. So each timed
  // create starts --gap-ms after the previous Destroy returned (every one
  // finds the kernel in the same state); back to back is printed too.
  using Series = std::vector<double>;
  auto once = [&](wb::NsDriver& d, const wb::SandboxSpec& spec, Series* out, int gap_ms) {
    auto t0 = Clock::now();
    auto s = d.Create(spec);
    double ms = Seconds(t0) * 1000;
    if (!s.ok()) Die(s.error().ToString());
    if (out) out->push_back(ms);
    if (auto r = (*s)->Destroy(); !r.ok()) Die(r.error().ToString());
    if (gap_ms > 0) ::usleep(static_cast<useconds_t>(gap_ms) * 1000);
  };
  // A pool's claim: a running sandbox without a network gets one.
  auto attach = [&](wb::NsDriver& d, Series* out, int gap_ms) {
    auto s = d.Create(wb::SandboxSpec{});
    if (!s.ok()) Die(s.error().ToString());
    if (gap_ms > 0) ::usleep(static_cast<useconds_t>(gap_ms) * 1000);
    auto t0 = Clock::now();
    if (auto r = (*s)->AttachNetwork(egress.network); !r.ok()) Die(r.error().ToString());
    out->push_back(Seconds(t0) * 1000);
    if (auto r = (*s)->Destroy(); !r.ok()) Die(r.error().ToString());
    if (gap_ms > 0) ::usleep(static_cast<useconds_t>(gap_ms) * 1000);
  };
  once(**driver, wb::SandboxSpec{}, nullptr, gap);  // warm-up
  once(**driver, egress, nullptr, gap);
  once(**ahead, egress, nullptr, gap);  // leaves the first network made ahead
  Series t_none, t_egress, t_ahead, a_at, a_ahead;
  // Rotated, so that none of them always follows the same other.
  for (int i = 0; i < runs; ++i) {
    for (int k = 0; k < 5; ++k) {
      switch ((i + k) % 5) {
        case 0:
          once(**driver, wb::SandboxSpec{}, &t_none, gap);
          break;
        case 1:
          once(**driver, egress, &t_egress, gap);
          break;
        case 2:
          once(**ahead, egress, &t_ahead, gap);
          break;
        case 3:
          attach(**driver, &a_at, gap);
          break;
        default:
          attach(**ahead, &a_ahead, gap);
      }
    }
  }
  // Back to back: runs/2 of one kind in a row, each kind twice.
  Series b_none, b_egress, b_ahead;
  for (int rep = 0; rep < 2; ++rep) {
    for (int k = 0; k < 3; ++k) {
      for (int i = 0; i < std::max(1, runs / 2); ++i) {
        switch ((k + rep) % 3) {
          case 0:
            once(**driver, wb::SandboxSpec{}, &b_none, 0);
            break;
          case 1:
            once(**driver, egress, &b_egress, 0);
            break;
          default:
            once(**ahead, egress, &b_ahead, 0);
        }
      }
    }
  }
  ahead->reset();
  driver->reset();
  internet->reset();
  (void)wb::RemoveTree(state);
  if (auto layout = wb::HostCgroupLayout(); layout.ok()) {
    for (const auto& p : wb::PlanSandboxCgroup(*layout, "x", wb::Limits{}, cgroup_parent).parents) {
      ::rmdir(p.c_str());
    }
  }
  const double td = Median(mb_direct), te = Median(mb_egress);
  const double cn = Median(t_none), ce = Median(t_egress), ca = Median(t_ahead);
  const double bn = Median(b_none), be = Median(b_egress), ba = Median(b_ahead);
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
      "create, ms (median of %d, each %d ms after the last): none %.1f, egress %.1f (network "
      "made at the create, egress/none %.2f), egress %.1f (network made ahead, as the "
      "daemon does, egress/none %.2f; target <= 2)\n",
      runs, gap, cn, ce, ce / cn, ca, ca / cn);
  std::printf(
      "create back to back, ms (median of %zu): none %.1f, egress %.1f (made at the create, "
      "%.2f), egress %.1f (made ahead, %.2f)\n",
      b_none.size(), bn, be, be / bn, ba, ba / bn);
  std::printf(
      "attach to a running sandbox (a pool's claim), ms (median of %d): network made at the "
      "attach %.1f, made ahead %.1f\n",
      runs, Median(a_at), Median(a_ahead));
  return 0;
}
