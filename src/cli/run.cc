// warmbox run: the cold path. Create a sandbox, run one command, destroy it.
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cmath>

#include "base/fd.h"
#include "base/log.h"
#include "base/strings.h"
#include "cli/verbs.h"
#include "image/store.h"
#include "sandbox/net/net_plan.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/run_policy.h"

namespace wb::cli {
namespace {

struct RunOptions {
  std::string image = kDefaultImage;
  std::string timeout, memory, disk, output_cap, pids, cpus, nofile;
  std::vector<std::string> security_opts;
  std::vector<std::string> env;
  std::string workdir, user;
  std::vector<std::string> cmd;
  DriverChoice driver;
  NetworkChoice network;
};

Result<int> DoRun(const GlobalOptions& g, const RunOptions& o) {
  // An empty command is fine when the image has a Cmd or Entrypoint
  // (checked below by the run policy, before a sandbox is made).
  SandboxSpec spec;
  spec.image = o.image;
  proto::ExecRequest req;
  req.argv = o.cmd;
  req.cwd = o.workdir;
  req.user = o.user;
  for (const auto& kv : o.env) {
    if (kv.empty() || kv.front() == '=') return Fail("-e", kv, "expected KEY=VALUE");
    if (kv.find('=') == std::string::npos) {
      // Docker's "-e KEY": pass the host's value through if it has one.
      const char* v = std::getenv(kv.c_str());
      if (v) req.env.push_back(kv + "=" + v);
      continue;
    }
    req.env.push_back(kv);
  }
  if (!o.timeout.empty()) {
    double s = WB_TRY(ParseSeconds(o.timeout, "--timeout"));
    req.timeout_ms = static_cast<uint64_t>(std::ceil(s * 1000));
  }
  if (!o.memory.empty()) spec.limits.memory_bytes = WB_TRY(ParseSize(o.memory, "--memory"));
  if (!o.disk.empty()) spec.limits.disk_bytes = WB_TRY(ParseSize(o.disk, "--disk"));
  if (!o.output_cap.empty()) req.output_cap = WB_TRY(ParseSize(o.output_cap, "--output-cap"));
  if (!o.pids.empty()) {
    spec.limits.pids = WB_TRY(ParseUint(o.pids, "--pids"));
    if (spec.limits.pids == 0) return Fail("--pids", o.pids, "must be at least 1");
  }
  if (!o.cpus.empty()) spec.limits.cpus = WB_TRY(ParseCpus(o.cpus, "--cpus"));
  spec.security = WB_TRY(ParseSecurityOptions(o.security_opts, o.nofile));
  spec.network = WB_TRY(ParseNetworkChoice(o.network));
  WB_RETURN_IF_ERROR(CheckNetworkSupported(spec.network));
  if (spec.limits.memory_bytes < (4u << 20))
    return Fail("--memory", o.memory, "must be at least 4m");
  if (spec.limits.disk_bytes < (1u << 20)) return Fail("--disk", o.disk, "must be at least 1m");

  // Ctrl-C, SIGTERM and SIGHUP end the run through the exec loop, so the
  // sandbox is destroyed and nothing is left behind.
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&sigs, s);
  if (::sigprocmask(SIG_BLOCK, &sigs, nullptr) != 0) return Errno("sigprocmask", "");
  UniqueFd sigfd(::signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd) return Errno("signalfd", "");

  ImageStore store(g.state_dir, g.uid_base);
  if (o.cmd.empty()) {
    // The run policy's refusal (Sandbox::Exec applies it too), before a
    // sandbox is made for nothing.
    Image img = WB_TRY(store.Get(o.image));
    WB_RETURN_IF_ERROR(PrepareExec(img, req));
  }
  spdlog::debug("run: start");
  auto driver = WB_TRY(OpenDriver(g, o.driver, &store));
  spdlog::debug("run: driver open");
  auto sandbox = WB_TRY(driver->Create(spec));

  ExecIo io;
  io.cancel_fd = sigfd.get();
  if (!::isatty(0)) io.stdin_fd = 0;
  bool stdout_ok = true, stderr_ok = true;
  io.on_stdout = [&](std::string_view d) { stdout_ok = stdout_ok && WriteAll(1, d).ok(); };
  io.on_stderr = [&](std::string_view d) { stderr_ok = stderr_ok && WriteAll(2, d).ok(); };
  auto outcome = sandbox->Exec(req, io);
  spdlog::debug("run: command done");
  auto destroyed = sandbox->Destroy();
  if (!outcome.ok()) {
    signalfd_siginfo si;
    if (::read(sigfd.get(), &si, sizeof si) == sizeof si) {
      return 128 + static_cast<int>(si.ssi_signo);  // interrupted: the shell's convention
    }
    return outcome.error();
  }
  if (!destroyed.ok())
    spdlog::warn("sandbox {} teardown: {}", sandbox->id(), destroyed.error().ToString());
  const auto& x = outcome->exit;
  if (x.oom_killed) {
    std::fprintf(stderr, "warmbox: the command ran out of memory (limit %llu MiB) and was killed\n",
                 static_cast<unsigned long long>(spec.limits.memory_bytes >> 20));
  }
  if (x.stdout_truncated || x.stderr_truncated) {
    std::fprintf(
        stderr, "warmbox: %s%s%s truncated at %llu bytes (--output-cap)\n",
        x.stdout_truncated ? "stdout" : "", x.stdout_truncated && x.stderr_truncated ? " and " : "",
        x.stderr_truncated ? "stderr" : "", static_cast<unsigned long long>(req.output_cap));
  }
  return x.exit_code;
}

}  // namespace

Action AddRun(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* sub = app.add_subcommand("run", "run one command in a fresh sandbox (cold path)");
  sub->add_option("--image", o->image, "image name (default: busybox)");
  sub->add_option("--timeout", o->timeout, "kill the command after this many seconds (exit 137)");
  sub->add_option("-e,--env", o->env, "set an environment variable KEY=VALUE (repeatable)")
      ->allow_extra_args(false);
  sub->add_option("-w,--workdir", o->workdir, "working directory inside the sandbox");
  sub->add_option("-u,--user", o->user, "user[:group] inside the sandbox (name or id)");
  sub->add_option("--memory", o->memory, "memory limit, e.g. 256m (default 512m)");
  sub->add_option("--pids", o->pids, "maximum number of processes (default 1024)");
  sub->add_option("--cpus", o->cpus, "CPU quota in cores, e.g. 0.5 (default: unlimited)");
  sub->add_option("--disk", o->disk, "writable layer size, e.g. 256m (default 1g)");
  sub->add_option("--output-cap", o->output_cap, "cap per output stream (default 16m)");
  sub->add_option("--nofile", o->nofile, "open-file limit of the command (default 1024)");
  sub->add_option("--security-opt", o->security_opts, "seccomp=default|unconfined|PROFILE.json")
      ->allow_extra_args(false);
  AddDriverOptions(sub, o->driver);
  AddNetworkOptions(sub, o->network);
  sub->add_option("cmd", o->cmd, "command and arguments (after --)");
  return [o](const GlobalOptions& g) {
    auto r = DoRun(g, *o);
    if (!r.ok()) return ReportError(r.error());
    return *r;
  };
}

}  // namespace wb::cli
