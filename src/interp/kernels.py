"""The kernels behind the code interpreter's contexts: one process per
context (an IPython kernel through jupyter_client, a Node process running
js_kernel.js, an interactive bash), so contexts share nothing.

Every kernel has the same interface, used by one execution at a time (the
server holds the context's lock):
  await start(); await execute(code, env_before, env_after, emit);
  interrupt(); await apply_env(changes); await restart(); await shutdown()
emit(event) takes the SDK's event dicts (interp_proto)."""

import asyncio
import importlib
import json
import os
import queue
import shlex
import signal
import sys
import tempfile

import interp_proto as proto

HERE = os.path.dirname(os.path.abspath(__file__))


class KernelError(Exception):
    """A kernel that cannot be started or died: the message says which."""


KERNEL_NAME = "warmbox-python3"


def _kernel_spec_dir():
    """A kernels directory with our spec, in the server's runtime dir (made
    once): python3 running wb_kernel.py."""
    root = os.path.join(os.environ.get("JUPYTER_RUNTIME_DIR") or tempfile.gettempdir(),
                        "kernelspecs")
    spec = os.path.join(root, KERNEL_NAME)
    if not os.path.exists(os.path.join(spec, "kernel.json")):
        os.makedirs(spec, exist_ok=True)
        with open(os.path.join(spec, "kernel.json"), "w") as f:
            json.dump({"argv": [sys.executable, os.path.join(HERE, "wb_kernel.py"), "-f",
                                "{connection_file}"],
                       "display_name": "Python 3 (warmbox)", "language": "python"}, f)
    return root


class PythonKernel:
    language = "python"

    def __init__(self, cwd, env):
        self.cwd, self.env = cwd, env
        self.km = self.kc = None

    async def start(self):
        try:
            # Imported off the event loop (about a second): the server
            # answers other requests meanwhile.
            loop = asyncio.get_running_loop()
            manager = await loop.run_in_executor(None, importlib.import_module,
                                                 "jupyter_client.manager")
            specs = await loop.run_in_executor(None, importlib.import_module,
                                               "jupyter_client.kernelspec")
            # Our kernel spec: ipykernel through wb_kernel.py (its flushes).
            ksm = specs.KernelSpecManager(kernel_dirs=[_kernel_spec_dir()])
            self.km = manager.AsyncKernelManager(kernel_name=KERNEL_NAME,
                                                 kernel_spec_manager=ksm)
            # No history database: kernels of one sandbox would share (and
            # lock) ~/.ipython's sqlite file; nothing reads it. No 0.5 ms
            # sleep after each execution (ipykernel's workaround for flushes
            # that did not wait; theirs do now).
            await self.km.start_kernel(cwd=self.cwd, env=dict(self.env),
                                       extra_arguments=["--HistoryManager.enabled=False",
                                                        "--Kernel._execute_sleep=0"])
            self.kc = self.km.client()
            self.kc.start_channels()
            await self.kc.wait_for_ready(timeout=120)
        except Exception as e:
            await self.shutdown()
            raise KernelError("python kernel: cannot start: %s" % e)

    async def _run(self, code, emit, silent):
        # stop_on_error=False: after an error (an interrupt's KeyboardInterrupt
        # included) ipykernel would abort the requests that reach it while it
        # flushes its queue, and the next execution, sent as soon as this one
        # is idle, came back "aborted", with no result, on a busy machine.
        # Executions of a context are one at a time here: none is queued.
        msg_id = self.kc.execute(code, silent=silent, store_history=not silent,
                                 allow_stdin=False, stop_on_error=False)
        while True:
            try:
                msg = await self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                if not await self.km.is_alive():
                    raise KernelError("the python kernel died")
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # an earlier, interrupted execution's
            t, c = msg["msg_type"], msg["content"]
            if t == "status":
                if c.get("execution_state") == "idle":
                    break
            elif silent:
                continue
            elif t == "execute_input":
                emit({"type": "number_of_executions", "execution_count": c.get("execution_count")})
            elif t == "stream":
                emit(proto.stream_event("stderr" if c.get("name") == "stderr" else "stdout",
                                        c.get("text", "")))
            elif t == "execute_result":
                emit(proto.result_event(c.get("data", {}), True))
            elif t == "display_data":
                emit(proto.result_event(c.get("data", {}), False))
            elif t == "error":
                emit(proto.error_event(c.get("ename", ""), c.get("evalue", ""),
                                       "\n".join(c.get("traceback", []))))
        # The reply on the shell channel (discarded: the error, if any, came on iopub).
        for _ in range(100):
            try:
                reply = await self.kc.get_shell_msg(timeout=5)
            except queue.Empty:
                return
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return

    @staticmethod
    def _env_code(changes):
        if not changes:
            return None
        return ("import os as _wb_os, json as _wb_json\n"
                "for _wb_k, _wb_v in _wb_json.loads(%r).items():\n"
                "    if _wb_v is None: _wb_os.environ.pop(_wb_k, None)\n"
                "    else: _wb_os.environ[_wb_k] = _wb_v\n"
                "del _wb_os, _wb_json, _wb_k, _wb_v\n") % json.dumps(changes)

    async def apply_env(self, changes):
        code = self._env_code(changes)
        if code:
            await self._run(code, lambda ev: None, True)

    async def execute(self, code, env_before, env_after, emit):
        await self.apply_env(env_before)
        try:
            await self._run(code, emit, False)
        finally:
            await self.apply_env(env_after)

    def interrupt(self):
        if self.km is not None:
            asyncio.ensure_future(self.km.interrupt_kernel())

    async def restart(self):
        await self.shutdown()
        await self.start()

    async def shutdown(self):
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.km is not None:
            try:
                await self.km.shutdown_kernel(now=True)
            except Exception:
                pass
            self.km = None


