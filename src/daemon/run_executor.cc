#include "daemon/run_executor.h"

#include "base/log.h"
#include "daemon/e2b/port_proxy.h"
#include "daemon/metrics.h"
#include "daemon/net_json.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

namespace asio = boost::asio;
using pool::Clock;

namespace {

std::string FormatMs(Clock::duration d) {
  return fmt::format("{:.2f}", std::chrono::duration<double, std::milli>(d).count());
}

// Counts a run in flight for as long as it lives (every exit of Run, even an
// exception, ends it).
class RunScope {
 public:
  explicit RunScope(pool::InFlight& n) : n_(n) { n_.Add(); }
  ~RunScope() { n_.Done(); }
  RunScope(const RunScope&) = delete;
  RunScope& operator=(const RunScope&) = delete;

 private:
  pool::InFlight& n_;
};

}  // namespace

RunExecutor::RunExecutor(asio::io_context& io, const DaemonOptions& opts,
                         pool::DriverSource drivers, ImageStore& store, AnnotateFn annotate)
    : opts_(opts),
      rt_(io, std::move(drivers), store, opts.creation_cap),
      registry_(rt_, opts.pool),
      puller_(io,
              ImageToolCall{opts.image_tool_path, opts.driver.state_dir, opts.driver.uid_base, {}}),
      annotate_(std::move(annotate)),
      runs_(io.get_executor()) {}

void RunExecutor::Warm() {
  // The socket already serves meanwhile (status answers at once, runs are
  // served cold).
  if (!opts_.default_image.empty()) {
    registry_.Get(rt_.store.Resolve(opts_.default_image), opts_.default_driver, 0);
  }
  for (const auto& w : opts_.warm) {
    registry_.Get(rt_.store.Resolve(w.image), opts_.default_driver, w.count);
  }
}

void RunExecutor::Shutdown(std::function<void()> when_idle) {
  registry_.Shutdown();
  // Runs still in flight (past the grace) end when the loop stops: their
  // agents are killed by the sandboxes' teardown.
  rt_.in_flight.WhenIdle(std::move(when_idle));
}

void RunExecutor::Join() {
  puller_.Join();
  rt_.create.join();
  rt_.destroy.join();
}

asio::awaitable<RunOutcome> RunExecutor::Run(proto::RunRequest run, RunSink& sink) {
  RunOutcome out = co_await RunUnlabelled(std::move(run), sink);
  if (out.resp.error) out.resp.kind = RunErrorKindName(out.kind);
  co_return out;
}

asio::awaitable<RunOutcome> RunExecutor::RunUnlabelled(proto::RunRequest run, RunSink& sink) {
  const auto t0 = Clock::now();
  RunOutcome out;
  std::string image = run.image.value_or(opts_.default_image);
  if (stopping_) {
    Refuse(out, RunErrorKind::kDraining, "the daemon is shutting down");
  } else if (image.empty()) {
    Refuse(out, RunErrorKind::kBadRequest,
           "no image: pass --image or start the daemon with --image");
  } else if (auto v = ImageStore::ValidateName(image); !v.ok()) {
    Refuse(out, RunErrorKind::kBadRequest, v.error().ToString());
  } else if (auto c = CheckRunCeilings(run, opts_.ceilings); !c.ok()) {
    Refuse(out, RunErrorKind::kBadRequest, c.error().ToString());
  }
  if (out.kind != RunErrorKind::kNone) co_return out;
  // The run's network, checked before anything is claimed (docs/network.md).
  NetworkSpec net;
  if (run.network) {
    auto n = RunNetworkSpec(*run.network);
    if (!n.ok()) {
      Refuse(out, RunErrorKind::kBadRequest, n.error().ToString());
      co_return out;
    }
    net = std::move(*n);
  }
  if (!rt_.store.Exists(image)) {
    // A missing image is pulled first (once, whoever else waits for it).
    auto pulled = co_await puller_.Pull(image);
    if (!pulled.ok()) {
      Refuse(out, RunErrorKind::kNoImage,
             "image " + image + ": no such image, and " + ImagePuller::HowMissing(image) +
                 " failed: " + pulled.error().ToString());
      co_return out;
    }
  }
  // One pool per stored image, whatever its spelling ("python:3",
  // "docker.io/library/python:3", ...): each pool has its own --max, so a
  // spelling per pool would multiply the limits (docs/security.md).
  pool::WarmPool& pool =
      registry_.Get(rt_.store.Resolve(image), run.driver.value_or(opts_.default_driver));
  auto permit = co_await pool.TakePermit();
  if (!permit.ok()) {
    Refuse(out, KindOfError(permit.error()), permit.error().ToString());
    co_return out;
  }
  {
    // In flight from its permit on (runs still waiting for one are refused as
    // draining when the pools shut down).
    RunScope scope(runs_);
    out = co_await RunInPool(sink, pool, run, std::move(net), t0, std::move(*permit));
  }
  if (out.kind != RunErrorKind::kNone) ++errors_[out.kind];
  co_return out;
}

