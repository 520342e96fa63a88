"""Value types returned by the warmbox client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

__all__ = ["Result", "Output", "Exit", "Event", "PoolStatus"]


@dataclass(frozen=True)
class Result:
    """The outcome of a command that ran in a sandbox.

    A non-zero ``exit_code`` is a normal result, not an exception.

    Attributes:
        stdout: everything the command wrote to stdout (empty for a streamed
            run: the output came as :class:`Output` events).
        stderr: the same for stderr.
        exit_code: the command's exit code; 128+N when killed by signal N, 137
            when it timed out, 127 when the program could not be started.
        timed_out: the run's ``timeout`` killed it.
        stdout_truncated: stdout hit the output cap (16 MiB by default).
        stderr_truncated: the same for stderr.
        oom_killed: the memory limit killed the command.
        sandbox: id of the sandbox that ran it, when the daemon says.
    """

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    oom_killed: bool = False
    sandbox: Optional[str] = None

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0

    @property
    def stdout_text(self) -> str:
        """stdout decoded as UTF-8 (invalid bytes replaced)."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded as UTF-8 (invalid bytes replaced)."""
        return self.stderr.decode("utf-8", "replace")


@dataclass(frozen=True)
class Output:
    """A chunk of output of a streamed run, as the command produced it.

    Attributes:
        stream: ``"stdout"`` or ``"stderr"``.
        data: the bytes (chunk boundaries are arbitrary: do not rely on lines).
    """

    stream: str
    data: bytes


@dataclass(frozen=True)
class Exit:
    """The last event of a streamed run.

    Attributes:
        result: the run's :class:`Result` (with empty stdout/stderr: they came
            as :class:`Output` events).
    """

    result: Result


Event = Union[Output, Exit]
"""What :meth:`warmbox.Client.stream` yields: :class:`Output` then one :class:`Exit`."""


@dataclass(frozen=True)
class PoolStatus:
    """One image's pool, as the daemon's status reports it.

    Attributes:
        image: the image name.
        idle: pre-booted sandboxes waiting.
        active: run slots in use.
        queued: runs waiting for a slot.
        max: run slots (concurrent runs) of this image.
        creating: sandboxes being created.
        total_created, total_acquired, total_evicted: counters since start.
        hits: runs served by a pre-booted sandbox; misses: runs that waited for
            a sandbox to be created.
        hit_rate: hits / acquired.
        failed_creations, rejected_busy, peak_active: more counters.
        extra: fields this client does not know yet, as the daemon sent them.
    """

    image: str
    idle: int = 0
    active: int = 0
    queued: int = 0
    max: int = 0
    creating: int = 0
    total_created: int = 0
    total_acquired: int = 0
    total_evicted: int = 0
    hits: int = 0
    misses: int = 0
    hit_rate: float = 0.0
    failed_creations: int = 0
    rejected_busy: int = 0
    peak_active: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)