class _ProcessKernel:
    """A kernel that is a child process in its own session (so an interrupt
    reaches what it started), whose stdout and stderr are streamed."""

    def __init__(self, cwd, env):
        self.cwd, self.env = cwd, env
        self.proc = None
        self.emit = None  # the running execution's
        self.exec_id = 0
        self._readers = []

    async def _spawn(self, argv, **kw):
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.cwd, env=dict(self.env), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, **kw)
        except OSError as e:
            raise KernelError("%s kernel: cannot start %s: %s" % (self.language, argv[0], e))

    def _send(self, text):
        if self.proc is None or self.proc.stdin is None or self.proc.returncode is not None:
            raise KernelError("the %s kernel is not running" % self.language)
        self.proc.stdin.write(text.encode())

    def interrupt(self):
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    async def restart(self):
        await self.shutdown()
        await self.start()

    async def shutdown(self):
        for t in self._readers:
            t.cancel()
        self._readers = []
        p, self.proc = self.proc, None
        if p is not None and p.returncode is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await p.wait()


class JavaScriptKernel(_ProcessKernel):
    language = "javascript"

    async def start(self):
        r, w = os.pipe()
        try:
            await self._spawn(["node", os.path.join(HERE, "js_kernel.js"), str(w)], pass_fds=(w,))
        finally:
            os.close(w)
        loop = asyncio.get_running_loop()
        self.events = asyncio.StreamReader(limit=64 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.events),
                                     os.fdopen(r, "rb", 0))
        self._readers = [asyncio.ensure_future(self._pump(self.proc.stdout, "stdout")),
                         asyncio.ensure_future(self._pump(self.proc.stderr, "stderr"))]

    async def _pump(self, stream, name):
        # Output of processes the code started (the context's own output
        # comes on the events fd).
        while True:
            data = await stream.read(65536)
            if not data:
                return
            if self.emit:
                self.emit(proto.stream_event(name, data.decode("utf-8", "replace")))

    async def _request(self, req, emit):
        self.exec_id += 1
        req["id"] = self.exec_id
        self._send(json.dumps(req) + "\n")
        while True:
            l = await self.events.readline()
            if not l:
                await self.shutdown()
                raise KernelError("the javascript kernel exited")
            ev = json.loads(l)
            if ev.pop("id", None) != self.exec_id:
                continue
            if ev["type"] == "done":
                return
            if ev["type"] in ("stdout", "stderr"):
                ev["timestamp"] = proto.timestamp()
            elif ev["type"] == "result":
                ev["is_main_result"] = True
            emit(ev)

    async def apply_env(self, changes):
        if changes:
            await self._request({"env_before": changes}, lambda ev: None)

    async def execute(self, code, env_before, env_after, emit):
        self.emit = emit
        try:
            await self._request({"code": code, "env_before": env_before, "env_after": env_after},
                                emit)
        finally:
            self.emit = None


