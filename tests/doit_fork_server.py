"""The tests' doit runs, forked from a warm interpreter.

A fresh `python -m doit` that builds a view spends about a second importing what it uses
(google-genai, numpy, scipy, scikit-image, Pillow): most of a test's doit run, half of the suite's
CPU. One server per pytest worker imports those third-party libraries once (never `catalogue`,
never `dodo.py`); each run is a `fork()` of it that takes the run's folder, environment and
arguments and runs `python -m doit` as the interpreter would: same `sys.argv` and `sys.path[0]`,
the run's output in files, and the interpreter's own ending (non-daemon threads joined, atexit
handlers, the exit status). What the code under test does is unchanged; only the imports of the
libraries are shared.

A run whose environment changes how an interpreter starts (a `PYTHON*` variable, e.g. the
fault-injection sitecustomize on PYTHONPATH) starts a fresh interpreter instead, and so do the
tests about the process itself (what it imports, signals, mounts): they call `subprocess`.
`CATALOGUE_TESTS_FRESH_DOIT=1` makes every run a fresh interpreter (to compare or debug).

Run as a script, this module is the server: `python doit_fork_server.py SOCKET`.
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# Imported by the server before it forks: what a view build, a paid call, an upload and doit load.
PRELOAD = ("doit", "doit.doit_cmd", "doit.cmd_run", "doit.runner", "doit.dependency", "doit.reporter",
           "doit.cmd_list", "doit.cmd_info", "doit.cmd_forget", "doit.cmd_dumpdb", "dotenv", "tomlkit",
           "numpy", "scipy.ndimage", "skimage.color", "PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin",
           "PIL.GifImagePlugin", "pillow_heif", "google.genai", "google.genai.types", "requests", "psycopg")


# --- the client: what helpers.Project.doit calls -----------------------------------------------

class ForkServer:
    """One server process for this pytest worker, started on first use."""

    _lock = threading.Lock()
    _instance: ForkServer | bool | None = None

    def __init__(self, env: dict):
        self.dir = Path(tempfile.mkdtemp(prefix="doit-fork-"))
        self.socket = str(self.dir / "server.sock")
        self.startup_env = _startup(env)
        self.proc = subprocess.Popen([sys.executable, __file__, self.socket], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the doit fork server did not start")
        atexit.register(self.stop)

    def stop(self) -> None:
        """End the server (its stdin closes: it returns) and remove its folder."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @classmethod
    def for_env(cls, env: dict, start_env: dict) -> ForkServer | None:
        """The server that can run doit with `env`, or None: a fresh interpreter is needed.
        `start_env`: the environment the server starts with (once per worker)."""
        if os.environ.get("CATALOGUE_TESTS_FRESH_DOIT"):
            return None
        with cls._lock:
            if cls._instance is None:   # False: this machine refuses pidfds, every run is fresh
                cls._instance = cls(start_env) if _can_watch_children() else False
            server = cls._instance
        return server if server and _startup(env) == server.startup_env else None

    def run(self, args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        """`subprocess.run([python, -m, doit, *args], capture_output=True, text=True)`, forked."""
        with tempfile.TemporaryDirectory(dir=self.dir) as d:
            out, err = Path(d, "stdout"), Path(d, "stderr")
            request = {"args": list(args), "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.socket)
                s.sendall(json.dumps(request).encode() + b"\n")
                pid = int(_line(s))
                s.settimeout(timeout)
                try:
                    code = int(_line(s))
                except TimeoutError:
                    os.kill(pid, signal.SIGKILL)
                    s.settimeout(None)
                    _line(s)
                    raise subprocess.TimeoutExpired(["doit", *args], timeout, _read(out), _read(err)) from None
            return subprocess.CompletedProcess(["doit", *args], code, _read(out), _read(err))


def _startup(env: dict) -> dict:
    """The variables that shape how an interpreter starts (a forked run cannot change them)."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON")}


def _can_watch_children() -> bool:
    """The server waits for its children through pidfds (Linux 5.3+; a sandbox may refuse them)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _line(s: socket.socket) -> bytes:
    """One answer line of the server (its pid, then its exit status)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(64)
        if not chunk:
            raise RuntimeError("the doit fork server went away")
        data += chunk
    return data


def _read(path: Path) -> str:
    """The text `subprocess.run(text=True)` would have given."""
    return path.read_text(encoding=locale.getpreferredencoding(False)) if path.exists() else ""


# --- the server ------------------------------------------------------------------------------

def serve(path: str) -> None:
    sys.argv = ["-m"]   # what a fresh `python -m doit` shows while it imports doit (doit keeps it: BIN_NAME)
    for name in PRELOAD:
        __import__(name)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin, selectors.EVENT_READ, "parent")   # EOF: the pytest worker is gone
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "parent":
                if not sys.stdin.readline():
                    return
            elif key.data == "accept":
                conn, _ = listener.accept()
                request = json.loads(conn.makefile("r").readline())
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _close_inherited(selector, listener, conn)
                    run_doit(request)          # raises SystemExit: the interpreter ends as `python -m doit`
                conn.sendall(f"{pid}\n".encode())
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, conn))
            else:
                pid, conn = key.data
                selector.unregister(key.fileobj)
                os.close(key.fileobj)
                _, status = os.waitpid(pid, 0)
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                conn.close()


def _close_inherited(selector, listener, conn) -> None:
    """The forked child keeps none of the server's sockets nor its other children's handles."""
    for key in list(selector.get_map().values()):
        if isinstance(key.data, tuple):
            os.close(key.fileobj)
            key.data[1].close()
    selector.close()
    listener.close()
    conn.close()


def run_doit(request: dict) -> None:
    """In the forked child: become `python -m doit <args>` run in `cwd` with `env`."""
    import runpy

    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = os.getcwd()
    sys.argv = ["-m", *request["args"]]
    runpy.run_module("doit", run_name="__main__", alter_sys=True)
    raise SystemExit(0)


if __name__ == "__main__":
    serve(sys.argv[1])
