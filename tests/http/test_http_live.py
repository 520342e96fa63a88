#!/usr/bin/python3
"""Live sandboxes over the HTTP API against a real daemon (needs root):
lifecycle, processes, files (a 100 MiB round trip through a daemon whose
memory must not grow by it), watches, and the error statuses, each JSON
answer checked against docs/openapi.yaml.

    WARMBOX_BUILD_DIR=build /usr/bin/python3 tests/http/test_http_live.py -v

The daemon has its own uid range (UID_BASE, tests/uid_ranges.h's
kHttpLiveTest, checked by test_util_test) and cgroup parent.
"""

import base64
import hashlib
import http.client
import json
import os
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from test_http_api import Daemon, Spec, eventually, skip_reason  # noqa: E402

UID_BASE = 1740000000
MiB = 1 << 20


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class LiveHttpTest(unittest.TestCase):
    daemon = None
    spec = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.spec = Spec()
        cls.daemon = Daemon(UID_BASE, "/warmbox-http-live-test-%d" % os.getpid(), args=["--size", "1", "--max", "4"])
        cls.daemon.start()

    @classmethod
    def tearDownClass(cls):
        if cls.daemon is not None:
            problems = cls.daemon.stop()
            if problems:
                raise AssertionError("\n".join(problems))

    # -- plumbing ------------------------------------------------------------------

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json", accept="application/json"):
        """One request on its own connection; returns (status, headers, body bytes)."""
        c = self.conn()
        headers = {"Authorization": "Bearer " + self.daemon.token, "Accept": accept}
        if body is not None:
            headers["Content-Type"] = ctype
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def json_call(self, method, path, body=None, want=200, schema=None):
        status, headers, data = self.request(method, path, body)
        self.assertEqual(status, want, "%s %s: %s" % (method, path, data[:500]))
        if status == 204:
            self.assertEqual(data, b"")
            return None
        obj = json.loads(data)
        if status >= 400:
            self.spec.validate(self.spec.schema("Error"), obj, "%s %s %d" % (method, path, status))
        elif schema:
            self.spec.validate(self.spec.schema(schema), obj, "%s %s" % (method, path))
        return obj

    def create(self, **kw):
        body = {"timeout": 120, "no_main": True}
        body.update(kw)
        info = self.json_call("POST", "/v1/sandboxes", body, want=201, schema="SandboxInfo")
        self.addCleanup(self.request, "DELETE", "/v1/sandboxes/" + info["id"])
        return info["id"]

    @staticmethod
    def events(data):
        out = {"lines": [], "stdout": b"", "stderr": b"", "exit": None, "pid": None}
        for line in data.decode().splitlines():
            if not line:
                continue
            obj = json.loads(line)
            out["lines"].append(obj)
            if "started" in obj:
                out["pid"] = obj["started"]["pid"]
            if "stdout" in obj:
                out["stdout"] += base64.b64decode(obj["stdout"])
            if "stderr" in obj:
                out["stderr"] += base64.b64decode(obj["stderr"])
            if "exit" in obj:
                out["exit"] = obj["exit"]
        return out

    def validate_lines(self, ev):
        for i, line in enumerate(ev["lines"]):
            self.spec.validate(self.spec.schema("ProcessEvent"), line, "NDJSON line %d" % i)

    # -- tests ---------------------------------------------------------------------

    def test_create_list_inspect_kill(self):
        sid = self.create(metadata={"suite": "http-live", "n": "1"}, env={"K": "V"})
        info = self.json_call("GET", "/v1/sandboxes/" + sid, schema="SandboxInfo")
        self.assertEqual(info["state"], "running")
        self.assertEqual(info["metadata"]["suite"], "http-live")
        listed = self.json_call("GET", "/v1/sandboxes?metadata=suite%3Dhttp-live&metadata=n=1",
                                schema="SandboxList")
        self.assertIn(sid, [s["id"] for s in listed["sandboxes"]])
        none = self.json_call("GET", "/v1/sandboxes?metadata=suite=other", schema="SandboxList")
        self.assertNotIn(sid, [s["id"] for s in none["sandboxes"]])
        t = self.json_call("POST", "/v1/sandboxes/%s/timeout" % sid, {"timeout": 900}, schema="SandboxInfo")
        self.assertGreater(t["expires_ms"], info["expires_ms"])
        self.json_call("DELETE", "/v1/sandboxes/" + sid, want=204)
        err = self.json_call("GET", "/v1/sandboxes/" + sid, want=404)
        self.assertEqual(err["kind"], "not_found")

    def test_unknown_id_is_404_not_found(self):
        for method, path, body in (("GET", "", None), ("DELETE", "", None), ("POST", "/pause", None),
                                   ("POST", "/processes", {"cmd": ["true"]}), ("GET", "/processes", None),
                                   ("GET", "/fs/stat?path=/", None)):
            err = self.json_call(method, "/v1/sandboxes/" + "0" * 32 + path, body, want=404)
            self.assertEqual(err["kind"], "not_found", (method, path))

    def test_exec_foreground_streams_then_exit(self):
        sid = self.create()
        status, headers, data = self.request("POST", "/v1/sandboxes/%s/processes" % sid,
                                             {"cmd": ["sh", "-c", "echo out; echo err >&2; exit 7"]},
                                             accept="application/x-ndjson")
        self.assertEqual(status, 200, data)
        self.assertTrue(headers["content-type"].startswith("application/x-ndjson"))
        ev = self.events(data)
        self.validate_lines(ev)
        self.assertIn("started", ev["lines"][0])
        self.assertEqual(ev["stdout"], b"out\n")
        self.assertEqual(ev["stderr"], b"err\n")
        self.assertEqual(ev["exit"]["exit_code"], 7)
        self.assertIn("exit", ev["lines"][-1])
        # Output comes as it is produced: the first chunk before the process ends.
        c = self.conn()
        c.request("POST", "/v1/sandboxes/%s/processes" % sid,
                  body=json.dumps({"cmd": ["sh", "-c", "echo first; read x; echo never"], "stdin": True}),
                  headers={"Authorization": "Bearer " + self.daemon.token, "Content-Type": "application/json"})
        r = c.getresponse()
        started = json.loads(r.readline())
        first = json.loads(r.readline())
        self.assertEqual(base64.b64decode(first["stdout"]), b"first\n")
        c.close()  # the process stays (kept): a client that goes away never kills it
        pid = started["started"]["pid"]
        ps = self.json_call("GET", "/v1/sandboxes/%s/processes" % sid, schema="ProcessList")
        self.assertIn(pid, [p["pid"] for p in ps["processes"] if p["running"]])
        self.json_call("POST", "/v1/sandboxes/%s/processes/%d/signal" % (sid, pid), {"signal": "KILL"}, want=204)

    def test_logs_tail_and_follow(self):
        sid = self.create(no_main=False, main=["sh", "-c", "echo one; echo two >&2; sleep 3; echo three"])
        base = "/v1/sandboxes/%s" % sid
        def lines():
            status, headers, data = self.request("GET", base + "/logs", accept="text/plain")
            self.assertEqual(status, 200)
            self.assertTrue(headers["content-type"].startswith("text/plain"))
            return data.decode().splitlines()
        self.assertTrue(eventually(lambda: len(lines()) >= 2, timeout=10), lines())
        self.assertIn("one", lines()[0])
        status, _, data = self.request("GET", base + "/logs?tail=1", accept="text/plain")
        self.assertEqual(len(data.decode().splitlines()), 1)
        self.assertIn("two", data.decode())
        c = self.conn(timeout=20)
        c.request("GET", base + "/logs?follow=true&tail=1", headers={"Authorization": "Bearer " + self.daemon.token})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn(b"two", r.readline())
        self.assertIn(b"three", r.readline())  # logged after the request: it follows
        c.close()

    def test_background_attach_stdin_signal(self):
        sid = self.create()
        bg = self.json_call("POST", "/v1/sandboxes/%s/processes" % sid,
                            {"cmd": ["sh", "-c", "while read l; do echo got $l; done"], "stdin": True,
                             "background": True}, want=201, schema="ProcessStarted")
        pid = bg["pid"]
        ps = self.json_call("GET", "/v1/sandboxes/%s/processes" % sid, schema="ProcessList")
        self.assertIn(pid, [p["pid"] for p in ps["processes"] if p["running"]])
        base = "/v1/sandboxes/%s/processes/%d" % (sid, pid)
        status, _, data = self.request("POST", base + "/stdin", b"one\n", ctype="application/octet-stream")
        self.assertEqual(status, 204, data)
        status, _, data = self.request("POST", base + "/stdin?close=true", b"two\n", ctype="application/octet-stream")
        self.assertEqual(status, 204, data)
        status, _, data = self.request("GET", base + "/output?from=0", accept="application/x-ndjson")
        self.assertEqual(status, 200)
        ev = self.events(data)
        self.validate_lines(ev)
        self.assertEqual(ev["stdout"], b"got one\ngot two\n")
        self.assertEqual(ev["exit"]["exit_code"], 0)

        sleeper = self.json_call("POST", "/v1/sandboxes/%s/processes" % sid,
                                 {"cmd": ["sleep", "300"], "background": True}, want=201)["pid"]
        self.json_call("POST", "/v1/sandboxes/%s/processes/%d/signal" % (sid, sleeper), {"signal": 15}, want=204)
        status, _, data = self.request("GET", "/v1/sandboxes/%s/processes/%d/output" % (sid, sleeper))
        self.assertEqual(self.events(data)["exit"]["exit_code"], 143)
        err = self.json_call("POST", "/v1/sandboxes/%s/processes/%d/signal" % (sid, sleeper), {"signal": "TERM"},
                             want=404)
        self.assertEqual(err["kind"], "not_found")

    def test_file_of_100_mib_round_trips_without_the_daemon_holding_it(self):
        sid = self.create()
        size = 100 * MiB
        block = hashlib.sha256(b"warmbox").digest() * (MiB // 32)  # 1 MiB, not all one byte
        before = rss_kib(self.daemon.proc.pid)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.wait(0.05):
                peak[0] = max(peak[0], rss_kib(self.daemon.proc.pid))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        try:
            def body():
                for i in range(size // MiB):
                    yield block[i % 32:] + block[:i % 32]

            c = self.conn(timeout=300)
            c.request("PUT", "/v1/sandboxes/%s/files?path=/tmp/big.bin&mode=0600" % sid, body=body(),
                      headers={"Authorization": "Bearer " + self.daemon.token,
                               "Content-Type": "application/octet-stream"}, encode_chunked=True)
            r = c.getresponse()
            stat = json.loads(r.read())
            c.close()
            self.assertEqual(r.status, 200, stat)
            self.spec.validate(self.spec.schema("FileStat"), stat, "PUT files")
            self.assertEqual(stat["size"], size)
            self.assertEqual(stat["mode"], 0o600)

            want = hashlib.sha256()
            for i in range(size // MiB):
                want.update(block[i % 32:] + block[:i % 32])
            got = hashlib.sha256()
            n = 0
            c = self.conn(timeout=300)
            c.request("GET", "/v1/sandboxes/%s/files?path=/tmp/big.bin" % sid,
                      headers={"Authorization": "Bearer " + self.daemon.token})
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Type"), "application/octet-stream")
            while True:
                piece = r.read(MiB)
                if not piece:
                    break
                n += len(piece)
                got.update(piece)
            c.close()
        finally:
            done.set()
            t.join()
        self.assertEqual(n, size)
        self.assertEqual(got.hexdigest(), want.hexdigest())
        # Loosely: neither direction held the file (100 MiB) in the daemon.
        grew = (peak[0] - before) // 1024
        sys.stderr.write("(the daemon's RSS grew by %d MiB at most) " % grew)
        self.assertLess(grew, 40, "the daemon's RSS grew by %d MiB during the round trip" % grew)

    def test_refused_uploads(self):
        sid = self.create()
        base = "/v1/sandboxes/%s/files" % sid
        # The agent refuses at once (nobody may not write /root): the daemon
        # answers 403, drops the rest of the body (up to 16 MiB, as for every
        # refused body) and closes; it serves on.
        status, _, data = self.request("PUT", base + "?path=/root/x&user=nobody", b"x" * (12 * MiB),
                                       ctype="application/octet-stream")
        self.assertEqual(status, 403, data)
        self.assertEqual(json.loads(data)["kind"], "permission_denied")
        # Over max_bytes: 413, whether the length is announced or found midway.
        status, _, data = self.request("PUT", base + "?path=/tmp/m&max_bytes=1000", b"y" * 5000,
                                       ctype="application/octet-stream")
        self.assertEqual(status, 413, data)
        self.assertEqual(json.loads(data)["kind"], "resource_exhausted")
        c = self.conn()
        c.request("PUT", base + "?path=/tmp/m&max_bytes=1000", body=iter([b"z" * 600, b"z" * 600]),
                  headers={"Authorization": "Bearer " + self.daemon.token,
                           "Content-Type": "application/octet-stream"}, encode_chunked=True)
        r = c.getresponse()
        self.assertEqual(r.status, 413, r.read())
        c.close()
        # Nothing was left behind, and the wrong type is refused.
        self.json_call("GET", "/v1/sandboxes/%s/fs/stat?path=/tmp/m" % sid, want=404)
        status, _, _ = self.request("PUT", base + "?path=/tmp/m", b"{}", ctype="application/json")
        self.assertEqual(status, 415)
        self.json_call("GET", "/v1/sandboxes/%s" % sid)

    def test_stat_list_mkdir_remove_rename(self):
        sid = self.create()
        base = "/v1/sandboxes/%s" % sid
        mk = self.json_call("POST", base + "/fs/mkdir", {"path": "/tmp/t/a/b", "mode": 0o750}, schema="FileStat")
        self.assertEqual(mk["type"], "dir")
        status, _, data = self.request("PUT", base + "/files?path=/tmp/t/a/f.txt", b"hello",
                                       ctype="application/octet-stream")
        self.assertEqual(status, 200, data)
        st = self.json_call("GET", base + "/fs/stat?path=/tmp/t/a/f.txt", schema="FileStat")
        self.assertEqual((st["type"], st["size"], st["name"]), ("file", 5, "f.txt"))
        ls = self.json_call("GET", base + "/fs/list?path=/tmp/t&depth=3", schema="FileList")
        self.assertLessEqual({"/tmp/t/a", "/tmp/t/a/b", "/tmp/t/a/f.txt"}, {e["path"] for e in ls["entries"]})
        mv = self.json_call("POST", base + "/fs/rename", {"path": "/tmp/t/a/f.txt", "to": "/tmp/t/g.txt"},
                            schema="FileStat")
        self.assertEqual(mv["path"], "/tmp/t/g.txt")
        self.assertEqual(self.request("GET", base + "/files?path=/tmp/t/g.txt")[2], b"hello")
        err = self.json_call("POST", base + "/fs/remove", {"path": "/tmp/t/a"}, want=409)
        self.assertEqual(err["kind"], "failed_precondition")
        self.json_call("POST", base + "/fs/remove", {"path": "/tmp/t", "recursive": True}, want=204)
        err = self.json_call("GET", base + "/fs/stat?path=/tmp/t", want=404)
        self.assertEqual(err["kind"], "not_found")
        # As a user of the sandbox: its permissions apply.
        err = self.json_call("GET", base + "/fs/list?path=/root&user=nobody", want=403)
        self.assertEqual(err["kind"], "permission_denied")

    def test_watch_events(self):
        sid = self.create()
        base = "/v1/sandboxes/%s" % sid
        self.json_call("POST", base + "/fs/mkdir", {"path": "/tmp/w"})
        c = self.conn(timeout=30)
        c.request("GET", base + "/fs/watch?path=/tmp/w&recursive=true",
                  headers={"Authorization": "Bearer " + self.daemon.token})
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        self.assertTrue(r.getheader("Content-Type").startswith("application/x-ndjson"))
        self.request("PUT", base + "/files?path=/tmp/w/x.txt", b"1", ctype="application/octet-stream")
        self.json_call("POST", base + "/fs/remove", {"path": "/tmp/w/x.txt"}, want=204)
        seen = []
        while not any(e["type"] == "remove" and e["path"] == "/tmp/w/x.txt" for e in seen):
            line = r.readline()
            self.assertTrue(line, "the watch ended early; events: %s" % seen)
            ev = json.loads(line)
            self.spec.validate(self.spec.schema("WatchEvent"), ev, "watch event")
            seen.append(ev)
        c.close()
        self.assertIn(("create", "/tmp/w/x.txt"), [(e["type"], e["path"]) for e in seen])

    def test_paused_sandbox_is_409(self):
        sid = self.create()
        self.json_call("POST", "/v1/sandboxes/%s/pause" % sid, want=204)
        self.assertEqual(self.json_call("GET", "/v1/sandboxes/" + sid)["state"], "paused")
        for method, path, body in (("POST", "/processes", {"cmd": ["true"]}), ("GET", "/fs/stat?path=/", None),
                                   ("POST", "/pause", None)):
            err = self.json_call(method, "/v1/sandboxes/%s%s" % (sid, path), body, want=409)
            self.assertEqual(err["kind"], "failed_precondition", path)
        self.json_call("POST", "/v1/sandboxes/%s/resume" % sid, want=204)
        status, _, data = self.request("POST", "/v1/sandboxes/%s/processes" % sid, {"cmd": ["true"]})
        self.assertEqual(status, 200, data)

    def test_bad_input_is_400_naming_the_field(self):
        for body, field in (({"timeout": "soon"}, "timeout"), ({"memory": "lots"}, "memory"),
                            ({"metadata": {"k": 1}}, "metadata"), ({"on_timeout": "explode"}, "on_timeout"),
                            ({"imag": "busybox"}, "imag")):
            err = self.json_call("POST", "/v1/sandboxes", body, want=400)
            self.assertEqual(err["kind"], "bad_request")
            self.assertIn("(%s)" % field, err["error"])
        sid = self.create()
        for path, body, field in (("/processes", {"cmd": "ls"}, "cmd"),
                                  ("/processes", {"cmd": ["x"], "tty": True, "rows": -1}, "rows"),
                                  ("/timeout", {"timeout": 0}, "timeout"), ("/fs/mkdir", {"path": "rel"}, "path"),
                                  ("/fs/rename", {"path": "/a"}, "to")):
            err = self.json_call("POST", "/v1/sandboxes/%s%s" % (sid, path), body, want=400)
            self.assertIn("(%s)" % field, err["error"], path)
        err = self.json_call("GET", "/v1/sandboxes/%s/fs/list?path=/&depth=x" % sid, want=400)
        self.assertIn("(depth)", err["error"])
        status, _, _ = self.request("POST", "/v1/sandboxes", b"{}", ctype="text/plain")
        self.assertEqual(status, 415)


if __name__ == "__main__":
    unittest.main()
