#!/usr/bin/python3
"""The HTTP API against real daemons, with curl, every response checked
against docs/openapi.yaml.

Run as root with Debian's python (python3-yaml, python3-jsonschema):
    WARMBOX_BUILD_DIR=build /usr/bin/python3 -m unittest discover -s tests/http -v
or  WARMBOX_BUILD_DIR=build /usr/bin/python3 tests/http/test_http_api.py -v

Each daemon gets its own tmp dir (state dir, socket, log), its own uid range
(WARMBOX_USERNS_BASE, inside this file's range in tests/uid_ranges.h: checked
by test_util_test) and cgroup parent (WARMBOX_CGROUP_PARENT), so the leak
check after it stops looks only at its own sandboxes.
"""

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

try:
    import jsonschema
    import yaml
except ImportError as e:  # the pyenv python on PATH may lack them
    jsonschema = yaml = None
    IMPORT_ERROR = str(e)

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))
SPEC_PATH = os.path.join(SOURCE_DIR, "docs", "openapi.yaml")
BUILD_DIR = os.path.abspath(os.environ.get("WARMBOX_BUILD_DIR", os.path.join(SOURCE_DIR, "build")))
WARMBOX = os.path.join(BUILD_DIR, "warmbox")
UID_COUNT = 65536
MAX_BODY = 8 << 20
TOKEN = "t0ken-0123456789abcdef-http-test"


