#!/usr/bin/python3
"""warmbox's code interpreter server (docs/e2b.md, "Code interpreter"): the
in-sandbox half of E2B's code interpreter, on 127.0.0.1:49999, reached
through the daemon's port proxy. Speaks what @e2b/code-interpreter sends:

  POST   /execute               {"code","context_id"?,"language"?,"env_vars"?} -> NDJSON stream
  POST   /contexts              {"language"?,"cwd"?} -> {"id","language","cwd"}
  GET    /contexts              -> [{"id","language","cwd"}, ...]
  POST   /contexts/{id}/restart -> 204
  DELETE /contexts/{id}         -> 204
  GET    /health                -> 200 "OK"

Each context is one kernel process (IPython through jupyter_client, Node,
bash). One execution per context at a time: later ones queue (their stream
starts at once and carries keepalives while they wait). A client that goes
away, or whose timeout aborts the request, interrupts its execution (or
leaves the queue); the context lives on. The sandbox's env vars are bound
late: /run/warmbox/envs.json, re-read at each execution when it changed.
Python 3 standard library plus Debian's python3-jupyter-client and
python3-ipykernel."""

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import interp_proto as proto  # noqa: E402
from kernels import KERNELS, KernelError  # noqa: E402

KEEPALIVE_S = 5
MAX_CONTEXTS = 64
REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error"}


def log(msg):
    print("interp: %s" % msg, file=sys.stderr, flush=True)


class Context:
    def __init__(self, language, cwd, env):
        self.id = str(uuid.uuid4())
        self.language, self.cwd = language, cwd
        self.kernel = KERNELS[language](cwd, env)
        self.lock = asyncio.Lock()
        self.started = None  # the start task
        self.applied = {}  # the sandbox env vars applied to the kernel so far

    def json(self):
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    def start(self):
        if self.started is None:
            self.started = asyncio.ensure_future(self.kernel.start())
        return self.started


class Server:
    def __init__(self, envs_path, cwd):
        self.envs = proto.EnvFile(envs_path)
        self.cwd = cwd
        self.base_env = dict(os.environ)
        self.contexts = {}
        self.defaults = {}  # language -> context id

    def sandbox_env(self):
        """The server's own environment, then the late-bound per-create vars."""
        env = dict(self.base_env)
        env.update(self.envs.get())
        return env

    def new_context(self, language, cwd=None, start=True):
        if len(self.contexts) >= MAX_CONTEXTS:
            raise HttpError(429, "too many contexts (%d): remove some first" % MAX_CONTEXTS)
        cwd = cwd or self.cwd
        if not os.path.isdir(cwd):
            raise HttpError(400, "cwd: %s is not a directory" % cwd)
        ctx = Context(language, cwd, self.sandbox_env())
        ctx.applied = dict(self.envs.get())
        self.contexts[ctx.id] = ctx
        if start:
            ctx.start()
        return ctx

    def default_context(self, language, start=True):
        cid = self.defaults.get(language)
        if cid in self.contexts:
            return self.contexts[cid]
        ctx = self.new_context(language, start=start)
        self.defaults[language] = ctx.id
        return ctx

    def find(self, cid):
        ctx = self.contexts.get(cid)
        if ctx is None:
            raise HttpError(404, "Context %s not found" % cid)
        return ctx

    async def remove(self, ctx):
        self.contexts.pop(ctx.id, None)
        if ctx.lock.locked():
            ctx.kernel.interrupt()  # the running execution ends first
        async with ctx.lock:
            if ctx.started is not None:
                try:
                    await ctx.started
                except Exception:
                    pass
            await ctx.kernel.shutdown()


