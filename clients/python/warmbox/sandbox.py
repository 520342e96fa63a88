"""Live sandboxes: claimed from the warm pool, then kept (docs/live-sandboxes.md).

A :class:`Sandbox` runs many processes (foreground or in the background),
reads and writes files, watches directories, pauses, and ends at its timeout
or on :meth:`Sandbox.kill`. Every call is its own connection to the daemon,
over the Unix socket or the HTTP API alike; a process started by
:meth:`Sandbox.exec` outlives the call (a client that goes away never kills
it), and :meth:`Sandbox.attach` follows it again by pid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, Optional, Union

from . import _codec
from ._codec import Cmd, Env

__all__ = ["Sandbox", "SandboxInfo", "Process", "ProcessInfo", "ProcessResult", "FileInfo", "WatchEvent",
           "Execution"]

Data = Union[bytes, bytearray, memoryview, str, BinaryIO, Any]
OutputFn = Callable[[bytes], None]


def _known(cls: Any, obj: Mapping[str, Any]) -> Dict[str, Any]:
    names = {f.name for f in fields(cls)} - {"extra"}
    out = {k: v for k, v in obj.items() if k in names}
    if "extra" in {f.name for f in fields(cls)}:
        out["extra"] = {k: v for k, v in obj.items() if k not in names}
    return out


@dataclass(frozen=True)
class SandboxInfo:
    """What the daemon knows of a live sandbox (``GET /v1/sandboxes/{id}``).

    ``state`` is ``"running"``, ``"paused"`` or ``"dead"``; times are wall
    clock milliseconds; ``main_exit_code`` is ``None`` while the main process
    runs (or when there is none)."""

    id: str
    image: str = ""
    driver: str = ""
    state: str = ""
    created_ms: int = 0
    expires_ms: int = 0
    on_timeout: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)
    env: List[str] = field(default_factory=list)
    user: str = ""
    cwd: str = ""
    memory_bytes: int = 0
    pids: int = 0
    cpus: float = 0
    main: List[str] = field(default_factory=list)
    main_pid: int = 0
    main_exit_code: Optional[int] = None
    memory_current: int = 0
    cpu_usage_us: int = 0
    pids_current: int = 0
    dead_reason: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessResult:
    """A process's end, with the output the call collected.

    Attributes:
        pid: the process id in the sandbox.
        exit_code: its code; 128+N when killed by signal N, 137 at its
            timeout, 127 when the program could not be started.
        signal: the signal that killed it, or 0.
        stdout, stderr: what the call saw (for :meth:`Sandbox.attach`, from
            its ``from_`` offset on; a terminal's output is all stdout).
    """

    pid: int
    exit_code: int
    signal: int = 0
    timed_out: bool = False
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")


@dataclass(frozen=True)
class ProcessInfo:
    """One process the sandbox's agent keeps (:meth:`Sandbox.ps`)."""

    pid: int
    argv: List[str] = field(default_factory=list)
    cwd: str = ""
    user: str = ""
    tag: str = ""
    tty: bool = False
    running: bool = False
    exit: Optional[Dict[str, Any]] = None
    started_ms: int = 0

    @property
    def exit_code(self) -> Optional[int]:
        return None if self.exit is None else self.exit.get("exit_code")


@dataclass(frozen=True)
class FileInfo:
    """A file's stat (the link itself for a symlink). ``type`` is ``"file"``,
    ``"dir"``, ``"symlink"`` or ``"other"``; ``mode`` the permission bits."""

    name: str = ""
    path: str = ""
    type: str = ""
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    symlink_target: str = ""
    created: Optional[bool] = None

    @property
    def is_dir(self) -> bool:
        return self.type == "dir"


@dataclass(frozen=True)
class WatchEvent:
    """A change under a watched path: ``type`` is ``"create"``, ``"write"``,
    ``"remove"``, ``"rename"`` or ``"chmod"``."""

    type: str
    path: str
    is_dir: bool = False


@dataclass
class Execution:
    """What :meth:`Sandbox.run_code` returns: the code interpreter's events
    (E2B's code-interpreter protocol, docs/services.md)."""

    stdout: List[str] = field(default_factory=list)
    stderr: List[str] = field(default_factory=list)
    # Each result as sent: {"text": "2", "html": ..., "png": <base64>, "is_main_result": ...}
    results: List[Dict[str, Any]] = field(default_factory=list)
    # {"name": "ZeroDivisionError", "value": "...", "traceback": "..."} when the code raised.
    error: Optional[Dict[str, Any]] = None
    execution_count: Optional[int] = None

    @property
    def text(self) -> Optional[str]:
        """The main result's text (the last expression's value), if any."""
        for r in self.results:
            if r.get("is_main_result"):
                return r.get("text")
        return None


def _info(obj: Any) -> SandboxInfo:
    return SandboxInfo(**_known(SandboxInfo, obj))


def _file(obj: Any) -> FileInfo:
    return FileInfo(**_known(FileInfo, obj))


def _collect(events: Iterator[Any], on_stdout: Optional[OutputFn], on_stderr: Optional[OutputFn]) -> ProcessResult:
    pid = 0
    out: List[bytes] = []
    err: List[bytes] = []
    exit_obj: Dict[str, Any] = {}
    try:
        for kind, value in events:
            if kind == "started":
                pid = int(value.get("pid", 0))
            elif kind == "stdout":
                out.append(value)
                if on_stdout:
                    on_stdout(value)
            elif kind == "stderr":
                err.append(value)
                if on_stderr:
                    on_stderr(value)
            elif kind == "exit":
                exit_obj = value
                break
    finally:
        close = getattr(events, "close", None)
        if close:
            close()
    if not exit_obj:
        from .errors import DaemonUnavailable
        raise DaemonUnavailable("the process's stream ended without its exit")
    return ProcessResult(
        pid=pid,
        exit_code=int(exit_obj.get("exit_code", -1)),
        signal=int(exit_obj.get("signal", 0)),
        timed_out=bool(exit_obj.get("timed_out", False)),
        stdout=b"".join(out),
        stderr=b"".join(err),
        stdout_truncated=bool(exit_obj.get("stdout_truncated", False)),
        stderr_truncated=bool(exit_obj.get("stderr_truncated", False)),
        error=str(exit_obj.get("error", "") or ""),
    )


def build_create(*, image: Optional[str], driver: Optional[str], timeout: Optional[float], env: Optional[Env],
                 metadata: Optional[Mapping[str, str]], memory: Any, cpus: Optional[float], pids: Optional[int],
                 user: Optional[str], cwd: Optional[str], main: Optional[Cmd], no_main: bool,
                 on_timeout: Optional[str]) -> Dict[str, Any]:
    req: Dict[str, Any] = {}
    if image is not None:
        req["image"] = image
    if driver is not None:
        req["driver"] = driver
    if timeout is not None:
        req["timeout"] = _seconds(timeout, "timeout")
    e = _codec.normalize_env(env)
    if e:
        req["env"] = e
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata: keys and values must be strings, got {k!r}: {v!r}")
        req["metadata"] = dict(metadata)
    if memory is not None:
        req["memory"] = _codec.parse_size(memory, "memory")
    if cpus is not None:
        req["cpus"] = cpus
    if pids is not None:
        req["pids"] = pids
    if user is not None:
        req["user"] = user
    if cwd is not None:
        req["cwd"] = cwd
    if main is not None and no_main:
        raise ValueError("pass main or no_main, not both")
    if main is not None:
        req["main"] = _codec.normalize_cmd(main)
    if no_main:
        req["no_main"] = True
    if on_timeout is not None:
        req["on_timeout"] = on_timeout
    return req


def _seconds(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
        raise ValueError(f"{what}: expected positive seconds, got {v!r}")
    return int(math.ceil(v))


def _bytes(data: Union[bytes, bytearray, memoryview, str]) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes or str, got {type(data).__name__}")


class Process:
    """A process started in the background (``exec(..., background=True)``)."""

    def __init__(self, sandbox: "Sandbox", pid: int) -> None:
        self.sandbox = sandbox
        self.pid = pid

    def __repr__(self) -> str:
        return f"warmbox.Process({self.sandbox.id!r}, pid={self.pid})"

    def wait(self, on_stdout: Optional[OutputFn] = None, on_stderr: Optional[OutputFn] = None) -> ProcessResult:
        """Follows the process from its first retained byte until it exits."""
        return self.sandbox.attach(self.pid, from_=0, on_stdout=on_stdout, on_stderr=on_stderr)

    def send_stdin(self, data: Union[bytes, str], close: bool = False) -> None:
        self.sandbox.send_stdin(self.pid, data, close=close)

    def signal(self, sig: Union[str, int] = "TERM") -> None:
        self.sandbox.signal(self.pid, sig)

    def kill(self) -> None:
        self.sandbox.signal(self.pid, "KILL")

    def resize(self, rows: int, cols: int) -> None:
        self.sandbox.resize(self.pid, rows, cols)


class Sandbox:
    """A live sandbox by id; made by :meth:`Client.create_sandbox` or
    :meth:`Client.sandbox`. Holds no connection."""

    def __init__(self, live: Any, sandbox_id: str, info: Optional[SandboxInfo] = None) -> None:
        self._live = live
        self.id = sandbox_id
        self.info = info

    def __repr__(self) -> str:
        return f"warmbox.Sandbox({self.id!r})"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        """Kills the sandbox (ignoring one that is already gone)."""
        from .errors import NotFound
        try:
            self.kill()
        except NotFound:
            pass

    # -- lifecycle -----------------------------------------------------------------

    def inspect(self) -> SandboxInfo:
        self.info = _info(self._live.inspect(self.id))
        return self.info

    def kill(self) -> None:
        self._live.kill(self.id)

    def set_timeout(self, seconds: float) -> SandboxInfo:
        """The sandbox ends ``seconds`` from now (capped by the daemon's
        ``--max-sandbox-timeout``)."""
        self.info = _info(self._live.set_timeout(self.id, _seconds(seconds, "seconds")))
        return self.info

    def pause(self) -> None:
        self._live.pause(self.id)

    def resume(self) -> None:
        self._live.resume(self.id)

    def logs(self, tail: int = 0, follow: bool = False) -> Iterator[str]:
        """The main process's log lines (``"<time> <stream> <text>"``): the
        last ``tail`` (0: all kept); with ``follow``, then every later line
        until the sandbox ends (close the iterator to stop)."""
        return self._live.logs(self.id, int(tail), bool(follow))

    # -- code ------------------------------------------------------------------------

    def run_code(self, code: str, *, language: Optional[str] = None, context: Optional[str] = None,
                 env: Optional[Mapping[str, str]] = None, timeout: Optional[float] = None,
                 on_stdout: Optional[Callable[[str], None]] = None,
                 on_stderr: Optional[Callable[[str], None]] = None) -> Execution:
        """Runs ``code`` in the sandbox's code interpreter (port 49999, started
        by its image: docs/services.md), in ``language`` or the context
        ``context`` (not both); ``env`` for this execution only; ``timeout``
        seconds, then the execution is interrupted (a RunError of kind
        ``deadline_exceeded``).
        Output streams to ``on_stdout``/``on_stderr`` as it comes."""
        if language and context:
            raise ValueError("give language or context, not both")
        req: Dict[str, Any] = {"code": str(code)}
        if language:
            req["language"] = language
        if context:
            req["context_id"] = context
        if env:
            req["env_vars"] = {str(k): str(v) for k, v in env.items()}
        if timeout is not None:
            req["timeout_ms"] = max(1, int(round(float(timeout) * 1000)))
        ex = Execution()
        for ev in self._live.code(self.id, req):
            kind = ev.get("type")
            if kind == "stdout":
                ex.stdout.append(str(ev.get("text", "")))
                if on_stdout:
                    on_stdout(ex.stdout[-1])
            elif kind == "stderr":
                ex.stderr.append(str(ev.get("text", "")))
                if on_stderr:
                    on_stderr(ex.stderr[-1])
            elif kind == "result":
                ex.results.append({k: v for k, v in ev.items() if k != "type"})
            elif kind == "error":
                ex.error = {k: ev.get(k) for k in ("name", "value", "traceback")}
            elif kind == "number_of_executions":
                ex.execution_count = ev.get("execution_count")
        return ex

    # -- processes -----------------------------------------------------------------

    def exec(
        self,
        cmd: Cmd,
        *,
        env: Optional[Env] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        timeout: Optional[float] = None,
        stdin: Union[bytes, bytearray, memoryview, str, bool, None] = None,
        tty: bool = False,
        rows: Optional[int] = None,
        cols: Optional[int] = None,
        background: bool = False,
        on_stdout: Optional[OutputFn] = None,
        on_stderr: Optional[OutputFn] = None,
    ) -> Union[ProcessResult, Process]:
        """Runs ``cmd`` in the sandbox. In the foreground, waits for it and
        returns a :class:`ProcessResult` (output also goes to ``on_stdout`` /
        ``on_stderr`` as it comes); with ``background``, returns a
        :class:`Process` as soon as it has started. ``stdin`` (bytes or str)
        is written and then closed; ``stdin=True`` leaves it open, to write
        with :meth:`send_stdin`; ``None`` gives an empty stdin. ``user`` and
        ``cwd`` default to the sandbox's own."""
        req: Dict[str, Any] = {"cmd": _codec.normalize_cmd(cmd)}
        e = _codec.normalize_env(env)
        if e:
            req["env"] = e
        if cwd is not None:
            req["cwd"] = str(cwd)
        if user is not None:
            req["user"] = str(user)
        if timeout is not None:
            req["timeout_ms"] = int(math.ceil(_positive(timeout, "timeout") * 1000))
        if tty:
            req["tty"] = True
        if rows is not None:
            req["rows"] = rows
        if cols is not None:
            req["cols"] = cols
        data = None
        if stdin is True:
            req["stdin"] = True  # a pipe left open: see send_stdin
        elif stdin is not None:
            data = _bytes(stdin)
        got = self._live.exec(self.id, req, data, background)
        if background:
            return Process(self, int(got))
        return _collect(got, on_stdout, on_stderr)

    def attach(self, pid: int, from_: Optional[int] = None, on_stdout: Optional[OutputFn] = None,
               on_stderr: Optional[OutputFn] = None) -> ProcessResult:
        """Follows process ``pid`` until it exits: its retained output from byte
        offset ``from_`` (``None``: only new output), then live."""
        return _collect(self._live.attach(self.id, pid, from_), on_stdout, on_stderr)

    def stream(self, pid: int, from_: Optional[int] = None) -> Iterator[Any]:
        """The events of process ``pid`` as they come: ``("started", {...})``,
        ``("stdout", bytes)``, ``("stderr", bytes)``, ``("exit", {...})``."""
        return self._live.attach(self.id, pid, from_)

    def ps(self) -> List[ProcessInfo]:
        return [ProcessInfo(**_known(ProcessInfo, p)) for p in self._live.ps(self.id)]

    def signal(self, pid: int, sig: Union[str, int] = "TERM") -> None:
        """Signals the process group of ``pid`` (``"TERM"``, ``"KILL"``, 9...)."""
        self._live.signal(self.id, pid, sig)

    def send_stdin(self, pid: int, data: Union[bytes, str], close: bool = False) -> None:
        """Writes to the stdin of a process started with stdin (or a tty); with
        ``close``, then closes it."""
        self._live.send_stdin(self.id, pid, _bytes(data), close)

    def resize(self, pid: int, rows: int, cols: int) -> None:
        """Sets the terminal size of a process started with ``tty=True``."""
        self._live.resize(self.id, pid, rows, cols)

    # -- files ---------------------------------------------------------------------

    def read_file(self, path: str, user: Optional[str] = None) -> bytes:
        return b"".join(self.read_file_stream(path, user=user))

    def read_file_stream(self, path: str, user: Optional[str] = None) -> Iterator[bytes]:
        """The file's bytes in pieces, as they arrive (never whole in memory)."""
        return self._live.read_file(self.id, path, user)

    def write_file(self, path: str, data: Data, mode: Optional[int] = None, user: Optional[str] = None) -> FileInfo:
        """Writes ``data`` (bytes, str, a binary file object or an iterable of
        bytes, streamed) to ``path``, making missing parent directories."""
        return _file(self._live.write_file(self.id, path, data, mode, user))

    def stat(self, path: str, user: Optional[str] = None) -> FileInfo:
        return _file(self._live.fs(self.id, "stat", {"path": path, "user": user}))

    def list_files(self, path: str, depth: int = 1, user: Optional[str] = None) -> List[FileInfo]:
        obj = self._live.fs(self.id, "list", {"path": path, "depth": depth, "user": user})
        return [_file(e) for e in obj.get("entries", [])]

    def mkdir(self, path: str, mode: Optional[int] = None, user: Optional[str] = None) -> FileInfo:
        return _file(self._live.fs(self.id, "mkdir", {"path": path, "mode": mode, "user": user}))

    def remove(self, path: str, recursive: bool = False, user: Optional[str] = None) -> None:
        self._live.fs(self.id, "remove", {"path": path, "recursive": recursive, "user": user})

    def rename(self, path: str, to: str, user: Optional[str] = None) -> FileInfo:
        return _file(self._live.fs(self.id, "rename", {"path": path, "to": to, "user": user}))

    def watch(self, path: str, recursive: bool = False, user: Optional[str] = None) -> "Watch":
        """Changes under ``path`` as :class:`WatchEvent`, until closed::

            with sb.watch("/work") as w:
                for ev in w: ...
        """
        return Watch(self._live.watch(self.id, path, recursive, user))


def _positive(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
        raise ValueError(f"{what}: expected positive seconds, got {v!r}")
    return float(v)


class Watch:
    """An iterator of :class:`WatchEvent` on its own connection."""

    def __init__(self, it: Any) -> None:
        self._it = it

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> WatchEvent:
        obj = next(self._it)
        return WatchEvent(type=str(obj.get("type", "")), path=str(obj.get("path", "")),
                          is_dir=bool(obj.get("is_dir", False)))

    def close(self) -> None:
        self._it.close()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
