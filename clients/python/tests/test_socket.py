"""The client against a real daemon over its Unix socket (needs root)."""

from __future__ import annotations

import threading
import unittest

from _support import DaemonTestCase, daemon_has_http, eventually

import warmbox


class SocketRunTest(DaemonTestCase):
    DAEMON_ARGS = ["--size", "2", "--max", "4"]

    def setUp(self) -> None:
        self.c = self.daemon.client()

    def test_run_returns_output_and_exit_code(self) -> None:
        r = self.c.run(["echo", "hi"])
        self.assertEqual(r.stdout, b"hi\n")
        self.assertEqual(r.stderr, b"")
        self.assertEqual(r.exit_code, 0)
        self.assertTrue(r.ok)
        self.assertFalse(r.timed_out)
        self.assertRegex(r.sandbox or "", r"^[0-9a-f]{6,}$")

    def test_string_cmd_runs_in_sh(self) -> None:
        r = self.c.run("echo $((40 + 2)) >&2; printf out")
        self.assertEqual(r.stderr, b"42\n")
        self.assertEqual(r.stdout, b"out")

    def test_nonzero_exit_is_a_result_unless_check(self) -> None:
        r = self.c.run(["sh", "-c", "echo bad >&2; exit 7"])
        self.assertEqual(r.exit_code, 7)
        self.assertFalse(r.ok)
        with self.assertRaises(warmbox.CommandFailed) as cm:
            self.c.run(["sh", "-c", "echo bad >&2; exit 7"], check=True)
        self.assertEqual(cm.exception.result.exit_code, 7)
        self.assertEqual(cm.exception.result.stderr, b"bad\n")
        self.assertIn("bad", str(cm.exception))

    def test_program_not_found_is_127(self) -> None:
        r = self.c.run(["no-such-program"])
        self.assertEqual(r.exit_code, 127)

    def test_stdin_bytes_round_trip_exactly(self) -> None:
        data = bytes(range(256)) * 1024 + b"\0tail\xff"
        r = self.c.run(["cat"], stdin=data)
        self.assertEqual(r.exit_code, 0)
        self.assertEqual(r.stdout, data)

    def test_stdin_str_is_utf8(self) -> None:
        r = self.c.run(["wc", "-c"], stdin="h\u00e9")
        self.assertEqual(r.stdout.strip(), b"3")

    def test_no_stdin_is_empty(self) -> None:
        r = self.c.run(["wc", "-c"])
        self.assertEqual(r.stdout.strip(), b"0")

    def test_env_mapping_and_list(self) -> None:
        r = self.c.run(["sh", "-c", 'echo "$A|$B"'], env={"A": "1 2", "B": "x=y"})
        self.assertEqual(r.stdout, b"1 2|x=y\n")
        r = self.c.run(["sh", "-c", 'echo "$A"'], env=["A=listed"])
        self.assertEqual(r.stdout, b"listed\n")

    def test_workdir_and_user(self) -> None:
        r = self.c.run(["sh", "-c", "pwd; id -u"], workdir="/tmp", user="nobody")
        self.assertEqual(r.stdout, b"/tmp\n65534\n", r.stderr)

    def test_timeout_kills_with_137(self) -> None:
        r = self.c.run(["sleep", "30"], timeout=0.2)
        self.assertEqual(r.exit_code, 137)
        self.assertTrue(r.timed_out)

    def test_per_run_limits_are_sent(self) -> None:
        r = self.c.run(["sh", "-c", "ulimit -n"], nofile=77)
        self.assertEqual(r.stdout, b"77\n")
        r = self.c.run(["sh", "-c", "head -c 100000 /dev/zero"], output_cap="1k")
        self.assertEqual(len(r.stdout), 1024)
        self.assertTrue(r.stdout_truncated)

    def test_stream_yields_output_then_exit(self) -> None:
        events = list(self.c.stream(["sh", "-c", "printf out; printf err >&2; exit 5"]))
        self.assertIsInstance(events[-1], warmbox.Exit)
        final = events[-1].result  # type: ignore[union-attr]
        self.assertEqual(final.exit_code, 5)
        self.assertEqual((final.stdout, final.stderr), (b"", b""))
        outs = [e for e in events[:-1] if isinstance(e, warmbox.Output)]
        self.assertEqual(len(outs), len(events) - 1)
        self.assertEqual(b"".join(e.data for e in outs if e.stream == "stdout"), b"out")
        self.assertEqual(b"".join(e.data for e in outs if e.stream == "stderr"), b"err")

    def test_stream_delivers_output_while_running_and_close_cancels(self) -> None:
        with self.c.stream(["sh", "-c", "echo first; sleep 60; echo second"]) as s:
            ev = next(s)
            # The command cannot have finished: it sleeps 60 s, and "second"
            # would have come in this chunk had the output been collected first.
            self.assertEqual(ev, warmbox.Output("stdout", b"first\n"))
            self.assertGreaterEqual(self.daemon.pool().active, 1)
        self.assertIsNone(s.result)
        # Hanging up killed the command: its slot is returned.
        self.assertTrue(eventually(lambda: self.daemon.pool().active == 0, 20), self.daemon.pool())

    def test_stream_check_raises_in_place_of_exit(self) -> None:
        s = self.c.stream("echo x; exit 3", check=True)
        self.assertEqual(next(s), warmbox.Output("stdout", b"x\n"))
        with self.assertRaises(warmbox.CommandFailed):
            next(s)
        self.assertEqual(s.result.exit_code if s.result else None, 3)
        self.assertEqual(list(s), [])

    def test_stream_wait(self) -> None:
        self.assertEqual(self.c.stream("exit 4").wait().exit_code, 4)

    def test_unknown_image_is_run_error(self) -> None:
        with self.assertRaises(warmbox.RunError) as cm:
            self.c.run(["true"], image="no-such-image")
        self.assertEqual(cm.exception.kind, "no_image")
        self.assertIn("no-such-image", str(cm.exception))

    def test_bad_field_is_bad_request(self) -> None:
        with self.assertRaises(warmbox.BadRequest) as cm:
            self.c.run(["true"], cpus=5000)
        self.assertIn("cpus", str(cm.exception))

    def test_status_lists_the_pool(self) -> None:
        self.c.run(["true"])
        pools = self.c.status()
        self.assertEqual([p.image for p in pools], ["busybox"])
        p = pools[0]
        self.assertEqual(p.max, 4)
        self.assertGreaterEqual(p.total_acquired, 1)
        self.assertGreaterEqual(p.total_created, 1)
        self.assertIsInstance(p.hit_rate, float)

    def test_healthz(self) -> None:
        self.assertTrue(self.c.healthz())

    def test_metrics_on_the_socket(self) -> None:
        # Metrics came with the HTTP API (issue 8): --http tells this build has them.
        if not daemon_has_http():
            self.skipTest("this build's daemon predates metrics (no --http)")
        self.c.run(["true"])
        m = self.c.metrics()
        self.assertRegex(m, r'(?m)^warmbox_pool_max\{[^}]*image="busybox"[^}]*\} 4(\.0)?$')
        self.assertRegex(m, r'(?m)^# TYPE warmbox_pool_idle gauge$')

    def test_one_client_shared_by_threads(self) -> None:
        results = {}

        def work(i: int) -> None:
            results[i] = self.c.run(["sh", "-c", f"echo {i}"])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({i: r.stdout for i, r in results.items()}, {i: f"{i}\n".encode() for i in range(4)})

    def test_env_default_socket(self) -> None:
        import os
        from unittest import mock
        with mock.patch.dict(os.environ, {"WARMBOX_SOCKET": self.daemon.sock}):
            os.environ.pop("WARMBOX_URL", None)
            self.assertEqual(warmbox.Client().run(["echo", "env"]).stdout, b"env\n")


if __name__ == "__main__":
    unittest.main()
