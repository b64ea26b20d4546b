"""The fork server: `python -m gpubench.launch.fork_server CONTROL_FD MODULE...`, started
once per Python and framework family by the process launcher (launch/forked.py). It
imports gpubench's worker and measurement modules and the family's framework (import
only: no compute, no thread pool, never CUDA), says `ready` on its control socket, then
forks a worker per run: the child leaves the server's session (`setsid`: its own
process group, as a fresh worker's), takes the run's log as stdout/stderr, its
environment, folder and event pipe, and runs the worker's main (launch/worker.py) as a
fresh worker would, so its exit code means the same. The server stays single-threaded
(it forks), reaps its children and sends each one's exit status, the Popen convention
(negative: killed by that signal), on the run's connection. It exits when its control
socket closes: the parent ended, however it ended.

Control messages (SOCK_SEQPACKET, one byte and its file descriptors):
    S [conn, log, event]  fork a worker; the run's spec arrives as JSON on `conn`
                          ({"args", "env", "cwd", "request"}), which then gets
                          {"pid": N} and later {"exit": code}, a line each
    Q [conn]              {"pid", "cuda_initialized", "python_threads", "os_threads",
                          "preloaded"}
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
from typing import Any, Dict, List

from gpubench.launch import worker
from gpubench.launch.forked import kill_group
from gpubench.launch.worker import EVENT_FD_ENV, EXIT_INTERRUPTED, EXIT_TERMINATED, has_children

SPEC_TIMEOUT_S = 30.0  # the parent writes a run's spec right after sending its fds


def preload(modules: List[str]) -> List[str]:
    """Imports the worker's modules and `modules` (`module:function`: also calls that
    function, an import the backend makes its own way); those that do not import are
    left to the child (the run then says why, as a fresh worker would)."""
    loaded = []
    for name in ["gpubench.launch.worker", "gpubench.measure.runner",
                 "gpubench.measure.preflight", *modules]:
        module, _, function = name.partition(":")
        try:
            imported = importlib.import_module(module)
            if function:
                getattr(imported, function)()
            loaded.append(name)
        except Exception:  # noqa: BLE001 (an optional framework missing here)
            pass
    return loaded


def _reply(conn: socket.socket, message: Dict[str, Any]) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:  # the parent gave up on this run
        pass


def _read_spec(conn: socket.socket) -> Dict[str, Any]:
    conn.settimeout(SPEC_TIMEOUT_S)
    chunks = []
    while True:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return json.loads(b"".join(chunks))
        chunks.append(chunk)


def _child(spec: Dict[str, Any], log_fd: int, event_fd: int, server_fds: List[int]) -> int:
    """In the forked child: become the run's worker process."""
    # Stopped before its run began, as a fresh worker still importing: nothing to keep.
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(EXIT_TERMINATED))
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(EXIT_INTERRUPTED))
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in server_fds:
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    for stream in (sys.stdout, sys.stderr):  # its output reaches the log as it is written
        stream.reconfigure(line_buffering=True, write_through=True)
    os.chdir(spec["cwd"])
    os.environ.clear()
    os.environ.update(spec["env"])
    os.environ[EVENT_FD_ENV] = str(event_fd)
    sys.argv = [sys.argv[0], *spec["args"]]
    import random
    random.seed()  # a fork copies the state: each worker its own (runs seed what they use)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    return worker.serve(spec["args"], spec["request"])


def _fork(spec: Dict[str, Any], log_fd: int, event_fd: int, server_fds: List[int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(spec, log_fd, event_fd, server_fds)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:  # a SIGINT before the child's own handler
            code = EXIT_INTERRUPTED
        except BaseException:  # noqa: BLE001 (reported in the run's log, as a crash)
            import traceback
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                if has_children():  # a compiler's pool: its owner's atexit stops it
                    atexit._run_exitfuncs()
            finally:
                os._exit(code)  # not Python's teardown of torch and torch._dynamo (~0.8 s)
    return pid


def _status(preloaded: List[str]) -> Dict[str, Any]:
    torch = sys.modules.get("torch")
    return {"pid": os.getpid(), "preloaded": preloaded,
            "python_threads": threading.active_count(),
            "os_threads": len(os.listdir("/proc/self/task")),  # a library's own pools too
            # torch's own query; it initialises nothing
            "cuda_initialized": bool(torch is not None and torch.cuda.is_initialized())}


def serve(control: socket.socket, preloaded: List[str]) -> None:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the select below
    children: Dict[int, socket.socket] = {}
    control.sendall(b"ready")
    while True:
        readable, _, _ = select.select([control, wake_r], [], [], 1.0)
        if wake_r in readable:
            while True:
                try:
                    if not os.read(wake_r, 512):
                        break
                except BlockingIOError:
                    break
        _reap(children)
        if control not in readable:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 16, 3)
        except OSError:
            message, fds = b"", []
        if not message:  # the parent is gone: so are its runs
            for pid in children:
                kill_group(pid)
            return
        conn = socket.socket(fileno=fds[0])
        if message == b"Q":
            _reply(conn, _status(preloaded))
            conn.close()
            continue
        log_fd, event_fd = fds[1], fds[2]
        try:
            spec = _read_spec(conn)
            server_fds = [control.fileno(), wake_r, wake_w, conn.fileno(),
                          *(c.fileno() for c in children.values())]
            pid = _fork(spec, log_fd, event_fd, server_fds)
        except (OSError, ValueError) as exc:
            _reply(conn, {"error": str(exc)})
            conn.close()
            continue
        finally:
            os.close(log_fd)
            os.close(event_fd)
        children[pid] = conn
        _reply(conn, {"pid": pid})


def _reap(children: Dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            _reply(conn, {"exit": os.waitstatus_to_exitcode(status)})
            conn.close()


def main(argv: List[str]) -> None:
    # Its own session: a terminal's Ctrl-C reaches the runs through the parent, not here.
    control = socket.socket(fileno=int(argv[0]))
    serve(control, preload(argv[1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
