// warmbox pool start | run | status | stop
#include <grp.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/strings.h"
#include "cli/verbs.h"
#include "daemon/client.h"
#include "daemon/server.h"
#include "pool/warm_spec.h"

namespace wb::cli {
namespace {

struct StartOpts {
  std::string image = kDefaultImage;
  size_t size = 2, max = 8;
  uint64_t ttl = 300;
  std::vector<std::string> warm;
  std::string socket, socket_group;
  DriverChoice driver;
  std::string queue_timeout = "30", memory, pids, cpus, disk, nofile;
  std::vector<std::string> security_opts;
  size_t creation_cap = 0;
  std::string http, http_token_file;
  size_t http_max_connections = 256;
  size_t max_sandboxes = 100;
  uint64_t max_sandbox_timeout = 86400;
  std::string e2b_default_network = "none";
  std::string max_run_memory, max_run_pids, max_run_cpus, max_run_nofile, max_run_output,
      max_run_timeout;
};

// The ceilings on what one run may ask for (daemon/run_ceilings.h). A ceiling
// below the daemon's own default for the field is raised to that default.
Result<daemon::RunCeilings> ParseCeilings(const StartOpts& o, const pool::PoolSettings& p) {
  daemon::RunCeilings c;
  if (!o.max_run_memory.empty())
    c.memory_bytes = WB_TRY(ParseSize(o.max_run_memory, "--max-run-memory"));
  if (!o.max_run_pids.empty()) c.pids = WB_TRY(ParseUint(o.max_run_pids, "--max-run-pids"));
  if (!o.max_run_cpus.empty()) {
    c.cpus = WB_TRY(ParseCpus(o.max_run_cpus, "--max-run-cpus"));
  } else {
    c.cpus = static_cast<double>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  }
  if (!o.max_run_nofile.empty()) c.nofile = WB_TRY(ParseUint(o.max_run_nofile, "--max-run-nofile"));
  if (!o.max_run_output.empty())
    c.output_cap = WB_TRY(ParseSize(o.max_run_output, "--max-run-output"));
  if (!o.max_run_timeout.empty()) {
    double s = WB_TRY(ParseSeconds(o.max_run_timeout, "--max-run-timeout"));
    c.timeout_ms = static_cast<uint64_t>(std::ceil(s * 1000));
  }
  c.memory_bytes = std::max(c.memory_bytes, p.limits.memory_bytes);
  c.pids = std::max(c.pids, p.limits.pids);
  c.cpus = std::max(c.cpus, p.limits.cpus);
  c.nofile = std::max(c.nofile, p.security.nofile);
  return c;
}

Result<int> DoStart(const GlobalOptions& g, const StartOpts& o) {
  const DriverKind kind = WB_TRY(ParseDriverKind(o.driver.driver, "--driver"));
  if (o.size == 0) return Fail("--size", "", "--size must be greater than 0");
  if (o.size > o.max) {
    return Fail("--size", "",
                "--size (" + std::to_string(o.size) + ") cannot exceed --max (" +
                    std::to_string(o.max) + ")");
  }
  daemon::DaemonOptions d;
  d.socket_path = o.socket.empty() ? daemon::DefaultSocketPath() : o.socket;
  d.image_tool_path = g.image_tool_path;
  d.default_image = std::string(Trim(o.image));
  if (!d.default_image.empty()) WB_RETURN_IF_ERROR(ImageStore::ValidateName(d.default_image));
  d.warm = WB_TRY(ParseWarmSpecs(o.warm, o.size));
  for (const auto& w : d.warm) WB_RETURN_IF_ERROR(ImageStore::ValidateName(w.image));
  d.pool.size = o.size;
  d.pool.max = o.max;
  d.pool.ttl_s = o.ttl;
  double qt = WB_TRY(ParseSeconds(o.queue_timeout, "--queue-timeout"));
  d.pool.queue_timeout = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(qt * 1000)));
  if (!o.memory.empty()) d.pool.limits.memory_bytes = WB_TRY(ParseSize(o.memory, "--memory"));
  if (!o.disk.empty()) d.pool.limits.disk_bytes = WB_TRY(ParseSize(o.disk, "--disk"));
  if (!o.pids.empty()) d.pool.limits.pids = WB_TRY(ParseUint(o.pids, "--pids"));
  if (!o.cpus.empty()) d.pool.limits.cpus = WB_TRY(ParseCpus(o.cpus, "--cpus"));
  d.pool.security = WB_TRY(ParseSecurityOptions(o.security_opts, o.nofile));
  d.ceilings = WB_TRY(ParseCeilings(o, d.pool));
  if (d.pool.security.profile_file() && !CapabilitiesOf(kind).seccomp_profile_files) {
    // Refused here rather than by every creation of the pool.
    return Fail(
        ErrorCode::kInvalidArgument, "--security-opt", "seccomp=" + d.pool.security.seccomp,
        std::string("the ") + DriverKindName(kind) + " driver takes default or unconfined only");
  }
  if (!o.socket_group.empty()) {
    // A numeric gid, or a name from /etc/group (read directly: static binary, no NSS).
    auto gid = ParseUint(o.socket_group, "--socket-group");
    if (gid.ok()) {
      d.socket_group = static_cast<gid_t>(*gid);
    } else {
      auto groups = ReadFile("/etc/group");
      if (groups.ok()) {
        for (const auto& line : Split(*groups, '\n')) {
          auto f = Split(line, ':');
          if (f.size() >= 3 && f[0] == o.socket_group) {
            auto v = ParseUint(f[2], "gid");
            if (v.ok()) d.socket_group = static_cast<gid_t>(*v);
          }
        }
      }
      if (!d.socket_group)
        return Fail("--socket-group", o.socket_group, "no such group in /etc/group");
    }
  }
  long ncpu = ::sysconf(_SC_NPROCESSORS_ONLN);
  d.creation_cap = o.creation_cap ? o.creation_cap : static_cast<size_t>(std::max(2L, ncpu));
  d.driver.state_dir = g.state_dir;
  d.driver.agent_path = g.agent_path;
  d.driver.uid_base = g.uid_base;
  d.driver.uid_slots = g.uid_slots;
  d.driver.cgroup_parent = g.cgroup_parent;
  d.http = o.http;
  d.http_token_file = o.http_token_file;
  if (!d.http_token_file.empty() && d.http.empty() && !std::getenv("LISTEN_FDS")) {
    return Fail("--http-token-file", d.http_token_file, "given without --http ADDR:PORT");
  }
  if (o.http_max_connections == 0) {
    return Fail(ErrorCode::kInvalidArgument, "--http-max-connections", "0", "must be at least 1");
  }
  d.http_max_connections = o.http_max_connections;
  d.e2b_default_network = WB_TRY(ParseNetworkMode(o.e2b_default_network, "--e2b-default-network"));
  d.vm_driver = VmOptions(g, o.driver);
  // Claimed (live) VMs must outlive a killed daemon; unclaimed ones a
  // killed daemon leaves are killed by the next start's gc.
  d.vm_driver.outlive_owner = true;
  d.default_driver = o.driver.driver;
  if (o.max_sandbox_timeout == 0)
    return Fail(ErrorCode::kInvalidArgument, "--max-sandbox-timeout", "0", "must be at least 1");
  d.max_sandboxes = o.max_sandboxes;
  d.max_sandbox_timeout_s = o.max_sandbox_timeout;
  return daemon::RunDaemon(d);
}

