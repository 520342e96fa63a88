"""Exceptions raised by the warmbox client.

Every exception the client raises on purpose derives from :class:`WarmboxError`.
A command that runs and exits non-zero is *not* an error: its exit code is in
:attr:`warmbox.Result.exit_code`. Only ``check=True`` turns it into
:class:`CommandFailed`.

Arguments the caller got wrong before anything is sent (an empty command, a
non-string env value) raise the built-in :class:`TypeError` or
:class:`ValueError` instead, like the standard library does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .types import Result

__all__ = [
    "WarmboxError",
    "DaemonUnavailable",
    "Busy",
    "RunError",
    "AuthError",
    "BadRequest",
    "ProtocolError",
    "CommandFailed",
    "NotFound",
    "PermissionDenied",
    "Conflict",
]


class WarmboxError(Exception):
    """Base class of every error of the warmbox client.

    Attributes:
        message: the daemon's (or the client's) error text.
        kind: a short machine-readable kind: ``"busy"``, ``"bad_request"``,
            ``"unauthorized"``, ``"no_image"``, ``"draining"``, ``"internal"``,
            ``"unavailable"``, ``"protocol"``, ``"command_failed"``... It is the
            daemon's ``kind`` field on both transports (never derived from the
            text); ``"internal"`` when a daemon names none.
        status: the HTTP status code, or ``None`` on the Unix socket.
    """

    default_kind = "error"

    def __init__(self, message: str, *, kind: Optional[str] = None, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind or self.default_kind
        self.status = status


class DaemonUnavailable(WarmboxError):
    """The daemon could not be reached: no socket, connection refused, or the
    connection broke before a response arrived."""

    default_kind = "unavailable"


class Busy(WarmboxError):
    """Every run slot of the image stayed taken for the daemon's queue timeout,
    or its queue is full (kind ``"busy"``; HTTP 429), or the HTTP API has its
    ``--http-max-connections`` open (kind ``"too_many_connections"``; HTTP
    503). Retry later.

    Attributes:
        retry_after: seconds the daemon suggests waiting (HTTP ``Retry-After``),
            or ``None`` when it gave none (the Unix socket never does).
    """

    default_kind = "busy"

    def __init__(self, message: str, *, retry_after: Optional[float] = None, kind: Optional[str] = None,
                 status: Optional[int] = None) -> None:
        super().__init__(message, kind=kind, status=status)
        self.retry_after = retry_after


class RunError(WarmboxError):
    """The daemon could not run the command (exit code -1 on the socket): no such
    image, the sandbox failed, the daemon is draining. ``kind`` tells which."""

    default_kind = "internal"


class AuthError(WarmboxError):
    """The HTTP API refused the request: no bearer token or a wrong one (HTTP
    401, kind ``"unauthorized"``), or it looked like a browser's (HTTP 403,
    kind ``"forbidden"``: an ``Origin`` header, or a ``Host`` that does not
    name loopback on a loopback address)."""

    default_kind = "unauthorized"


class BadRequest(WarmboxError):
    """The daemon rejected the request as malformed or too large (HTTP 400/413,
    socket ``bad request(...)``/``frame(...)``), or the client refused to send a
    request larger than the daemon accepts."""

    default_kind = "bad_request"


class NotFound(RunError):
    """What the request named does not exist: a live sandbox, a process, a file
    (kind ``"not_found"``; HTTP 404)."""

    default_kind = "not_found"


class PermissionDenied(RunError):
    """The sandbox's user may not do that, e.g. read a file (kind
    ``"permission_denied"``; HTTP 403)."""

    default_kind = "permission_denied"


class Conflict(RunError):
    """The target is in the wrong state: a paused sandbox, a non-empty
    directory removed without ``recursive`` (kind ``"failed_precondition"``),
    or a name that exists (``"already_exists"``); HTTP 409."""

    default_kind = "failed_precondition"


class ProtocolError(WarmboxError):
    """The daemon's answer did not follow the protocol (bad frame, bad JSON)."""

    default_kind = "protocol"


class CommandFailed(WarmboxError):
    """Raised by ``run(..., check=True)`` when the command exits non-zero.

    Attributes:
        result: the full :class:`warmbox.Result` of the run.
    """

    default_kind = "command_failed"

    def __init__(self, result: "Result") -> None:
        what = "timed out" if result.timed_out else f"exited with code {result.exit_code}"
        tail = result.stderr[-500:].decode("utf-8", "replace").strip()
        super().__init__(f"command {what}" + (f": {tail}" if tail else ""))
        self.result = result
