#!/usr/bin/python3
"""A real Prometheus (Debian's) scrapes a real daemon's /metrics; its own
query API must report what the daemon did.

Run as root with Debian's python:
    WARMBOX_BUILD_DIR=build /usr/bin/python3 tests/http/test_prometheus.py -v
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_http_api import (TOKEN, DaemonTestCase, die_with_parent, eventually, free_port,  # noqa: E402
                           skip_reason)

PROMETHEUS = "/usr/bin/prometheus"
RUNS = 5


def parse_exposition(text):
    """{family: type} and {(name, frozenset(labels)): value} of a text exposition."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)', line)
            if not m:
                raise AssertionError("not an exposition sample: %r" % line)
            labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    return types, samples


class Prometheus:
    def __init__(self, target_port, token_file, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.config = os.path.join(tmp, "prometheus.yml")
        with open(self.config, "w") as f:
            # JSON is YAML. One job, scraped every second, with the daemon's token.
            json.dump({
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{
                    "job_name": "warmbox",
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials_file": token_file},
                    "static_configs": [{"targets": ["127.0.0.1:%d" % target_port]}],
                }],
            }, f)
        self.log_path = os.path.join(tmp, "prometheus.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + self.config, "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=tmp, preexec_fn=die_with_parent)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited with %s:\n%s" % (self.proc.returncode, self.log()))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr):
        """Instant query: {frozenset(labels without __name__): value}."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError("query %s: %s" % (expr, body))
        out = {}
        for s in body["data"]["result"]:
            labels = frozenset((k, v) for k, v in s["metric"].items() if k not in ("__name__", "job", "instance"))
            out[labels] = float(s["value"][1])
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PrometheusTest(DaemonTestCase):
    """A token-protected loopback daemon (the token is required on loopback
    too when a token file is given), scraped with authorization.credentials_file."""
    UID_BASE = 1650280000
    CGROUP_PARENT = "warmbox-promtest"
    ARGS = ("--size", "2", "--max", "4")
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if not why and not os.access(PROMETHEUS, os.X_OK):
            why = PROMETHEUS + " missing (run scripts/setup: Debian's prometheus)"
        if why:
            raise unittest.SkipTest(why)
        super().setUpClass()
        cls.prom_tmp = tempfile.mkdtemp(prefix="wb-prom-test-")
        cls.prom = Prometheus(cls.daemon.port, cls.daemon.token_file, cls.prom_tmp)

    @classmethod
    def tearDownClass(cls):
        cls.prom.stop()
        shutil.rmtree(cls.prom_tmp, ignore_errors=True)
        super().tearDownClass()

    def scraped(self, expr, want, timeout=60):
        """Polls Prometheus until expr has exactly the samples want; returns them."""
        last = [None]

        def check():
            last[0] = self.prom.query(expr)
            return last[0] == want
        if not eventually(check, timeout=timeout, interval=0.25):
            self.fail("Prometheus reports %s = %s, expected %s (within %d s)\nprometheus log:\n%s" % (
                expr, last[0], want, timeout, self.prom.log()))
        return last[0]

    def test_counters_reach_prometheus(self):
        self.assertTrue(eventually(self.prom.ready, timeout=30, interval=0.1), self.prom.log())
        # Both warm sandboxes ready first, so the first run is a hit for sure.
        self.daemon.wait_pool(lambda p: p and p["idle"] == 2, "2 idle sandboxes")
        for i in range(RUNS):
            r = self.request("POST", "/v1/run", body=json.dumps({"cmd": ["sh", "-c", "echo %d" % i]}),
                             headers=["Content-Type: application/json"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.parsed["exit_code"], 0)
        r = self.request("POST", "/v1/run", body="{bad json", headers=["Content-Type: application/json"])
        self.assertEqual(r.status, 400)

        image = frozenset({("image", "busybox"), ("driver", "ns")})
        self.scraped("warmbox_runs_total", {image: RUNS})
        # Once the pool has refilled the counters are still: what the daemon
        # says is what Prometheus must have.
        self.daemon.wait_pool(lambda p: p and p["idle"] == 2 and p["creating"] == 0, "the pool to refill")
        r = self.request("GET", "/metrics")
        _, samples = parse_exposition(r.parsed)
        hits = samples[("warmbox_pool_hits_total", image)]
        misses = samples[("warmbox_pool_misses_total", image)]
        self.assertGreaterEqual(hits, 1)
        self.assertEqual(hits + misses, RUNS)
        self.scraped("warmbox_pool_hits_total", {image: hits})
        self.scraped('warmbox_run_errors_total{kind="bad_request"}', {frozenset({("kind", "bad_request")}): 1})
        self.scraped('warmbox_run_errors_total{kind="internal"}', {frozenset({("kind", "internal")}): 0})
        self.scraped("warmbox_run_duration_seconds_count", {image: RUNS})
        self.scraped("warmbox_acquire_wait_seconds_count", {image: RUNS})
        self.scraped('warmbox_run_duration_seconds_bucket{le="+Inf"}', {image | {("le", "+Inf")}: RUNS})
        created = samples[("warmbox_sandboxes_created_total", image)]
        self.assertGreaterEqual(created, RUNS)
        self.scraped("warmbox_sandbox_creation_seconds_count", {image: created})
        self.scraped("warmbox_pool_max", {image: 4})
        self.scraped('up{job="warmbox"}', {frozenset(): 1})

    def test_token_required_on_loopback_when_given(self):
        r = self.request("GET", "/metrics", auth=False)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.parsed["kind"], "unauthorized")

    def test_socket_status_has_the_same_families(self):
        r = self.daemon.run_cli("pool", "status", "--socket", self.daemon.socket, "--format", "prometheus")
        self.assertEqual(r.returncode, 0, r.stderr)
        sock_types, sock_samples = parse_exposition(r.stdout.decode())
        http = self.request("GET", "/metrics")
        http_types, http_samples = parse_exposition(http.parsed)
        self.assertEqual(sock_types, http_types)
        for family in ["warmbox_pool_idle", "warmbox_pool_active", "warmbox_pool_queued", "warmbox_pool_max",
                       "warmbox_sandboxes_created_total", "warmbox_sandboxes_acquired_total",
                       "warmbox_pool_hits_total", "warmbox_pool_misses_total", "warmbox_sandboxes_evicted_total",
                       "warmbox_sandbox_creation_failures_total", "warmbox_rejected_busy_total",
                       "warmbox_runs_total", "warmbox_run_errors_total"]:
            self.assertEqual(sock_types.get(family), "gauge" if family.startswith("warmbox_pool_") and
                             not family.endswith("_total") else "counter", family)
        for family in ["warmbox_sandbox_creation_seconds", "warmbox_acquire_wait_seconds",
                       "warmbox_run_duration_seconds"]:
            self.assertEqual(sock_types.get(family), "histogram", family)
        # Same series on both; the counters of runs agree (nothing runs now).
        self.assertEqual({k for k in sock_samples if k[0] != "warmbox_http_requests_total"},
                         {k for k in http_samples if k[0] != "warmbox_http_requests_total"})
        for key, v in sock_samples.items():
            if key[0] in ("warmbox_runs_total", "warmbox_run_errors_total", "warmbox_pool_max"):
                self.assertEqual(http_samples[key], v, key)


if __name__ == "__main__":
    unittest.main()
