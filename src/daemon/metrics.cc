#include "daemon/metrics.h"

#include <functional>

namespace wb::daemon {

const char* RunErrorKindName(RunErrorKind k) {
  switch (k) {
    case RunErrorKind::kNone:
      return "none";
    case RunErrorKind::kBadRequest:
      return "bad_request";
    case RunErrorKind::kNoImage:
      return "no_image";
    case RunErrorKind::kBusy:
      return "busy";
    case RunErrorKind::kDraining:
      return "draining";
    case RunErrorKind::kClientGone:
      return "client_gone";
    case RunErrorKind::kInternal:
      return "internal";
  }
  return "internal";
}

RunErrorKind KindOfError(const Error& e) {
  // By code only (docs/errors.md): the text is for people and may be wrapped.
  switch (e.code) {
    case ErrorCode::kInvalidArgument:
      return RunErrorKind::kBadRequest;
    case ErrorCode::kBusy:
      return RunErrorKind::kBusy;
    case ErrorCode::kDraining:
      return RunErrorKind::kDraining;
    case ErrorCode::kCancelled:
      return RunErrorKind::kClientGone;
    default:
      // Anything else that stops a run (a sandbox that cannot be created, a
      // full disk, an agent that died) is the daemon's failure, not the caller's.
      return RunErrorKind::kInternal;
  }
}

std::string EscapeLabel(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

std::string PoolLabels(const std::string& image, const std::string& driver) {
  return "image=\"" + EscapeLabel(image) + "\",driver=\"" + EscapeLabel(driver) + "\"";
}
std::string PoolLabels(const PoolKey& k) { return PoolLabels(k.first, k.second); }

// One metric family with one sample per pool.
void PerPool(std::string& out, const MetricsSnapshot& s, const char* name, const char* type,
             const char* help, const std::function<uint64_t(const proto::ImageStat&)>& get) {
  Header(out, name, type, help);
  for (const auto& p : s.pools) {
    out += name;
    out += "{" + PoolLabels(p.image, p.driver) + "} " + std::to_string(get(p)) + "\n";
  }
}

}  // namespace

std::string RenderPrometheus(const MetricsSnapshot& s) {
  std::string out;
  out.reserve(4096);
  using S = proto::ImageStat;
  PerPool(out, s, "warmbox_pool_idle", "gauge", "Idle warm sandboxes ready for a run.",
          [](const S& p) { return p.idle; });
  PerPool(out, s, "warmbox_pool_active", "gauge",
          "Run slots in use (until the used sandbox is torn down).",
          [](const S& p) { return p.active; });
  PerPool(out, s, "warmbox_pool_queued", "gauge", "Runs waiting for a run slot.",
          [](const S& p) { return p.queued; });
  PerPool(out, s, "warmbox_pool_max", "gauge", "Run slots (concurrent runs) of the pool.",
          [](const S& p) { return p.max; });
  PerPool(out, s, "warmbox_pool_creating", "gauge", "Sandboxes being created for the pool.",
          [](const S& p) { return p.creating; });
  PerPool(out, s, "warmbox_sandboxes_created_total", "counter", "Sandboxes created.",
          [](const S& p) { return p.total_created; });
  // Counters never go down: an idle sandbox handed out and then evicted by
  // the health check stays counted here (and in hits), unlike in the status.
  PerPool(out, s, "warmbox_sandboxes_acquired_total", "counter",
          "Sandboxes handed to a run (ones then evicted by the health check included).",
          [](const S& p) { return p.total_acquired; });
  PerPool(out, s, "warmbox_pool_hits_total", "counter", "Runs served by an idle warm sandbox.",
          [](const S& p) { return p.hits; });
  PerPool(out, s, "warmbox_pool_misses_total", "counter",
          "Runs that waited for a sandbox to be created.", [](const S& p) { return p.misses; });
  PerPool(out, s, "warmbox_sandboxes_evicted_total", "counter",
          "Idle sandboxes destroyed unused (TTL, failed health check).",
          [](const S& p) { return p.total_evicted; });
  PerPool(out, s, "warmbox_sandbox_creation_failures_total", "counter",
          "Sandbox creations that failed.", [](const S& p) { return p.failed_creations; });
  PerPool(out, s, "warmbox_rejected_busy_total", "counter",
          "Runs refused as busy (queue full or no slot within the queue timeout).",
          [](const S& p) { return p.rejected_busy; });

  Header(out, "warmbox_runs_total", "counter", "Runs that produced an exit code.");
  for (const auto& [key, m] : s.runs) {
    out += "warmbox_runs_total{" + PoolLabels(key) + "} " + std::to_string(m->runs) + "\n";
  }
  Header(out, "warmbox_run_errors_total", "counter", "Runs that failed or were refused, by kind.");
  for (RunErrorKind k :
       {RunErrorKind::kBadRequest, RunErrorKind::kNoImage, RunErrorKind::kBusy,
        RunErrorKind::kDraining, RunErrorKind::kClientGone, RunErrorKind::kInternal}) {
    auto it = s.errors.find(k);
    out += std::string("warmbox_run_errors_total{kind=\"") + RunErrorKindName(k) + "\"} " +
           std::to_string(it == s.errors.end() ? 0 : it->second) + "\n";
  }

  Header(out, "warmbox_sandbox_creation_seconds", "histogram",
         "Time to create a sandbox, to agent-ready.");
  for (const auto& [key, h] : s.creation)
    h->Render(out, "warmbox_sandbox_creation_seconds", PoolLabels(key));
  Header(out, "warmbox_acquire_wait_seconds", "histogram",
         "Time from request to a sandbox in hand (run slot and sandbox).");
  for (const auto& [key, m] : s.runs)
    m->acquire_wait.Render(out, "warmbox_acquire_wait_seconds", PoolLabels(key));
  Header(out, "warmbox_run_duration_seconds", "histogram",
         "Time from a sandbox in hand to the command's exit.");
  for (const auto& [key, m] : s.runs)
    m->run_duration.Render(out, "warmbox_run_duration_seconds", PoolLabels(key));

  Header(out, "warmbox_http_requests_total", "counter", "HTTP API requests received.");
  out += "warmbox_http_requests_total " + std::to_string(s.http_requests) + "\n";
  Header(out, "warmbox_draining", "gauge", "1 while the daemon is stopping.");
  out += std::string("warmbox_draining ") + (s.draining ? "1" : "0") + "\n";
  if (!s.live.empty()) {
    Header(out, "warmbox_live_sandboxes", "gauge", "Live sandboxes, by state.");
    for (const auto& [state, n] : s.live) {
      out += "warmbox_live_sandboxes{state=\"" + EscapeLabel(state) + "\"} " + std::to_string(n) +
             "\n";
    }
  }
  {
    Header(out, "warmbox_port_tunnels_opened_total", "counter",
           "Tunnels the E2B port proxy opened to a sandbox's port.");
    out += "warmbox_port_tunnels_opened_total " + std::to_string(s.port_tunnels_opened) + "\n";
    Header(out, "warmbox_port_tunnel_reuses_total", "counter",
           "Requests the E2B port proxy sent on a kept tunnel.");
    out += "warmbox_port_tunnel_reuses_total " + std::to_string(s.port_tunnel_reuses) + "\n";
    Header(out, "warmbox_port_tunnels_idle", "gauge",
           "Tunnels the E2B port proxy keeps open between requests.");
    out += "warmbox_port_tunnels_idle " + std::to_string(s.port_tunnels_idle) + "\n";
  }
  if (!s.sandbox_net.empty()) {
    Header(out, "warmbox_sandbox_network_bytes_total", "counter",
           "Bytes of a live sandbox's network, by direction (out: sent, in: received).");
    for (const auto& [id, n] : s.sandbox_net) {
      const std::string l = "sandbox=\"" + EscapeLabel(id) + "\"";
      out += "warmbox_sandbox_network_bytes_total{" + l + ",direction=\"out\"} " +
             std::to_string(n.bytes_out) + "\n";
      out += "warmbox_sandbox_network_bytes_total{" + l + ",direction=\"in\"} " +
             std::to_string(n.bytes_in) + "\n";
    }
    Header(out, "warmbox_sandbox_network_refused_total", "counter",
           "Connection attempts of a live sandbox refused by its egress policy.");
    for (const auto& [id, n] : s.sandbox_net) {
      out += "warmbox_sandbox_network_refused_total{sandbox=\"" + EscapeLabel(id) + "\"} " +
             std::to_string(n.refused) + "\n";
    }
  }
  return out;
}

}  // namespace wb::daemon
