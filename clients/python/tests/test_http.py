"""The client against a real daemon over its HTTP API (needs root and a build
whose `pool start` has --http; skipped otherwise)."""

from __future__ import annotations

import os
import unittest
from unittest import mock

from _support import DaemonTestCase, eventually

import warmbox


class HttpRunTest(DaemonTestCase):
    DAEMON_ARGS = ["--size", "2", "--max", "4"]
    HTTP = True
    # With a token file the token is required on loopback too.
    TOKEN = "py-client-test-token-0123456789"

    def setUp(self) -> None:
        self.c = self.daemon.http_client()
        self.assertEqual(self.c.transport, "http")

    def test_run_returns_output_and_exit_code(self) -> None:
        r = self.c.run(["sh", "-c", "echo hi; echo oops >&2; exit 3"])
        self.assertEqual((r.stdout, r.stderr, r.exit_code), (b"hi\n", b"oops\n", 3))
        self.assertRegex(r.sandbox or "", r"^[0-9a-f]{6,}$")
        with self.assertRaises(warmbox.CommandFailed):
            self.c.run("exit 3", check=True)

    def test_binary_stdin_and_output_round_trip(self) -> None:
        data = bytes(range(256)) * 4096 + b"\0\xff"  # 1 MiB: base64 in the body
        r = self.c.run(["cat"], stdin=data)
        self.assertEqual(r.stdout, data)

    def test_stdin_too_large_for_the_socket_fits_over_http(self) -> None:
        data = b"\xff" * (3 << 20)
        with self.assertRaises(warmbox.BadRequest):
            self.daemon.client().run(["wc", "-c"], stdin=data)
        self.assertEqual(self.c.run(["wc", "-c"], stdin=data).stdout.strip(), str(len(data)).encode())

    def test_env_workdir_user_timeout(self) -> None:
        r = self.c.run(["sh", "-c", 'echo "$K"; pwd; id -u'], env={"K": "v"}, workdir="/tmp", user="nobody")
        self.assertEqual(r.stdout, b"v\n/tmp\n65534\n", r.stderr)
        t = self.c.run(["sleep", "30"], timeout=0.2)
        self.assertEqual(t.exit_code, 137)
        self.assertTrue(t.timed_out)

    def test_stream(self) -> None:
        events = list(self.c.stream(["sh", "-c", "printf out; printf err >&2; exit 5"]))
        self.assertIsInstance(events[-1], warmbox.Exit)
        self.assertEqual(events[-1].result.exit_code, 5)  # type: ignore[union-attr]
        outs = [e for e in events[:-1] if isinstance(e, warmbox.Output)]
        self.assertEqual(b"".join(e.data for e in outs if e.stream == "stdout"), b"out")
        self.assertEqual(b"".join(e.data for e in outs if e.stream == "stderr"), b"err")

    def test_stream_delivers_output_while_running_and_close_cancels(self) -> None:
        with self.c.stream(["sh", "-c", "echo first; sleep 60; echo second"]) as s:
            self.assertEqual(next(s), warmbox.Output("stdout", b"first\n"))
        self.assertTrue(eventually(lambda: self.daemon.pool().active == 0, 20), self.daemon.pool())

    def test_wrong_or_missing_token_is_auth_error(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARMBOX_")}
        # No generated token file to fall back on either.
        env["WARMBOX_STATE_DIR"] = os.path.join(self.daemon.state, "no-such-dir")
        with mock.patch.dict(os.environ, env, clear=True):
            for token in ("wrong", None):
                c = warmbox.Client(url=self.daemon.url, token=token)
                for call in (lambda: c.run(["true"]), lambda: c.stream(["true"]), c.status):
                    with self.assertRaises(warmbox.AuthError, msg=token) as cm:
                        call()
                    self.assertEqual(cm.exception.status, 401)

    def test_bad_field_is_bad_request(self) -> None:
        with self.assertRaises(warmbox.BadRequest) as cm:
            self.c.run(["true"], cpus=5000)
        self.assertEqual(cm.exception.status, 400)

    def test_unknown_image_is_run_error(self) -> None:
        with self.assertRaises(warmbox.RunError) as cm:
            self.c.run(["true"], image="no-such-image")
        self.assertEqual(cm.exception.kind, "no_image")

    def test_status_healthz_metrics(self) -> None:
        self.c.run(["true"])
        pools = self.c.status()
        self.assertEqual([p.image for p in pools], ["busybox"])
        self.assertEqual(pools[0].max, 4)
        self.assertGreaterEqual(pools[0].total_acquired, 1)
        self.assertTrue(self.c.healthz())
        m = self.c.metrics()
        self.assertRegex(m, r'(?m)^warmbox_pool_max\{[^}]*image="busybox"[^}]*\} 4(\.0)?$')

    def test_token_file_default(self) -> None:
        # $WARMBOX_TOKEN_FILE, or the daemon's generated STATE/http-token.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARMBOX_")}
        with mock.patch.dict(os.environ, env, clear=True):
            os.environ["WARMBOX_TOKEN_FILE"] = os.path.join(self.daemon.state, "token")
            self.assertEqual(warmbox.Client(url=self.daemon.url).run(["echo", "f"]).stdout, b"f\n")
            del os.environ["WARMBOX_TOKEN_FILE"]
            os.environ["WARMBOX_STATE_DIR"] = self.daemon.state
            os.link(os.path.join(self.daemon.state, "token"), os.path.join(self.daemon.state, "http-token"))
            try:
                self.assertEqual(warmbox.default_token(), self.TOKEN)
                self.assertEqual(warmbox.Client(url=self.daemon.url).run(["echo", "g"]).stdout, b"g\n")
            finally:
                os.unlink(os.path.join(self.daemon.state, "http-token"))
            self.assertIsNone(warmbox.default_token())
            # A token file named by the caller must exist.
            os.environ["WARMBOX_TOKEN_FILE"] = os.path.join(self.daemon.state, "missing")
            with self.assertRaises(FileNotFoundError):
                warmbox.Client(url=self.daemon.url)

    def test_env_default_url_and_token(self) -> None:
        with mock.patch.dict(os.environ, {"WARMBOX_URL": self.daemon.url or "", "WARMBOX_TOKEN": self.TOKEN}):
            c = warmbox.Client()
            self.assertEqual(c.transport, "http")
            self.assertEqual(c.run(["echo", "env"]).stdout, b"env\n")


if __name__ == "__main__":
    unittest.main()
