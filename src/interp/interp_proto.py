"""The pure parts of warmbox's code interpreter server (docs/e2b.md, "Code
interpreter"): request validation, the NDJSON events the E2B code-interpreter
SDK parses, the MIME mapping of rich results, the late-bound env file, the
HTTP/1.1 head parser and the bash end-marker scanner. Standard library only;
unit-tested by interp_proto_test.py without a kernel."""

import datetime
import json
import os
import re

LANGUAGES = ("python", "javascript", "bash")
_ALIASES = {
    "python": "python", "python3": "python", "py": "python", "ipython": "python",
    "javascript": "javascript", "js": "javascript", "node": "javascript", "nodejs": "javascript",
    "bash": "bash", "sh": "bash", "shell": "bash",
}

# Jupyter MIME type -> the key the SDK's Result reads.
MIME_KEYS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}

MAX_BODY = 32 << 20  # bytes of a request body
MAX_HEAD = 64 << 10  # bytes of a request head
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class BadRequest(ValueError):
    """A request the server refuses with 400; the message names what was wrong."""


def normalize_language(value):
    """'Python', 'js', None ... -> one of LANGUAGES; BadRequest otherwise."""
    if value is None:
        return "python"
    if not isinstance(value, str):
        raise BadRequest("language: expected a string")
    lang = _ALIASES.get(value.strip().lower())
    if lang is None:
        raise BadRequest(
            "language: %r is not supported (supported: %s)" % (value, ", ".join(LANGUAGES)))
    return lang


def _json_object(body, what):
    if not body.strip():
        return {}
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest("%s: not JSON (%s)" % (what, e))
    if not isinstance(obj, dict):
        raise BadRequest("%s: expected a JSON object" % what)
    return obj


def check_env_vars(value, what="env_vars"):
    """None or {"NAME": "value"} -> a dict; BadRequest naming the bad entry."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("%s: expected an object of strings" % what)
    out = {}
    for k, v in value.items():
        if not _ENV_NAME.match(k):
            raise BadRequest("%s: %r is not a valid variable name" % (what, k))
        if not isinstance(v, str):
            raise BadRequest("%s.%s: expected a string" % (what, k))
        if "\0" in v:
            raise BadRequest("%s.%s: contains a NUL byte" % (what, k))
        out[k] = v
    return out


def parse_execute(body):
    """POST /execute's body -> (code, context_id or None, language or None, env_vars)."""
    obj = _json_object(body, "body")
    code = obj.get("code")
    if not isinstance(code, str):
        raise BadRequest("code: expected a string")
    ctx = obj.get("context_id")
    if ctx is not None and (not isinstance(ctx, str) or not ctx):
        raise BadRequest("context_id: expected a context id")
    lang = obj.get("language")
    if ctx is not None and lang is not None:
        raise BadRequest("give context_id or language, not both")
    if lang is not None:
        lang = normalize_language(lang)
    return code, ctx, lang, check_env_vars(obj.get("env_vars"))


def parse_context(body):
    """POST /contexts's body -> (language, cwd or None)."""
    obj = _json_object(body, "body")
    lang = normalize_language(obj.get("language"))
    cwd = obj.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd.startswith("/"):
            raise BadRequest("cwd: expected an absolute path")
    return lang, cwd


def timestamp():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def line(event):
    """One NDJSON line: json.dumps escapes newlines, so never a blank line."""
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def stream_event(name, text):
    return {"type": name, "text": text, "timestamp": timestamp()}


def error_event(name, value, traceback):
    return {"type": "error", "name": name, "value": value, "traceback": traceback}


def result_event(bundle, is_main):
    """A Jupyter MIME bundle -> the SDK's result: known types under their
    keys, any other type under its MIME name (the SDK keeps those in extra)."""
    ev = {"type": "result", "is_main_result": bool(is_main)}
    for mime, value in bundle.items():
        key = MIME_KEYS.get(mime, mime)
        if key in ("type", "is_main_result"):
            continue
        if isinstance(value, list) and key != "json":  # nbformat's multi-line strings
            value = "".join(value)
        ev[key] = value
    return ev


def env_restore(keys, sandbox_env):
    """What the env vars of one execution go back to afterwards: the
    sandbox's value, or None (unset)."""
    return {k: sandbox_env.get(k) for k in keys}


def env_changes(applied, wanted):
    """The assignments (None: unset) that take a kernel's env from applied to wanted."""
    out = {k: v for k, v in wanted.items() if applied.get(k) != v}
    for k in applied:
        if k not in wanted:
            out[k] = None
    return out


