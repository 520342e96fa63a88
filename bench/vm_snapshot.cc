// Snapshot-template figures, all in one run (TCG on this machine):
// cold boot to agent-ready, clone to agent-ready (p50/p99), PSS per clone
// with CLONES up, refill rate. Usage: vm_snapshot STATE_DIR AGENT [COLD] [CLONES]
// (run as root; bench/vm_snapshot.sh wraps it).
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/strings.h"
#include "sandbox/vm/vm_driver.h"

using namespace wb;
using Clock = std::chrono::steady_clock;

static double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
static double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}
static uint64_t PssKb(pid_t pid) {
  auto t = ReadFile("/proc/" + std::to_string(pid) + "/smaps_rollup");
  if (!t.ok()) return 0;
  for (const auto& l : Split(*t, '\n')) {
    if (StartsWith(l, "Pss:")) {
      auto v = ParseUint(std::string(Trim(l.substr(4, l.size() - 4 - 3))), "pss");
      return v.ok() ? *v : 0;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s STATE_DIR AGENT [COLD=3] [CLONES=20]\n", argv[0]);
    return 2;
  }
  const int cold = argc > 3 ? std::atoi(argv[3]) : 3, clones = argc > 4 ? std::atoi(argv[4]) : 20;
  // The driver's per-phase debug lines ("vm clone ...: ready in") go to
  // stderr; bench/vm_snapshot.sh takes the clone figures from them.
  spdlog::set_default_logger(spdlog::stderr_logger_mt("bench"));
  spdlog::set_level(spdlog::level::debug);
  ImageStore store(argv[1], 1520000000);
  vm::VmDriverOptions o;
  o.state_dir = argv[1];
  o.agent_path = argv[2];
  auto cold_drv = vm::VmDriver::Open(o, &store);
  if (!cold_drv.ok()) return std::fprintf(stderr, "%s\n", cold_drv.error().ToString().c_str()), 1;
  o.snapshot = true;
  auto snap = vm::VmDriver::Open(o, &store);
  if (!snap.ok()) return std::fprintf(stderr, "%s\n", snap.error().ToString().c_str()), 1;
  SandboxSpec spec;
  spec.limits.memory_bytes = 256u << 20;
  { auto w = (*cold_drv)->Create(spec); }  // disks and initrd built once
  std::vector<double> cold_ms, clone_ms;
  for (int i = 0; i < cold; ++i) {
    auto t0 = Clock::now();
    auto s = (*cold_drv)->Create(spec);
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.error().ToString().c_str()), 1;
    cold_ms.push_back(Ms(t0, Clock::now()));
  }
  auto tb = Clock::now();
  {
    auto first = (*snap)->Create(spec);
    if (!first.ok()) return 1;
  }  // builds the template
  double build_ms = Ms(tb, Clock::now());
  std::vector<std::unique_ptr<Sandbox>> up;
  auto tr = Clock::now();
  for (int i = 0; i < clones; ++i) {
    auto t0 = Clock::now();
    auto s = (*snap)->Create(spec);
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.error().ToString().c_str()), 1;
    clone_ms.push_back(Ms(t0, Clock::now()));
    up.push_back(std::move(*s));
  }
  double refill = clones / (Ms(tr, Clock::now()) / 1000.0);
  // PSS with 10 clones up (the first 10 stay, the rest go).
  while (up.size() > 10) up.pop_back();
  uint64_t pss = 0;
  for (auto& s : up)
    pss += PssKb(s->endpoint().liveness_fd >= 0 ? [&] {
    auto st = ReadFile("/proc/self/fdinfo/" + std::to_string(s->endpoint().liveness_fd));
    if (!st.ok()) return pid_t{0};
    for (const auto& l : Split(*st, '\n'))
      if (StartsWith(l, "Pid:")) return static_cast<pid_t>(std::atoi(l.c_str() + 4));
    return pid_t{0};
  }() : 0);
  auto ts = (*snap)->template_status();
  std::printf("| figure | value |\n|---|---|\n");
  std::printf("| cold boot to agent-ready (incl. warm-up), p50 of %d | %.0f ms |\n", cold,
              Pct(cold_ms, 0.5));
  std::printf("| template build (boot + save) | %.0f ms |\n", build_ms);
  std::printf("| clone Create() incl. starting the next QEMU, p50 / p99 of %d | %.0f / %.0f ms |\n",
              clones, Pct(clone_ms, 0.5), Pct(clone_ms, 0.99));
  std::printf("| clone Create() p50 / cold p50 | %.1f %% |\n",
              100.0 * Pct(clone_ms, 0.5) / Pct(cold_ms, 0.5));
  std::printf("| refill rate (sequential clones) | %.2f clones/s |\n", refill);
  std::printf("| PSS per clone QEMU, %zu clones up | %.1f MB |\n", up.size(),
              pss / 1024.0 / static_cast<double>(up.size()));
  std::printf("| template state | %s, %llu clones, %d failures |\n",
              wb::vm::TemplateStateName(ts.state), static_cast<unsigned long long>(ts.clones),
              ts.failures);
  return 0;
}