class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Conn:
    """One client connection: requests one after another (HTTP/1.1
    keep-alive: the daemon's port proxy keeps its tunnel, and so this
    connection, between requests), until the client closes or says close."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.keep = True  # the connection serves another request after this one

    def connection_header(self):
        return b"Connection: keep-alive\r\n" if self.keep else b"Connection: close\r\n"

    async def read_request(self):
        self.keep = False  # until the request, its body included, has been read
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(400, "request head: larger than %d bytes" % proto.MAX_HEAD)
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return None, None
            raise HttpError(400, "request head: cut short")
        try:
            h = proto.parse_head(head[:-4])
            kind, n = proto.body_length(h)
        except proto.BadRequest as e:
            raise HttpError(400, str(e))
        if kind == "length":
            body = await self.reader.readexactly(n) if n else b""
        else:
            body = await self._chunked()
        self.keep = proto.keep_alive(h)
        return h, body

    async def _chunked(self):
        out = bytearray()
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            try:
                n = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(400, "chunked body: bad chunk size")
            if n == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return bytes(out)
            if len(out) + n > proto.MAX_BODY:
                raise HttpError(413, "body: larger than %d bytes" % proto.MAX_BODY)
            out += await self.reader.readexactly(n)
            await self.reader.readexactly(2)

    async def respond(self, status, body=None):
        data = b""
        ctype = ""
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            ctype = "Content-Type: %s\r\n" % ("application/json" if not isinstance(body, bytes)
                                              else "text/plain")
        head = "HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n" % (
            status, REASONS.get(status, "Error"), ctype, len(data))
        self.writer.write(head.encode() + self.connection_header() + b"\r\n" + data)
        await self.writer.drain()

    async def error(self, status, message):
        # The SDK reads 404's body as the message; others as "<status> <reason>".
        await self.respond(status, message.encode())


async def execute(server, conn, body):
    try:
        code, cid, lang, env_vars = proto.parse_execute(body)
    except proto.BadRequest as e:
        raise HttpError(400, str(e))
    ctx = server.find(cid) if cid is not None else server.default_context(lang or "python")

    w = conn.writer
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n" + conn.connection_header() + b"\r\n")
    events = asyncio.Queue()
    # EOF: the client went away. (A byte would be its next request, sent
    # before this answer ended: not done by the proxy; the connection then
    # closes after this answer, the byte being consumed.)
    gone = asyncio.ensure_future(conn.reader.read(1))

    def send(ev):
        data = proto.line(ev)
        w.write(b"%x\r\n%s\r\n" % (len(data), data))

    async def pump(until):
        """Writes events (and keepalives when idle) until `until` is done;
        False when the client went away first."""
        while True:
            get = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({get, until, gone}, timeout=KEEPALIVE_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                send(get.result())
            else:
                get.cancel()
                if gone in done:
                    return False
                if until in done:
                    while not events.empty():
                        send(events.get_nowait())
                    return True
                if not done:
                    send({"type": "keepalive"})
            try:
                await w.drain()
            except ConnectionError:
                return False

    acquire = asyncio.ensure_future(ctx.lock.acquire())
    try:
        if not await pump(acquire):
            return  # gone while queued (finally releases the lock if it was got)
        try:
            await ctx.start()
        except KernelError as e:
            ctx.started = None  # the next execution tries again
            send(proto.error_event("KernelError", str(e), str(e)))
        else:
            sandbox = server.envs.get()
            changes = proto.env_changes(ctx.applied, sandbox)
            run = asyncio.ensure_future(ctx.kernel.execute(
                code, {**changes, **env_vars},
                proto.env_restore(env_vars.keys(), {**server.base_env, **sandbox}),
                events.put_nowait))
            ctx.applied = dict(sandbox)
            if not await pump(run):
                log("context %s: client gone, interrupting" % ctx.id)
                ctx.kernel.interrupt()
                await asyncio.wait({run})
            try:
                run.result()
            except KernelError as e:
                # Started afresh at the next execution.
                ctx.started = None
                send(proto.error_event("KernelError", str(e), str(e)))
        send({"type": "end_of_execution"})
        w.write(b"0\r\n\r\n")
        try:
            await w.drain()
        except ConnectionError:
            pass
    finally:
        if gone.done() and not gone.cancelled():
            conn.keep = False
        gone.cancel()
        # Its wait ended before the next request is read (a StreamReader has
        # one reader at a time).
        await asyncio.wait({gone})
        if acquire.done() and not acquire.cancelled():
            ctx.lock.release()
        else:
            acquire.cancel()


async def handle(server, reader, writer):
    conn = Conn(reader, writer)
    try:
        while conn.keep:
            await serve_one(server, conn)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    except Exception as e:  # a bug: logged, the connection closed, the server lives on
        log("error serving a request: %r" % e)
    finally:
        writer.close()


async def serve_one(server, conn):
    """One request on conn; conn.keep says whether another may follow."""
    try:
        head, body = await conn.read_request()
        if head is None:
            conn.keep = False
            return
        path, m = head.path, head.method
        parts = [p for p in path.split("/") if p]
        if path == "/execute":
            if m != "POST":
                raise HttpError(405, "/execute: use POST")
            await execute(server, conn, body)
        elif path == "/contexts":
            if m == "GET":
                await conn.respond(200, [c.json() for c in server.contexts.values()])
            elif m == "POST":
                try:
                    lang, cwd = proto.parse_context(body)
                except proto.BadRequest as e:
                    raise HttpError(400, str(e))
                await conn.respond(200, server.new_context(lang, cwd).json())
            else:
                raise HttpError(405, "/contexts: use GET or POST")
        elif len(parts) == 3 and parts[0] == "contexts" and parts[2] == "restart":
            if m != "POST":
                raise HttpError(405, "restart: use POST")
            ctx = server.find(parts[1])
            if ctx.lock.locked():
                ctx.kernel.interrupt()  # the running execution ends first
            async with ctx.lock:
                try:
                    if ctx.started is not None:
                        await asyncio.wait({ctx.started})
                    ctx.started = asyncio.ensure_future(ctx.kernel.restart())
                    await ctx.started
                    ctx.applied = dict(server.envs.get())
                except KernelError as e:
                    ctx.started = None
                    raise HttpError(500, str(e))
            await conn.respond(204)
        elif len(parts) == 2 and parts[0] == "contexts":
            if m != "DELETE":
                raise HttpError(405, "/contexts/ID: use DELETE")
            await server.remove(server.find(parts[1]))
            await conn.respond(204)
        elif path == "/health":
            await conn.respond(200, b"OK")
        else:
            raise HttpError(404, "%s %s: no such endpoint" % (m, path))
    except HttpError as e:
        await conn.error(e.status, str(e))


async def main(args):
    for lang in args.warm.split(","):
        if lang and lang not in KERNELS:
            log("--warm: unknown language %r (expected some of %s)" % (lang, ",".join(KERNELS)))
            sys.exit(2)
    # The kernels' connection files: ours alone, removed at exit.
    runtime = tempfile.mkdtemp(prefix="wb-jupyter-")
    os.environ["JUPYTER_RUNTIME_DIR"] = runtime
    # debugpy (imported by ipykernel) warns about frozen modules at every
    # kernel start otherwise.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    server = Server(args.envs_file, args.cwd or os.getcwd())
    # Ready before it listens: the warm kernels (the default python one, what
    # a first runCode needs) start first, so whoever can connect finds them
    # started. The pool polls the port through the agent (the label's
    # ready_port, docs/services.md) before the sandbox goes idle: a claimed
    # sandbox's first runCode does not wait for a kernel.
    warm = [lang for lang in args.warm.split(",") if lang]
    started = [server.default_context(lang) for lang in warm]
    try:
        for ctx in started:
            await ctx.start()
    except KernelError as e:
        # Never ready: exit, so the pool's poll says why at once (and the
        # sandbox is replaced) instead of serving a kernel that is not there.
        log("not ready: %s" % e)
        for ctx in list(server.contexts.values()):
            await server.remove(ctx)
        shutil.rmtree(runtime, ignore_errors=True)
        sys.exit(1)
    for lang in ("python", "javascript"):
        server.default_context(lang, start=False)  # the others start at their first use
    srv = await asyncio.start_server(lambda r, w: handle(server, r, w), args.host, args.port,
                                     limit=proto.MAX_HEAD, reuse_address=True)
    # The port bound (--port 0: any free one; the tests read this line).
    log("listening on %s:%d" % (args.host, srv.sockets[0].getsockname()[1]))
    # SIGTERM (the sandbox's end, a test): stop the kernels first.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with srv:
        await stop.wait()
    for ctx in list(server.contexts.values()):
        await server.remove(ctx)
    shutil.rmtree(runtime, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="warmbox's code interpreter server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=49999)
    ap.add_argument("--envs-file", default="/run/warmbox/envs.json")
    ap.add_argument("--cwd", default=None, help="contexts' default working dir (default: ours)")
    ap.add_argument("--warm", default="python",
                    help="languages whose default context starts before the server listens "
                         "(comma-separated; '' for none; default python)")
    try:
        asyncio.run(main(ap.parse_args()))
    except KeyboardInterrupt:
        pass
