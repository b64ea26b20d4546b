"""The worker: one run in a process of its own, started by the process launcher with
the Python of the run's environment: a fresh `python -m gpubench.launch.worker`, or a
child forked by a fork server (launch/fork_server.py) that runs `serve` below.

A process per run gives every run a clean CUDA context (a fork server never touches
CUDA), and confines a segfault, an out-of-memory kill or a hang to that run. The parent
sends the request as JSON on stdin (a forked worker gets it from its server) and names
the run folder; the worker writes the folder itself (trials.csv after every trial) and
reports progress as JSON lines on the file descriptor named by GPUBENCH_EVENT_FD. Its
exit code says how it ended:

    0    the run finished (its rows say ok or failed)
    2    the run was refused before measuring; the last event says why and whether
         the configuration is unsupported here (an unavailable backend, a precision
         the device cannot do) or bad input
    130  interrupted (SIGINT from the parent); finished trials, run.json and
         summary.csv are written
    143  terminated (SIGTERM sent to the worker itself, not by gpubench); the same
         written first

With `--preflight` it only runs preflight (in this Python: are the framework and the
backend there, is the configuration possible) and exits 0 or 2 the same way.
"""

from __future__ import annotations

import os
import signal

if __name__ == "__main__":
    # Interrupted while still importing: nothing measured, nothing to keep.
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(143))

import ctypes  # noqa: E402 (after the handler above, which must come first)
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, TextIO

from gpubench.errors import BackendUnavailable, Unsupported, UserError
from gpubench.measure import interrupt
from gpubench.measure.runner import RunRequest

EVENT_FD_ENV = "GPUBENCH_EVENT_FD"
EXIT_FINISHED, EXIT_REFUSED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 2, 130, 143
PR_SET_PDEATHSIG = 1


def request_to_json(req: RunRequest) -> Dict[str, Any]:
    data = asdict(req)
    data["params"] = dict(req.params)
    data["out_dir"] = str(req.out_dir)
    data["folder"] = str(req.folder) if req.folder else None
    return data


def request_from_json(data: Dict[str, Any]) -> RunRequest:
    data = dict(data)  # its protocol and scenario records as mappings: RunRequest takes them
    data["out_dir"] = Path(data["out_dir"])
    data["folder"] = Path(data["folder"]) if data.get("folder") else None
    return RunRequest(**data)


def _die_with_parent() -> None:
    """Linux: a worker whose parent is SIGKILLed must not run on as an orphan."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(EXIT_INTERRUPTED)


def import_framework(backend: str) -> None:
    """Imports the run's framework before the run begins, so that run.json's `imports`
    phase holds it instead of the phase that first asks it something (preflight: torch
    takes ~0.8 s here). A framework missing or failing is preflight's to report."""
    from gpubench.backends import get_backend

    try:
        framework = get_backend(backend).framework  # `auto`: not known before preflight
        if importlib.util.find_spec(framework) is not None:
            importlib.import_module(framework)
    except Exception:  # noqa: BLE001 (preflight says what is wrong, as it would have)
        pass


def has_children() -> bool:
    """Whether this process has a child still running (Linux /proc; True when unknown)."""
    try:
        tasks = os.listdir("/proc/self/task")
        return any(Path(f"/proc/self/task/{t}/children").read_text().strip() for t in tasks)
    except OSError:
        return True


def exit_now(code: int) -> None:
    """Ends the worker once its folder is written, skipping Python's finalization: with
    torch and torch._dynamo loaded, tearing the interpreter down took ~0.6 s (issue 29),
    time a suite waited for every run. Output is flushed first; a worker that started
    processes (a compiler's pool) exits normally, so their owners' atexit stops them."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # the run is over: its code stands
        signal.signal(signum, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if has_children():
        sys.exit(code)
    os._exit(code)


class _Events:
    def __init__(self, stream: Optional[TextIO]) -> None:
        self.stream = stream

    def __call__(self, event: str, **fields: Any) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps({"event": event, **fields}, default=str) + "\n")
            self.stream.flush()


def main(args: Sequence[str], request_text: str) -> int:
    _die_with_parent()
    fd = os.environ.get(EVENT_FD_ENV)
    events = _Events(os.fdopen(int(fd), "w", buffering=1) if fd else None)
    request = request_from_json(json.loads(request_text))
    if "--preflight" not in args:
        import_framework(request.backend)
    from gpubench.measure.phases import worker_start_marks
    from gpubench.measure.preflight import preflight
    from gpubench.measure.runner import execute_run

    try:
        if "--preflight" in args:
            preflight(request)
            return EXIT_FINISHED
        outcome = execute_run(request, events, started=worker_start_marks())
    except (Unsupported, BackendUnavailable) as exc:
        events("refused", kind="unsupported", message=str(exc))
        return EXIT_REFUSED
    except UserError as exc:
        events("refused", kind="usage", message=str(exc))
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    events("finished", path=str(outcome.path), status=outcome.status,
           telemetry=outcome.telemetry, warnings=outcome.warnings)
    return EXIT_FINISHED


def serve(args: Sequence[str], request_text: str) -> int:
    """The worker's run with its signal handling; its exit code. A fresh worker
    (below) and a fork server's child (launch/fork_server.py) both end here."""
    # SIGINT (the parent: write what finished) and SIGTERM (sent to this process itself)
    # end the run the same way. A second signal while finished trials are being written
    # must not cut that short: only the first one counts. It is also recorded: one
    # raised inside a finalizer is swallowed there, and the run checks the record.
    received = []

    def _interrupt(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            interrupt.request()
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        code = main(args, request_text)
    except KeyboardInterrupt:  # before the run started: nothing to keep
        code = EXIT_INTERRUPTED
    return (EXIT_TERMINATED if code == EXIT_INTERRUPTED and received == [signal.SIGTERM]
            else code)


if __name__ == "__main__":
    exit_now(serve(sys.argv[1:], sys.stdin.read()))