struct RunOpts {
  std::string socket, image, timeout, workdir, user, memory, pids, cpus, output_cap, nofile, driver;
  std::vector<std::string> env, cmd;
  NetworkChoice network;
};

Result<int> DoRun(const RunOpts& o) {
  if (o.cmd.empty())
    return Fail("pool run", "", "missing command: warmbox pool run [OPTIONS] -- CMD [ARG...]");
  proto::RunRequest r;
  if (!o.image.empty()) r.image = o.image;
  r.cmd = o.cmd;
  r.workdir = o.workdir;
  r.user = o.user;
  for (const auto& kv : o.env) {
    if (kv.empty() || kv.front() == '=') return Fail("-e", kv, "expected KEY=VALUE");
    if (kv.find('=') == std::string::npos) {
      if (const char* v = std::getenv(kv.c_str())) r.env.push_back(kv + "=" + v);
      continue;
    }
    r.env.push_back(kv);
  }
  if (!o.timeout.empty()) {
    r.timeout_ms =
        static_cast<uint64_t>(std::ceil(WB_TRY(ParseSeconds(o.timeout, "--timeout")) * 1000));
  }
  if (!o.memory.empty()) {
    r.memory_bytes = WB_TRY(ParseSize(o.memory, "--memory"));
    if (*r.memory_bytes < (4u << 20)) return Fail("--memory", o.memory, "must be at least 4m");
  }
  if (!o.pids.empty()) {
    r.pids = WB_TRY(ParseUint(o.pids, "--pids"));
    if (*r.pids == 0) return Fail("--pids", o.pids, "must be at least 1");
  }
  if (!o.output_cap.empty()) r.output_cap = WB_TRY(ParseSize(o.output_cap, "--output-cap"));
  if (!o.nofile.empty()) {
    r.nofile = WB_TRY(ParseUint(o.nofile, "--nofile"));
    if (*r.nofile == 0) return Fail("--nofile", o.nofile, "must be at least 1");
  }
  if (!o.cpus.empty()) r.cpus = WB_TRY(ParseCpus(o.cpus, "--cpus"));
  if (!o.driver.empty()) {
    WB_RETURN_IF_ERROR(ValidateDriver(o.driver));
    r.driver = o.driver;
  }
  if (NetworkSpec net = WB_TRY(ParseNetworkChoice(o.network)); net.mode != NetworkMode::kNone) {
    r.network = proto::RunRequest::Network{NetworkModeName(net.mode), net.allow_out, net.deny_out};
  }
  if (!::isatty(0)) {
    std::string in = WB_TRY(ReadAll(0));
    if (in.size() > (4u << 20)) {
      return Fail("pool run", "stdin",
                  "more than 4 MiB of stdin; use 'warmbox run' for large input");
    }
    if (!in.empty()) r.stdin_data = std::move(in);
  }
  daemon::PoolClient client(o.socket.empty() ? daemon::DefaultSocketPath() : o.socket);
  bool out_ok = true, err_ok = true;
  auto resp = WB_TRY(client.Run(std::move(r), [&](bool is_err, std::string_view d) {
    bool& ok = is_err ? err_ok : out_ok;
    ok = ok && WriteAll(is_err ? 2 : 1, d).ok();
  }));
  if (resp.error) return Fail("pool", "", *resp.error);
  if (resp.oom_killed)
    std::fprintf(stderr, "warmbox: the command ran out of memory and was killed\n");
  if (resp.stdout_truncated || resp.stderr_truncated) {
    std::fprintf(stderr, "warmbox: output truncated at the daemon's cap\n");
  }
  return resp.exit_code;
}

