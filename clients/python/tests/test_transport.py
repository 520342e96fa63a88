"""The transports' I/O without a daemon (no root): the wire format the client
writes, how it reassembles what it reads, and how it reports a daemon that is
missing, silent or misbehaving. The scripted peers below answer as
docs/protocol.md and the HTTP API spec say the daemon does; the same client
paths run against the real daemon in test_socket.py and test_http.py.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import tempfile
import threading
import unittest
from unittest import mock
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, List, Optional, Tuple

from _support import free_port

import warmbox


def _frame(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack("<I", len(body)) + body


class ScriptedUnixPeer:
    """Accepts one connection on a Unix socket, reads one request frame, then
    writes `reply` a byte at a time (so the client must reassemble), and
    records whether the client hung up afterwards."""

    def __init__(self, reply: bytes, answer: bool = True) -> None:
        self.dir = tempfile.mkdtemp(prefix="wb-py-unit-")
        self.path = os.path.join(self.dir, "pool.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.reply = reply
        self.answer = answer
        self.request: Optional[bytes] = None
        self.client_hung_up = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _recv_exact(self, conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            try:
                hdr = self._recv_exact(conn, 4)
                self.request = hdr + self._recv_exact(conn, struct.unpack("<I", hdr)[0])
            except EOFError:
                return
            if self.answer:
                for i in range(len(self.reply)):
                    conn.sendall(self.reply[i:i + 1])
            else:
                # Waits for the client to give up: EOF is its hang-up.
                if conn.recv(1) == b"":
                    self.client_hung_up.set()

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


class UnixTransportTest(unittest.TestCase):
    def test_request_frame_and_byte_by_byte_reply(self) -> None:
        peer = ScriptedUnixPeer(_frame({"stdout": [104, 105], "stderr": [0], "exit_code": 4, "error": None,
                                        "sandbox": "abc123"}))
        try:
            r = warmbox.Client(socket=peer.path).run(["cat"], stdin=b"\x01", env={"A": "b"})
        finally:
            peer.close()
        self.assertEqual((r.stdout, r.stderr, r.exit_code, r.sandbox), (b"hi", b"\x00", 4, "abc123"))
        assert peer.request is not None
        (n,) = struct.unpack("<I", peer.request[:4])
        self.assertEqual(n, len(peer.request) - 4)
        self.assertEqual(json.loads(peer.request[4:]), {"op": "run", "cmd": ["cat"], "env": ["A=b"], "stdin": [1]})

    def test_stream_frames(self) -> None:
        reply = (_frame({"stream": "stdout", "data": [97]}) + _frame({"stream": "stderr", "data": [98]})
                 + _frame({"stdout": [], "stderr": [], "exit_code": 0, "error": None}))
        peer = ScriptedUnixPeer(reply)
        try:
            with warmbox.Client(socket=peer.path).stream(["x"]) as s:
                events = list(s)
        finally:
            peer.close()
        self.assertEqual(events, [warmbox.Output("stdout", b"a"), warmbox.Output("stderr", b"b"),
                                  warmbox.Exit(warmbox.Result())])
        self.assertEqual(s.result, warmbox.Result())
        assert peer.request is not None
        self.assertTrue(json.loads(peer.request[4:])["stream"])

    def test_status(self) -> None:
        peer = ScriptedUnixPeer(_frame({"images": [{"image": "a", "idle": 1}, {"image": "b", "max": 3}]}))
        try:
            pools = warmbox.Client(socket=peer.path).status()
        finally:
            peer.close()
        self.assertEqual([(p.image, p.idle, p.max) for p in pools], [("a", 1, 0), ("b", 0, 3)])
        self.assertEqual(peer.request, b'\x0f\x00\x00\x00{"op":"status"}')

    def test_metrics_through_the_status_op(self) -> None:
        peer = ScriptedUnixPeer(_frame({"format": "prometheus", "metrics": "warmbox_pool_idle{image=\"a\"} 1\n"}))
        try:
            text = warmbox.Client(socket=peer.path).metrics()
        finally:
            peer.close()
        self.assertEqual(text, 'warmbox_pool_idle{image="a"} 1\n')
        self.assertEqual(peer.request, b'\x25\x00\x00\x00{"op":"status","format":"prometheus"}')
        # A daemon that refuses the field says so with its kind.
        peer = ScriptedUnixPeer(_frame({"stdout": [], "stderr": [], "exit_code": -1,
                                        "error": "bad request(format): unknown field", "kind": "bad_request"}))
        try:
            with self.assertRaises(warmbox.BadRequest):
                warmbox.Client(socket=peer.path).metrics()
        finally:
            peer.close()

    def test_closed_without_answer_or_mid_frame(self) -> None:
        for reply, what in ((b"", "without answering"), (_frame({"exit_code": 0})[:-3], "mid-response")):
            peer = ScriptedUnixPeer(reply)
            try:
                with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                    warmbox.Client(socket=peer.path).run(["true"])
            finally:
                peer.close()
            self.assertIn(what, str(cm.exception))

    def test_oversized_frame_header_is_refused(self) -> None:
        peer = ScriptedUnixPeer(b"\xff\xff\xff\xff")
        try:
            with self.assertRaises(warmbox.ProtocolError):
                warmbox.Client(socket=peer.path).run(["true"])
        finally:
            peer.close()

    def test_client_timeout_hangs_up(self) -> None:
        peer = ScriptedUnixPeer(b"", answer=False)
        try:
            with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                warmbox.Client(socket=peer.path, timeout=0.05).run(["sleep", "100"])
            self.assertEqual(cm.exception.kind, "timeout")
            # Hanging up is what cancels the command on the daemon's side.
            self.assertTrue(peer.client_hung_up.wait(10))
        finally:
            peer.close()


class NoDaemonTest(unittest.TestCase):
    def test_missing_socket(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "pool.sock")
            for call in (lambda c: c.run(["true"]), lambda c: c.status(), lambda c: c.stream(["true"]),
                         lambda c: c.healthz()):
                with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                    call(warmbox.Client(socket=path))
                self.assertIn(path, str(cm.exception))
                self.assertIn("warmbox pool start", str(cm.exception))

    def test_stale_socket_nobody_listening(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "pool.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.bind(path)  # bound, never listening: connect() is refused
                with self.assertRaises(warmbox.DaemonUnavailable):
                    warmbox.Client(socket=path).run(["true"])

    def test_http_port_nobody_listens_on(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        with self.assertRaises(warmbox.DaemonUnavailable) as cm:
            warmbox.Client(url=url).run(["true"])
        self.assertIn(url, str(cm.exception))
        with self.assertRaises(warmbox.DaemonUnavailable):
            warmbox.Client(url=url).healthz()


class SquattedSocketTest(unittest.TestCase):
    """Issue 19, finding 12: another user created /tmp/warmbox-UID/pool.sock
    first and captured a run's environment. The client refuses a socket, or
    its directory, that belongs to neither root nor itself, before sending."""

    OTHER = 65534  # nobody

    def setUp(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("needs root to give the socket to another user")

    def test_socket_of_another_user_is_refused(self) -> None:
        peer = ScriptedUnixPeer(b"", answer=False)
        try:
            os.chown(peer.path, self.OTHER, self.OTHER)
            with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                warmbox.Client(socket=peer.path, timeout=0.5).run(["env"], env={"SECRET": "x"})
            self.assertIn(f"belongs to uid {self.OTHER}", str(cm.exception))
            self.assertEqual(cm.exception.kind, "permission_denied")
            # Control: given back to us, the same socket is used.
            os.chown(peer.path, 0, 0)
            with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                warmbox.Client(socket=peer.path, timeout=0.05).run(["true"])
            self.assertEqual(cm.exception.kind, "timeout")
        finally:
            peer.close()
        self.assertIsNotNone(peer.request, "the control run reached the peer")
        self.assertNotIn(b"SECRET", peer.request or b"")

    def test_directory_of_another_user_is_refused(self) -> None:
        peer = ScriptedUnixPeer(b"", answer=False)
        try:
            os.chown(peer.dir, self.OTHER, self.OTHER)
            with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                warmbox.Client(socket=peer.path, timeout=0.5).status()
            self.assertIn(f"directory {peer.dir} belongs to uid {self.OTHER}", str(cm.exception))
            os.chown(peer.dir, 0, 0)
            with self.assertRaises(warmbox.DaemonUnavailable) as cm:
                warmbox.Client(socket=peer.path, timeout=0.05).status()
            self.assertEqual(cm.exception.kind, "timeout")
        finally:
            peer.close()


# A reply: status, headers, body pieces (sent chunked when there are several).
Reply = Tuple[int, List[Tuple[str, str]], List[bytes]]


class ScriptedHttpPeer:
    """An HTTP/1.1 server answering each request with `respond(method, path,
    headers, body)`; it records the requests."""

    def __init__(self, respond: Callable[[str, str, dict, bytes], Reply]) -> None:
        self.requests: List[Tuple[str, str, dict, bytes]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                peer.requests.append((self.command, self.path, headers, body))
                status, hdrs, pieces = respond(self.command, self.path, headers, body)
                self.send_response(status)
                for k, v in hdrs:
                    self.send_header(k, v)
                if len(pieces) == 1:
                    self.send_header("Content-Length", str(len(pieces[0])))
                    self.end_headers()
                    self.wfile.write(pieces[0])
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for p in pieces:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True

            def _handle_quietly(self) -> None:
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up first, as some tests make it

            do_GET = do_POST = _handle_quietly

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _json(status: int, obj: object, *extra: Tuple[str, str]) -> Reply:
    return status, [("Content-Type", "application/json"), *extra], [json.dumps(obj).encode()]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class HttpTransportTest(unittest.TestCase):
    def peer(self, respond: Callable[[str, str, dict, bytes], Reply]) -> ScriptedHttpPeer:
        p = ScriptedHttpPeer(respond)
        self.addCleanup(p.close)
        return p

    def test_run_request_and_base64_reply(self) -> None:
        p = self.peer(lambda m, path, h, b: _json(200, {"stdout": _b64(b"\x00hi"), "stderr": "", "exit_code": 2,
                                                        "error": None, "timed_out": False, "sandbox": "s1"}))
        r = warmbox.Client(url=p.url + "/", token="tok").run(["cat"], stdin=b"\xff", timeout=1)
        self.assertEqual((r.stdout, r.exit_code, r.sandbox), (b"\x00hi", 2, "s1"))
        method, path, headers, body = p.requests[0]
        self.assertEqual((method, path), ("POST", "/v1/run"))
        self.assertEqual(headers["authorization"], "Bearer tok")
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body), {"cmd": ["cat"], "stdin_base64": "/w==", "timeout_ms": 1000})

    def test_path_prefix_and_no_token(self) -> None:
        p = self.peer(lambda m, path, h, b: _json(200, {"images": []}))
        # Nothing to fall back on: no token variable, no generated token file.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARMBOX_")}
        env["WARMBOX_STATE_DIR"] = "/nonexistent/warmbox-state"
        with mock.patch.dict(os.environ, env, clear=True):
            self.assertEqual(warmbox.Client(url=p.url + "/warm", token=None).status(), [])
        self.assertEqual(p.requests[0][:2], ("GET", "/warm/v1/pools"))
        self.assertNotIn("authorization", p.requests[0][2])

    def test_ndjson_stream_in_chunks(self) -> None:
        lines = [{"stream": "stdout", "data": _b64(b"a")}, {"stream": "stderr", "data": _b64(b"b")},
                 {"stdout": "", "stderr": "", "exit_code": 0, "error": None}]
        body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        # Chunk boundaries inside lines: the client must read whole lines.
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        p = self.peer(lambda m, path, h, b: (200, [("Content-Type", "application/x-ndjson")], pieces))
        events = list(warmbox.Client(url=p.url).stream(["x"]))
        self.assertEqual(events, [warmbox.Output("stdout", b"a"), warmbox.Output("stderr", b"b"),
                                  warmbox.Exit(warmbox.Result())])
        self.assertEqual(p.requests[0][2]["accept"], "application/x-ndjson")

    def test_stream_failure_after_start_and_truncated_stream(self) -> None:
        lines = [{"stream": "stdout", "data": _b64(b"a")},
                 {"stdout": "", "stderr": "", "exit_code": -1, "error": "sandbox(x): agent died", "kind": "internal"}]
        body = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
        p = self.peer(lambda m, path, h, b: (200, [("Content-Type", "application/x-ndjson")], [body, b"\n"]))
        s = warmbox.Client(url=p.url).stream(["x"])
        self.assertEqual(next(s), warmbox.Output("stdout", b"a"))
        with self.assertRaises(warmbox.RunError) as cm:
            next(s)
        self.assertEqual(cm.exception.kind, "internal")

        first = json.dumps(lines[0]).encode() + b"\n"
        p2 = self.peer(lambda m, path, h, b: (200, [("Content-Type", "application/x-ndjson")], [first, b"\n"]))
        with self.assertRaises(warmbox.DaemonUnavailable) as cm2:
            list(warmbox.Client(url=p2.url).stream(["x"]))
        self.assertIn("without a final result", str(cm2.exception))

    def test_stream_answered_with_one_json_body(self) -> None:
        p = self.peer(lambda m, path, h, b: _json(200, {"stdout": _b64(b"o"), "stderr": _b64(b"e"), "exit_code": 1,
                                                        "error": None}))
        events = list(warmbox.Client(url=p.url).stream(["x"]))
        self.assertEqual(events, [warmbox.Output("stdout", b"o"), warmbox.Output("stderr", b"e"),
                                  warmbox.Exit(warmbox.Result(exit_code=1))])

    def test_error_statuses(self) -> None:
        cases = [
            (_json(429, {"error": "busy(busybox): all 1 run slots are taken", "kind": "busy"}, ("Retry-After", "3")),
             warmbox.Busy),
            ((401, [("WWW-Authenticate", "Bearer")], [b'{"error":"missing bearer token","kind":"unauthorized"}']),
             warmbox.AuthError),
            (_json(400, {"error": "bad request(request): invalid JSON", "kind": "bad_request"}), warmbox.BadRequest),
            (_json(413, {"error": "body exceeds 8388608 bytes", "kind": "too_large"}), warmbox.BadRequest),
            (_json(404, {"error": "image(x): no such image", "kind": "no_image"}), warmbox.RunError),
            (_json(503, {"error": "draining", "kind": "draining"}), warmbox.RunError),
        ]
        for reply, cls in cases:
            p = self.peer(lambda m, path, h, b, reply=reply: reply)  # type: ignore[misc]
            c = warmbox.Client(url=p.url)
            for call in (lambda: c.run(["x"]), lambda: c.stream(["x"])):
                with self.assertRaises(cls, msg=reply) as cm:
                    call()
                self.assertEqual(cm.exception.status, reply[0])
                self.assertEqual(str(cm.exception), json.loads(reply[2][0])["error"])
        p = self.peer(lambda m, path, h, b: cases[0][0])
        with self.assertRaises(warmbox.Busy) as busy:
            warmbox.Client(url=p.url).run(["x"])
        self.assertEqual(busy.exception.retry_after, 3.0)

    def test_healthz_and_metrics(self) -> None:
        state = {"health": 200}

        def respond(m: str, path: str, h: dict, b: bytes) -> Reply:
            if path == "/healthz":
                return _json(state["health"], {"ok": state["health"] == 200})
            return 200, [("Content-Type", "text/plain; version=0.0.4")], [b"warmbox_pool_idle{image=\"a\"} 1\n"]

        p = self.peer(respond)
        c = warmbox.Client(url=p.url)
        self.assertTrue(c.healthz())
        state["health"] = 503
        self.assertFalse(c.healthz())
        self.assertEqual(c.metrics(), 'warmbox_pool_idle{image="a"} 1\n')


if __name__ == "__main__":
    unittest.main()