class EnvFile:
    """The sandbox's per-create env vars, bound late: the daemon writes
    /run/warmbox/envs.json (a JSON object) at claim time. Re-read only when
    its identity or mtime changes; absent or malformed means {}."""

    def __init__(self, path):
        self.path = path
        self._key = None
        self._env = {}
        self.error = None

    def get(self):
        try:
            st = os.stat(self.path)
        except OSError:
            self._key, self._env, self.error = None, {}, None
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key:
            return self._env
        self._key = key
        try:
            with open(self.path, "rb") as f:
                obj = json.loads(f.read(1 << 20))
            if not isinstance(obj, dict):
                raise ValueError("expected a JSON object")
            self._env = {k: v for k, v in obj.items()
                         if isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                         and "\0" not in k + v}
            self.error = None
        except (OSError, ValueError) as e:
            self._env, self.error = {}, "%s: %s" % (self.path, e)
        return self._env


class Head:
    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version, self.headers = method, target, version, headers

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def path(self):
        return self.target.split("?", 1)[0]


def parse_head(data):
    """An HTTP/1.x request head (without the blank line) -> Head; BadRequest."""
    try:
        text = data.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover (latin-1 decodes anything)
        raise BadRequest("request head: not text")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest("request line: %r is not 'METHOD TARGET HTTP/1.x'" % lines[0][:100])
    headers = {}
    for l in lines[1:]:
        if not l:
            continue
        name, sep, value = l.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest("header line: %r" % l[:100])
        key = name.lower()
        value = value.strip()
        headers[key] = headers[key] + "," + value if key in headers else value
    return Head(parts[0], parts[1], parts[2], headers)


def keep_alive(head):
    """Whether the client keeps its connection after this exchange: HTTP/1.1
    unless it says close; HTTP/1.0 only when it says keep-alive."""
    tokens = {t.strip().lower() for t in (head.header("connection") or "").split(",")}
    if head.version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


def body_length(head):
    """The body's framing: ('length', n) or ('chunked', None); BadRequest."""
    te = head.header("transfer-encoding")
    if te is not None:
        if te.strip().lower() != "chunked":
            raise BadRequest("Transfer-Encoding: only chunked is supported")
        return "chunked", None
    cl = head.header("content-length")
    if cl is None:
        return "length", 0
    if not cl.strip().isdigit():
        raise BadRequest("Content-Length: %r is not a number" % cl)
    n = int(cl)
    if n > MAX_BODY:
        raise BadRequest("body: larger than %d bytes" % MAX_BODY)
    return "length", n


MARK_START = "\x1eWB"
MARK_END = "\x1e"


def marker(exec_id, status):
    return "%s%d:%d%s" % (MARK_START, exec_id, status, MARK_END)


class MarkerScanner:
    """Splits a shell's output stream into text and the end markers
    ("\\x1eWB<id>:<status>\\x1e") the server has the shell print after each
    execution. A marker may arrive split over reads: a tail that could be the
    start of one is held back until the next feed."""

    def __init__(self):
        self._buf = ""

    def feed(self, text):
        """-> (text to pass on, [(exec_id, status), ...])."""
        buf = self._buf + text
        out, marks = [], []
        while True:
            i = buf.find(MARK_START)
            if i < 0:
                break
            j = buf.find(MARK_END, i + len(MARK_START))
            if j < 0:
                out.append(buf[:i])
                self._buf = buf[i:]
                if len(self._buf) > 64:  # not a marker after all
                    out.append(self._buf)
                    self._buf = ""
                return "".join(out), marks
            body = buf[i + len(MARK_START):j]
            eid, sep, status = body.partition(":")
            if sep and eid.isdigit() and status.lstrip("-").isdigit():
                out.append(buf[:i])
                marks.append((int(eid), int(status)))
                buf = buf[j + 1:]
            else:
                out.append(buf[:i + 1])
                buf = buf[i + 1:]
        # Hold back a tail that is a prefix of MARK_START.
        keep = 0
        for n in range(min(len(MARK_START) - 1, len(buf)), 0, -1):
            if MARK_START.startswith(buf[-n:]):
                keep = n
                break
        out.append(buf[:len(buf) - keep])
        self._buf = buf[len(buf) - keep:]
        return "".join(out), marks

    def flush(self):
        rest, self._buf = self._buf, ""
        return rest
