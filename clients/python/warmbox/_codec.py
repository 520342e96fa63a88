"""Pure encoding and decoding of warmbox requests and responses.

Nothing here does I/O, so all of it is unit-tested without a daemon. Two wire
formats share one model:

* the Unix socket (docs/protocol.md): each frame is a 4-byte little-endian
  length then UTF-8 JSON; byte strings are JSON arrays of numbers 0-255;
* the HTTP API: JSON bodies with byte strings in base64, streamed runs as
  NDJSON lines.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import struct
from dataclasses import fields
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from .errors import (AuthError, BadRequest, Busy, Conflict, NotFound, PermissionDenied, ProtocolError, RunError,
                     WarmboxError)
from .types import Output, PoolStatus, Result

# The daemon refuses requests larger than this (both transports).
MAX_REQUEST = 8 << 20
# The client refuses socket responses announcing more than this (the C++
# client's cap: 16 MiB per stream as JSON byte arrays, with room to spare).
MAX_RESPONSE = 256 << 20

Cmd = Union[str, Sequence[Union[str, "os.PathLike[str]"]]]
Env = Union[Mapping[str, str], Iterable[str]]
Size = Union[int, str]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# --- requests -------------------------------------------------------------------


def normalize_cmd(cmd: Cmd) -> List[str]:
    """Returns the argv to send.

    A string is a shell command line, run as ``["sh", "-c", cmd]`` (the image
    needs a ``sh``); a sequence is the argv itself, passed as it is.
    """
    if isinstance(cmd, str):
        if not cmd.strip():
            raise ValueError("cmd: empty command")
        return ["sh", "-c", cmd]
    if isinstance(cmd, (bytes, bytearray)):
        raise TypeError("cmd: expected a string or a sequence of strings, got bytes")
    argv: List[str] = []
    for i, a in enumerate(cmd):
        if isinstance(a, os.PathLike):
            a = os.fspath(a)
        if not isinstance(a, str):
            raise TypeError(f"cmd[{i}]: expected a string, got {type(a).__name__}")
        argv.append(a)
    if not argv:
        raise ValueError("cmd: empty command")
    return argv


def normalize_env(env: Optional[Env]) -> Optional[List[str]]:
    """Returns env as a list of ``KEY=VALUE`` (a mapping or such a list in)."""
    if env is None:
        return None
    out: List[str] = []
    if isinstance(env, Mapping):
        for k, v in env.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"env: keys and values must be strings, got {k!r}: {v!r}")
            if not k or "=" in k:
                raise ValueError(f"env: bad variable name {k!r}")
            out.append(f"{k}={v}")
        return out
    if isinstance(env, (str, bytes)):
        raise TypeError("env: expected a mapping or a list of 'KEY=VALUE' strings")
    for kv in env:
        if not isinstance(kv, str):
            raise TypeError(f"env: expected 'KEY=VALUE' strings, got {kv!r}")
        if kv.find("=") <= 0:
            raise ValueError(f"env: expected KEY=VALUE, got {kv!r}")
        out.append(kv)
    return out


def parse_size(value: Size, what: str) -> int:
    """Bytes from an int or a string like ``"512m"``, ``"2g"``, ``"1048576"``
    (powers of 1024, as the daemon's CLI reads them)."""
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected bytes as an int or a size like '512m'")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"{what}: expected a size like 512m, 2g or 1048576, got {value!r}")
        unit = (m.group(2) or "").lower()[:1]
        n = int(math.floor(float(m.group(1)) * _SIZE_MULT[unit]))
    else:
        raise TypeError(f"{what}: expected bytes as an int or a size like '512m'")
    if n <= 0:
        raise ValueError(f"{what}: must be positive, got {value!r}")
    return n


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: expected an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{what}: must be positive, got {value!r}")
    return value


def build_run(
    cmd: Cmd,
    *,
    image: Optional[str] = None,
    env: Optional[Env] = None,
    stdin: Union[bytes, bytearray, memoryview, str, None] = None,
    timeout: Optional[float] = None,
    workdir: Optional[str] = None,
    user: Optional[str] = None,
    memory: Optional[Size] = None,
    pids: Optional[int] = None,
    cpus: Optional[float] = None,
    output_cap: Optional[Size] = None,
    nofile: Optional[int] = None,
) -> Dict[str, Any]:
    """Validates a run's arguments into a transport-neutral dict (stdin as bytes,
    sizes in bytes, ``timeout_ms``). Raises TypeError/ValueError on bad input."""
    req: Dict[str, Any] = {"cmd": normalize_cmd(cmd)}
    if image is not None:
        if not isinstance(image, str) or not image:
            raise ValueError(f"image: expected a non-empty string, got {image!r}")
        req["image"] = image
    e = normalize_env(env)
    if e:
        req["env"] = e
    if workdir is not None:
        req["workdir"] = str(workdir)
    if user is not None:
        req["user"] = str(user)
    if stdin is not None:
        if isinstance(stdin, str):
            req["stdin"] = stdin.encode("utf-8")
        elif isinstance(stdin, (bytes, bytearray, memoryview)):
            req["stdin"] = bytes(stdin)
        else:
            raise TypeError(f"stdin: expected bytes or str, got {type(stdin).__name__}")
    if timeout is not None:
        if (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
                or not math.isfinite(timeout)):
            raise ValueError(f"timeout: expected positive seconds, got {timeout!r}")
        req["timeout_ms"] = int(math.ceil(timeout * 1000))
    if memory is not None:
        req["memory"] = parse_size(memory, "memory")
    if pids is not None:
        req["pids"] = _positive_int(pids, "pids")
    if cpus is not None:
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0:
            raise ValueError(f"cpus: expected a positive number of cores, got {cpus!r}")
        req["cpus"] = cpus
    if output_cap is not None:
        req["output_cap"] = parse_size(output_cap, "output_cap")
    if nofile is not None:
        req["nofile"] = _positive_int(nofile, "nofile")
    return req


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_size(body: bytes, hint: str, size: Optional[int] = None) -> bytes:
    n = len(body) if size is None else size
    if n > MAX_REQUEST:
        what = f"request of {n} bytes" if size is None else f"request of at least {n} bytes"
        raise BadRequest(
            f"{what} exceeds the daemon's {MAX_REQUEST}-byte limit{hint}",
            kind="too_large",
        )
    return body


# Decimal text of each byte value: joining these is ~6x faster than
# json.dumps(list(data)) for the socket's byte arrays (38 ms against 360 ms
# for 1 MiB on the reference VM).
_DECIMAL = [str(i) for i in range(256)]


def byte_array_json(data: bytes) -> str:
    """The socket's JSON byte array for data: ``[104,105]``."""
    return "[" + ",".join(map(_DECIMAL.__getitem__, data)) + "]"


def socket_run_body(run: Mapping[str, Any], stream: bool) -> bytes:
    """The JSON of a socket run request (without the frame header)."""
    obj: Dict[str, Any] = {"op": "run"}
    obj.update((k, v) for k, v in run.items() if k != "stdin")
    if stream:
        obj["stream"] = True
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    hint = ""
    if "stdin" in run:
        hint = " (stdin goes as a JSON byte array on the socket, up to 4 bytes per byte)"
        # At least 2 bytes per byte ("0,"): refuse a hopeless stdin before encoding it.
        _check_size(b"", hint, len(run["stdin"]) * 2)
        # Spliced in as text: the object above always ends with "}".
        text = text[:-1] + ',"stdin":' + byte_array_json(run["stdin"]) + "}"
    return _check_size(text.encode("utf-8"), hint)


def http_run_body(run: Mapping[str, Any]) -> bytes:
    """The JSON body of ``POST /v1/run``."""
    obj: Dict[str, Any] = {}
    for k, v in run.items():
        if k == "stdin":
            obj["stdin_base64"] = base64.b64encode(v).decode("ascii")
        else:
            obj[k] = v
    return _check_size(_dumps(obj), "")


# --- socket framing -------------------------------------------------------------


def encode_frame(payload: bytes) -> bytes:
    """A socket frame: 4-byte little-endian length, then the payload."""
    if len(payload) > 0xFFFFFFFF:
        raise ValueError("frame payload exceeds 4 GiB")
    return struct.pack("<I", len(payload)) + payload


def decode_length(header: bytes, cap: int = MAX_RESPONSE) -> int:
    """The payload length of a frame header; ProtocolError above ``cap``."""
    if len(header) != 4:
        raise ProtocolError(f"frame header of {len(header)} bytes (expected 4)")
    (n,) = struct.unpack("<I", header)
    if n > cap:
        raise ProtocolError(f"frame of {n} bytes exceeds the client's {cap}-byte limit")
    return n


# --- responses ------------------------------------------------------------------


def loads(body: Union[bytes, str], what: str) -> Any:
    """Parses JSON, raising ProtocolError naming what it was."""
    try:
        return json.loads(body)
    except ValueError as e:
        raise ProtocolError(f"{what}: invalid JSON from the daemon: {e}") from None


def byte_array(v: Any, what: str) -> bytes:
    """bytes from a socket JSON byte array (or None → b"")."""
    if v is None:
        return b""
    if not isinstance(v, list):
        raise ProtocolError(f"{what}: expected an array of bytes")
    try:
        return bytes(v)
    except (TypeError, ValueError):
        raise ProtocolError(f"{what}: expected bytes 0-255") from None


def b64(v: Any, what: str) -> bytes:
    """bytes from an HTTP base64 string (or None → b"")."""
    if v is None or v == "":
        return b""
    if not isinstance(v, str):
        raise ProtocolError(f"{what}: expected a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except ValueError:
        raise ProtocolError(f"{what}: invalid base64") from None


def error_from(message: str, *, kind: Optional[str] = None, status: Optional[int] = None) -> WarmboxError:
    """The exception for a daemon-side failure: its ``error`` text and its
    ``kind`` field (both front ends send one; docs/errors.md). The class is
    chosen by the kind alone, never by the text: a daemon that names no kind
    (an upstream pool) gives a RunError of kind ``"internal"``."""
    k = kind or "internal"
    if k == "busy":
        return Busy(message, kind=k, status=status)
    if k in ("bad_request", "too_large"):
        return BadRequest(message, kind=k, status=status)
    if k == "unauthorized":
        return AuthError(message, kind=k, status=status)
    return _by_kind(message, k, status)


def _by_kind(message: str, kind: str, status: Optional[int]) -> WarmboxError:
    if kind == "not_found":
        return NotFound(message, kind=kind, status=status)
    if kind == "permission_denied":
        return PermissionDenied(message, kind=kind, status=status)
    if kind in ("failed_precondition", "already_exists"):
        return Conflict(message, kind=kind, status=status)
    return RunError(message, kind=kind, status=status)


def result_from(obj: Any, decode: Callable[[Any, str], bytes], what: str) -> Result:
    """A Result from a final run response, or raises the daemon's error."""
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: expected a JSON object")
    code = obj.get("exit_code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise ProtocolError(f"{what}: missing exit_code")
    err = obj.get("error")
    if code == -1 or (isinstance(err, str) and err):
        msg = err if isinstance(err, str) and err else "the daemon failed the run without a message"
        kind = obj.get("kind") if isinstance(obj.get("kind"), str) else None
        raise error_from(msg, kind=kind)
    sandbox = obj.get("sandbox")
    return Result(
        stdout=decode(obj.get("stdout"), "stdout"),
        stderr=decode(obj.get("stderr"), "stderr"),
        exit_code=code,
        timed_out=bool(obj.get("timed_out", False)),
        stdout_truncated=bool(obj.get("stdout_truncated", False)),
        stderr_truncated=bool(obj.get("stderr_truncated", False)),
        oom_killed=bool(obj.get("oom_killed", False)),
        sandbox=sandbox if isinstance(sandbox, str) and sandbox else None,
    )


def event_from(obj: Any, decode: Callable[[Any, str], bytes], what: str) -> Union[Output, Result]:
    """One frame/line of a streamed run: an Output chunk or the final Result."""
    if isinstance(obj, dict) and "stream" in obj:
        which = obj["stream"]
        if which not in ("stdout", "stderr"):
            raise ProtocolError(f"{what}: unknown stream {which!r}")
        if "data" not in obj:
            raise ProtocolError(f"{what}: stream frame without data")
        return Output(which, decode(obj["data"], "data"))
    return result_from(obj, decode, what)


_STATUS_FIELDS = {f.name for f in fields(PoolStatus)} - {"extra"}


def pools_from(obj: Any, what: str) -> List[PoolStatus]:
    """The pools of a status response (``{"images":[...]}``)."""
    if isinstance(obj, dict) and isinstance(obj.get("error"), str) and obj["error"]:
        raise error_from(obj["error"], kind=obj.get("kind") if isinstance(obj.get("kind"), str) else None)
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise ProtocolError(f"{what}: expected {{\"images\": [...]}}")
    out: List[PoolStatus] = []
    for item in obj["images"]:
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise ProtocolError(f"{what}: an image entry without a name")
        known = {k: v for k, v in item.items() if k in _STATUS_FIELDS}
        extra = {k: v for k, v in item.items() if k not in _STATUS_FIELDS}
        out.append(PoolStatus(**known, extra=extra))
    return out


def http_error(status: int, body: bytes, retry_after: Optional[str]) -> WarmboxError:
    """The exception for a non-200 HTTP answer (body ``{"error":..,"kind":..}``)."""
    message, kind = "", None
    try:
        obj = json.loads(body) if body else None
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        if isinstance(obj.get("error"), str):
            message = obj["error"]
        if isinstance(obj.get("kind"), str):
            kind = obj["kind"]
    if not message:
        message = body.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    if status == 429 or kind in ("busy", "too_many_connections"):
        ra: Optional[float] = None
        if retry_after:
            try:
                ra = float(retry_after)
            except ValueError:
                ra = None  # an HTTP-date: not worth parsing for a hint
        return Busy(message, retry_after=ra, kind=kind or "busy", status=status)
    if kind in ("not_found", "permission_denied", "failed_precondition", "already_exists"):
        return _by_kind(message, kind, status)
    if status in (401, 403):
        return AuthError(message, kind=kind or ("forbidden" if status == 403 else "unauthorized"), status=status)
    if status in (400, 413, 415) and kind != "resource_exhausted":
        default = {413: "too_large", 415: "unsupported_media_type"}.get(status, "bad_request")
        return BadRequest(message, kind=kind or default, status=status)
    if kind is None:
        kind = {404: "not_found", 405: "method_not_allowed", 503: "draining"}.get(status, "internal")
    return RunError(message, kind=kind, status=status)
