"""Live sandboxes through the client, over the Unix socket and over HTTP,
against a real daemon (needs root)."""

from __future__ import annotations

import io
import os
import time
import threading
import unittest

from _support import DaemonTestCase, eventually

import warmbox

# Ids [LIVE_USERNS_BASE, +65536) are this suite's (tests/uid_ranges.h,
# kPythonLiveTest; test_util_test checks it).
LIVE_USERNS_BASE = 1730000000


class _SandboxTests:
    """The same tests on both transports (a mixin: not run on its own)."""

    daemon: object

    def client(self) -> warmbox.Client:
        raise NotImplementedError

    def setUp(self) -> None:
        self.c = self.client()
        self.sb = self.c.create_sandbox(metadata={"suite": "py", "t": self.id()}, timeout=120, no_main=True)
        self.addCleanup(self._kill)

    def _kill(self) -> None:
        try:
            self.sb.kill()
        except warmbox.NotFound:
            pass

    def test_create_inspect_list_kill(self) -> None:
        info = self.sb.info
        self.assertRegex(info.id, r"^[0-9a-f]{32}$")
        self.assertEqual(info.state, "running")
        self.assertEqual(info.metadata["suite"], "py")
        self.assertEqual(self.sb.inspect().id, info.id)
        ids = [i.id for i in self.c.list_sandboxes(metadata={"t": self.id()})]
        self.assertEqual(ids, [info.id])
        self.assertEqual(self.c.list_sandboxes(metadata={"t": "nothing-has-this"}), [])
        same = self.c.sandbox(info.id)
        self.assertEqual(same.inspect().metadata["t"], self.id())
        after = self.sb.set_timeout(600)
        self.assertGreater(after.expires_ms, info.expires_ms)
        self.sb.kill()
        with self.assertRaises(warmbox.NotFound) as cm:
            self.sb.inspect()
        self.assertEqual(cm.exception.kind, "not_found")

    def test_exec_foreground_output_and_exit(self) -> None:
        seen = []
        r = self.sb.exec(["sh", "-c", "echo out; echo err >&2; exit 3"], on_stdout=seen.append)
        self.assertIsInstance(r, warmbox.ProcessResult)
        self.assertEqual(r.exit_code, 3)
        self.assertEqual(r.stdout, b"out\n")
        self.assertEqual(r.stderr, b"err\n")
        self.assertEqual(b"".join(seen), b"out\n")
        self.assertGreater(r.pid, 0)
        data = bytes(range(256)) * 4096
        r = self.sb.exec(["cat"], stdin=data)
        self.assertEqual(r.stdout, data)
        r = self.sb.exec("echo $K $(pwd)", env={"K": "v"}, cwd="/tmp")
        self.assertEqual(r.stdout, b"v /tmp\n")

    def test_background_attach_stdin_signal(self) -> None:
        p = self.sb.exec(["sh", "-c", "read l; echo got $l; sleep 100"], background=True, stdin=None)
        self.assertIsInstance(p, warmbox.Process)
        running = {x.pid: x for x in self.sb.ps()}
        self.assertIn(p.pid, running)
        self.assertTrue(running[p.pid].running)
        # stdin=True: a pipe left open for send_stdin.
        q = self.sb.exec(["sh", "-c", "read l; echo got $l"], background=True, stdin=True)
        self.sb.send_stdin(q.pid, b"x\n", close=True)
        r = q.wait()
        self.assertEqual(r.stdout, b"got x\n")
        self.assertEqual(r.exit_code, 0)
        self.sb.signal(p.pid, "KILL")
        r = self.sb.attach(p.pid, from_=0)
        self.assertEqual(r.exit_code, 137)
        with self.assertRaises(warmbox.NotFound):
            self.sb.signal(999999, "TERM")

    def test_files(self) -> None:
        data = os.urandom(3 << 20)
        st = self.sb.write_file("/tmp/d/a.bin", data, mode=0o600)
        self.assertEqual(st.size, len(data))
        self.assertEqual(st.mode, 0o600)
        self.assertEqual(self.sb.read_file("/tmp/d/a.bin"), data)
        self.assertEqual(b"".join(self.sb.read_file_stream("/tmp/d/a.bin")), data)
        self.sb.write_file("/tmp/d/b.txt", io.BytesIO(b"from a file object"))
        self.assertEqual(self.sb.read_file("/tmp/d/b.txt"), b"from a file object")
        self.assertEqual(self.sb.stat("/tmp/d").type, "dir")
        self.assertTrue(self.sb.mkdir("/tmp/d/m/n").is_dir)
        names = {f.path for f in self.sb.list_files("/tmp/d", depth=2)}
        self.assertLessEqual({"/tmp/d/a.bin", "/tmp/d/b.txt", "/tmp/d/m", "/tmp/d/m/n"}, names)
        self.assertEqual(self.sb.rename("/tmp/d/b.txt", "/tmp/d/c.txt").path, "/tmp/d/c.txt")
        with self.assertRaises(warmbox.NotFound):
            self.sb.read_file("/tmp/d/b.txt")
        with self.assertRaises(warmbox.Conflict):
            self.sb.remove("/tmp/d/m")
        self.sb.remove("/tmp/d/m", recursive=True)
        with self.assertRaises(warmbox.NotFound):
            self.sb.stat("/tmp/d/m")
        # The files are the sandbox's: its processes see them.
        self.assertEqual(self.sb.exec(["cat", "/tmp/d/c.txt"]).stdout, b"from a file object")

    def test_watch(self) -> None:
        self.sb.mkdir("/tmp/w")
        events = []
        with self.sb.watch("/tmp/w") as w:
            def consume() -> None:
                for ev in w:
                    events.append(ev)
                    if ev.path == "/tmp/w/new":
                        return

            t = threading.Thread(target=consume, daemon=True)
            t.start()
            self.sb.write_file("/tmp/w/new", b"x")
            t.join(20)
        self.assertIn("/tmp/w/new", [e.path for e in events])
        self.assertIn("create", [e.type for e in events if e.path == "/tmp/w/new"])

    def test_pause_refuses_processes_until_resumed(self) -> None:
        self.sb.pause()
        self.assertEqual(self.sb.inspect().state, "paused")
        with self.assertRaises(warmbox.Conflict) as cm:
            self.sb.exec(["true"])
        self.assertEqual(cm.exception.kind, "failed_precondition")
        self.sb.resume()
        self.assertEqual(self.sb.exec(["true"]).exit_code, 0)

    def test_main_log(self) -> None:
        sb = self.c.create_sandbox(main=["sh", "-c", "echo hello-main; echo oops >&2; sleep 2; echo later"],
                                   timeout=60)
        try:
            self.assertTrue(eventually(lambda: any("oops" in line for line in sb.logs()), 10))
            self.assertIn("hello-main", list(sb.logs())[0])
            lines = list(sb.logs(tail=1))
            self.assertEqual(len(lines), 1)
            it = sb.logs(tail=1, follow=True)
            seen = []
            for line in it:
                seen.append(line)
                if "later" in line:
                    break
            it.close()
            self.assertIn("oops", seen[0])
            self.assertIn("later", seen[-1])
        finally:
            sb.kill()

    def test_run_code_plumbing(self) -> None:
        # Plumbing only: a busybox `nc -ll -e` script on 49999 answering any
        # request with fixed NDJSON (not the real code interpreter, whose
        # end-to-end test is the E2B SDK's); it checks the client's side.
        script = (
            "#!/bin/sh\n"
            "len=0\n"
            "while IFS= read -r l; do l=$(printf '%s' \"$l\" | tr -d '\\r'); [ -z \"$l\" ] && break;\n"
            "  case \"$l\" in [Cc]ontent-[Ll]ength:*) len=${l#*: };; esac; done\n"
            "body=$(head -c \"$len\")\n"
            "printf 'HTTP/1.1 200 OK\\r\\n\\r\\n'\n"
            "printf '{\"type\":\"number_of_executions\",\"execution_count\":7}\\n'\n"
            "printf '{\"type\":\"stdout\",\"text\":\"hi\\\\n\"}\\n'\n"
            "case \"$body\" in *raise*) printf '{\"type\":\"error\",\"name\":\"ValueError\",\"value\":\"boom\",\"traceback\":\"tb\"}\\n';;\n"
            "  *) printf '{\"type\":\"result\",\"is_main_result\":true,\"text\":\"2\"}\\n';; esac\n"
        )
        with self.assertRaises(warmbox.WarmboxError) as cm:
            self.sb.run_code("1+1")
        self.assertIn("no code interpreter listens on port 49999", str(cm.exception))
        self.sb.write_file("/tmp/interp.sh", script, mode=0o755)
        self.sb.exec(["nc", "-ll", "-p", "49999", "-e", "/tmp/interp.sh"], background=True)
        seen = []
        deadline = time.monotonic() + 10
        while True:
            try:
                ex = self.sb.run_code("1+1", on_stdout=seen.append)
                break
            except warmbox.WarmboxError:
                if time.monotonic() > deadline:
                    raise
        self.assertIsInstance(ex, warmbox.Execution)
        self.assertEqual(ex.stdout, ["hi\n"])
        self.assertEqual(seen, ["hi\n"])
        self.assertEqual(ex.text, "2")
        self.assertEqual(ex.execution_count, 7)
        self.assertIsNone(ex.error)
        ex = self.sb.run_code("raise ValueError()", env={"A": "b"}, timeout=30)
        self.assertEqual(ex.error, {"name": "ValueError", "value": "boom", "traceback": "tb"})
        with self.assertRaises(ValueError):
            self.sb.run_code("1", language="python", context="c")

    def test_bad_input_is_bad_request(self) -> None:
        with self.assertRaises(warmbox.BadRequest):
            self.c.create_sandbox(on_timeout="explode")
        with self.assertRaises(warmbox.NotFound):
            self.c.sandbox("0" * 32).exec(["true"])


class SocketSandboxTest(_SandboxTests, DaemonTestCase):
    DAEMON_ARGS = ["--size", "1", "--max", "8"]
    USERNS_BASE = LIVE_USERNS_BASE

    def client(self) -> warmbox.Client:
        return self.daemon.client(timeout=30)


class HttpSandboxTest(_SandboxTests, DaemonTestCase):
    DAEMON_ARGS = ["--size", "1", "--max", "8"]
    USERNS_BASE = LIVE_USERNS_BASE
    HTTP = True

    def client(self) -> warmbox.Client:
        return self.daemon.http_client(timeout=30)


if __name__ == "__main__":
    unittest.main()
