"""Unit tests of the client's encoding and decoding (no daemon, no root)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import struct
import unittest
from unittest import mock

import _support  # noqa: F401  (puts the package on sys.path)

import warmbox
from warmbox import _codec


class RequestTest(unittest.TestCase):
    def test_cmd_list_is_passed_as_is(self) -> None:
        self.assertEqual(_codec.normalize_cmd(["echo", "a b", pathlib.PurePosixPath("/x")]), ["echo", "a b", "/x"])
        self.assertEqual(_codec.normalize_cmd(("true",)), ["true"])

    def test_cmd_string_runs_in_sh(self) -> None:
        self.assertEqual(_codec.normalize_cmd("echo $HOME | wc"), ["sh", "-c", "echo $HOME | wc"])

    def test_bad_cmds(self) -> None:
        for bad in ([], "", "  "):
            with self.assertRaises(ValueError):
                _codec.normalize_cmd(bad)
        for bad in (b"echo", [b"echo"], ["echo", 1]):
            with self.assertRaises(TypeError):
                _codec.normalize_cmd(bad)  # type: ignore[arg-type]

    def test_env(self) -> None:
        self.assertEqual(_codec.normalize_env({"A": "1", "B": "x=y"}), ["A=1", "B=x=y"])
        self.assertEqual(_codec.normalize_env(["A=1", "B="]), ["A=1", "B="])
        self.assertIsNone(_codec.normalize_env(None))
        for bad in (["A"], ["=1"], {"": "1"}, {"A=B": "1"}):
            with self.assertRaises(ValueError, msg=repr(bad)):
                _codec.normalize_env(bad)  # type: ignore[arg-type]
        for bad in ({"A": 1}, "A=1", [1]):
            with self.assertRaises(TypeError, msg=repr(bad)):
                _codec.normalize_env(bad)  # type: ignore[arg-type]

    def test_sizes_like_the_cli(self) -> None:
        cases = {"512m": 512 << 20, "2g": 2 << 30, "1048576": 1048576, "1.5k": 1536, "64KiB": 65536,
                 "1t": 1 << 40, "10b": 10, 4096: 4096}
        for text, want in cases.items():
            self.assertEqual(_codec.parse_size(text, "memory"), want, text)
        for bad in ("", "m", "1x", "-1", "1..2m", 0, "0"):
            with self.assertRaises(ValueError, msg=repr(bad)):
                _codec.parse_size(bad, "memory")
        for bad in (True, 1.5, None):
            with self.assertRaises(TypeError, msg=repr(bad)):
                _codec.parse_size(bad, "memory")  # type: ignore[arg-type]

    def test_build_run(self) -> None:
        req = _codec.build_run(["cat"], image="alpine", env={"K": "V"}, stdin="h\u00e9", timeout=1.5,
                               workdir="/w", user="nobody", memory="1m", pids=5, cpus=0.5, output_cap=1024,
                               nofile=64)
        self.assertEqual(req, {"cmd": ["cat"], "image": "alpine", "env": ["K=V"], "workdir": "/w",
                               "user": "nobody", "stdin": "h\u00e9".encode(), "timeout_ms": 1500,
                               "memory": 1 << 20, "pids": 5, "cpus": 0.5, "output_cap": 1024, "nofile": 64})
        self.assertEqual(_codec.build_run(["true"]), {"cmd": ["true"]})
        # A fraction of a millisecond still asks for a timeout.
        self.assertEqual(_codec.build_run(["true"], timeout=0.0001)["timeout_ms"], 1)

    def test_build_run_rejects_bad_values(self) -> None:
        bad_values = [dict(timeout=0), dict(timeout=-1), dict(timeout=float("inf")), dict(timeout=float("nan")), dict(timeout="1"), dict(cpus=0), dict(pids=0),
                      dict(pids=1.5), dict(nofile=True), dict(image=""), dict(stdin=1)]
        for kw in bad_values:
            with self.assertRaises((ValueError, TypeError), msg=repr(kw)):
                _codec.build_run(["true"], **kw)  # type: ignore[arg-type]

    def test_socket_body(self) -> None:
        req = _codec.build_run(["cat"], stdin=b"\x00\xff", env=["A=1"])
        obj = json.loads(_codec.socket_run_body(req, stream=True))
        self.assertEqual(obj, {"op": "run", "cmd": ["cat"], "env": ["A=1"], "stdin": [0, 255], "stream": True})
        obj = json.loads(_codec.socket_run_body(_codec.build_run(["x"]), stream=False))
        self.assertEqual(obj, {"op": "run", "cmd": ["x"]})

    def test_byte_array_json_matches_json(self) -> None:
        for data in (b"", bytes(range(256)), b"\x00" * 3):
            self.assertEqual(_codec.byte_array_json(data), json.dumps(list(data), separators=(",", ":")))

    def test_http_body(self) -> None:
        req = _codec.build_run(["cat"], stdin=b"\x00\xff", timeout=2)
        obj = json.loads(_codec.http_run_body(req))
        self.assertEqual(obj, {"cmd": ["cat"], "stdin_base64": "AP8=", "timeout_ms": 2000})

    def test_oversized_request_is_refused_before_sending(self) -> None:
        req = _codec.build_run(["cat"], stdin=b"\xff" * (3 << 20))  # "255," per byte: 12 MiB of JSON
        with self.assertRaises(warmbox.BadRequest) as cm:
            _codec.socket_run_body(req, stream=False)
        self.assertIn("byte array", str(cm.exception))
        with self.assertRaises(warmbox.BadRequest) as cm:
            _codec.socket_run_body(_codec.build_run(["cat"], stdin=bytes(5 << 20)), stream=False)
        self.assertIn("at least 10485760 bytes", str(cm.exception))
        # The same stdin fits in base64 over HTTP.
        self.assertLess(len(_codec.http_run_body(req)), _codec.MAX_REQUEST)
        with self.assertRaises(warmbox.BadRequest):
            _codec.http_run_body(_codec.build_run(["cat"], stdin=b"x" * (7 << 20)))


class FramingTest(unittest.TestCase):
    def test_little_endian_length_prefix(self) -> None:
        self.assertEqual(_codec.encode_frame(b'{"op":"status"}'), b"\x0f\x00\x00\x00" + b'{"op":"status"}')
        self.assertEqual(_codec.encode_frame(b""), b"\0\0\0\0")
        self.assertEqual(_codec.decode_length(struct.pack("<I", 0x01020304)), 0x01020304)

    def test_length_over_the_cap_is_a_protocol_error(self) -> None:
        with self.assertRaises(warmbox.ProtocolError):
            _codec.decode_length(b"\xff\xff\xff\xff")
        with self.assertRaises(warmbox.ProtocolError):
            _codec.decode_length(struct.pack("<I", 11), cap=10)
        with self.assertRaises(warmbox.ProtocolError):
            _codec.decode_length(b"\x01\x00")


class ResponseTest(unittest.TestCase):
    def test_socket_result(self) -> None:
        obj = json.loads('{"stdout":[104,105,10],"stderr":[],"exit_code":0,"error":null,'
                         '"timed_out":true,"stdout_truncated":true,"oom_killed":true,"sandbox":"1c0b39b0e7cd"}')
        r = _codec.result_from(obj, _codec.byte_array, "t")
        self.assertEqual(r, warmbox.Result(stdout=b"hi\n", stderr=b"", exit_code=0, timed_out=True,
                                           stdout_truncated=True, oom_killed=True, sandbox="1c0b39b0e7cd"))
        self.assertEqual(r.stdout_text, "hi\n")
        # The upstream's shape, without extensions.
        r = _codec.result_from({"stdout": [], "stderr": [255], "exit_code": 3, "error": None},
                               _codec.byte_array, "t")
        self.assertEqual((r.stderr, r.exit_code, r.sandbox, r.timed_out), (b"\xff", 3, None, False))

    def test_http_result(self) -> None:
        obj = {"stdout": base64.b64encode(b"\x00ok").decode(), "stderr": "", "exit_code": 1, "error": None,
               "timed_out": False, "sandbox": "ab12cd"}
        r = _codec.result_from(obj, _codec.b64, "t")
        self.assertEqual((r.stdout, r.stderr, r.exit_code, r.sandbox), (b"\x00ok", b"", 1, "ab12cd"))

    def test_daemon_errors_map_to_exceptions(self) -> None:
        # The socket's error responses carry a kind (docs/errors.md); the
        # class follows the kind.
        cases = [
            ("busy(python:3): no run slot became free within 30000 ms (all 8 in use); retry later",
             warmbox.Busy, "busy"),
            ("bad request(cmd): missing", warmbox.BadRequest, "bad_request"),
            ("frame(4294967295 bytes): exceeds the 8388608-byte limit", warmbox.BadRequest, "bad_request"),
            ("image(nope): no such image (see 'warmbox image ls')", warmbox.RunError, "no_image"),
            ("no image: pass --image or start the daemon with --image", warmbox.BadRequest, "bad_request"),
            ("pool(busybox): the daemon is shutting down", warmbox.RunError, "draining"),
            ("sandbox(x): agent died", warmbox.RunError, "internal"),
        ]
        for msg, cls, kind in cases:
            with self.assertRaises(cls, msg=msg) as cm:
                _codec.result_from({"stdout": [], "stderr": [], "exit_code": -1, "error": msg, "kind": kind},
                                   _codec.byte_array, "t")
            self.assertEqual(cm.exception.kind, kind, msg)
            self.assertEqual(str(cm.exception), msg)
            self.assertIsNone(cm.exception.status)

    def test_error_text_never_decides_the_kind(self) -> None:
        # Words in a message are not a kind: without a kind field (an upstream
        # daemon) every failure is a RunError of kind "internal".
        for msg in ("busy(x): queue full", "bad request(cmd): missing", "the daemon is shutting down"):
            with self.assertRaises(warmbox.RunError, msg=msg) as cm:
                _codec.result_from({"stdout": [], "stderr": [], "exit_code": -1, "error": msg},
                                   _codec.byte_array, "t")
            self.assertNotIsInstance(cm.exception, (warmbox.Busy, warmbox.BadRequest), msg)
            self.assertEqual(cm.exception.kind, "internal", msg)
        # The daemon's kind wins over the text (HTTP's final NDJSON line).
        with self.assertRaises(warmbox.RunError) as cm:
            _codec.result_from({"exit_code": -1, "error": "boom", "kind": "internal"}, _codec.b64, "t")
        self.assertEqual(cm.exception.kind, "internal")

    def test_malformed_responses_are_protocol_errors(self) -> None:
        for obj in ([], {"stdout": []}, {"exit_code": "0"}, {"exit_code": True},
                    {"exit_code": 0, "stdout": [256]}, {"exit_code": 0, "stdout": "x"}):
            with self.assertRaises(warmbox.ProtocolError, msg=repr(obj)):
                _codec.result_from(obj, _codec.byte_array, "t")
        with self.assertRaises(warmbox.ProtocolError):
            _codec.result_from({"exit_code": 0, "stdout": "!!"}, _codec.b64, "t")
        with self.assertRaises(warmbox.ProtocolError):
            _codec.loads(b"{", "t")

    def test_stream_frames(self) -> None:
        self.assertEqual(_codec.event_from({"stream": "stderr", "data": [104]}, _codec.byte_array, "t"),
                         warmbox.Output("stderr", b"h"))
        self.assertEqual(_codec.event_from({"stream": "stdout", "data": "aGk="}, _codec.b64, "t"),
                         warmbox.Output("stdout", b"hi"))
        final = _codec.event_from({"stdout": [], "stderr": [], "exit_code": 2, "error": None},
                                  _codec.byte_array, "t")
        self.assertEqual(final, warmbox.Result(exit_code=2))
        for bad in ({"stream": "stdin", "data": []}, {"stream": "stdout"}):
            with self.assertRaises(warmbox.ProtocolError):
                _codec.event_from(bad, _codec.byte_array, "t")

    def test_status(self) -> None:
        obj = {"images": [{"image": "busybox", "idle": 2, "total_created": 9, "total_acquired": 7,
                           "total_evicted": 0, "active": 1, "queued": 0, "max": 8, "creating": 0, "hits": 7,
                           "misses": 0, "hit_rate": 1.0, "failed_creations": 0, "rejected_busy": 0,
                           "peak_active": 3, "future_field": "x"}]}
        (p,) = _codec.pools_from(obj, "t")
        self.assertEqual((p.image, p.idle, p.active, p.max, p.hits, p.hit_rate, p.peak_active),
                         ("busybox", 2, 1, 8, 7, 1.0, 3))
        self.assertEqual(p.extra, {"future_field": "x"})
        self.assertEqual(_codec.pools_from({"images": []}, "t"), [])
        for bad in ({}, {"images": [{}]}, []):
            with self.assertRaises(warmbox.ProtocolError):
                _codec.pools_from(bad, "t")
        with self.assertRaises(warmbox.BadRequest):
            _codec.pools_from({"error": "bad request(op): nope", "kind": "bad_request"}, "t")

    def test_http_errors(self) -> None:
        def err(status: int, body: object, retry: object = None) -> warmbox.WarmboxError:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            return _codec.http_error(status, raw, retry)  # type: ignore[arg-type]

        e = err(429, {"error": "busy(busybox): all 1 run slots are taken", "kind": "busy"}, "2")
        self.assertIsInstance(e, warmbox.Busy)
        self.assertEqual((e.status, e.retry_after, e.kind), (429, 2.0, "busy"))  # type: ignore[attr-defined]
        self.assertIsNone(err(429, b"", "Wed, 21 Oct 2015 07:28:00 GMT").retry_after)  # type: ignore[attr-defined]
        self.assertIsInstance(err(401, {"error": "unauthorized", "kind": "unauthorized"}), warmbox.AuthError)
        e = err(400, {"error": "bad request(cmd): missing", "kind": "bad_request"})
        self.assertIsInstance(e, warmbox.BadRequest)
        self.assertEqual(str(e), "bad request(cmd): missing")
        self.assertEqual(err(413, b"").kind, "too_large")
        self.assertIsInstance(err(413, b""), warmbox.BadRequest)
        e = err(404, {"error": "image(x): no such image", "kind": "no_image"})
        self.assertEqual((type(e), e.kind), (warmbox.RunError, "no_image"))
        self.assertEqual(err(503, {"error": "draining"}).kind, "draining")
        e = err(503, {"error": "too many connections", "kind": "too_many_connections"}, "1")
        self.assertIsInstance(e, warmbox.Busy)
        self.assertEqual((e.kind, e.retry_after), ("too_many_connections", 1.0))  # type: ignore[attr-defined]
        e = err(403, {"error": "cross-origin request refused", "kind": "forbidden"})
        self.assertEqual((type(e), e.kind), (warmbox.AuthError, "forbidden"))
        self.assertEqual(err(403, b"").kind, "forbidden")
        e = err(415, {"error": "send Content-Type: application/json", "kind": "unsupported_media_type"})
        self.assertEqual((type(e), e.kind), (warmbox.BadRequest, "unsupported_media_type"))
        e = err(500, b"<html>oops</html>")
        self.assertEqual((type(e), e.kind, str(e)), (warmbox.RunError, "internal", "<html>oops</html>"))


class ClientOptionsTest(unittest.TestCase):
    def test_default_socket(self) -> None:
        with mock.patch("os.geteuid", return_value=0):
            self.assertEqual(warmbox.default_socket(), "/run/warmbox/pool.sock")
        with mock.patch("os.geteuid", return_value=1000), \
                mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": "/run/user/1000"}):
            self.assertEqual(warmbox.default_socket(), "/run/user/1000/warmbox/pool.sock")
        with mock.patch("os.geteuid", return_value=1000), mock.patch.dict(os.environ, {"XDG_RUNTIME_DIR": ""}):
            self.assertEqual(warmbox.default_socket(), "/tmp/warmbox-1000/pool.sock")

    def test_environment_chooses_the_transport(self) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("WARMBOX_")}
        with mock.patch.dict(os.environ, clean, clear=True):
            self.assertEqual(repr(warmbox.Client()), f"warmbox.Client('unix:{warmbox.default_socket()}')")
            os.environ["WARMBOX_SOCKET"] = "/x.sock"
            self.assertEqual(repr(warmbox.Client()), "warmbox.Client('unix:/x.sock')")
            os.environ["WARMBOX_URL"] = "http://h:1"
            os.environ["WARMBOX_TOKEN"] = "t"
            c = warmbox.Client()
            self.assertEqual((c.transport, c._t.token), ("http", "t"))  # type: ignore[union-attr]
            # Explicit arguments win over the environment.
            self.assertEqual(warmbox.Client(socket="/y.sock").transport, "unix")

    def test_bad_options(self) -> None:
        with self.assertRaises(ValueError):
            warmbox.Client(socket="/s", url="http://h")
        with self.assertRaises(ValueError):
            warmbox.Client(socket="/s", timeout=0)
        for url in ("ftp://h", "http://", "http://h:x", "http://h/?q=1"):
            with self.assertRaises(ValueError, msg=url):
                warmbox.Client(url=url)

    def test_url_parts(self) -> None:
        from warmbox._http import parse_url
        self.assertEqual(parse_url("http://127.0.0.1:8080"), ("http", "127.0.0.1", 8080, ""))
        self.assertEqual(parse_url("https://box.example/warm/"), ("https", "box.example", 443, "/warm"))
        self.assertEqual(parse_url("http://[::1]:9/"), ("http", "::1", 9, ""))


class ResultTest(unittest.TestCase):
    def test_command_failed_carries_the_result(self) -> None:
        r = warmbox.Result(stderr=b"x" * 1000 + b"the end\n", exit_code=2)
        e = warmbox.CommandFailed(r)
        self.assertIs(e.result, r)
        self.assertTrue(str(e).startswith("command exited with code 2: "))
        self.assertTrue(str(e).endswith("the end"))
        self.assertIn("timed out", str(warmbox.CommandFailed(warmbox.Result(exit_code=137, timed_out=True))))

    def test_every_error_is_a_warmbox_error(self) -> None:
        for cls in (warmbox.DaemonUnavailable, warmbox.Busy, warmbox.RunError, warmbox.AuthError,
                    warmbox.BadRequest, warmbox.ProtocolError, warmbox.CommandFailed):
            self.assertTrue(issubclass(cls, warmbox.WarmboxError), cls)


if __name__ == "__main__":
    unittest.main()