std::string RunExecutor::StatusJson() const {
  auto stats = registry_.Stats();
  if (annotate_) {
    for (auto& s : stats) annotate_(s);
  }
  return proto::StatusJson(stats);
}

std::string RunExecutor::Metrics() const {
  MetricsSnapshot m;
  // Counters, not the status view: they never go down (WarmPool::CounterStat).
  m.pools = registry_.CounterStats();
  for (const pool::WarmPool* p : registry_.Pools())
    m.creation[{p->image(), p->driver()}] = &p->creation_seconds();
  for (const auto& [key, r] : run_metrics_) m.runs[key] = &r;
  m.errors = errors_;
  m.http_requests = http_requests_ ? http_requests_() : 0;
  if (live_counts_) m.live = live_counts_();
  const e2b::PortTunnelStats tunnels = e2b::PortTunnelCounters();
  m.port_tunnels_opened = tunnels.opened;
  m.port_tunnel_reuses = tunnels.reused;
  m.port_tunnels_idle = tunnels.idle;
  if (live_network_) m.sandbox_net = live_network_();
  m.draining = stopping_;
  return RenderPrometheus(m);
}

void RunExecutor::Refuse(RunOutcome& out, RunErrorKind kind, std::string msg) {
  out.kind = kind;
  out.resp = proto::ErrorResponse(std::move(msg));
  ++errors_[kind];
}