def skip_reason():
    """Empty when the real tests can run here, else why not."""
    if jsonschema is None:
        return "needs python3-yaml and python3-jsonschema (run with /usr/bin/python3 after scripts/setup): " + IMPORT_ERROR
    if os.geteuid() != 0:
        return "needs root (sandboxes: uid maps, cgroups)"
    for path in (WARMBOX, os.path.join(BUILD_DIR, "warmbox-agent")):
        if not os.access(path, os.X_OK):
            return "%s missing: build it (ninja -C build warmbox warmbox-agent) or set WARMBOX_BUILD_DIR" % path
    if shutil.which("curl") is None:
        return "curl missing (run scripts/setup)"
    if not os.path.exists("/bin/busybox"):
        return "/bin/busybox missing (run scripts/setup)"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "overlayfs not available"
    return ""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(pred, timeout=15.0, interval=0.02):
    """Polls pred until it returns a true value (returned) or the deadline passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def die_with_parent():
    """In a child before exec: SIGTERM (the daemon's drain) when the test
    process dies, so that a crashed test leaves no daemon behind."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 15)


def pids_with_uid_in(lo, hi):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            uid = os.stat("/proc/" + name).st_uid
        except OSError:
            continue
        if lo <= uid < hi:
            out.append(int(name))
    return out


# --- the spec ---------------------------------------------------------------

class Spec:
    """docs/openapi.yaml, and validation of real responses against it."""

    BASE = "urn:warmbox-openapi"

    def __init__(self, path=SPEC_PATH):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        # Schemas are validated against the whole document: its local $refs
        # ("#/components/...") become absolute ones into it.
        self.rdoc = self.absolute_refs(self.doc)
        try:
            from referencing import Registry
            from referencing.jsonschema import DRAFT202012
            self.registry = Registry().with_resource(self.BASE, DRAFT202012.create_resource(self.rdoc))
        except ImportError:  # jsonschema < 4.18 (Debian 12 has 4.10)
            self.registry = None

    @classmethod
    def absolute_refs(cls, node):
        if isinstance(node, dict):
            return {k: (cls.BASE + v if k == "$ref" and isinstance(v, str) and v.startswith("#/")
                        else cls.absolute_refs(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [cls.absolute_refs(v) for v in node]
        return node

    def pointer(self, ref):
        assert ref.startswith("#/"), ref
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def validator(self, schema):
        schema = self.absolute_refs(schema)
        cls = jsonschema.Draft202012Validator
        if self.registry is not None:
            return cls(schema, registry=self.registry)
        resolver = jsonschema.RefResolver(base_uri=self.BASE, referrer=self.rdoc, store={self.BASE: self.rdoc})
        return cls(schema, resolver=resolver)

    def validate(self, schema, instance, what):
        errors = sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            raise AssertionError("%s does not match docs/openapi.yaml: %s\ninstance: %s" % (
                what, "; ".join("%s at %s" % (e.message, list(e.absolute_path)) for e in errors[:5]),
                json.dumps(instance)[:2000]))

    def schema(self, name):
        return {"$ref": "#/components/schemas/" + name}

    def is_valid(self, schema, instance):
        return not list(self.validator(schema).iter_errors(instance))

    def response_spec(self, method, path, status):
        """The response object for (method, path, status); unknown paths are NotFound."""
        if path not in self.doc["paths"]:
            if status != 404:
                raise AssertionError("%s %s answered %d; the spec lists no such path" % (method, path, status))
            return self.pointer("#/components/responses/NotFound")
        op = self.doc["paths"][path].get(method.lower())
        if op is None:
            if status != 405:
                raise AssertionError("%s %s answered %d; the spec lists no %s there" % (method, path, status, method))
            return self.pointer("#/components/responses/MethodNotAllowed")
        responses = op["responses"]
        if str(status) not in responses:
            raise AssertionError("%s %s answered %d, not among the spec's %s" % (
                method, path, status, sorted(responses)))
        resp = responses[str(status)]
        if "$ref" in resp:
            resp = self.pointer(resp["$ref"])
        return resp

    def check_response(self, method, path, status, headers, body):
        """Validates a whole response (status, headers, Content-Type, body).
        Returns the parsed body: JSON, a list of NDJSON lines, or text."""
        resp = self.response_spec(method, path, status)
        for name, h in resp.get("headers", {}).items():
            if "$ref" in h:
                h = self.pointer(h["$ref"])
            value = headers.get(name.lower())
            if value is None:
                if h.get("required"):
                    raise AssertionError("%s %s %d: header %s missing (spec: required)" % (method, path, status, name))
                continue
            hschema = h["schema"]
            instance = value
            if hschema.get("type") == "integer":
                if not re.fullmatch(r"[0-9]+", value):
                    raise AssertionError("header %s=%r is not an integer" % (name, value))
                instance = int(value)
            self.validate(hschema, instance, "%s %s %d header %s" % (method, path, status, name))
        ctype = headers.get("content-type")
        content = resp.get("content", {})
        if not content:
            return body
        if ctype is None:
            raise AssertionError("%s %s %d: no Content-Type" % (method, path, status))
        media = self.match_media(content, ctype)
        if media is None:
            raise AssertionError("%s %s %d: Content-Type %r not in the spec's %s" % (
                method, path, status, ctype, sorted(content)))
        schema = content[media]["schema"]
        what = "%s %s %d (%s)" % (method, path, status, media)
        base = media.split(";")[0].strip()
        if base == "application/json":
            parsed = json.loads(body)
            self.validate(schema, parsed, what)
            return parsed
        if base == "application/x-ndjson":
            text = body.decode()
            if not text.endswith("\n"):
                raise AssertionError("%s: NDJSON body does not end with a newline: %r" % (what, text[-200:]))
            lines = [json.loads(l) for l in text[:-1].split("\n")]
            for i, line in enumerate(lines):
                self.validate(schema, line, "%s line %d" % (what, i + 1))
            # Chunks, then exactly one final result, last.
            for line in lines[:-1]:
                self.validate(self.schema("StreamChunk"), line, what + " (a line before the last)")
            self.validate(self.schema("RunResult"), lines[-1], what + " (the last line)")
            return lines
        text = body.decode()
        self.validate(schema, text, what)
        return text

    @staticmethod
    def match_media(content, ctype):
        """The spec's media type key matching a Content-Type header: same type,
        and every parameter of the key present with the same value."""
        def parse(v):
            parts = [p.strip() for p in v.split(";")]
            params = {}
            for p in parts[1:]:
                if "=" in p:
                    k, val = p.split("=", 1)
                    params[k.strip().lower()] = val.strip().strip('"')
            return parts[0].lower(), params
        t, params = parse(ctype)
        for key in content:
            kt, kparams = parse(key)
            if kt == t and all(params.get(k) == v for k, v in kparams.items()):
                return key
        return None


# --- curl -------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.headers, self.body[:500])


def parse_headers(raw):
    """Headers of the last response in curl's -D dump (lower-case names)."""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers = {}
    if not blocks:
        return headers
    for line in blocks[-1].split("\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return headers


def curl(url, method="GET", body=None, headers=(), body_file=None, timeout=60):
    """One request with curl; returns a Response. body: bytes or str."""
    with tempfile.TemporaryDirectory(prefix="wb-curl-") as d:
        hfile, ofile = os.path.join(d, "h"), os.path.join(d, "o")
        argv = ["curl", "-sS", "-X", method, "-D", hfile, "-o", ofile, "-w", "%{http_code}",
                "--max-time", str(timeout), "-H", "Expect:"]
        for h in headers:
            argv += ["-H", h]
        if body is not None:
            bfile = os.path.join(d, "b")
            with open(bfile, "wb") as f:
                f.write(body.encode() if isinstance(body, str) else body)
            argv += ["--data-binary", "@" + bfile]
        elif body_file is not None:
            argv += ["--data-binary", "@" + body_file]
        argv.append(url)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
        if p.returncode != 0:
            raise AssertionError("curl %s %s failed (%d): %s" % (method, url, p.returncode, p.stderr))
        with open(hfile) as f:
            hdrs = parse_headers(f.read())
        with open(ofile, "rb") as f:
            out = f.read()
        return Response(int(p.stdout.strip()), hdrs, out)


def b64(s):
    return base64.b64decode(s, validate=True)


# --- the daemon -------------------------------------------------------------

class Daemon:
    """`warmbox pool start` in its own tmp dir, uid range and cgroup parent."""

    def __init__(self, uid_base, cgroup_parent, args=(), http_host="127.0.0.1", token=None):
        self.uid_base = uid_base
        self.cgroup_parent = cgroup_parent
        self.args = list(args)
        self.http_host = http_host
        self.token = token
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix="wb-http-test-")
        self.state = self.tmp  # --state-dir
        self.socket = os.path.join(self.tmp, "pool.sock")
        self.log_path = os.path.join(self.tmp, "daemon.log")
        self.token_file = None
        if token is not None:
            self.token_file = os.path.join(self.tmp, "token")
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (token + "\n").encode())
            os.close(fd)
        # Classes are 70000 ids apart: one shared range per daemon (no per-sandbox slots).
        self.env = dict(os.environ, WARMBOX_USERNS_BASE=str(uid_base), WARMBOX_UID_SLOTS="0",
                        WARMBOX_CGROUP_PARENT=cgroup_parent)
        self.env.pop("LISTEN_FDS", None)
        self.env.pop("NOTIFY_SOCKET", None)

    def cli(self, *args):
        return [WARMBOX, "--state-dir", self.state] + list(args)

    def run_cli(self, *args, timeout=30):
        return subprocess.run(self.cli(*args), env=self.env, capture_output=True, timeout=timeout)

    def start(self):
        for _ in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            argv = self.cli("pool", "start", "--socket", self.socket,
                            "--http", "%s:%d" % (self.http_host, self.port), *self.args)
            if self.token_file:
                argv += ["--http-token-file", self.token_file]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             preexec_fn=die_with_parent)
            if eventually(self._healthy_or_dead, timeout=20) and self.proc.poll() is None:
                if self.token is None:
                    self.token = self.generated_token()
                return self
            if self.proc.poll() is None:
                raise AssertionError("daemon did not answer /healthz within 20 s:\n" + self.log())
            if "in use" not in self.log():
                raise AssertionError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
        raise AssertionError("no free port after 3 tries:\n" + self.log())

    def _healthy_or_dead(self):
        if self.proc.poll() is not None:
            return True
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def generated_token(self):
        """STATE/http-token, which the daemon generates without --http-token-file."""
        path = os.path.join(self.state, "http-token")
        mode = os.stat(path).st_mode & 0o777
        assert mode == 0o600, "%s has mode %o" % (path, mode)
        with open(path) as f:
            return f.read().strip()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def auth(self):
        return ["Authorization: Bearer " + self.token] if self.token else []

    def curl_auth(self):
        """auth() as curl arguments."""
        return [arg for h in self.auth() for arg in ("-H", h)]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def pools(self):
        r = curl(self.url + "/v1/pools", headers=self.auth())
        assert r.status == 200, r
        return {p["image"]: p for p in r.json()["images"]}

    def wait_pool(self, pred, what, timeout=15):
        """Polls /v1/pools until pred(busybox's entry) holds."""
        ok = eventually(lambda: pred(self.pools().get("busybox")), timeout=timeout)
        if not ok:
            raise AssertionError("timed out waiting for %s; pools: %s" % (what, self.pools()))

    def stop(self):
        """Stops the daemon (pool stop, then waits), checks that none of its
        sandboxes' processes is left, removes the tmp dir. Returns problems."""
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            try:
                stopped = self.run_cli("pool", "stop", "--socket", self.socket).returncode == 0
            except (OSError, subprocess.SubprocessError) as e:
                problems.append("pool stop: %s" % e)
                stopped = False
            if not stopped and self.proc.poll() is None:
                # Already draining (a test stopped it) or not answering: SIGTERM drains too.
                self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                problems.append("daemon still running 30 s after pool stop; killed")
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            left = eventually(lambda: not pids_with_uid_in(self.uid_base, self.uid_base + UID_COUNT), timeout=10)
            if not left:
                problems.append("sandbox processes left: %s" % pids_with_uid_in(self.uid_base, self.uid_base + UID_COUNT))
        log = self.log()
        try:
            shutil.rmtree(self.tmp)
        except OSError as e:
            problems.append("removing %s: %s" % (self.tmp, e))
        remove_cgroup_parent(self.cgroup_parent)
        if problems:
            problems.append("daemon log:\n" + log)
        return problems


def remove_cgroup_parent(name):
    """rmdir (only if empty) the test's own cgroup parent in every hierarchy."""
    root = "/sys/fs/cgroup"
    candidates = [os.path.join(root, name)]
    try:
        for h in os.listdir(root):
            candidates.append(os.path.join(root, h, name))
    except OSError:
        pass
    for c in candidates:
        if os.path.isdir(c):
            try:
                os.rmdir(c)
            except OSError:
                pass


class DaemonTestCase(unittest.TestCase):
    """One daemon per class (started in setUpClass, stopped in tearDownClass)."""
    UID_BASE = None
    CGROUP_PARENT = None
    ARGS = ()
    HOST = "127.0.0.1"
    TOKEN = None
    spec = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.spec = Spec()
        cls.daemon = Daemon(cls.UID_BASE, cls.CGROUP_PARENT, cls.ARGS, cls.HOST, cls.TOKEN)
        try:
            cls.daemon.start()
        except BaseException:
            cls.daemon.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = cls.daemon.stop()
        if problems:
            raise AssertionError("\n".join(problems))

    def request(self, method, path, body=None, headers=(), auth=True, **kw):
        """curl, then the whole response is checked against the spec."""
        hdrs = list(headers) + (self.daemon.auth() if auth else [])
        r = curl(self.daemon.url + path, method=method, body=body, headers=hdrs, **kw)
        spec_path = path.split("?")[0]
        try:
            r.parsed = self.spec.check_response(method, spec_path, r.status, r.headers, r.body)
        except (AssertionError, ValueError) as e:
            raise AssertionError("%s\nresponse: %r\ndaemon log:\n%s" % (e, r, self.daemon.log()[-3000:]))
        return r

    def socket_run(self, req, timeout=30):
        """The same run over the Unix socket (length-prefixed JSON, docs/protocol.md):
        its final response (output frames of a streamed run are skipped)."""
        body = json.dumps(dict(req, op="run")).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.daemon.socket)
            s.sendall(len(body).to_bytes(4, "little") + body)
            f = s.makefile("rb")
            while True:
                hdr = f.read(4)
                self.assertEqual(len(hdr), 4, "the socket closed without a final response")
                frame = json.loads(f.read(int.from_bytes(hdr, "little")))
                if "stream" not in frame:
                    return frame

    def run_json(self, req, status=200, headers=(), **kw):
        """POST /v1/run with a JSON body; asserts the status."""
        body = json.dumps(req) if not isinstance(req, (str, bytes)) else req
        r = self.request("POST", "/v1/run", body=body, headers=["Content-Type: application/json"] + list(headers),
                         **kw)
        self.assertEqual(r.status, status, r)
        return r


# --- the tests --------------------------------------------------------------

class SpecDocumentTest(unittest.TestCase):
    """The document itself: parses, every schema is valid 2020-12, every $ref resolves."""

    def setUp(self):
        if jsonschema is None:
            self.skipTest("needs python3-yaml and python3-jsonschema: " + IMPORT_ERROR)
        self.spec = Spec()

    def test_document(self):
        doc = self.spec.doc
        self.assertEqual(doc["openapi"], "3.1.0")
        paths = set(doc["paths"])
        self.assertLessEqual({"/v1/run", "/v1/pools", "/healthz", "/metrics"}, paths)
        # The rest are the live sandboxes' (tests/http/test_http_live.py)
        # and MCP's (tests/mcp).
        for p in paths - {"/v1/run", "/v1/pools", "/healthz", "/metrics", "/mcp"}:
            self.assertTrue(p.startswith("/v1/sandboxes"), p)
        for name, schema in doc["components"]["schemas"].items():
            jsonschema.Draft202012Validator.check_schema(schema)

        def walk(node, where):
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "$ref":
                        self.spec.pointer(v)  # raises KeyError if dangling
                    walk(v, where + "/" + str(k))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, "%s/%d" % (where, i))
        walk(doc, "")
        # /healthz needs no token; everything else takes the bearer scheme.
        self.assertEqual(doc["paths"]["/healthz"]["get"]["security"], [])
        self.assertIn({"bearerAuth": []}, doc["security"])

    def test_request_schema_matches_the_parser(self):
        # What the daemon accepts and refuses (see ApiTest.test_bad_fields),
        # the schema accepts and refuses too.
        s = self.spec.schema("RunRequest")
        for ok in GOOD_REQUESTS:
            self.assertTrue(self.spec.is_valid(s, ok), ok)
        for bad, _ in BAD_REQUESTS:
            if isinstance(bad, dict):
                self.assertFalse(self.spec.is_valid(s, bad), bad)