int DoStatus(const std::string& socket, bool json, const std::string& format) {
  daemon::PoolClient client(socket.empty() ? daemon::DefaultSocketPath() : socket);
  if (format == "prometheus") {
    auto body = client.RoundTrip(R"({"op":"status","format":"prometheus"})");
    if (!body.ok()) return ReportError(body.error());
    auto j = nlohmann::json::parse(*body, nullptr, false);
    if (j.is_discarded() || !j.contains("metrics") || !j["metrics"].is_string()) {
      std::string why = !j.is_discarded() && j.contains("error") && j["error"].is_string()
                            ? j["error"].get<std::string>()
                            : "bad reply (is the daemon older than this client?)";
      return ReportError(Fail("pool status", "--format prometheus", why));
    }
    std::fputs(j["metrics"].get_ref<const std::string&>().c_str(), stdout);
    return 0;
  }
  if (format == "json") json = true;
  if (json) {
    auto body = client.RoundTrip(R"({"op":"status"})");
    if (!body.ok()) return ReportError(body.error());
    auto j = nlohmann::json::parse(*body, nullptr, false);
    if (j.is_discarded() || !j.contains("images"))
      return ReportError(Fail("pool status", "", "bad reply"));
    std::printf("%s\n", j["images"].dump(2).c_str());
    return 0;
  }
  auto st = client.Status();
  if (!st.ok()) return ReportError(st.error());
  if (st->empty()) {
    std::printf("No warm pools yet\n");
    return 0;
  }
  std::printf("%-24s %-6s %5s %6s %6s %8s %8s %8s %5s\n", "IMAGE", "DRIVER", "IDLE", "ACTIVE",
              "QUEUED", "CREATED", "ACQUIRED", "EVICTED", "HIT%");
  for (const auto& s : *st) {
    double hit = s.total_acquired
                     ? 100.0 * static_cast<double>(s.hits) / static_cast<double>(s.total_acquired)
                     : 0;
    std::printf(
        "%-24s %-6s %5llu %6llu %6llu %8llu %8llu %8llu %5.1f\n", s.image.c_str(), s.driver.c_str(),
        static_cast<unsigned long long>(s.idle), static_cast<unsigned long long>(s.active),
        static_cast<unsigned long long>(s.queued), static_cast<unsigned long long>(s.total_created),
        static_cast<unsigned long long>(s.total_acquired),
        static_cast<unsigned long long>(s.total_evicted), hit);
    if (!s.template_state.empty()) {
      std::printf(
          "  template: %s, %llu clone(s), %llu clone failure(s), %llu template failure(s)%s%s\n",
          s.template_state.c_str(), static_cast<unsigned long long>(s.clones),
          static_cast<unsigned long long>(s.clone_failures),
          static_cast<unsigned long long>(s.template_failures),
          s.template_error.empty() ? "" : "; last error: ", s.template_error.c_str());
    }
  }
  return 0;
}

}  // namespace