class BashKernel(_ProcessKernel):
    """An interactive bash (no rc files, no line editing) reading our
    command lines on stdin: interactive, so SIGINT aborts the running line
    and the shell (its variables, functions, cwd) lives on. Each execution's
    code is sourced from a file with stdin from /dev/null, then the shell
    prints an end marker on stdout and on stderr: each stream's output comes
    before its marker, so the execution ends once both are seen."""

    language = "bash"

    async def start(self):
        self.tmp = tempfile.mkdtemp(prefix="wb-bash-")
        env = dict(self.env, PS1="", PS2="", PS0="", PROMPT_COMMAND="")
        self.env_started = env
        self.proc = None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                "bash", "--norc", "--noprofile", "--noediting", "-i", cwd=self.cwd, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise KernelError("bash kernel: cannot start bash: %s" % e)
        self.scan = {"stdout": proto.MarkerScanner(), "stderr": proto.MarkerScanner()}
        self.seen = {}
        self.done = asyncio.Event()
        self.count = 0
        self.exec_id += 1
        self._readers = [asyncio.ensure_future(self._pump(self.proc.stdout, "stdout")),
                         asyncio.ensure_future(self._pump(self.proc.stderr, "stderr"))]
        # Drop bash's start-up chatter ("no job control in this shell").
        await self._wait_marker(lambda ev: None, self._marks("0") + "\n")

    async def _pump(self, stream, name):
        dec = __import__("codecs").getincrementaldecoder("utf-8")("replace")
        while True:
            data = await stream.read(65536)
            text, marks = self.scan[name].feed(dec.decode(data, final=not data))
            if text and self.emit:
                self.emit(proto.stream_event(name, text))
            for eid, status in marks:
                if eid == self.exec_id:
                    self.seen[name] = status
                    if len(self.seen) == 2:
                        self.done.set()
            if not data:
                self.done.set()
                return

    def _marks(self, status_expr):
        m = proto.marker(self.exec_id, 0).replace(":0", ":%s")
        return "printf '%s' %s; printf '%s' %s >&2" % (m, status_expr, m, status_expr)

    async def _wait_marker(self, emit, line):
        self.seen = {}
        self.done.clear()
        self.emit = emit
        try:
            self._send(line)
            await self.done.wait()
        finally:
            self.emit = None
        if len(self.seen) < 2:
            await self.shutdown()
            raise KernelError("bash exited")

    @staticmethod
    def _env_line(changes):
        parts = []
        for k, v in (changes or {}).items():
            if not proto._ENV_NAME.match(k):
                continue
            parts.append("unset %s" % k if v is None else "export %s=%s" % (k, shlex.quote(v)))
        return "; ".join(parts) + "; " if parts else ""

    async def apply_env(self, changes):
        line = self._env_line(changes)
        if line:
            self.exec_id += 1
            await self._wait_marker(lambda ev: None, line + self._marks("0") + "\n")

    async def execute(self, code, env_before, env_after, emit):
        self.exec_id += 1
        self.count += 1
        path = os.path.join(self.tmp, "cell-%d.sh" % self.exec_id)
        with open(path, "w") as f:
            f.write(code)
            if not code.endswith("\n"):
                f.write("\n")
        emit({"type": "number_of_executions", "execution_count": self.count})
        self._after = self._env_line(env_after)
        line = "%s. %s </dev/null; __wb_s=$?; %s%s; unset __wb_s\n" % (
            self._env_line(env_before), shlex.quote(path), self._after, self._marks("$__wb_s"))
        try:
            await self._wait_marker(emit, line)
        finally:
            self._after = ""
            try:
                os.unlink(path)
            except OSError:
                pass

    def interrupt(self):
        super().interrupt()
        # SIGINT aborted the line before its markers: print them now.
        if self.proc is not None and self.proc.returncode is None:
            try:
                self._send(getattr(self, "_after", "") + self._marks("130") + "\n")
            except KernelError:
                pass

    async def shutdown(self):
        await super().shutdown()
        import shutil
        shutil.rmtree(getattr(self, "tmp", ""), ignore_errors=True)


KERNELS = {"python": PythonKernel, "javascript": JavaScriptKernel, "bash": BashKernel}