// Acquires a sandbox (another one if an idle one fails its health check),
// runs the command and gives the sandbox back. The caller replies.
asio::awaitable<RunOutcome> RunExecutor::RunInPool(RunSink& sink, pool::WarmPool& pool,
                                                   proto::RunRequest& run, NetworkSpec net,
                                                   Clock::time_point t0, pool::Permit permit) {
  const std::string& image = pool.image();
  RunOutcome out;
  ImageRunMetrics& metrics = run_metrics_[{image, pool.driver()}];
  for (int attempt = 0;; ++attempt) {
    const auto t_permit = Clock::now();
    auto lease = co_await pool.Acquire();
    if (!lease.ok()) {
      out.kind = KindOfError(lease.error());
      out.resp = proto::ErrorResponse(lease.error().ToString());
      spdlog::warn("run image={} failed: {}", image, lease.error().ToString());
      co_return out;
    }
    const auto t_acquired = Clock::now();

    // A client that hangs up cancels its run: the agent connection is
    // closed, and the agent kills the command.
    auto gone = std::make_shared<bool>(false);
    pool::AgentConn* conn = lease->conn.get();
    sink.WatchHangup([gone, conn] {
      *gone = true;
      conn->Close();
    });

    proto::ExecRequest er;
    er.argv = run.cmd;
    er.env = run.env;
    er.cwd = run.workdir;
    er.user = run.user;
    er.timeout_ms = run.timeout_ms;
    if (run.output_cap) er.output_cap = *run.output_cap;
    if (run.nofile) er.nofile = *run.nofile;
    // The per-run policy, as warmbox run applies it (sandbox/run_policy.h).
    auto prepared = lease->sandbox->PrepareExec(er);
    if (!prepared.ok()) {
      sink.Disarm();
      pool.Release(std::move(*lease), std::move(permit));
      out.kind = KindOfError(prepared.error());
      out.resp = proto::ErrorResponse(prepared.error().ToString());
      co_return out;
    }
    er = std::move(*prepared);
    if (run.memory_bytes || run.pids || run.cpus) {
      // This run's own limits, on the pre-booted sandbox, before it starts.
      Limits l = opts_.pool.limits;
      if (run.memory_bytes) l.memory_bytes = *run.memory_bytes;
      if (run.pids) l.pids = *run.pids;
      if (run.cpus) l.cpus = *run.cpus;
      if (auto r = lease->sandbox->SetLimits(l); !r.ok()) {
        sink.Disarm();
        pool.Release(std::move(*lease), std::move(permit));
        out.kind = RunErrorKind::kInternal;
        out.resp = proto::ErrorResponse(r.error().ToString());
        co_return out;
      }
    }
    if (net.mode != NetworkMode::kNone) {
      // The pools' sandboxes are made without a network (a policy is per
      // run): the claimed one gets this run's before its command starts, and
      // loses it with the sandbox (Release destroys it).
      // (The lease, and so the sandbox, outlives the blocking call: it is
      // this coroutine's.)
      Sandbox* sb = lease->sandbox.get();
      std::function<Result<void>()> attach = [sb, net]() { return sb->AttachNetwork(net); };
      Result<void> attached = co_await pool::OnBlockingThread(rt_, attach);
      if (!attached.ok()) {
        sink.Disarm();
        pool.Release(std::move(*lease), std::move(permit));
        out.kind = KindOfError(attached.error());
        out.resp = proto::ErrorResponse(attached.error().ToString());
        co_return out;
      }
    }
    out.resp = proto::RunResponse{};
    out.resp.sandbox = lease->sandbox->id();
    const bool stream = run.stream;
    // A one-shot run's output is held in bounded memory, the rest spilled
    // to unlinked files in the state dir (daemon/run_output.h): a run's
    // output cap may be far larger than what the daemon should hold.
    out.output.reset();
    if (!stream) out.output = std::make_unique<RunOutput>(opts_.driver.state_dir);
    std::optional<Error> spill_error;
    auto on_chunk = [&](bool is_err, std::string data) -> asio::awaitable<void> {
      if (stream) {
        if (!*gone) co_await sink.Chunk(is_err, std::move(data));
      } else if (!spill_error) {
        auto r = (is_err ? out.output->err : out.output->out).Append(data);
        if (!r.ok()) {
          // The output can no longer be held whole: the command is killed
          // (as on a hang-up) rather than answered with a silent prefix.
          spill_error = r.error();
          conn->Close();
        }
      }
    };
    bool unhealthy = false;
    std::optional<std::chrono::milliseconds> health;
    if (lease->hit) health = opts_.pool.health_timeout;
    const OomWatch oom(*lease->sandbox);
    auto exit = co_await lease->conn->Exec(er, run.stdin_data, on_chunk, health, &unhealthy);
    sink.Disarm();
    if (unhealthy && !*gone && attempt < 2) {
      pool.Evict(std::move(*lease), exit.error());
      continue;  // the command did not start: another sandbox takes it
    }
    if (spill_error && !*gone) {
      out.kind = RunErrorKind::kInternal;
      out.resp.exit_code = -1;
      out.resp.error =
          "hold the run's output: " + spill_error->ToString() + "; the command was killed";
      spdlog::warn("run image={}: {}", image, *out.resp.error);
      out.output.reset();  // a prefix is no answer
    } else if (exit.ok()) {
      out.resp.exit_code = exit->exit_code;
      out.resp.timed_out = exit->timed_out;
      out.resp.stdout_truncated = exit->stdout_truncated;
      out.resp.stderr_truncated = exit->stderr_truncated;
      out.resp.oom_killed = oom.Fired();
    } else if (*gone) {
      out.kind = RunErrorKind::kClientGone;
      out.resp.exit_code = -1;
      out.resp.error = "the client went away; the command was killed";
    } else {
      out.kind = RunErrorKind::kInternal;
      out.resp.exit_code = -1;
      out.resp.error = exit.error().ToString();
    }
    if (*gone) out.kind = RunErrorKind::kClientGone;
    const auto t_exec = Clock::now();
    std::string sandbox_id = lease->sandbox->id();
    const bool hit = lease->hit;
    pool.Release(std::move(*lease), std::move(permit));
    metrics.acquire_wait.Observe(std::chrono::duration<double>(t_acquired - t0).count());
    if (exit.ok()) {
      ++metrics.runs;
      metrics.run_duration.Observe(std::chrono::duration<double>(t_exec - t_acquired).count());
    }
    // One line per run; never the command's output.
    LogEvent(
        spdlog::level::info, "run",
        {{"image", image},
         {"driver", pool.driver()},
         {"sandbox", sandbox_id},
         {"exit", std::to_string(out.resp.exit_code), true},
         {"pool", hit ? "warm" : "cold"},
         {"queue_ms", FormatMs(t_permit - t0), true},
         {"acquire_ms", FormatMs(t_acquired - t_permit), true},
         {"exec_ms", FormatMs(t_exec - t_acquired), true},
         {"outcome", out.kind == RunErrorKind::kNone ? (out.resp.timed_out ? "timeout" : "exited")
                                                     : RunErrorKindName(out.kind)}});
    co_return out;
  }
}

}  // namespace wb::daemon
