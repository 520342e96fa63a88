// The daemon's RunService: a run's image check (and pull), its permit, the
// sandbox from the warm pool, the command, and the bookkeeping of metrics.
// Both front ends (socket_server.h, http_server.h) call it; the lifecycle
// (server.cc) starts it, drains it and shuts it down.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "daemon/image_puller.h"
#include "daemon/metrics.h"
#include "daemon/options.h"
#include "daemon/run_service.h"
#include "pool/in_flight.h"
#include "pool/warm_pool.h"

namespace wb::daemon {

class RunExecutor : public RunService {
 public:
  // Adds a pool's driver-specific status to its stats (Driver::AnnotateStat:
  // a vm template's state), without the executor naming any driver.
  using AnnotateFn = std::function<void(proto::ImageStat&)>;

  RunExecutor(boost::asio::io_context& io, const DaemonOptions& opts, pool::DriverSource drivers,
              ImageStore& store, AnnotateFn annotate = {});

  // Warms the default image and every --warm image, in parallel.
  void Warm();
  // The HTTP front end's request count, for Metrics.
  void set_http_requests(std::function<uint64_t()> fn) { http_requests_ = std::move(fn); }
  // The live sandboxes by state, for Metrics (warmbox_live_sandboxes).
  void set_live_counts(std::function<std::map<std::string, uint64_t>()> fn) {
    live_counts_ = std::move(fn);
  }
  // The live sandboxes' network counters, for Metrics.
  using NetCountsFn = std::function<std::map<std::string, MetricsSnapshot::SandboxNet>()>;
  void set_live_network(NetCountsFn fn) { live_network_ = std::move(fn); }

  // --- RunService ---------------------------------------------------------
  boost::asio::awaitable<RunOutcome> Run(proto::RunRequest run, RunSink& sink) override;
  void CountError(RunErrorKind kind) override { ++errors_[kind]; }
  std::string StatusJson() const override;
  std::string Metrics() const override;
  bool draining() const override { return stopping_; }

  // --- drain and shutdown, in this order ----------------------------------
  // New runs are refused as draining from now on; runs in flight go on.
  void BeginDrain() { stopping_ = true; }
  // Calls fn (once, on the loop) when no run is in flight.
  void WhenRunsDone(std::function<void()> fn) { runs_.WhenIdle(std::move(fn)); }
  // Stops refilling, destroys every idle sandbox, and calls fn (once, on the
  // loop) when no creation or teardown is in flight.
  void Shutdown(std::function<void()> when_idle);
  // After the loop has stopped: waits for the pulls, creations and teardowns
  // still on their threads.
  void Join();

  size_t runs_in_flight() const { return runs_.count(); }
  pool::PoolRegistry& registry() { return registry_; }
  ImagePuller& puller() { return puller_; }

 private:
  void Refuse(RunOutcome& out, RunErrorKind kind, std::string msg);
  // Run without the error's kind word in the response (Run adds it, once
  // for every front end).
  boost::asio::awaitable<RunOutcome> RunUnlabelled(proto::RunRequest run, RunSink& sink);
  boost::asio::awaitable<RunOutcome> RunInPool(RunSink& sink, pool::WarmPool& pool,
                                               proto::RunRequest& run, NetworkSpec net,
                                               pool::Clock::time_point t0, pool::Permit permit);

  const DaemonOptions& opts_;
  pool::PoolRuntime rt_;
  pool::PoolRegistry registry_;
  ImagePuller puller_;
  AnnotateFn annotate_;
  std::function<uint64_t()> http_requests_;
  std::function<std::map<std::string, uint64_t>()> live_counts_;
  NetCountsFn live_network_;
  std::map<PoolKey, ImageRunMetrics> run_metrics_;
  std::map<RunErrorKind, uint64_t> errors_;
  pool::InFlight runs_;
  bool stopping_ = false;
};

}  // namespace wb::daemon
