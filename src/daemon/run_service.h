// What a front end (the Unix socket, the HTTP API) needs from the daemon:
// runs, status and metrics. One implementation (the Daemon in server.cc);
// each front end supplies a RunSink for its transport.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <string>

#include "daemon/metrics.h"
#include "daemon/run_output.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

// The client side of one run, as its transport sees it.
class RunSink {
 public:
  virtual ~RunSink() = default;
  // Output as the command produces it (streamed runs only). Must not throw.
  virtual boost::asio::awaitable<void> Chunk(bool is_stderr, std::string data) = 0;
  // Calls on_gone (once) if the client hangs up before Disarm.
  virtual void WatchHangup(std::function<void()> on_gone) = 0;
  virtual void Disarm() = 0;
};

struct RunOutcome {
  // exit_code -1 and error set when kind != kNone. Its stdout_data and
  // stderr_data stay empty when output is set.
  proto::RunResponse resp;
  RunErrorKind kind = RunErrorKind::kNone;
  // A one-shot run's outputs, in bounded memory (spilled to unlinked files
  // beyond a threshold): encode the response with ResponseEncoder. Null for
  // streamed runs and runs refused before their command.
  std::unique_ptr<RunOutput> output;
};

class RunService {
 public:
  virtual ~RunService() = default;
  // Runs req (image default, validation, permit, sandbox, exec), streaming
  // output to sink when req.stream. Never fails: errors are in the outcome,
  // whose response carries the error's kind word (docs/errors.md).
  virtual boost::asio::awaitable<RunOutcome> Run(proto::RunRequest req, RunSink& sink) = 0;
  // Counts a request refused before it reached Run (e.g. bad JSON over HTTP).
  virtual void CountError(RunErrorKind kind) = 0;
  virtual std::string StatusJson() const = 0;
  virtual std::string Metrics() const = 0;
  virtual bool draining() const = 0;
};

}  // namespace wb::daemon