Action AddPool(CLI::App& app) {
  auto so = std::make_shared<StartOpts>();
  auto ro = std::make_shared<RunOpts>();
  auto socket = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  CLI::App* pool = app.add_subcommand("pool", "the warm-pool daemon and its client");
  pool->require_subcommand(1);

  CLI::App* start = pool->add_subcommand("start", "start the daemon (in the foreground)");
  start->add_option("--image", so->image, "default image (default: busybox; '' for none)");
  start->add_option("--size", so->size, "idle sandboxes kept per image (default 2)");
  start->add_option("--max", so->max, "concurrent runs per image (default 8)");
  start->add_option("--ttl", so->ttl,
                    "seconds an idle sandbox may wait before it is replaced (0: forever)");
  start->add_option("--warm", so->warm, "IMG[=COUNT],...: images to pre-warm (repeatable)")
      ->allow_extra_args(false);
  start->add_option("--socket", so->socket,
                    "socket path (default /run/warmbox/pool.sock for root)");
  AddDriverOptions(start, so->driver);
  start->add_option("--socket-group", so->socket_group,
                    "group (name or gid) allowed to use the socket");
  start->add_option("--queue-timeout", so->queue_timeout,
                    "seconds a run may wait for a slot (default 30)");
  start->add_option("--memory", so->memory, "memory limit per sandbox (default 512m)");
  start->add_option("--pids", so->pids, "process limit per sandbox (default 1024)");
  start->add_option("--cpus", so->cpus, "CPU quota per sandbox in cores");
  start->add_option("--disk", so->disk, "writable layer per sandbox (default 1g)");
  start->add_option("--nofile", so->nofile, "open-file limit of commands (default 1024)");
  start->add_option("--security-opt", so->security_opts, "seccomp=default|unconfined|PROFILE.json")
      ->allow_extra_args(false);
  start->add_option("--creation-cap", so->creation_cap,
                    "sandboxes created at once, daemon-wide (default: #cpus, at least 2)");
  start->add_option("--http", so->http,
                    "serve the HTTP API on ADDR:PORT (off by default; see docs/openapi.yaml)");
  start->add_option(
      "--http-token-file", so->http_token_file,
      "file holding the API's bearer token (mode 0600; default STATE/http-token, generated "
      "at first start)");
  start->add_option("--max-run-memory", so->max_run_memory,
                    "the most memory one run may ask for (default 8g)");
  start->add_option("--max-run-pids", so->max_run_pids,
                    "the most processes one run may ask for (default 32768)");
  start->add_option("--max-run-cpus", so->max_run_cpus,
                    "the most CPUs one run may ask for (default: the host's)");
  start->add_option("--max-run-nofile", so->max_run_nofile,
                    "the most open files one run may ask for (default 65536)");
  start->add_option("--max-run-output", so->max_run_output,
                    "the largest output cap one run may ask for, per stream (default 64m)");
  start->add_option("--max-run-timeout", so->max_run_timeout,
                    "the longest timeout one run may ask for, in seconds (default 86400)");
  start->add_option("--http-max-connections", so->http_max_connections,
                    "HTTP connections open at once; more are answered 503 (default 256)");
  start->add_option("--max-sandboxes", so->max_sandboxes,
                    "live sandboxes at once; more are refused as busy (default 100)");
  start->add_option("--max-sandbox-timeout", so->max_sandbox_timeout,
                    "the longest timeout of a live sandbox, in seconds (default 86400)");
  start->add_option("--e2b-default-network", so->e2b_default_network,
                    "an E2B create's network when it sets neither allow_internet_access nor "
                    "network: none (default) or egress (docs/e2b.md)");

  CLI::App* run = pool->add_subcommand("run", "run a command in a warm sandbox");
  run->add_option("--socket", ro->socket, "daemon socket");
  run->add_option("--image", ro->image, "image (default: the daemon's)");
  run->add_option("-e,--env", ro->env, "KEY=VALUE (repeatable)")->allow_extra_args(false);
  run->add_option("-w,--workdir", ro->workdir, "working directory");
  run->add_option("-u,--user", ro->user, "user[:group]");
  run->add_option("--timeout", ro->timeout, "seconds before the command is killed (exit 137)");
  run->add_option("--memory", ro->memory, "this run's memory limit (default: the daemon's)");
  run->add_option("--pids", ro->pids, "this run's process limit");
  run->add_option("--cpus", ro->cpus, "this run's CPU quota in cores");
  run->add_option("--output-cap", ro->output_cap, "cap per output stream (default 16m)");
  run->add_option("--nofile", ro->nofile, "open-file limit of the command");
  run->add_option("--driver", ro->driver, "ns or vm (default: the daemon's --driver)");
  AddNetworkOptions(run, ro->network, /*with_publish=*/false);
  run->add_option("cmd", ro->cmd, "command and arguments (after --)");

  CLI::App* status = pool->add_subcommand("status", "show the pools of a running daemon");
  status->add_option("--socket", *socket, "daemon socket");
  status->add_flag("--json", *json, "print the images as JSON");
  auto format = std::make_shared<std::string>("table");
  status->add_option("--format", *format, "table (default), json, or prometheus (the metrics text)")
      ->check(CLI::IsMember({"table", "json", "prometheus"}));

  CLI::App* stop = pool->add_subcommand("stop", "stop the daemon (in-flight runs finish first)");
  stop->add_option("--socket", *socket, "daemon socket");
  auto keep = std::make_shared<bool>(false);
  stop->add_flag("--keep-sandboxes", *keep,
                 "leave the live sandboxes running for the next daemon (default: destroy them)");

  return [=](const GlobalOptions& g) -> int {
    if (start->parsed()) {
      auto r = DoStart(g, *so);
      if (!r.ok()) return ReportError(r.error());
      return *r;
    }
    if (run->parsed()) {
      auto r = DoRun(*ro);
      if (!r.ok()) return ReportError(r.error());
      return *r;
    }
    if (status->parsed()) return DoStatus(*socket, *json, *format);
    if (stop->parsed()) {
      daemon::PoolClient client(socket->empty() ? daemon::DefaultSocketPath() : *socket);
      auto r = client.Stop(*keep);
      if (!r.ok()) return ReportError(r.error());
      return 0;
    }
    return kExitWarmboxError;
  };
}

}  // namespace wb::cli