GOOD_REQUESTS = [
    {"cmd": ["true"]},
    {"cmd": ["true"], "image": None, "env": None, "stdin": None, "workdir": None, "user": None,
     "timeout_ms": None, "memory": None, "cpus": None},
    {"cmd": ["sh", "-c", "echo $A"], "env": ["A=1", "B="], "workdir": "/tmp", "user": "0:0",
     "timeout_ms": 5000, "memory": 64 << 20, "pids": 64, "cpus": 0.5, "output_cap": 1024, "nofile": 64},
    {"cmd": ["cat"], "env": {"A": "x y"}, "stdin_base64": "AP8K"},
    {"cmd": ["cat"], "stdin": "héllo\n", "image": "busybox"},
]

# (request body, the field the error must name)
BAD_REQUESTS = [
    ("{not json", "body"),
    ("[1,2]", "body"),
    ({}, "cmd"),
    ({"cmd": []}, "cmd"),
    ({"cmd": "ls"}, "cmd"),
    ({"cmd": ["ls", 1]}, "cmd"),
    ({"cmd": ["true"], "env": ["NOEQUALS"]}, "env"),
    ({"cmd": ["true"], "env": ["=x"]}, "env"),
    ({"cmd": ["true"], "env": {"A=B": "x"}}, "env"),
    ({"cmd": ["true"], "env": {"A": 1}}, "env"),
    ({"cmd": ["true"], "env": "A=1"}, "env"),
    ({"cmd": ["true"], "image": ""}, "image"),
    ({"cmd": ["true"], "image": 5}, "image"),
    ({"cmd": ["true"], "image": "a b"}, "image name"),
    ({"cmd": ["true"], "workdir": 1}, "workdir"),
    ({"cmd": ["true"], "user": ["root"]}, "user"),
    ({"cmd": ["true"], "stdin": 5}, "stdin"),
    ({"cmd": ["true"], "stdin": "a", "stdin_base64": "YQ=="}, "stdin_base64"),
    ({"cmd": ["true"], "timeoutms": 5}, "timeoutms"),
    ({"cmd": ["true"], "memory": 4194303}, "memory"),
    ({"cmd": ["true"], "stdin_base64": "YQ"}, "stdin_base64"),
    ({"cmd": ["true"], "stdin_base64": "!!!!"}, "stdin_base64"),
    ({"cmd": ["true"], "timeout_ms": -1}, "timeout_ms"),
    ({"cmd": ["true"], "timeout_ms": 1.5}, "timeout_ms"),
    ({"cmd": ["true"], "timeout_ms": 1000000000001}, "timeout_ms"),
    ({"cmd": ["true"], "memory": 0}, "memory"),
    ({"cmd": ["true"], "pids": -3}, "pids"),
    ({"cmd": ["true"], "output_cap": "1k"}, "output_cap"),
    ({"cmd": ["true"], "nofile": 0}, "nofile"),
    ({"cmd": ["true"], "cpus": 0}, "cpus"),
    ({"cmd": ["true"], "cpus": 2000}, "cpus"),
    ({"cmd": ["true"], "cpus": "1"}, "cpus"),
    ({"cmd": ["true"], "op": "run"}, "op"),
    ({"cmd": ["true"], "stream": True}, "stream"),
]


