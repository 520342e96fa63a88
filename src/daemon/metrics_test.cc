#include "daemon/metrics.h"

#include <gtest/gtest.h>

namespace wb::daemon {
namespace {

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(HistogramTest, BucketsAreCumulativeWithSumAndCount) {
  Histogram h;
  h.Observe(0.0004);  // first bucket
  h.Observe(0.003);   // le 0.005
  h.Observe(0.003);
  h.Observe(1000);  // above the last bound: +Inf only
  EXPECT_EQ(h.count(), 4u);
  EXPECT_DOUBLE_EQ(h.sum(), 0.0004 + 0.006 + 1000);
  EXPECT_EQ(h.CumulativeAt(0), 1u);
  EXPECT_EQ(h.CumulativeAt(2), 1u);  // le 0.0025
  EXPECT_EQ(h.CumulativeAt(3), 3u);  // le 0.005
  EXPECT_EQ(h.CumulativeAt(Histogram::kBounds.size() - 1), 3u);
  std::string out;
  h.Render(out, "x_seconds", "image=\"a\"");
  EXPECT_TRUE(Has(out, "x_seconds_bucket{image=\"a\",le=\"0.0005\"} 1"));
  EXPECT_TRUE(Has(out, "x_seconds_bucket{image=\"a\",le=\"0.005\"} 3"));
  EXPECT_TRUE(Has(out, "x_seconds_bucket{image=\"a\",le=\"300\"} 3"));
  EXPECT_TRUE(Has(out, "x_seconds_bucket{image=\"a\",le=\"+Inf\"} 4"));
  EXPECT_TRUE(Has(out, "x_seconds_count{image=\"a\"} 4"));
  EXPECT_TRUE(Has(out, "x_seconds_sum{image=\"a\"} 1000.0064"));
  h.Observe(-1);  // clock oddities count as 0, never as negative time
  EXPECT_EQ(h.CumulativeAt(0), 2u);
}

TEST(MetricsTest, RendersEveryFamilyPerImage) {
  MetricsSnapshot s;
  proto::ImageStat a;
  a.image = "busybox";
  a.driver = "ns";
  a.idle = 2;
  a.active = 1;
  a.queued = 3;
  a.max = 8;
  a.total_created = 9;
  a.total_acquired = 7;
  a.hits = 6;
  a.misses = 1;
  a.total_evicted = 4;
  a.failed_creations = 5;
  a.rejected_busy = 11;
  s.pools.push_back(a);
  Histogram creation;
  creation.Observe(0.004);
  s.creation[{"busybox", "ns"}] = &creation;
  ImageRunMetrics runs;
  runs.runs = 7;
  runs.acquire_wait.Observe(0.0001);
  runs.run_duration.Observe(0.002);
  s.runs[{"busybox", "ns"}] = &runs;
  s.errors[RunErrorKind::kBusy] = 11;
  s.errors[RunErrorKind::kBadRequest] = 2;
  s.http_requests = 12;
  s.port_tunnels_opened = 4;
  s.port_tunnel_reuses = 30;
  s.port_tunnels_idle = 2;
  std::string t = RenderPrometheus(s);
  for (const char* line : {
           "warmbox_pool_idle{image=\"busybox\",driver=\"ns\"} 2",
           "warmbox_pool_active{image=\"busybox\",driver=\"ns\"} 1",
           "warmbox_pool_queued{image=\"busybox\",driver=\"ns\"} 3",
           "warmbox_pool_max{image=\"busybox\",driver=\"ns\"} 8",
           "warmbox_sandboxes_created_total{image=\"busybox\",driver=\"ns\"} 9",
           "warmbox_sandboxes_acquired_total{image=\"busybox\",driver=\"ns\"} 7",
           "warmbox_pool_hits_total{image=\"busybox\",driver=\"ns\"} 6",
           "warmbox_pool_misses_total{image=\"busybox\",driver=\"ns\"} 1",
           "warmbox_sandboxes_evicted_total{image=\"busybox\",driver=\"ns\"} 4",
           "warmbox_sandbox_creation_failures_total{image=\"busybox\",driver=\"ns\"} 5",
           "warmbox_rejected_busy_total{image=\"busybox\",driver=\"ns\"} 11",
           "warmbox_runs_total{image=\"busybox\",driver=\"ns\"} 7",
           "warmbox_run_errors_total{kind=\"busy\"} 11",
           "warmbox_run_errors_total{kind=\"bad_request\"} 2",
           "warmbox_run_errors_total{kind=\"internal\"} 0",
           "warmbox_sandbox_creation_seconds_count{image=\"busybox\",driver=\"ns\"} 1",
           "warmbox_acquire_wait_seconds_bucket{image=\"busybox\",driver=\"ns\",le=\"0.0005\"} 1",
           "warmbox_run_duration_seconds_bucket{image=\"busybox\",driver=\"ns\",le=\"0.0025\"} 1",
           "warmbox_http_requests_total 12",
           "warmbox_draining 0",
           "warmbox_port_tunnels_opened_total 4",
           "warmbox_port_tunnel_reuses_total 30",
           "warmbox_port_tunnels_idle 2",
           "# TYPE warmbox_port_tunnels_idle gauge",
           "# TYPE warmbox_pool_idle gauge",
           "# TYPE warmbox_runs_total counter",
           "# TYPE warmbox_run_duration_seconds histogram",
       }) {
    EXPECT_TRUE(Has(t, line)) << line << "\n" << t;
  }
  // Each family is declared once (a scraper rejects duplicates).
  size_t first = t.find("# TYPE warmbox_pool_idle ");
  EXPECT_EQ(t.find("# TYPE warmbox_pool_idle ", first + 1), std::string::npos);
}

TEST(MetricsTest, RendersPerSandboxNetworkCounters) {
  MetricsSnapshot none;
  EXPECT_EQ(RenderPrometheus(none).find("warmbox_sandbox_network"), std::string::npos);
  MetricsSnapshot m;
  m.sandbox_net["abc"] = {.bytes_out = 10, .bytes_in = 20, .refused = 3};
  const std::string text = RenderPrometheus(m);
  EXPECT_NE(text.find("# TYPE warmbox_sandbox_network_bytes_total counter\n"), std::string::npos);
  EXPECT_NE(
      text.find("warmbox_sandbox_network_bytes_total{sandbox=\"abc\",direction=\"out\"} 10\n"),
      std::string::npos);
  EXPECT_NE(text.find("warmbox_sandbox_network_bytes_total{sandbox=\"abc\",direction=\"in\"} 20\n"),
            std::string::npos);
  EXPECT_NE(text.find("warmbox_sandbox_network_refused_total{sandbox=\"abc\"} 3\n"),
            std::string::npos);
}

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabel("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  MetricsSnapshot s;
  proto::ImageStat a;
  a.image = "odd\"name";
  s.pools.push_back(a);
  EXPECT_TRUE(Has(RenderPrometheus(s), "warmbox_pool_idle{image=\"odd\\\"name\",driver=\"ns\"} 0"));
}

}  // namespace
}  // namespace wb::daemon
