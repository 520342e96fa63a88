"""The Unix socket transport (docs/protocol.md, "The pool socket").

One request and one response per connection; a streamed run sends several
response frames. Closing the connection cancels a running command, so the
client never half-closes its side while it still wants the answer.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, List, Optional, Union

from . import _codec
from .errors import DaemonUnavailable, ProtocolError
from .types import Output, PoolStatus, Result


def check_socket_owner(path: str) -> None:
    """Refuses a socket, or a directory holding it, that belongs to neither root
    nor this user: anyone else could have created them before the daemon (the
    default ``/tmp/warmbox-UID/pool.sock`` is in a directory every user may
    write) and would then see every request, its environment included."""
    me = os.geteuid()
    directory = os.path.dirname(path) or "."
    # The directory first: its owner decides who could have put the socket
    # there. stat follows symlinks, as connect does.
    for p, what in ((directory, "directory"), (path, "socket")):
        try:
            uid = os.stat(p).st_uid
        except FileNotFoundError:
            continue  # connect reports the missing daemon
        except OSError:
            continue  # connect reports what is wrong with the path
        if uid not in (0, me):
            raise DaemonUnavailable(
                f"refusing {path}: its {what} {p} belongs to uid {uid}, neither root nor this user "
                f"(uid {me}); another user may be posing as the daemon", kind="permission_denied")


class UnixTransport:
    """Talks to the daemon over its Unix socket at ``path``."""

    def __init__(self, path: str, timeout: Optional[float]) -> None:
        self.path = path
        self.timeout = timeout

    def describe(self) -> str:
        return f"unix:{self.path}"

    # -- connection ----------------------------------------------------------------

    def _connect(self, read_timeout: Optional[float]) -> socket.socket:
        # Python creates sockets close-on-exec (PEP 446), so a command the
        # caller spawns meanwhile cannot keep the connection (and the run) alive.
        check_socket_owner(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            raise DaemonUnavailable(
                f"no daemon is serving {self.path} (start one with 'warmbox pool start')") from None
        except PermissionError:
            s.close()
            raise DaemonUnavailable(
                f"permission denied on {self.path} (the socket is for root or its --socket-group)") from None
        except socket.timeout:
            s.close()
            raise DaemonUnavailable(f"connecting to {self.path} timed out", kind="timeout") from None
        except OSError as e:
            s.close()
            raise DaemonUnavailable(f"cannot connect to {self.path}: {e.strerror or e}") from None
        s.settimeout(read_timeout)
        return s

    def _send(self, s: socket.socket, body: bytes) -> None:
        try:
            s.sendall(_codec.encode_frame(body))
        except socket.timeout:
            raise DaemonUnavailable(f"sending to {self.path} timed out", kind="timeout") from None
        except OSError as e:
            # EPIPE/ECONNRESET: the daemon refused the request and closed
            # (it answers first; that answer, if any, is read by the caller).
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise DaemonUnavailable(f"sending to {self.path}: {e.strerror or e}") from None

    def _recv_exact(self, s: socket.socket, n: int, first: bool) -> bytes:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            try:
                k = s.recv_into(view[got:], n - got)
            except socket.timeout:
                raise DaemonUnavailable(f"no answer from {self.path} within the client's timeout",
                                        kind="timeout") from None
            except OSError as e:
                raise DaemonUnavailable(f"reading from {self.path}: {e.strerror or e}") from None
            if k == 0:
                if first and got == 0:
                    raise DaemonUnavailable(f"the daemon at {self.path} closed the connection without answering")
                raise DaemonUnavailable(f"the daemon at {self.path} closed the connection mid-response")
            got += k
        return bytes(buf)

    def _read_frame(self, s: socket.socket, first: bool) -> Any:
        n = _codec.decode_length(self._recv_exact(s, 4, first))
        return _codec.loads(self._recv_exact(s, n, False), self.path)

    def _round_trip(self, body: bytes, read_timeout: Optional[float]) -> Any:
        s = self._connect(read_timeout)
        with s:
            self._send(s, body)
            return self._read_frame(s, True)

    # -- operations ----------------------------------------------------------------

    def run(self, req: dict, read_timeout: Optional[float]) -> Result:
        obj = self._round_trip(_codec.socket_run_body(req, stream=False), read_timeout)
        return _codec.result_from(obj, _codec.byte_array, self.path)

    def stream(self, req: dict, read_timeout: Optional[float]) -> "UnixStream":
        body = _codec.socket_run_body(req, stream=True)
        s = self._connect(read_timeout)
        try:
            self._send(s, body)
        except BaseException:
            s.close()
            raise
        return UnixStream(self, s)

    def status(self) -> List[PoolStatus]:
        return _codec.pools_from(self._round_trip(b'{"op":"status"}', self.timeout), self.path)

    def healthz(self) -> bool:
        self.status()
        return True

    def metrics(self) -> str:
        obj = self._round_trip(b'{"op":"status","format":"prometheus"}', self.timeout)
        if isinstance(obj, dict) and isinstance(obj.get("error"), str) and obj["error"]:
            # A daemon older than the metrics: "bad request(format): ...".
            kind = obj.get("kind") if isinstance(obj.get("kind"), str) else None
            raise _codec.error_from(obj["error"], kind=kind)
        text = obj.get("metrics") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            raise ProtocolError(f"{self.path}: the status op's answer has no metrics text")
        return text


class UnixStream:
    """Frames of one streamed run on its own connection."""

    def __init__(self, transport: UnixTransport, sock: socket.socket) -> None:
        self._t = transport
        self._sock: Optional[socket.socket] = sock
        self._first = True

    def next(self) -> Union[Output, Result]:
        if self._sock is None:
            raise ProtocolError("stream already closed")
        obj = self._t._read_frame(self._sock, self._first)
        self._first = False
        return _codec.event_from(obj, _codec.byte_array, self._t.path)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

