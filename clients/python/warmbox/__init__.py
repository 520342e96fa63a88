"""Python client of warmbox: run commands in pre-booted sandboxes in milliseconds.

Standard library only, Python >= 3.9::

    import warmbox

    client = warmbox.Client()                 # the local daemon's Unix socket
    r = client.run(["echo", "hi"])
    assert r.stdout == b"hi\\n" and r.exit_code == 0

See :class:`Client` and the README.
"""

from .client import Client, RunStream, default_socket, default_token
from .errors import (AuthError, BadRequest, Busy, CommandFailed, Conflict, DaemonUnavailable, NotFound,
                     PermissionDenied, ProtocolError, RunError, WarmboxError)
from .sandbox import Execution, FileInfo, Process, ProcessInfo, ProcessResult, Sandbox, SandboxInfo, WatchEvent
from .types import Event, Exit, Output, PoolStatus, Result

__version__ = "0.1.0"

__all__ = [
    "Client",
    "RunStream",
    "default_socket",
    "default_token",
    "Result",
    "Output",
    "Exit",
    "Event",
    "PoolStatus",
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
    "Sandbox",
    "SandboxInfo",
    "Process",
    "ProcessInfo",
    "ProcessResult",
    "FileInfo",
    "WatchEvent",
    "Execution",
]
