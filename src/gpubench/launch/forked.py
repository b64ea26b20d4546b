"""Warm workers: the process launcher's side of the fork server (launch/fork_server.py).

A run's fresh interpreter pays Python's start and the framework's imports (~5 s for
torch, more for TensorFlow) before it measures anything. A fork server per Python and
framework family pays them once; each run is still its own process (forked from it, in
its own session, so timeouts, Ctrl-C, SIGTERM and crashes stay in that run), wrapped
here in a Popen-like `ForkedProcess` so the launcher treats both alike. A server that
cannot start or dies leaves its runs to fresh interpreters (`ForkServerLost`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gpubench.measure.phases import LAUNCHED_AT_ENV


START_TIMEOUT_S = 120.0  # the server's imports (TensorFlow's take seconds)
REPLY_TIMEOUT_S = 30.0  # a fork, or a query, answered
CLOSE_TIMEOUT_S = 5.0  # a server exits as soon as its control socket closes
# What a family's server imports beside gpubench's worker modules. torch._dynamo is what
# the first optimizer step imports (~1-2 s); importing it starts nothing.
FAMILY_MODULES: Dict[str, Tuple[str, ...]] = {
    "torch": ("torch", "torch._dynamo", "gpubench.backends.torch_backend",
              "gpubench.backends.torch_step"),
    # as the backend imports it (quiet, Keras on TensorFlow); import only
    "tensorflow": ("gpubench.backends.tensorflow_backend:import_tensorflow",),
    "none": (),
}


def kill_group(pid: int) -> None:
    """SIGKILL to the process group `pid` leads (a run's worker and all it started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def fork_supported() -> bool:
    """Whether this platform can run a fork server (fork, and fds over Unix sockets)."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and sys.platform == "linux"


def family_of(backend: str) -> str:
    """The framework family whose imports a backend's runs share."""
    if backend == "auto" or backend.startswith(("torch-", "onnxruntime", "tensorrt")):
        return "torch"
    if backend.startswith("tf-"):
        return "tensorflow"
    return "none"


class ForkServerLost(Exception):
    """The fork server could not start, did not answer, or died."""


class ForkedProcess:
    """A run's process forked by the server, as `subprocess.Popen` shows one: `pid`
    (also its process group), `poll`, `wait(timeout)`, `send_signal`, `returncode`
    (negative: killed by that signal). Its status comes on the run's connection; a
    connection that closes without it means the server died, and the child with it
    (killed here to be sure)."""

    def __init__(self, pid: int, conn: socket.socket, lost: threading.Event) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None
        self.args = ["fork", str(pid)]
        self._done = threading.Event()
        self._reader = threading.Thread(target=self._read_status, args=(conn, lost),
                                        daemon=True)
        self._reader.start()

    def _read_status(self, conn: socket.socket, lost: threading.Event) -> None:
        code = None
        with conn, conn.makefile("rb") as replies:
            for line in replies:
                code = json.loads(line).get("exit", code)
        if code is None:
            lost.set()
            kill_group(self.pid)
            code = -signal.SIGKILL
        self.returncode = code
        self._done.set()

    def poll(self) -> Optional[int]:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: Optional[float] = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if not self._done.is_set():
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


def _read_line(conn: socket.socket) -> Dict[str, Any]:
    conn.settimeout(REPLY_TIMEOUT_S)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise ForkServerLost("the fork server closed the connection")
        data += chunk
    conn.settimeout(None)
    return json.loads(data)


class ForkServer:
    """One server: `python -m gpubench.launch.fork_server` of `python`, importing
    `modules`, with `env` (what the framework reads at import)."""

    def __init__(self, python: str, modules: Sequence[str], env: Dict[str, str]) -> None:
        self.lock = threading.Lock()
        self.lost = threading.Event()
        self.output = tempfile.TemporaryFile()  # its import errors, for the warning
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "gpubench.launch.fork_server", str(theirs.fileno()), *modules],
                stdin=subprocess.DEVNULL, stdout=self.output, stderr=subprocess.STDOUT,
                pass_fds=(theirs.fileno(),), env=env, start_new_session=True)
        except OSError as exc:
            self.close()
            raise ForkServerLost(str(exc)) from None
        finally:
            theirs.close()
        self.control.settimeout(START_TIMEOUT_S)
        try:
            ready = self.control.recv(16)
        except OSError:
            ready = b""
        except BaseException:  # Ctrl-C while it imports: it ends with us
            self.close()
            raise
        if ready != b"ready":
            why = self._why()
            self.close()
            raise ForkServerLost(why)
        self.control.settimeout(None)

    def _why(self) -> str:
        self.output.seek(0)
        lines = self.output.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "it did not start"

    def _ask(self, kind: bytes, fds: List[int]) -> socket.socket:
        if self.lost.is_set():
            raise ForkServerLost("the fork server died")
        mine, theirs = socket.socketpair()
        try:
            with self.lock:
                socket.send_fds(self.control, [kind], [theirs.fileno(), *fds])
        except OSError as exc:
            mine.close()
            self.lost.set()
            raise ForkServerLost(f"the fork server died ({exc})") from None
        finally:
            theirs.close()
        return mine

    def spawn(self, args: Sequence[str], env: Dict[str, str], request_text: str,
              log_fd: int, event_fd: int) -> ForkedProcess:
        """A worker running `args` on `request_text`, its output to `log_fd`, its
        events to `event_fd` (both still to be closed by the caller)."""
        conn = self._ask(b"S", [log_fd, event_fd])
        try:
            conn.sendall(json.dumps({"args": list(args), "env": env, "cwd": os.getcwd(),
                                     "request": request_text}).encode())
            conn.shutdown(socket.SHUT_WR)
            reply = _read_line(conn)
        except (OSError, ValueError, ForkServerLost) as exc:
            conn.close()
            self.lost.set()
            raise ForkServerLost(f"the fork server did not answer ({exc})") from None
        if "pid" not in reply:
            conn.close()
            raise ForkServerLost(reply.get("error") or "the fork server could not fork")
        return ForkedProcess(int(reply["pid"]), conn, self.lost)

    def query(self) -> Dict[str, Any]:
        """The server's own account: its pid, what it imported, its Python threads,
        and torch's `cuda.is_initialized()` there."""
        with self._ask(b"Q", []) as conn:
            return _read_line(conn)

    def close(self) -> None:
        """Ends the server (closing its control socket is enough; it reaps first)."""
        self.control.close()
        proc = getattr(self, "proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # not a server that listens: its group goes
                kill_group(proc.pid)
                proc.wait()
        self.output.close()


class ForkServers:
    """The servers of one launcher's Python, one per framework family and environment,
    started on first use. One that cannot start is not tried again."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.lock = threading.Lock()
        self.servers: Dict[Tuple[str, Tuple], ForkServer] = {}
        self.failed: Dict[Tuple[str, Tuple], str] = {}

    def server(self, backend: str, env: Dict[str, str]) -> ForkServer:
        family = family_of(backend)
        # one server for every launch from this environment: the launch time is the run's
        env = {k: v for k, v in env.items() if k != LAUNCHED_AT_ENV}
        key = (family, tuple(sorted(env.items())))
        with self.lock:
            if key in self.failed:
                raise ForkServerLost(self.failed[key])
            server = self.servers.get(key)
            if server is not None and (server.lost.is_set() or server.proc.poll() is not None):
                server.close()
                self.failed[key] = "the fork server died"
                del self.servers[key]
                raise ForkServerLost(self.failed[key])
            if server is None:
                try:
                    server = self.servers[key] = ForkServer(self.python, FAMILY_MODULES[family],
                                                            env)
                except ForkServerLost as exc:
                    self.failed[key] = str(exc)
                    raise
            return server

    def lose(self, server: ForkServer, why: str) -> None:
        with self.lock:
            for key, held in list(self.servers.items()):
                if held is server:
                    self.failed[key] = why
                    del self.servers[key]
        server.close()

    def close(self) -> None:
        with self.lock:
            servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            server.close()
