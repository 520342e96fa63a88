"""Live sandboxes on both transports (docs/live-sandboxes.md).

Each operation is one connection. Over HTTP they are the routes under
``/v1/sandboxes`` (docs/openapi.yaml); over the Unix socket, the lifecycle ops
``sandbox_create`` ... ``sandbox_logs`` answer one JSON frame, and the process
and file ops (``exec``, ``attach``, ``ps``, ``signal``, ``fs``) answer
``{"ok":true}`` and then carry the agent's frames both ways (docs/protocol.md):
a type byte, a 4-byte big-endian length, the payload.

Streams come out of both as the same events: ``("started", {"pid":..})``,
``("stdout", bytes)``, ``("stderr", bytes)``, ``("exit", {...})``.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import struct
import threading
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import quote, urlencode

from . import _codec
from .errors import DaemonUnavailable, ProtocolError

Event = Tuple[str, Any]

# Agent frames (docs/protocol.md, "The exec channel").
STDIN, CLOSE, RESIZE = b"I", b"C", b"W"
STDOUT, STDERR, EXIT, STARTED = b"O", b"R", b"X", b"S"
FAILURE, OP_ERROR = b"F", b"e"
FILE_REPLY, FILE_END, WATCH, LIST_REPLY, SIGNAL_REPLY = b"l", b"x", b"V", b"p", b"k"
MAX_FRAME = 16 << 20
PIECE = 256 << 10


def agent_frame(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def _agent_error(kind: bytes, payload: bytes, what: str) -> Exception:
    if kind == OP_ERROR:
        try:
            obj = json.loads(payload)
        except ValueError:
            obj = {}
        msg = obj.get("message") if isinstance(obj, dict) else None
        code = obj.get("code") if isinstance(obj, dict) else None
        return _codec.error_from(msg or f"{what} failed", kind=code if isinstance(code, str) else None)
    if kind == FAILURE:
        return _codec.error_from(payload.decode("utf-8", "replace"), kind="bad_request")
    return ProtocolError(f"{what}: unexpected frame {kind!r} from the daemon")


class _Chunks:
    """Pieces of an iterable of bytes or of a file object."""

    @staticmethod
    def of(data: Any) -> Iterator[bytes]:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if isinstance(data, (bytes, bytearray, memoryview)):
            view = memoryview(data)
            for at in range(0, len(view), PIECE):
                yield bytes(view[at:at + PIECE])
            return
        read = getattr(data, "read", None)
        if read is not None:
            while True:
                piece = read(PIECE)
                if not piece:
                    return
                if isinstance(piece, str):
                    piece = piece.encode("utf-8")
                yield piece
        for piece in data:
            if isinstance(piece, str):
                piece = piece.encode("utf-8")
            yield bytes(piece)


# --- HTTP -----------------------------------------------------------------------------


class HttpLive:
    """The routes under /v1/sandboxes, on the HTTP transport's connections."""

    def __init__(self, t: Any) -> None:
        self.t = t

    def _path(self, sid: str, rest: str = "", query: Optional[List[Tuple[str, str]]] = None) -> str:
        p = "/v1/sandboxes/" + quote(sid, safe="") + rest
        if query:
            p += "?" + urlencode(query)
        return p

    def _open(self, method: str, path: str, body: Any = None, ctype: Optional[str] = None,
              accept: str = "application/json",
              read_timeout: Optional[float] = None) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        t = self.t
        cls = http.client.HTTPSConnection if t.scheme == "https" else http.client.HTTPConnection
        conn = cls(t.host, t.port, timeout=t.timeout)
        headers: Dict[str, str] = {"Accept": accept, "User-Agent": "warmbox-python"}
        if ctype:
            headers["Content-Type"] = ctype
        if t.token:
            headers["Authorization"] = f"Bearer {t.token}"
        where = f"{t.url}{path}"
        try:
            try:
                conn.connect()
            except socket.timeout:
                raise DaemonUnavailable(f"connecting to {t.url} timed out", kind="timeout") from None
            except OSError as e:
                raise DaemonUnavailable(f"cannot connect to {t.url}: {e.strerror or e}") from None
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)
            try:
                if body is not None and not isinstance(body, (bytes, bytearray)):
                    conn.request(method, t.prefix + path, body=body, headers=headers, encode_chunked=True)
                else:
                    if body is None and method in ("POST", "PUT"):
                        body = b""
                    conn.request(method, t.prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
            except socket.timeout:
                raise DaemonUnavailable(f"no answer from {where} within the client's timeout", kind="timeout") from None
            except (http.client.HTTPException, OSError) as e:
                raise DaemonUnavailable(f"{method} {where}: {e}") from None
        except BaseException:
            conn.close()
            raise
        return conn, resp

    def _check(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse, path: str) -> None:
        if resp.status < 300:
            return
        try:
            data = resp.read()
        except (http.client.HTTPException, OSError):
            data = b""
        conn.close()
        raise _codec.http_error(resp.status, data, resp.getheader("Retry-After"))

    def _json(self, method: str, path: str, obj: Any = None) -> Any:
        body = None if obj is None else _codec._dumps(obj)
        conn, resp = self._open(method, path, body, "application/json" if body is not None else None,
                                read_timeout=self.t.timeout)
        try:
            self._check(conn, resp, path)
            data = self.t._read(resp, self.t.url + path)
        finally:
            conn.close()
        if resp.status == 204 or not data:
            return None
        return _codec.loads(data, self.t.url + path)

    # lifecycle
    def create(self, req: Dict[str, Any]) -> Dict[str, Any]:
        return self._json("POST", "/v1/sandboxes", req)

    def list(self, metadata: Dict[str, str]) -> List[Dict[str, Any]]:
        q = "?" + urlencode([("metadata", f"{k}={v}") for k, v in metadata.items()]) if metadata else ""
        obj = self._json("GET", "/v1/sandboxes" + q)
        return list(obj.get("sandboxes", [])) if isinstance(obj, dict) else []

    def inspect(self, sid: str) -> Dict[str, Any]:
        return self._json("GET", self._path(sid))

    def kill(self, sid: str) -> None:
        self._json("DELETE", self._path(sid))

    def set_timeout(self, sid: str, seconds: int) -> Dict[str, Any]:
        return self._json("POST", self._path(sid, "/timeout"), {"timeout": seconds})

    def pause(self, sid: str) -> None:
        self._json("POST", self._path(sid, "/pause"))

    def resume(self, sid: str) -> None:
        self._json("POST", self._path(sid, "/resume"))

    def logs(self, sid: str, tail: int, follow: bool) -> Iterator[str]:
        q: List[Tuple[str, str]] = []
        if tail:
            q.append(("tail", str(tail)))
        if follow:
            q.append(("follow", "true"))
        path = self._path(sid, "/logs", q)
        conn, resp = self._open("GET", path, accept="text/plain", read_timeout=None if follow else self.t.timeout)
        self._check(conn, resp, path)
        return _closing_lines(conn, resp, lambda line: line.decode("utf-8", "replace").rstrip("\n"))

    # processes
    def exec(self, sid: str, req: Dict[str, Any], stdin: Optional[bytes], background: bool) -> Any:
        obj = dict(req)
        if stdin is not None:
            obj["stdin_base64"] = base64.b64encode(stdin).decode("ascii")
        if background:
            obj["background"] = True
            return self._json("POST", self._path(sid, "/processes"), obj)["pid"]
        path = self._path(sid, "/processes")
        conn, resp = self._open("POST", path, _codec._dumps(obj), "application/json", accept=_codec_ndjson())
        self._check(conn, resp, path)
        return _ndjson_events(conn, resp, self.t.url + path)

    def code(self, sid: str, req: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        path = self._path(sid, "/code")
        conn, resp = self._open("POST", path, _codec._dumps(req), "application/json",
                                accept=_codec_ndjson())
        self._check(conn, resp, path)
        where = self.t.url + path

        def decode(line: bytes) -> Dict[str, Any]:
            obj = _codec.loads(line, where)
            if not isinstance(obj, dict):
                raise ProtocolError(f"{where}: expected JSON objects")
            if "type" not in obj and "error" in obj:
                raise _codec.error_from(str(obj["error"]), kind=obj.get("kind"))
            return obj

        return _closing_lines(conn, resp, decode, skip_blank=True)

    def attach(self, sid: str, pid: int, from_: Optional[int]) -> Iterator[Event]:
        q = [("from", str(from_))] if from_ is not None else []
        path = self._path(sid, f"/processes/{int(pid)}/output", q)
        conn, resp = self._open("GET", path, accept=_codec_ndjson())
        self._check(conn, resp, path)
        return _ndjson_events(conn, resp, self.t.url + path)

    def ps(self, sid: str) -> List[Dict[str, Any]]:
        return list(self._json("GET", self._path(sid, "/processes")).get("processes", []))

    def signal(self, sid: str, pid: int, sig: Any) -> None:
        self._json("POST", self._path(sid, f"/processes/{int(pid)}/signal"), {"signal": sig})

    def send_stdin(self, sid: str, pid: int, data: bytes, close: bool) -> None:
        path = self._path(sid, f"/processes/{int(pid)}/stdin", [("close", "true")] if close else None)
        conn, resp = self._open("POST", path, bytes(data), "application/octet-stream", read_timeout=self.t.timeout)
        try:
            self._check(conn, resp, path)
            resp.read()
        finally:
            conn.close()

    def resize(self, sid: str, pid: int, rows: int, cols: int) -> None:
        self._json("POST", self._path(sid, f"/processes/{int(pid)}/resize"), {"rows": rows, "cols": cols})

    # files
    def read_file(self, sid: str, path: str, user: Optional[str]) -> Iterator[bytes]:
        q = [("path", path)] + ([("user", user)] if user else [])
        p = self._path(sid, "/files", q)
        conn, resp = self._open("GET", p, accept="application/octet-stream", read_timeout=self.t.timeout)
        self._check(conn, resp, p)

        def pieces() -> Iterator[bytes]:
            try:
                while True:
                    try:
                        piece = resp.read1(PIECE) if hasattr(resp, "read1") else resp.read(PIECE)
                    except (http.client.HTTPException, OSError) as e:
                        raise DaemonUnavailable(f"reading {self.t.url}{p}: {e}") from None
                    if not piece:
                        return
                    yield piece
            finally:
                conn.close()

        return pieces()

    def write_file(self, sid: str, path: str, data: Any, mode: Optional[int], user: Optional[str]) -> Dict[str, Any]:
        q = [("path", path)]
        if mode is not None:
            q.append(("mode", format(mode, "04o")))
        if user:
            q.append(("user", user))
        p = self._path(sid, "/files", q)
        body: Any = data if isinstance(data, (bytes, bytearray)) else _Chunks.of(data)
        conn, resp = self._open("PUT", p, body, "application/octet-stream", read_timeout=self.t.timeout)
        try:
            self._check(conn, resp, p)
            return _codec.loads(self.t._read(resp, self.t.url + p), self.t.url + p)
        finally:
            conn.close()

    def fs(self, sid: str, op: str, args: Dict[str, Any]) -> Any:
        if op in ("stat", "list"):
            q = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in args.items() if v is not None]
            return self._json("GET", self._path(sid, f"/fs/{op}", q))
        return self._json("POST", self._path(sid, f"/fs/{op}"), {k: v for k, v in args.items() if v is not None})

    def watch(self, sid: str, path: str, recursive: bool, user: Optional[str]) -> Iterator[Dict[str, Any]]:
        q = [("path", path)] + ([("recursive", "true")] if recursive else []) + ([("user", user)] if user else [])
        p = self._path(sid, "/fs/watch", q)
        conn, resp = self._open("GET", p, accept=_codec_ndjson())
        self._check(conn, resp, p)
        return _closing_lines(conn, resp, lambda line: _codec.loads(line, self.t.url + p), skip_blank=True)


def _codec_ndjson() -> str:
    return "application/x-ndjson"


class _closing_lines:
    """Lines of a response as an iterator that closes its connection when done
    (or when closed early)."""

    def __init__(self, conn: Any, resp: Any, decode: Any, skip_blank: bool = False) -> None:
        self._conn, self._resp, self._decode, self._skip = conn, resp, decode, skip_blank

    def __iter__(self) -> "_closing_lines":
        return self

    def __next__(self) -> Any:
        while True:
            if self._conn is None:
                raise StopIteration
            try:
                line = self._resp.readline()
            except (http.client.HTTPException, OSError, ValueError):
                line = b""
            if not line:
                self.close()
                raise StopIteration
            if self._skip and not line.strip():
                continue
            return self._decode(line)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "_closing_lines":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def _ndjson_events(conn: Any, resp: Any, where: str) -> "_closing_lines":
    def decode(line: bytes) -> Event:
        obj = _codec.loads(line, where)
        if not isinstance(obj, dict):
            raise ProtocolError(f"{where}: expected JSON objects")
        if "started" in obj:
            return ("started", obj["started"])
        if "stdout" in obj:
            return ("stdout", _codec.b64(obj["stdout"], "stdout"))
        if "stderr" in obj:
            return ("stderr", _codec.b64(obj["stderr"], "stderr"))
        if "exit" in obj:
            return ("exit", obj["exit"])
        if "error" in obj:
            raise _codec.error_from(str(obj["error"]), kind=obj.get("kind"))
        raise ProtocolError(f"{where}: unknown line {obj!r}")

    return _closing_lines(conn, resp, decode, skip_blank=True)


# --- the Unix socket ------------------------------------------------------------------


class _AgentStream:
    """Agent frames after the daemon's {"ok":true}, on one socket connection."""

    def __init__(self, t: Any, s: socket.socket) -> None:
        self.t, self.s = t, s
        self._lock = threading.Lock()

    def send(self, kind: bytes, payload: bytes = b"") -> None:
        with self._lock:
            try:
                self.s.sendall(agent_frame(kind, payload))
            except OSError as e:
                raise DaemonUnavailable(f"sending to {self.t.path}: {e.strerror or e}") from None

    def recv(self) -> Tuple[bytes, bytes]:
        hdr = self.t._recv_exact(self.s, 5, False)
        (n,) = struct.unpack(">I", hdr[1:])
        if n > MAX_FRAME:
            raise ProtocolError(f"{self.t.path}: agent frame of {n} bytes")
        return hdr[:1], self.t._recv_exact(self.s, n, False) if n else b""

    def expect(self, kind: bytes, what: str) -> bytes:
        k, payload = self.recv()
        if k != kind:
            raise _agent_error(k, payload, what)
        return payload

    def close(self) -> None:
        try:
            self.s.close()
        except OSError:
            pass


class _socket_events:
    """Process events from an agent stream; closes it when done or closed."""

    def __init__(self, st: _AgentStream, started: Dict[str, Any], writer: Optional[threading.Thread]) -> None:
        self._st: Optional[_AgentStream] = st
        self._pending: List[Event] = [("started", started)]
        self._writer = writer

    def __iter__(self) -> "_socket_events":
        return self

    def __next__(self) -> Event:
        if self._pending:
            return self._pending.pop(0)
        if self._st is None:
            raise StopIteration
        try:
            k, payload = self._st.recv()
        except BaseException:
            self.close()
            raise
        if k == STDOUT:
            return ("stdout", payload)
        if k == STDERR:
            return ("stderr", payload)
        if k == EXIT:
            self.close()
            return ("exit", _codec.loads(payload, self._st_path()))
        self.close()
        raise _agent_error(k, payload, "process")

    def _st_path(self) -> str:
        return "agent"

    def close(self) -> None:
        if self._st is not None:
            self._st.close()
            self._st = None

    def __enter__(self) -> "_socket_events":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UnixLive:
    """The sandbox_* ops and the relayed process and file ops on the socket."""

    def __init__(self, t: Any) -> None:
        self.t = t

    def _answer(self, obj: Any) -> Dict[str, Any]:
        if not isinstance(obj, dict):
            raise ProtocolError(f"{self.t.path}: expected a JSON object")
        if obj.get("ok") is not True:
            msg = obj.get("error") if isinstance(obj.get("error"), str) else "the daemon refused the request"
            kind = obj.get("kind") if isinstance(obj.get("kind"), str) else None
            raise _codec.error_from(msg, kind=kind)
        return obj

    def _call(self, req: Dict[str, Any]) -> Dict[str, Any]:
        return self._answer(self.t._round_trip(_codec._dumps(req), self.t.timeout))

    def _open(self, req: Dict[str, Any], read_timeout: Optional[float] = None) -> _AgentStream:
        s = self.t._connect(read_timeout)
        try:
            self.t._send(s, _codec._dumps(req))
            self._answer(self.t._read_frame(s, True))
        except BaseException:
            s.close()
            raise
        return _AgentStream(self.t, s)

    # lifecycle
    def create(self, req: Dict[str, Any]) -> Dict[str, Any]:
        obj = dict(req, op="sandbox_create")
        if "cwd" in obj:
            obj["workdir"] = obj.pop("cwd")
        if isinstance(obj.get("env"), dict):
            obj["env"] = [f"{k}={v}" for k, v in obj["env"].items()]
        return self._call(obj)["sandbox"]

    def list(self, metadata: Dict[str, str]) -> List[Dict[str, Any]]:
        req: Dict[str, Any] = {"op": "sandbox_list"}
        if metadata:
            req["metadata"] = dict(metadata)
        return list(self._call(req).get("sandboxes", []))

    def inspect(self, sid: str) -> Dict[str, Any]:
        return self._call({"op": "sandbox_inspect", "id": sid})["sandbox"]

    def kill(self, sid: str) -> None:
        self._call({"op": "sandbox_kill", "id": sid})

    def set_timeout(self, sid: str, seconds: int) -> Dict[str, Any]:
        return self._call({"op": "sandbox_set_timeout", "id": sid, "timeout": seconds})["sandbox"]

    def pause(self, sid: str) -> None:
        self._call({"op": "sandbox_pause", "id": sid})

    def resume(self, sid: str) -> None:
        self._call({"op": "sandbox_resume", "id": sid})

    def logs(self, sid: str, tail: int, follow: bool) -> Iterator[str]:
        req: Dict[str, Any] = {"op": "sandbox_logs", "id": sid}
        if tail:
            req["tail"] = tail
        if follow:
            req["follow"] = True
        s = self.t._connect(None if follow else self.t.timeout)
        try:
            self.t._send(s, _codec._dumps(req))
            first = self._answer(self.t._read_frame(s, True))
        except BaseException:
            s.close()
            raise
        t = self.t

        def lines() -> Iterator[str]:
            try:
                for line in first.get("lines", []):
                    yield line
                while follow:
                    try:
                        obj = t._read_frame(s, False)
                    except DaemonUnavailable:
                        return
                    if not isinstance(obj, dict) or obj.get("end"):
                        return
                    if isinstance(obj.get("line"), str):
                        yield obj["line"]
            finally:
                s.close()

        return lines()

    def code(self, sid: str, req: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        obj: Dict[str, Any] = {"op": "sandbox_code", "id": sid}
        obj.update(req)
        s = self.t._connect(None)
        try:
            self.t._send(s, _codec._dumps(obj))
        except BaseException:
            s.close()
            raise
        t, answer = self.t, self._answer

        def events() -> Iterator[Dict[str, Any]]:
            try:
                while True:
                    frame = t._read_frame(s, True)
                    if isinstance(frame, dict) and isinstance(frame.get("line"), str):
                        line = _codec.loads(frame["line"].encode("utf-8"), t.path)
                        if isinstance(line, dict):
                            yield line
                        continue
                    answer(frame)  # {"ok":true} ends it; an error raises
                    return
            finally:
                s.close()

        return events()

    # processes
    def exec(self, sid: str, req: Dict[str, Any], stdin: Optional[bytes], background: bool) -> Any:
        obj = {"op": "exec", "id": sid}
        obj.update(req)
        if stdin is not None:
            obj["stdin"] = True
        st = self._open(obj)
        try:
            started = _codec.loads(st.expect(STARTED, "exec"), self.t.path)
        except BaseException:
            st.close()
            raise
        if background:
            try:
                if stdin is not None:
                    for piece in _Chunks.of(stdin):
                        st.send(STDIN, piece)
                    st.send(CLOSE)
            finally:
                st.close()
            return started["pid"]
        writer = None
        if stdin is not None:
            # Written beside the reads: a process that answers as it reads
            # never waits on a client that is still writing.
            def feed() -> None:
                try:
                    for piece in _Chunks.of(stdin):
                        st.send(STDIN, piece)
                    st.send(CLOSE)
                except Exception:
                    pass

            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
        return _socket_events(st, started, writer)

    def attach(self, sid: str, pid: int, from_: Optional[int]) -> Iterator[Event]:
        req: Dict[str, Any] = {"op": "attach", "id": sid, "pid": int(pid)}
        if from_ is not None:
            req["from"] = from_
        st = self._open(req)
        try:
            started = _codec.loads(st.expect(STARTED, "attach"), self.t.path)
        except BaseException:
            st.close()
            raise
        return _socket_events(st, started, None)

    def ps(self, sid: str) -> List[Dict[str, Any]]:
        st = self._open({"op": "ps", "id": sid}, self.t.timeout)
        try:
            return list(_codec.loads(st.expect(LIST_REPLY, "ps"), self.t.path).get("processes", []))
        finally:
            st.close()

    def signal(self, sid: str, pid: int, sig: Any) -> None:
        st = self._open({"op": "signal", "id": sid, "pid": int(pid), "signal": sig}, self.t.timeout)
        try:
            st.expect(SIGNAL_REPLY, "signal")
        finally:
            st.close()

    def _attached(self, sid: str, pid: int) -> _AgentStream:
        st = self._open({"op": "attach", "id": sid, "pid": int(pid), "from": -1}, self.t.timeout)
        try:
            st.expect(STARTED, "attach")
        except BaseException:
            st.close()
            raise
        return st

    def send_stdin(self, sid: str, pid: int, data: bytes, close: bool) -> None:
        st = self._attached(sid, pid)
        try:
            for piece in _Chunks.of(bytes(data)):
                st.send(STDIN, piece)
            if close:
                st.send(CLOSE)
        finally:
            st.close()

    def resize(self, sid: str, pid: int, rows: int, cols: int) -> None:
        st = self._attached(sid, pid)
        try:
            st.send(RESIZE, _codec._dumps({"rows": rows, "cols": cols}))
        finally:
            st.close()

    # files
    def _fs(self, sid: str, request: Dict[str, Any], read_timeout: Optional[float] = None) -> _AgentStream:
        return self._open({"op": "fs", "id": sid, "request": request}, read_timeout)

    def read_file(self, sid: str, path: str, user: Optional[str]) -> Iterator[bytes]:
        st = self._fs(sid, {"op": "read", "path": path, "user": user or ""}, self.t.timeout)
        try:
            st.expect(FILE_REPLY, "read")
        except BaseException:
            st.close()
            raise

        def pieces() -> Iterator[bytes]:
            try:
                while True:
                    k, payload = st.recv()
                    if k == STDOUT:
                        yield payload
                    elif k == FILE_END:
                        return
                    else:
                        raise _agent_error(k, payload, "read")
            finally:
                st.close()

        return pieces()

    def write_file(self, sid: str, path: str, data: Any, mode: Optional[int], user: Optional[str]) -> Dict[str, Any]:
        req: Dict[str, Any] = {"op": "write", "path": path, "user": user or ""}
        if mode is not None:
            req["mode"] = mode
        st = self._fs(sid, req, self.t.timeout)
        try:
            try:
                for piece in _Chunks.of(data):
                    for at in range(0, len(piece), PIECE):
                        st.send(STDIN, piece[at:at + PIECE])
                st.send(CLOSE)
            except DaemonUnavailable:
                pass  # the agent refused early: its e frame says why
            return _codec.loads(st.expect(FILE_REPLY, "write"), self.t.path)
        finally:
            st.close()

    def fs(self, sid: str, op: str, args: Dict[str, Any]) -> Any:
        req = {"op": op}
        req.update((k, v) for k, v in args.items() if v is not None)
        req.setdefault("user", "")
        st = self._fs(sid, req, self.t.timeout)
        try:
            reply = _codec.loads(st.expect(FILE_REPLY, op), self.t.path)
        finally:
            st.close()
        return None if op == "remove" else reply

    def watch(self, sid: str, path: str, recursive: bool, user: Optional[str]) -> Iterator[Dict[str, Any]]:
        st = self._fs(sid, {"op": "watch", "path": path, "recursive": recursive, "user": user or ""})
        try:
            st.expect(FILE_REPLY, "watch")
        except BaseException:
            st.close()
            raise
        return _socket_watch(st)


class _socket_watch:
    def __init__(self, st: _AgentStream) -> None:
        self._st: Optional[_AgentStream] = st
        self._pending: List[Dict[str, Any]] = []

    def __iter__(self) -> "_socket_watch":
        return self

    def __next__(self) -> Dict[str, Any]:
        while not self._pending:
            if self._st is None:
                raise StopIteration
            try:
                k, payload = self._st.recv()
            except DaemonUnavailable:
                self.close()
                raise StopIteration from None
            if k != WATCH:
                self.close()
                raise _agent_error(k, payload, "watch")
            obj = _codec.loads(payload, "watch")
            self._pending.extend(e for e in obj.get("events", []) if isinstance(e, dict))
        return self._pending.pop(0)

    def close(self) -> None:
        if self._st is not None:
            self._st.close()
            self._st = None

    def __enter__(self) -> "_socket_watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunks(data: Iterable[bytes]) -> Iterator[bytes]:
    return _Chunks.of(data)
