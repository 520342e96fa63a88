"""The server over HTTP with its bash and JavaScript kernels (no IPython
needed: the host has no jupyter_client): routes, errors, queueing, an
interrupt on disconnect, env vars. python3 -m unittest -v interp_server_test
(ctest: interp_unit_test). Skipped without node or bash."""

import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


@unittest.skipUnless(shutil.which("node") and shutil.which("bash"), "needs node and bash")
class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="interp-test-")
        cls.envs = os.path.join(cls.tmp, "envs.json")
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--envs-file",
             cls.envs, "--cwd", cls.tmp, "--warm", "bash"], stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, WB_BASE="base", TMPDIR=cls.tmp))
        line = cls.proc.stderr.readline()
        assert "listening on" in line, line
        cls.port = int(line.rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait()
        cls.proc.stderr.close()
        # SIGTERM stops the kernels and removes the server's temporary dirs.
        left = os.listdir(cls.tmp)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert left == [], "left in TMPDIR: %s" % left

    def request(self, method, path, body=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def run_code(self, **body):
        status, data = self.request("POST", "/execute", body)
        self.assertEqual(status, 200, data)
        lines = data.decode().split("\n")
        self.assertEqual(lines[-1], "")  # every line ends with \n, none is blank
        events = [json.loads(l) for l in lines[:-1]]
        self.assertEqual(events[-1], {"type": "end_of_execution"})
        return events

    def context(self, language):
        status, data = self.request("POST", "/contexts", {"language": language})
        self.assertEqual(status, 200, data)
        return json.loads(data)["id"]

    def text(self, events, kind="stdout"):
        return "".join(e["text"] for e in events if e["type"] == kind)

    def test_errors(self):
        self.assertEqual(self.request("POST", "/execute", {"code": "1", "context_id": "nope"}),
                         (404, b"Context nope not found"))
        self.assertEqual(self.request("POST", "/contexts/nope/restart")[0], 404)
        self.assertEqual(self.request("DELETE", "/contexts/nope")[0], 404)
        status, data = self.request("POST", "/execute", {"code": 1})
        self.assertEqual((status, data), (400, b"code: expected a string"))
        status, data = self.request("POST", "/contexts", {"language": "cobol"})
        self.assertEqual(status, 400)
        self.assertIn(b"cobol", data)
        self.assertEqual(self.request("GET", "/nowhere")[0], 404)
        self.assertEqual(self.request("GET", "/execute")[0], 405)
        self.assertEqual(self.request("GET", "/health"), (200, b"OK"))

    def test_keep_alive(self):
        # Requests one after another on one connection (the port proxy's
        # kept tunnel), an execution's stream among them; close when asked.
        cid = self.context("bash")
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.connect()
        sock = c.sock
        for i in range(3):
            c.request("POST", "/execute", body=json.dumps({"code": "echo %d" % i, "context_id": cid}))
            r = c.getresponse()
            self.assertEqual(r.getheader("Connection"), "keep-alive")
            events = [json.loads(line) for line in r.read().decode().splitlines()]
            self.assertEqual(self.text(events), "%d\n" % i)
            c.request("GET", "/health")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"OK"))
            self.assertIs(c.sock, sock)  # never reconnected
        c.close()
        # Connection: close is honoured: the answer, then EOF.
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sk:
            sk.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                more = sk.recv(4096)
                if not more:
                    break
                data += more
        self.assertTrue(data.startswith(b"HTTP/1.1 200 OK\r\n"), data)
        self.assertIn(b"\r\nConnection: close\r\n", data)
        self.assertTrue(data.endswith(b"\r\n\r\nOK"), data)

    def test_contexts_listed_and_removed(self):
        status, data = self.request("GET", "/contexts")
        langs = sorted(c["language"] for c in json.loads(data))
        self.assertIn("python", langs)
        self.assertIn("javascript", langs)
        self.assertIn("bash", langs)  # --warm bash: started before the server listened
        cid = self.context("bash")
        self.assertIn(cid, [c["id"] for c in json.loads(self.request("GET", "/contexts")[1])])
        self.assertEqual(self.request("DELETE", "/contexts/" + cid)[0], 204)
        self.assertNotIn(cid, [c["id"] for c in json.loads(self.request("GET", "/contexts")[1])])

    def test_bash_state_env_and_interrupt(self):
        cid = self.context("bash")
        self.run_code(code="X=5; cd /", context_id=cid)
        ev = self.run_code(code='echo "$X $(pwd) [$E] $WB_BASE"', context_id=cid,
                           env_vars={"E": "one"})
        self.assertEqual(self.text(ev), "5 / [one] base\n")
        self.assertEqual(self.text(self.run_code(code='echo "[$E]"', context_id=cid)), "[]\n")
        # A client that goes away interrupts the loop; the shell lives on.
        with self.assertRaises(OSError):
            self.request("POST", "/execute", {"code": "while :; do :; done", "context_id": cid},
                         timeout=1)
        self.assertEqual(self.text(self.run_code(code="echo $X", context_id=cid)), "5\n")
        # exit ends the shell: an error, then a fresh one.
        ev = self.run_code(code="exit 3", context_id=cid)
        self.assertEqual([e["name"] for e in ev if e["type"] == "error"], ["KernelError"])
        self.assertEqual(self.text(self.run_code(code="echo [$X]", context_id=cid)), "[]\n")

    def test_javascript(self):
        cid = self.context("js")
        self.run_code(code="let a = 1; const f = x => x * 2", context_id=cid)
        ev = self.run_code(code="console.log('hi'); f(a + 20)", context_id=cid)
        self.assertEqual(self.text(ev), "hi\n")
        self.assertEqual([e["text"] for e in ev if e["type"] == "result"], ["42"])
        ev = self.run_code(code="Promise.resolve(7)", context_id=cid)
        self.assertEqual([e["text"] for e in ev if e["type"] == "result"], ["7"])
        ev = self.run_code(code="process.env.E", context_id=cid, env_vars={"E": "x"})
        self.assertEqual([e["text"] for e in ev if e["type"] == "result"], ["'x'"])
        ev = self.run_code(code="process.env.E", context_id=cid)
        self.assertEqual([e for e in ev if e["type"] == "result"], [])
        ev = self.run_code(code="undefinedThing", context_id=cid)
        err = [e for e in ev if e["type"] == "error"][0]
        self.assertEqual(err["name"], "ReferenceError")
        self.assertNotIn("js_kernel.js", err["traceback"])
        with self.assertRaises(OSError):
            self.request("POST", "/execute", {"code": "while (true) {}", "context_id": cid},
                         timeout=1)
        ev = self.run_code(code="a", context_id=cid)
        self.assertEqual([e["text"] for e in ev if e["type"] == "result"], ["1"])

    def test_late_bound_env_file(self):
        cid = self.context("bash")
        with open(self.envs + ".tmp", "w") as f:
            json.dump({"LATE": "bound"}, f)
        os.rename(self.envs + ".tmp", self.envs)
        try:
            self.assertEqual(self.text(self.run_code(code="echo $LATE", context_id=cid)),
                             "bound\n")
        finally:
            os.unlink(self.envs)
        self.assertEqual(self.text(self.run_code(code="echo [$LATE]", context_id=cid)), "[]\n")


class NotReadyTest(unittest.TestCase):
    """A server whose warm kernel cannot start never listens: it exits,
    saying why (the pool's readiness poll then reports the exit)."""

    def start(self, *args):
        tmp = tempfile.mkdtemp(prefix="interp-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        p = subprocess.run(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--cwd", tmp, *args],
            stderr=subprocess.PIPE, text=True, timeout=60, env=dict(os.environ, TMPDIR=tmp))
        self.assertNotIn("listening on", p.stderr)
        self.assertEqual(os.listdir(tmp), [])  # its runtime dir removed
        return p

    def test_unknown_language(self):
        p = self.start("--warm", "cobol")
        self.assertEqual(p.returncode, 2)
        self.assertIn("--warm: unknown language 'cobol'", p.stderr)

    @unittest.skipIf(importlib.util.find_spec("jupyter_client") is not None,
                     "jupyter_client is installed: the python kernel would start")
    def test_kernel_that_cannot_start(self):
        p = self.start("--warm", "python")
        self.assertEqual(p.returncode, 1)
        self.assertIn("not ready: python kernel: cannot start", p.stderr)


if __name__ == "__main__":
    unittest.main()
