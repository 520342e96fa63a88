// uid_slots_bench: the cost of a uid range per sandbox (issue 19, finding 5).
// Creates ns sandboxes in both modes of one binary, interleaved so they share
// the same conditions: "shared" (--uid-slots 0: every sandbox on the store's
// range, the userns owned by host root, as before) and "slots" (the default:
// its own range, a userns owned by the slot, idmapped layer mounts). Times
// NsDriver::Create alone (until the agent answers); Destroy is not timed.
//
// Usage (root): uid_slots_bench [--runs N] [--warmup N] [--uid-base B]
//   --uid-base defaults to uid_slots_root_test's range (tests/uid_ranges.h):
//   run it under the root-tests lock, never beside that test.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/fs.h"
#include "image/store.h"
#include "sandbox/cgroup.h"
#include "sandbox/ns/ns_driver.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "uid_slots_bench: error: %s\n", msg.c_str());
  std::exit(1);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  double pos = p * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 100, warmup = 5;
  uint32_t base = 1790000000;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) Die("missing value for " + a);
    if (a == "--runs") {
      runs = std::atoi(argv[++i]);
    } else if (a == "--warmup") {
      warmup = std::atoi(argv[++i]);
    } else if (a == "--uid-base") {
      base = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else {
      Die("unknown argument " + a);
    }
  }
  if (runs < 2 || warmup < 0) Die("--runs must be >= 2 and --warmup >= 0");
  if (::geteuid() != 0) Die("must run as root");
  auto self = wb::SelfDir();
  if (!self.ok()) Die(self.error().ToString());
  char tmpl[] = "/tmp/wb-uid-slots-bench.XXXXXX";
  if (!::mkdtemp(tmpl)) Die("mkdtemp");
  const std::string state = tmpl;
  if (::chmod(state.c_str(), 0711) != 0) Die("chmod " + state);
  wb::ImageStore store(state, base);
  const std::string cgroup_parent = "/warmbox-uid-slots-bench-" + std::to_string(::getpid());
  auto open = [&](uint32_t slots) {
    wb::NsDriverOptions o;
    o.state_dir = state;
    o.agent_path = *self + "/warmbox-agent";
    o.uid_base = base;
    o.uid_slots = slots;
    o.cgroup_parent = cgroup_parent;
    auto d = wb::NsDriver::Open(o, &store);
    if (!d.ok()) Die(d.error().ToString());
    return std::move(*d);
  };
  auto shared = open(0);
  auto slots = open(wb::kDefaultUidSlots);
  std::vector<double> t_shared, t_slots;
  auto once = [&](wb::NsDriver& d, std::vector<double>* out) {
    auto t0 = Clock::now();
    auto sb = d.Create(wb::SandboxSpec{});
    auto t1 = Clock::now();
    if (!sb.ok()) Die(sb.error().ToString());
    if (out) out->push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    if (auto r = (*sb)->Destroy(); !r.ok()) Die(r.error().ToString());
  };
  for (int i = 0; i < warmup; ++i) {
    once(*shared, nullptr);
    once(*slots, nullptr);
  }
  for (int i = 0; i < runs; ++i) {
    // Alternate which goes first so neither always follows the other.
    if (i % 2) {
      once(*shared, &t_shared);
      once(*slots, &t_slots);
    } else {
      once(*slots, &t_slots);
      once(*shared, &t_shared);
    }
  }
  shared.reset();
  slots.reset();
  (void)wb::RemoveTree(state);
  if (auto layout = wb::HostCgroupLayout(); layout.ok()) {
    for (const auto& p : wb::PlanSandboxCgroup(*layout, "x", wb::Limits{}, cgroup_parent).parents) {
      ::rmdir(p.c_str());
    }
  }
  std::printf("create (ms), %d runs each, interleaved\n", runs);
  std::printf("%-8s %8s %8s %8s\n", "mode", "median", "p90", "mean");
  for (auto& [name, v] : {std::pair<const char*, std::vector<double>&>{"shared", t_shared},
                          std::pair<const char*, std::vector<double>&>{"slots", t_slots}}) {
    double mean = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    std::printf("%-8s %8.3f %8.3f %8.3f\n", name, Percentile(v, 0.5), Percentile(v, 0.9), mean);
  }
  std::printf("ratio slots/shared (median): %.3f\n",
              Percentile(t_slots, 0.5) / Percentile(t_shared, 0.5));
  return 0;
}
