// The daemon's Prometheus metrics (text exposition format 0.0.4), served on
// GET /metrics and on the socket's status op with "format":"prometheus".
// Pure: the daemon fills a MetricsSnapshot, Render turns it into text.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/histogram.h"
#include "proto/pool_proto.h"

namespace wb::daemon {

// Why a run did not produce an exit code (or was refused): the label of
// warmbox_run_errors_total, and the HTTP status class.
enum class RunErrorKind {
  kNone,
  kBadRequest,  // malformed request, bad field (400)
  kNoImage,     // no such image (404)
  kBusy,        // no run slot within the queue timeout, or the queue is full (429)
  kDraining,    // the daemon is stopping (503)
  kClientGone,  // the client hung up; the command was killed
  kInternal,    // the sandbox could not be created or failed (500)
};
const char* RunErrorKindName(RunErrorKind k);
// The kind of a daemon-side failure, from the code of the error that caused
// it (never its text; docs/errors.md).
RunErrorKind KindOfError(const Error& e);

// Per pool (image and driver), kept by the daemon (the pool keeps its own creation histogram).
struct ImageRunMetrics {
  uint64_t runs = 0;       // runs that produced an exit code
  Histogram acquire_wait;  // permit + sandbox, seconds
  Histogram run_duration;  // command in the sandbox, seconds
};

// A pool's identity: (image, driver).
using PoolKey = std::pair<std::string, std::string>;

struct MetricsSnapshot {
  std::vector<proto::ImageStat> pools;           // sorted by image, then driver
  std::map<PoolKey, const Histogram*> creation;  // per pool
  std::map<PoolKey, const ImageRunMetrics*> runs;
  std::map<RunErrorKind, uint64_t> errors;
  uint64_t http_requests = 0;
  bool draining = false;
  // Live sandboxes by state ("running", "paused"); empty: not rendered.
  std::map<std::string, uint64_t> live;
  // The E2B port proxy's tunnels (e2b/port_proxy.h).
  uint64_t port_tunnels_opened = 0;
  uint64_t port_tunnel_reuses = 0;
  uint64_t port_tunnels_idle = 0;
  // Per live sandbox with a network (docs/network.md), by live id: the
  // egress counters (bytes out and in, connections refused by the policy).
  struct SandboxNet {
    uint64_t bytes_out = 0, bytes_in = 0, refused = 0;
  };
  std::map<std::string, SandboxNet> sandbox_net;
};

std::string RenderPrometheus(const MetricsSnapshot& s);

// A label value escaped for the exposition format (\\, \", \n).
std::string EscapeLabel(const std::string& v);

}  // namespace wb::daemon
