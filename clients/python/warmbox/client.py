"""The warmbox client: run commands in the daemon's pre-booted sandboxes."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Union

from . import _codec
from ._codec import Cmd, Env, Size
from ._http import HttpStream, HttpTransport
from ._live import HttpLive, UnixLive
from ._unix import UnixStream, UnixTransport
from .errors import CommandFailed
from .sandbox import Sandbox, SandboxInfo, _info, build_create
from .types import Event, Exit, Output, PoolStatus, Result

__all__ = ["Client", "RunStream", "default_socket"]

Stdin = Union[bytes, bytearray, memoryview, str, None]


def default_socket() -> str:
    """The daemon's default socket, as ``warmbox pool start`` chooses it:
    ``/run/warmbox/pool.sock`` for root, else ``$XDG_RUNTIME_DIR/warmbox/pool.sock``
    (``/tmp/warmbox-UID/pool.sock`` without ``XDG_RUNTIME_DIR``)."""
    if os.geteuid() == 0:
        return "/run/warmbox/pool.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "warmbox", "pool.sock")
    return f"/tmp/warmbox-{os.geteuid()}/pool.sock"


def default_token() -> Optional[str]:
    """The HTTP API's bearer token when none is passed: ``$WARMBOX_TOKEN``,
    else the first line of ``$WARMBOX_TOKEN_FILE``, else of the token the
    daemon generated at first start, ``$WARMBOX_STATE_DIR/http-token``
    (``/var/lib/warmbox/http-token`` by default; mode 0600, so readable by
    root). ``None`` when there is none to read."""
    token = os.environ.get("WARMBOX_TOKEN")
    if token:
        return token
    path = os.environ.get("WARMBOX_TOKEN_FILE")
    if not path:
        state = os.environ.get("WARMBOX_STATE_DIR") or "/var/lib/warmbox"
        path = os.path.join(state, "http-token")
        if not os.access(path, os.R_OK):
            return None
    # A file named by the caller must be readable: its absence is an error.
    with open(path, encoding="utf-8") as f:
        return f.readline().strip() or None


class RunStream:
    """A streamed run: iterate it for :class:`Output` events as the command
    produces them, then one :class:`Exit` with the :class:`Result`.

    Use it as a context manager (or call :meth:`close`): leaving early closes
    the connection, which makes the daemon kill the command. After the
    :class:`Exit` event, :attr:`result` holds the same Result.

    With ``check=True`` a non-zero exit raises :class:`CommandFailed` in place
    of the :class:`Exit` event (:attr:`result` is set all the same).
    """

    def __init__(self, conn: Union[UnixStream, HttpStream], check: bool) -> None:
        self._conn = conn
        self._check = check
        self._done = False
        self.result: Optional[Result] = None

    def __iter__(self) -> "RunStream":
        return self

    def __next__(self) -> Event:
        if self._done:
            raise StopIteration
        try:
            ev = self._conn.next()
        except BaseException:
            self._finish()
            raise
        if isinstance(ev, Output):
            return ev
        self.result = ev
        self._finish()
        if self._check and ev.exit_code != 0:
            raise CommandFailed(ev)
        return Exit(ev)

    def _finish(self) -> None:
        self._done = True
        self._conn.close()

    def wait(self) -> Result:
        """Consumes the rest of the stream, discarding its output, and returns
        the Result."""
        for _ in self:
            pass
        if self.result is None:
            raise RuntimeError("the stream was closed before its result arrived")
        return self.result

    def close(self) -> None:
        """Hangs up; a command still running is killed by the daemon."""
        if not self._done:
            self._finish()

    def __enter__(self) -> "RunStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class Client:
    """A connection to a warmbox daemon, over its Unix socket or its HTTP API.

    Args:
        socket: path of the daemon's Unix socket.
        url: base URL of the daemon's HTTP API, e.g. ``http://127.0.0.1:8080``.
        token: bearer token for the HTTP API (ignored on the socket).
        timeout: seconds the client waits for the daemon: to connect, and for
            each answer beyond the run's own ``timeout`` (for a streamed run,
            between two events). ``None`` (the default) waits as long as the
            daemon takes, which includes its queue timeout (30 s by default)
            when all run slots are taken. When the client gives up it hangs
            up, which cancels the command, and raises
            :class:`DaemonUnavailable` with ``kind == "timeout"``.

    With neither ``socket`` nor ``url``: ``$WARMBOX_URL`` if set, else
    ``$WARMBOX_SOCKET``, else :func:`default_socket`. ``token`` defaults to
    ``$WARMBOX_TOKEN``, else to the content of the file ``$WARMBOX_TOKEN_FILE``
    or, without that variable, of the daemon's generated token file
    (``$WARMBOX_STATE_DIR/http-token``, ``/var/lib/warmbox/http-token`` by
    default) when it is readable: see :func:`default_token`.

    A Client holds no connection between calls (each call opens its own), so
    one instance may be shared between threads.
    """

    def __init__(self, socket: Optional[str] = None, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        if socket is not None and url is not None:
            raise ValueError("pass socket or url, not both")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout: expected positive seconds or None, got {timeout!r}")
        if socket is None and url is None:
            url = os.environ.get("WARMBOX_URL") or None
            if url is None:
                socket = os.environ.get("WARMBOX_SOCKET") or default_socket()
        if token is None and url is not None:
            token = default_token()
        self.timeout = timeout
        self._t: Union[UnixTransport, HttpTransport]
        self._live: Union[UnixLive, HttpLive]
        if url is not None:
            self._t = HttpTransport(url, token, timeout)
            self._live = HttpLive(self._t)
        else:
            assert socket is not None
            self._t = UnixTransport(os.fspath(socket), timeout)
            self._live = UnixLive(self._t)

    @property
    def transport(self) -> str:
        """``"unix"`` or ``"http"``."""
        return "http" if isinstance(self._t, HttpTransport) else "unix"

    def __repr__(self) -> str:
        return f"warmbox.Client({self._t.describe()!r})"

    def _read_timeout(self, run_timeout: Optional[float]) -> Optional[float]:
        if self.timeout is None:
            return None
        return self.timeout + (run_timeout or 0)

    def run(
        self,
        cmd: Cmd,
        image: Optional[str] = None,
        *,
        env: Optional[Env] = None,
        stdin: Stdin = None,
        timeout: Optional[float] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        memory: Optional[Size] = None,
        pids: Optional[int] = None,
        cpus: Optional[float] = None,
        output_cap: Optional[Size] = None,
        nofile: Optional[int] = None,
        check: bool = False,
    ) -> Result:
        """Runs ``cmd`` in a fresh sandbox and returns its :class:`Result` once
        it has exited. A non-zero exit is a normal Result unless ``check``.

        Args:
            cmd: the argv as a list of strings, or a string run by the image's
                shell as ``["sh", "-c", cmd]``.
            image: the image; ``None`` for the daemon's default image.
            env: extra environment, a mapping or a list of ``"KEY=VALUE"``
                (overrides the sandbox's ``PATH``, ``HOME``, ``HOSTNAME``).
            stdin: the command's whole stdin (bytes, or str sent as UTF-8);
                ``None`` gives it an empty stdin.
            timeout: seconds before the daemon kills the command; the Result
                then has ``exit_code`` 137 and ``timed_out`` True.
            workdir: the command's working directory in the sandbox.
            user: ``name``, ``uid``, ``name:group`` or ``uid:gid`` (default root
                of the sandbox, which is not root on the host).
            memory: this run's memory limit, bytes or a size like ``"256m"``.
            pids: this run's process limit.
            cpus: this run's CPU quota in cores (e.g. 0.5).
            output_cap: cap per output stream, bytes or a size (default 16 MiB).
            nofile: the command's open-file limit.
            check: raise :class:`CommandFailed` when the exit code is not 0.

        Raises:
            DaemonUnavailable, Busy, RunError, AuthError, BadRequest,
            CommandFailed (see :mod:`warmbox.errors`); TypeError/ValueError for
            arguments that cannot be sent.
        """
        req = _codec.build_run(cmd, image=image, env=env, stdin=stdin, timeout=timeout, workdir=workdir,
                               user=user, memory=memory, pids=pids, cpus=cpus, output_cap=output_cap,
                               nofile=nofile)
        result = self._t.run(req, self._read_timeout(timeout))
        if check and result.exit_code != 0:
            raise CommandFailed(result)
        return result

    def stream(
        self,
        cmd: Cmd,
        image: Optional[str] = None,
        *,
        env: Optional[Env] = None,
        stdin: Stdin = None,
        timeout: Optional[float] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        memory: Optional[Size] = None,
        pids: Optional[int] = None,
        cpus: Optional[float] = None,
        output_cap: Optional[Size] = None,
        nofile: Optional[int] = None,
        check: bool = False,
    ) -> RunStream:
        """Like :meth:`run`, but returns a :class:`RunStream` that yields the
        output while the command runs::

            with client.stream(["make", "test"]) as s:
                for ev in s:
                    if isinstance(ev, warmbox.Output):
                        sys.stdout.buffer.write(ev.data)
                print("exit", s.result.exit_code)

        Errors before the command starts (Busy, RunError, ...) are raised by
        this call or by the first iteration; a daemon-side failure after the
        output began is raised by the iteration that meets it.
        """
        req = _codec.build_run(cmd, image=image, env=env, stdin=stdin, timeout=timeout, workdir=workdir,
                               user=user, memory=memory, pids=pids, cpus=cpus, output_cap=output_cap,
                               nofile=nofile)
        return RunStream(self._t.stream(req, self._read_timeout(timeout)), check)

    def status(self) -> List[PoolStatus]:
        """The daemon's pools, one :class:`PoolStatus` per image, sorted by image."""
        return self._t.status()

    def healthz(self) -> bool:
        """True when the daemon serves (HTTP ``/healthz`` says ok; on the socket,
        the status op answers), False while it drains (HTTP 503).
        Raises :class:`DaemonUnavailable` when it cannot be reached."""
        return self._t.healthz()

    def metrics(self) -> str:
        """The daemon's Prometheus metrics in the text exposition format
        (HTTP ``GET /metrics``; on the socket, the status op with
        ``"format":"prometheus"``)."""
        return self._t.metrics()


    # -- live sandboxes (docs/live-sandboxes.md) -------------------------------------

    def create_sandbox(
        self,
        image: Optional[str] = None,
        *,
        driver: Optional[str] = None,
        timeout: Optional[float] = None,
        env: Optional[Env] = None,
        metadata: Optional[Dict[str, str]] = None,
        memory: Optional[Size] = None,
        cpus: Optional[float] = None,
        pids: Optional[int] = None,
        user: Optional[str] = None,
        cwd: Optional[str] = None,
        main: Optional[Cmd] = None,
        no_main: bool = False,
        on_timeout: Optional[str] = None,
    ) -> Sandbox:
        """Claims a live sandbox from the warm pool and returns it.

        Args:
            image: the image; ``None`` for the daemon's default.
            timeout: seconds until it ends (default 300; the daemon caps it).
            env: the default environment of every process in it.
            metadata: free string pairs, to find it again with
                :meth:`list_sandboxes`.
            memory, cpus, pids: its limits (``memory`` in bytes or like "512m").
            user, cwd: the default user and working directory of its processes.
            main: the main process (default: the image's Entrypoint/Cmd, if
                any); ``no_main=True`` for none.
            on_timeout: ``"kill"`` (the default) or ``"pause"``.

        Use it as a context manager to kill it on leaving.
        """
        req = build_create(image=image, driver=driver, timeout=timeout, env=env, metadata=metadata, memory=memory,
                           cpus=cpus, pids=pids, user=user, cwd=cwd, main=main, no_main=no_main,
                           on_timeout=on_timeout)
        info = _info(self._live.create(req))
        return Sandbox(self._live, info.id, info)

    def list_sandboxes(self, metadata: Optional[Dict[str, str]] = None) -> List[SandboxInfo]:
        """The live sandboxes (oldest first) whose metadata has every given pair."""
        return [_info(i) for i in self._live.list(dict(metadata or {}))]

    def sandbox(self, sandbox_id: str) -> Sandbox:
        """The live sandbox ``sandbox_id`` (not checked until used)."""
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise ValueError(f"sandbox_id: expected a non-empty string, got {sandbox_id!r}")
        return Sandbox(self._live, sandbox_id)