class ApiTest(DaemonTestCase):
    """A loopback daemon with its generated token: runs, streams, bad requests."""
    UID_BASE = 1650000000
    CGROUP_PARENT = "warmbox-httptest"
    ARGS = ("--size", "2", "--max", "4")

    def test_run_decodes_outputs_and_exit_code(self):
        r = self.run_json({"cmd": ["sh", "-c", "printf 'out\\000\\377'; echo err >&2; exit 3"]})
        self.assertEqual(r.headers["content-type"], "application/json")
        res = r.parsed
        self.assertEqual(b64(res["stdout"]), b"out\x00\xff")
        self.assertEqual(b64(res["stderr"]), b"err\n")
        self.assertEqual(res["exit_code"], 3)
        self.assertIsNone(res["error"])
        self.assertFalse(res["timed_out"])
        self.assertRegex(res["sandbox"], "^[0-9a-f]{12}$")

    def test_run_stdin_env_workdir(self):
        r = self.run_json({"cmd": ["sh", "-c", "cat; echo \"$A|$B\"; pwd"], "env": {"A": "1", "B": "x y"},
                           "workdir": "/tmp", "stdin": "héllo\n"})
        self.assertEqual(b64(r.parsed["stdout"]).decode(), "héllo\n1|x y\n/tmp\n")
        r = self.run_json({"cmd": ["sh", "-c", "od -An -tx1"], "env": ["X=1"], "stdin_base64": "AP8K"})
        self.assertEqual(b64(r.parsed["stdout"]).split(), [b"00", b"ff", b"0a"])

    def test_run_timeout_and_truncation(self):
        r = self.run_json({"cmd": ["sleep", "30"], "timeout_ms": 100})
        self.assertEqual(r.parsed["exit_code"], 137)
        self.assertTrue(r.parsed["timed_out"])
        r = self.run_json({"cmd": ["sh", "-c", "yes | head -c 100000"], "output_cap": 10})
        self.assertEqual(len(b64(r.parsed["stdout"])), 10)
        self.assertTrue(r.parsed["stdout_truncated"])
        r = self.run_json({"cmd": ["no-such-program"]})
        self.assertEqual(r.parsed["exit_code"], 127)
        self.assertIn(b"no-such-program", b64(r.parsed["stderr"]))

    def test_streamed_run(self):
        # The first line must reach us while the command still runs (it
        # sleeps 1.5 s between its two outputs): buffered output would make
        # both arrive together at the end.
        body = json.dumps({"cmd": ["sh", "-c", "echo first; echo warn >&2; sleep 1.5; echo second"]})
        with tempfile.TemporaryDirectory(prefix="wb-curl-") as d:
            hfile = os.path.join(d, "h")
            with subprocess.Popen(["curl", "-sS", "-N", "--max-time", "60", "-D", hfile, "-X", "POST",
                                   "-H", "Accept: application/x-ndjson", "-H", "Content-Type: application/json",
                                   *self.daemon.curl_auth(), "--data-binary", body, self.daemon.url + "/v1/run"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
                lines, arrived = [], []
                for raw in p.stdout:
                    lines.append(raw)
                    arrived.append(time.monotonic())
                err = p.stderr.read()
                self.assertEqual(p.wait(), 0, err)
            with open(hfile) as f:
                raw_headers = f.read()
            headers = parse_headers(raw_headers)
            status = int(raw_headers.split()[1])
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("transfer-encoding"), "chunked")
        parsed = self.spec.check_response("POST", "/v1/run", status, headers, b"".join(lines))
        chunks, final = parsed[:-1], parsed[-1]
        self.assertEqual(final["exit_code"], 0)
        self.assertEqual(final["stdout"], "")
        self.assertEqual(final["stderr"], "")
        out = b"".join(b64(c["data"]) for c in chunks if c["stream"] == "stdout")
        err = b"".join(b64(c["data"]) for c in chunks if c["stream"] == "stderr")
        self.assertEqual(out, b"first\nsecond\n")
        self.assertEqual(err, b"warn\n")
        first = next(i for i, c in enumerate(parsed) if "stream" in c and b64(c["data"]).startswith(b"first"))
        self.assertGreater(arrived[-1] - arrived[first], 1.0,
                           "the first chunk did not arrive before the command finished")

    def test_streamed_run_without_output_is_one_final_line(self):
        r = self.run_json({"cmd": ["sh", "-c", "exit 7"]}, headers=["Accept: application/x-ndjson"])
        self.assertEqual(len(r.parsed), 1)
        self.assertEqual(r.parsed[0]["exit_code"], 7)

    def test_streamed_run_refused_before_output_is_json(self):
        r = self.run_json({"cmd": []}, status=400, headers=["Accept: application/x-ndjson"])
        self.assertEqual(r.parsed["kind"], "bad_request")
        r = self.run_json({"cmd": ["true"], "image": "no-such-image"}, status=404,
                          headers=["Accept: application/x-ndjson"])
        self.assertEqual(r.parsed["kind"], "no_image")

    def test_bad_fields(self):
        for req, field in BAD_REQUESTS:
            with self.subTest(req=req):
                r = self.run_json(req, status=400)
                self.assertEqual(r.parsed["kind"], "bad_request")
                self.assertIn(field, r.parsed["error"])
                if isinstance(req, dict):
                    self.assertFalse(self.spec.is_valid(self.spec.schema("RunRequest"), req),
                                     "the spec accepts a request the daemon refuses")

    def test_good_requests_run(self):
        for req in GOOD_REQUESTS:
            with self.subTest(req=req):
                self.run_json(req)

    def test_same_kind_on_both_front_ends(self):
        # docs/errors.md: the socket's error responses carry the kind the HTTP
        # API sends for the same failure, decided by the error's code.
        cases = [
            ({}, "bad_request"),
            ({"cmd": []}, "bad_request"),
            ({"cmd": "ls"}, "bad_request"),
            ({"cmd": ["true"], "image": "a b"}, "bad_request"),
            ({"cmd": ["true"], "memory": 0}, "bad_request"),
            ({"cmd": ["true"], "pids": -3}, "bad_request"),
            ({"cmd": ["true"], "timeout_ms": -1}, "bad_request"),
            ({"cmd": ["true"], "image": "no-such-image"}, "no_image"),
        ]
        for req, kind in cases:
            with self.subTest(req=req):
                r = self.request("POST", "/v1/run", body=json.dumps(req),
                                 headers=["Content-Type: application/json"])
                self.assertEqual(r.parsed["kind"], kind, r)
                sock = self.socket_run(req)
                self.assertEqual(sock["exit_code"], -1, sock)
                self.assertEqual(sock.get("kind"), kind, sock)
                self.assertEqual(sock["error"], r.parsed["error"])
        # A run that succeeds has no kind on either.
        self.assertNotIn("kind", self.socket_run({"cmd": ["true"]}))
        self.assertNotIn("kind", self.run_json({"cmd": ["true"]}).parsed)

    def test_tiny_memory_limit_is_a_bad_request(self):
        # Refused by the parser (as `pool run --memory` refuses less than
        # 4m), before any sandbox is touched; the daemon still serves.
        r = self.run_json({"cmd": ["true"], "memory": 1}, status=400)
        self.assertEqual(r.parsed["kind"], "bad_request")
        self.assertIn("memory", r.parsed["error"])
        self.run_json({"cmd": ["true"]})

    def test_no_image(self):
        r = self.run_json({"cmd": ["true"], "image": "no-such-image"}, status=404)
        self.assertEqual(r.parsed["kind"], "no_image")
        self.assertIn("no-such-image", r.parsed["error"])

    def test_oversized_body(self):
        big = json.dumps({"cmd": ["true"], "stdin": "x" * (MAX_BODY + 16)})
        r = self.run_json(big, status=413)
        self.assertEqual(r.parsed["kind"], "too_large")
        self.assertEqual(r.headers.get("connection"), "close")
        # Exactly at the limit the body is read (and parsed).
        pad = MAX_BODY - len(json.dumps({"cmd": ["true"], "stdin": ""}))
        r = self.run_json(json.dumps({"cmd": ["true"], "stdin": "y" * pad}), status=200)

    def test_unknown_path_and_wrong_method(self):
        r = self.request("GET", "/v1/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.parsed["kind"], "not_found")
        r = self.request("GET", "/")
        self.assertEqual(r.status, 404)
        for method, path, allow in [("GET", "/v1/run", "POST"), ("DELETE", "/v1/run", "POST"),
                                    ("POST", "/v1/pools", "GET"), ("PUT", "/metrics", "GET"),
                                    ("POST", "/healthz", "GET")]:
            with self.subTest(method=method, path=path):
                r = self.request(method, path, body="{}" if method in ("POST", "PUT") else None)
                self.assertEqual(r.status, 405)
                self.assertEqual(r.parsed["kind"], "method_not_allowed")
                self.assertEqual(r.headers["allow"], allow)

    def test_not_http(self):
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10) as s:
            s.sendall(b"GARBAGE\r\n\r\n")
            data = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                data += c
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        headers = parse_headers(head.decode() + "\r\n\r\n")
        self.assertEqual(status, 400)
        err = self.spec.check_response("POST", "/v1/run", status, headers, body)
        self.assertEqual(err["kind"], "bad_request")

    def test_pools_health_metrics(self):
        self.run_json({"cmd": ["true"]})
        r = self.request("GET", "/v1/pools")
        self.assertEqual(r.status, 200)
        busybox = [p for p in r.parsed["images"] if p["image"] == "busybox"]
        self.assertEqual(len(busybox), 1)
        self.assertEqual(busybox[0]["max"], 4)
        self.assertGreaterEqual(busybox[0]["total_acquired"], 1)
        r = self.request("GET", "/healthz?probe=1")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.parsed, {"ok": True, "draining": False})
        r = self.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertRegex(r.parsed, r'(?m)^warmbox_runs_total\{image="busybox",driver="ns"\} [1-9][0-9]*$')
        self.assertRegex(r.parsed, r'(?m)^warmbox_pool_max\{image="busybox",driver="ns"\} 4$')

    def test_expect_100_continue_is_answered(self):
        # Known bug (reported): curl (and libcurl clients) send
        # "Expect: 100-continue" with bodies over 1 MiB and wait for
        # "100 Continue" before sending the body; the daemon never sends it,
        # so every such run stalls for curl's 1 s expect timeout.
        body = json.dumps({"cmd": ["wc", "-c"], "stdin": "x" * (2 << 20)})
        with tempfile.NamedTemporaryFile("w", prefix="wb-curl-", suffix=".json") as f:
            f.write(body)
            f.flush()
            p = subprocess.run(["curl", "-sS", "-v", "-o", "/dev/null", "-H", "Expect: 100-continue",
                                "--expect100-timeout", "2", "--max-time", "60", "-X", "POST",
                                "-H", "Content-Type: application/json", *self.daemon.curl_auth(),
                                "--data-binary", "@" + f.name, self.daemon.url + "/v1/run"],
                               capture_output=True, text=True, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("< HTTP/1.1 100 Continue", p.stderr)

    def test_head_response_has_no_body(self):
        # Known bug (reported): HEAD gets 405 (fine) but with a 62-byte JSON
        # body, which a HEAD response must not have (RFC 9110 9.3.2): a
        # keep-alive client then reads that body as the start of the next
        # response.
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10) as s:
            s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while True:
                c = s.recv(65536)
                if not c:
                    break
                data += c
        head, _, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 "), data)
        self.assertTrue(rest.startswith(b"HTTP/1.1 200"), "bytes after the HEAD response's head: %r" % rest[:80])

    def test_keep_alive(self):
        # Several requests on one connection (curl reuses it for two URLs).
        p = subprocess.run(["curl", "-sS", "-v", "-o", "/dev/null", "-o", "/dev/null",
                            self.daemon.url + "/healthz", self.daemon.url + "/v1/pools"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Re-using existing connection", p.stderr)

    # Issue 19, finding 10: a large output is held in a spill file and sent
    # from it piece by piece, never built whole in the daemon.
    def raw_run(self, req):
        """POST /v1/run on a raw connection; returns (socket, status, headers, body bytes read so far)."""
        body = json.dumps(req).encode()
        head = ("POST /v1/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                "".join(h + "\r\n" for h in self.daemon.auth()) +
                "Content-Length: %d\r\n\r\n" % len(body)).encode()
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=60)
        s.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            self.assertTrue(chunk, "closed before a response head: %r" % data)
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        head = head.decode("latin-1")
        return s, int(head.split("\r\n", 1)[0].split(" ")[1]), parse_headers(head), rest

    def spill_fds(self):
        """The daemon's open spill files: unlinked files in its state dir."""
        out = []
        fd_dir = "/proc/%d/fd" % self.daemon.proc.pid
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith(self.daemon.state + "/") and target.endswith("(deleted)"):
                out.append(target)
        return out

    def test_large_output_is_streamed_from_its_spill(self):
        size = 48 << 20
        pid = self.daemon.proc.pid
        before = daemon_rss_kib(pid)
        s, status, headers, body = self.raw_run({"cmd": ["head", "-c", str(size), "/dev/zero"],
                                                 "output_cap": size})
        with s:
            self.assertEqual(status, 200)
            self.assertEqual(headers["content-type"], "application/json")
            length = int(headers["content-length"])
            # Checked as it comes, never held whole here either:
            # '{"stdout":"' then base64 of zeros ("AAAA"), then the rest.
            got, first, tail = len(body), body[:64], body[-300:]
            while got < length:
                chunk = s.recv(1 << 20)
                self.assertTrue(chunk, "closed after %d of %d bytes" % (got, length))
                if len(first) < 64:
                    first = (first + chunk)[:64]
                tail = (tail + chunk)[-300:]
                got += len(chunk)
            self.assertEqual(got, length)
        prefix = b'{"stdout":"'
        self.assertTrue(first.startswith(prefix + b"AAAAAAAA"), first)
        rest = tail[tail.index(b'","stderr":') + 1:]
        self.assertTrue(rest.startswith(b',"stderr":"","exit_code":0,"error":null,"timed_out":false'), rest)
        encoded = (size + 2) // 3 * 4
        self.assertEqual(length, len(prefix) + encoded + 1 + len(rest))
        self.assertTrue(eventually(lambda: not self.spill_fds()), self.spill_fds())
        # The peak over the whole run against the resident set before it.
        grown = daemon_status_kib(pid, "VmHWM") - before
        if "ASAN_OPTIONS" in os.environ:
            # ASan's quarantine keeps freed chunks resident (256 MiB by
            # default), so the peak says nothing about what the daemon holds.
            self.skipTest("peak RSS is not measured under ASan (quarantine); grew %d KiB" % grown)
        self.assertLess(grown, 32 * 1024, "the daemon's peak grew by %d KiB while answering" % grown)

    def test_client_gone_mid_response_leaves_no_spill(self):
        size = 48 << 20
        s, status, headers, _ = self.raw_run({"cmd": ["head", "-c", str(size), "/dev/zero"],
                                              "output_cap": size})
        with s:
            self.assertEqual(status, 200)
            self.assertGreater(int(headers["content-length"]), size)
            # The daemon waits on us mid-body: its output is in a file with no name.
            self.assertEqual(len(self.spill_fds()), 1, self.spill_fds())
            self.assertEqual([n for n in os.listdir(self.daemon.state) if n.startswith(".run-output")], [])
        self.assertTrue(eventually(lambda: not self.spill_fds(), timeout=40),
                        "a spill fd outlived its client: %s" % self.spill_fds())
        r = self.run_json({"cmd": ["echo", "ok"]})
        self.assertEqual(b64(r.parsed["stdout"]), b"ok\n")


class BusyTest(DaemonTestCase):
    """One run slot and a 0.2 s queue timeout: a second run gets 429."""
    UID_BASE = 1650070000
    CGROUP_PARENT = "warmbox-httptest-busy"
    ARGS = ("--size", "1", "--max", "1", "--queue-timeout", "0.2")

    def hold_slot(self, seconds, then=""):
        """Starts a streamed run that holds the only slot and returns its curl
        process once the command has printed "started" (proof it runs)."""
        cmd = ["sh", "-c", "echo started; sleep %s; %s" % (seconds, then or "true")]
        p = subprocess.Popen(["curl", "-sS", "-N", "--max-time", "60", "-X", "POST",
                              "-H", "Accept: application/x-ndjson", "-H", "Content-Type: application/json",
                              *self.daemon.curl_auth(), "--data-binary",
                              json.dumps({"cmd": cmd}), self.daemon.url + "/v1/run"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        first = json.loads(p.stdout.readline() or b"null")
        if not first or first.get("stream") != "stdout" or b64(first["data"]) != b"started\n":
            p.kill()
            p.communicate()
            self.fail("the holding run did not start: %r\n%s" % (first, self.daemon.log()))
        return p

    def test_1_busy_429(self):
        holder = self.hold_slot(60)
        try:
            for accept in ([], ["Accept: application/x-ndjson"]):
                r = self.run_json({"cmd": ["true"]}, status=429, headers=accept)
                self.assertEqual(r.parsed["kind"], "busy")
                self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        finally:
            # Hanging up cancels the held run (the daemon kills the command).
            holder.kill()
            holder.communicate()
        self.daemon.wait_pool(lambda p: p and p["active"] == 0, "the cancelled run to give its slot back")
        st = self.daemon.pools()["busybox"]
        self.assertEqual(st["rejected_busy"], 2)
        r = self.request("GET", "/metrics")
        self.assertRegex(r.parsed, r'(?m)^warmbox_run_errors_total\{kind="busy"\} 2$')
        self.assertRegex(r.parsed, r'(?m)^warmbox_run_errors_total\{kind="client_gone"\} 1$')
        self.run_json({"cmd": ["true"]}, status=200)

    def test_1a_busy_on_the_socket_too(self):
        # The same failure over the Unix socket: the same kind (docs/errors.md).
        holder = self.hold_slot(60)
        try:
            r = self.socket_run({"cmd": ["true"]})
            self.assertEqual(r["exit_code"], -1, r)
            self.assertEqual(r.get("kind"), "busy", r)
            h = self.run_json({"cmd": ["true"]}, status=429)
            self.assertEqual(h.parsed["kind"], r["kind"])
        finally:
            holder.kill()
            holder.communicate()
        self.daemon.wait_pool(lambda p: p and p["active"] == 0, "the cancelled run to give its slot back")

    def test_2_draining_503(self):
        # Runs in flight finish while the daemon drains; new ones get 503 and
        # /healthz turns 503. (Last test of the class: the daemon stops.)
        holder = self.hold_slot(2, "echo done")
        r = self.daemon.run_cli("pool", "stop", "--socket", self.daemon.socket)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(eventually(
            lambda: curl(self.daemon.url + "/healthz").status == 503, timeout=10), self.daemon.log())
        r = self.request("GET", "/healthz")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.parsed, {"ok": False, "draining": True})
        r = self.run_json({"cmd": ["true"]}, status=503)
        self.assertEqual(r.parsed["kind"], "draining")
        out, err = holder.communicate(timeout=60)
        self.assertEqual(holder.returncode, 0, err)
        lines = [json.loads(l) for l in out.splitlines()]
        for line in lines:
            self.spec.validate(self.spec.schema("StreamLine"), line, "the drained run's stream")
        self.assertEqual(lines[-1]["exit_code"], 0, lines)
        self.assertEqual([b64(l["data"]) for l in lines[:-1]], [b"done\n"])
        self.daemon.proc.wait(timeout=30)
        self.assertEqual(self.daemon.proc.returncode, 0, self.daemon.log())


class TokenTest(DaemonTestCase):
    """A non-loopback bind (0.0.0.0) with a token file."""
    UID_BASE = 1650140000
    CGROUP_PARENT = "warmbox-httptest-token"
    ARGS = ("--size", "1")
    HOST = "0.0.0.0"
    TOKEN = TOKEN

    def test_no_token_401(self):
        for path, method in [("/v1/run", "POST"), ("/v1/pools", "GET"), ("/metrics", "GET")]:
            with self.subTest(path=path):
                r = self.request(method, path, auth=False, body='{"cmd":["true"]}' if method == "POST" else None)
                self.assertEqual(r.status, 401)
                self.assertEqual(r.parsed["kind"], "unauthorized")
                self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="warmbox"')

    def test_wrong_token_401(self):
        for auth in ["Authorization: Bearer " + TOKEN[:-1] + "X", "Authorization: Bearer " + TOKEN + "X",
                     "Authorization: Basic " + base64.b64encode(b"u:" + TOKEN.encode()).decode(),
                     "Authorization: Bearer"]:
            with self.subTest(auth=auth):
                r = self.run_json({"cmd": ["true"]}, status=401, headers=[auth], auth=False)
                self.assertEqual(r.parsed["kind"], "unauthorized")
                self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="warmbox", error="invalid_token"')

    def test_right_token_200(self):
        r = self.run_json({"cmd": ["echo", "authorized"]})
        self.assertEqual(b64(r.parsed["stdout"]), b"authorized\n")
        # The scheme is case-insensitive.
        r = self.run_json({"cmd": ["true"]}, headers=["Authorization: bearer " + TOKEN], auth=False)
        self.assertEqual(r.parsed["exit_code"], 0)
        r = self.request("GET", "/v1/pools")
        self.assertEqual(r.status, 200)

    def test_healthz_needs_no_token(self):
        r = self.request("GET", "/healthz", auth=False)
        self.assertEqual(r.status, 200)
        r = self.request("GET", "/healthz", headers=["Authorization: Bearer wrong-wrong-wrong"], auth=False)
        self.assertEqual(r.status, 200)


def daemon_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def daemon_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def read_response_head(sock):
    """The status code and headers of the response on sock (raw HTTP/1.1)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError("connection closed before a response head: %r" % data)
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = int(head.split("\r\n", 1)[0].split(" ")[1])
    return status, parse_headers(head)


def drain_until_closed(sock, timeout=5):
    """Reads until the peer closes; True if it did within timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


class HardeningTest(DaemonTestCase):
    """What stands before the token and the body: a loopback daemon with its
    generated token and 8 connections at most (docs/security.md, HTTP API)."""
    UID_BASE = 1650210000  # RefusalTest's range: its daemons never start a sandbox
    CGROUP_PARENT = "warmbox-httptest-hardening"
    MAX_CONNECTIONS = 8
    ARGS = ("--size", "1", "--http-max-connections", str(MAX_CONNECTIONS))

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_generated_token_is_required(self):
        self.assertEqual(len(self.daemon.token), 64)
        r = self.request("GET", "/v1/pools", auth=False)
        self.assertEqual((r.status, r.parsed["kind"]), (401, "unauthorized"))
        self.assertEqual(self.request("GET", "/v1/pools").status, 200)
        self.assertEqual(self.run_json({"cmd": ["echo", "ok"]}).parsed["exit_code"], 0)

    def test_refused_at_the_head_before_the_body(self):
        # An 8,000,000-byte body announced, not one byte of it sent: the
        # answer comes at once (the old daemon waited for the whole body).
        cases = [
            ("no token", [], 401, "unauthorized"),
            ("wrong token", ["Authorization: Bearer " + "x" * 64], 401, "unauthorized"),
            ("a web page", ["Authorization: Bearer " + self.daemon.token, "Origin: https://evil.example"],
             403, "forbidden"),
        ]
        for name, extra, status, kind in cases:
            with self.subTest(name):
                s = self.connect()
                head = ["POST /v1/run HTTP/1.1", "Host: 127.0.0.1:%d" % self.daemon.port,
                        "Content-Type: application/json", "Content-Length: 8000000"] + extra
                s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
                s.settimeout(5)
                got, headers = read_response_head(s)
                self.assertEqual(got, status)
                self.assertEqual(headers.get("connection"), "close")
                # The body was never awaited: the daemon closes its side at once.
                self.assertTrue(drain_until_closed(s), "the daemon kept the connection open")

    def test_browser_requests_are_refused(self):
        # A cross-site form or fetch carries an Origin, token or not.
        for path, method in [("/v1/run", "POST"), ("/v1/pools", "GET"), ("/metrics", "GET")]:
            for auth in (True, False):
                with self.subTest(path=path, auth=auth):
                    r = self.request(method, path, headers=["Origin: https://evil.example"], auth=auth,
                                     body='{"cmd":["true"]}' if method == "POST" else None)
                    self.assertEqual((r.status, r.parsed["kind"]), (403, "forbidden"))
                    self.assertIn("evil.example", r.parsed["error"])
        # DNS rebinding: the page's own name, resolved to 127.0.0.1.
        r = self.request("GET", "/v1/pools", headers=["Host: rebind.evil.example:%d" % self.daemon.port])
        self.assertEqual((r.status, r.parsed["kind"]), (403, "forbidden"))
        self.assertIn("Host", r.parsed["error"])
        r = self.request("GET", "/v1/pools", headers=["Host: localhost:%d" % self.daemon.port])
        self.assertEqual(r.status, 200)
        # The bodies a page may send cross-site without a preflight.
        for ctype in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]:
            with self.subTest(ctype=ctype):
                r = self.request("POST", "/v1/run", body='{"cmd":["true"]}', headers=["Content-Type: " + ctype])
                self.assertEqual((r.status, r.parsed["kind"]), (415, "unsupported_media_type"))
        r = self.run_json({"cmd": ["true"]}, headers=["Content-Type: application/json; charset=utf-8"])
        self.assertEqual(r.parsed["exit_code"], 0)
        # Health probes stay open to load balancers.
        r = self.request("GET", "/healthz", headers=["Origin: https://evil.example", "Host: lb.example"],
                         auth=False)
        self.assertEqual(r.status, 200)

    def test_connection_cap(self):
        def attempt():
            idle = [self.connect() for _ in range(self.MAX_CONNECTIONS)]
            extra = self.connect()
            extra.settimeout(5)
            status, headers = read_response_head(extra)
            refused_idle = 0
            for s in idle:
                s.setblocking(False)
                try:
                    if s.recv(1):
                        refused_idle += 1  # a leftover connection of an earlier test still counted
                except BlockingIOError:
                    pass
            for s in idle + [extra]:
                s.close()
            return (status, headers) if refused_idle == 0 else None

        got = eventually(attempt, timeout=30)
        self.assertIsNotNone(got, "8 idle connections did not fill the cap")
        status, headers = got
        self.assertEqual(status, 503)
        self.assertEqual(headers.get("retry-after"), "1")
        # Once they are closed, requests are served again.
        self.assertTrue(eventually(lambda: self.request("GET", "/v1/pools").status == 200, timeout=10))
        r = self.request("GET", "/metrics")
        self.assertEqual(r.status, 200)

    def test_z_unauthenticated_flood_holds_no_memory(self):
        # The review's attack: 150 connections without a token, each sending a
        # head announcing 8 MiB and then body bytes. The daemon reads no body
        # before the token and holds at most 8 connections.
        pid = self.daemon.proc.pid
        before = daemon_rss_kib(pid)
        socks = []
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
            socks.append(s)
            head = ("POST /v1/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "Content-Length: 8388000\r\n\r\n").encode()
            s.sendall(head)
        statuses = []
        chunk = b"[" * 65536
        for s in socks:
            s.settimeout(5)
            try:
                for _ in range(4):
                    s.sendall(chunk)
            except OSError:
                pass  # the daemon answered and closed: the rest is not wanted
            try:
                statuses.append(read_response_head(s)[0])
            except (OSError, AssertionError) as e:
                statuses.append(repr(e))
        grown = daemon_rss_kib(pid) - before
        for s in socks:
            s.close()
        self.assertTrue(set(statuses) <= {401, 503}, statuses)
        self.assertLess(grown, 32 * 1024, "the daemon grew by %d KiB" % grown)
        self.assertTrue(eventually(lambda: self.request("GET", "/v1/pools").status == 200, timeout=10))


class RefusalTest(unittest.TestCase):
    """The daemon refuses unsafe HTTP configurations at start: exit 125, a clear error, nothing left."""

    def setUp(self):
        why = skip_reason()
        if why:
            self.skipTest(why)
        self.daemon = Daemon(1650210000, "warmbox-httptest-refusal")

    def tearDown(self):
        problems = self.daemon.stop()
        self.assertEqual(problems, [])

    def start(self, *args):
        d = self.daemon
        return subprocess.run(d.cli("pool", "start", "--socket", d.socket, *args), env=d.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)

    def test_generated_token_file_opened_up(self):
        # STATE/http-token is never silently replaced or used once others can read it.
        path = os.path.join(self.daemon.tmp, "http-token")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o644)
        r = self.start("--http", "127.0.0.1:%d" % free_port())
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn(path, r.stderr)
        self.assertIn("chmod 600", r.stderr)
        self.assertFalse(os.path.exists(self.daemon.socket), "the socket file was left behind")
        with open(path) as f:
            self.assertEqual(f.read(), TOKEN + "\n")

    def test_fresh_state_dir_gets_its_token(self):
        # The first start on a fresh machine: no state dir yet.
        self.daemon.state = os.path.join(self.daemon.tmp, "new", "state")
        os.chmod(self.daemon.tmp, 0o711)  # the sandboxes' uid range walks to their state dir
        self.daemon.start()
        self.assertEqual(len(self.daemon.token), 64)
        r = curl(self.daemon.url + "/v1/pools", headers=self.daemon.auth())
        self.assertEqual(r.status, 200, r)

    def test_zero_max_connections(self):
        r = self.start("--http", "127.0.0.1:%d" % free_port(), "--http-max-connections", "0")
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("--http-max-connections", r.stderr)

    def test_token_file_readable_by_others(self):
        path = os.path.join(self.daemon.tmp, "token")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o644)
        r = self.start("--http", "0.0.0.0:%d" % free_port(), "--http-token-file", path)
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("chmod 600", r.stderr)
        self.assertFalse(os.path.exists(self.daemon.socket))

    def test_bad_address(self):
        for addr in ["127.0.0.1", "127.0.0.1:0", "example.com:80", "[::1:80"]:
            with self.subTest(addr=addr):
                r = self.start("--http", addr)
                self.assertEqual(r.returncode, 125, r.stderr)
                self.assertIn("--http", r.stderr)


if __name__ == "__main__":
    unittest.main()
