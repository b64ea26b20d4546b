"""The `torchrun` launcher: a run's ranks started by PyTorch's own launcher
(torch.distributed.run in the launcher's Python, through launch/torchrun_agent.py,
which keeps torchrun's record of failed ranks), each a rank worker
(launch/rank_worker.py) running the ordinary runner with its rank context. gpubench
adds no rank launcher or communication layer of its own.

It owns what every launcher owns: the timeout, killing everything the run started,
and saying how the run ended. torchrun starts each rank in a session of its own, so
killing torchrun's process group would miss them: the launcher kills the whole tree
(psutil) it finds under torchrun, and the ranks also die with torchrun (PDEATHSIG).
A rank that raises leaves its traceback in torchrun's error file (its @record); the
run's failed row says which rank failed first and why from torchrun's record of
failures, which holds that file's error, or the signal that killed a rank.

One node: 127.0.0.1 and a free port per run (static rendezvous, so runs side by side
never meet). Several nodes: nnodes, node_rank, master_addr and master_port as torchrun
takes them (each node runs its own launcher; rank 0's node writes the folder).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from gpubench.errors import UserError
from gpubench.launch.base import LaunchResult, Launcher, OnStart, Progress, no_progress
from gpubench.launch.forked import kill_group
from gpubench.launch.process import LOG_NAME, ProcessLauncher, tail, timed_out
from gpubench.launch.rank_worker import EVENT_FILE_ENV, REQUEST_ENV
from gpubench.launch.status_rows import close_interrupted
from gpubench.launch.worker import request_to_json
from gpubench.telemetry import pin_cuda_device_order

POLL_S = 0.2  # how often the launcher relays rank 0's progress and checks the deadline
KILL_WAIT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's pick): torchrun's store binds it moments
    later. Each run gets its own, so two runs never join one rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL to torchrun, its group, and every process under it (ranks run in
    sessions of their own), then waits for them all."""
    import psutil
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    kill_group(proc.pid)
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    psutil.wait_procs(tree, timeout=KILL_WAIT_S)


class _EventTail:
    """Relays the JSON lines the ranks append to the event file."""

    def __init__(self, path: Path, progress: Progress) -> None:
        self.path, self.progress, self.offset = path, progress, 0
        self.events: List[Dict[str, Any]] = []

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            self.events.append(event)
            name = event.get("event", "")
            if name not in ("refused", "finished"):
                self.progress(name, **{k: v for k, v in event.items() if k != "event"})


def read_failures(path: Path) -> Dict[int, Dict[str, Any]]:
    """Global rank -> the failure torchrun observed (launch/torchrun_agent.py)."""
    try:
        return {int(rank): f for rank, f in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _raised(rank: int, failure: Dict[str, Any], events: List[Dict[str, Any]]) -> Optional[str]:
    """The exception the rank raised ("Type: text"), None when it raised none: from its
    error file (@record), else from its own `crashed` event. A rank that raised can still
    end by a signal: it leaves its process group to the process's exit, and gloo aborts
    there (SIGABRT) when its peer is gone; the exception is then the cause, not the abort."""
    if failure.get("py_callstack") and failure.get("message"):
        return failure["message"]
    said = [e.get("error") for e in events if e.get("event") == "crashed" and e.get("rank") == rank]
    return said[0] if said and said[0] else None


def _how(rank: int, failure: Dict[str, Any], events: List[Dict[str, Any]]) -> str:
    raised = _raised(rank, failure, events)
    if raised is not None or failure["exitcode"] >= 0:
        return f"failed: {raised if raised is not None else failure['message']}"
    return f"was killed by {failure['signal']} (exit code {failure['exitcode']})"


def first_failure(failures: Dict[int, Dict[str, Any]], events: List[Dict[str, Any]],
                  log: Path) -> Optional[str]:
    """The failure that ended the run, from torchrun's record: its traceback (or, for a
    rank killed by a signal, the run's last output), then one line saying which rank
    failed and how, and how the others ended (last, so that a row's error tail and a
    suite's one-line summary keep it). None when torchrun recorded none.

    The first failure is not the lowest rank's: the ranks waiting for a failed one fail
    a moment later (a lost connection), or torchrun stops them with SIGTERM. So: a rank
    killed by another signal (an abort, a segfault, the OOM killer) without having
    raised first; then the rank that raised first by the `crashed` event each wrote (its
    own clock, finer than the error file's seconds); then the lowest rank."""
    if not failures:
        return None
    signalled = sorted(r for r, f in failures.items()
                       if f["exitcode"] < 0 and f["signal"] != "SIGTERM"
                       and _raised(r, f, events) is None)
    crashed = sorted((e["t"], e["rank"]) for e in events
                     if e.get("event") == "crashed" and e.get("rank") in failures)
    rank = signalled[0] if signalled else crashed[0][1] if crashed else min(failures)
    failure = failures[rank]
    then = _short(failures, rank)
    if failure["exitcode"] < 0 and rank not in signalled:  # raised, then the signal
        then = ", ".join(filter(None, [then, f"rank {rank} itself: {failure['signal']} on exit"]))
    headline = f"rank {rank} of the run {_how(rank, failure, events)}" + (
        f" (then {then})" if then else "")
    detail = failure["py_callstack"].rstrip() or (tail(log) if failure["exitcode"] < 0 else "")
    return f"{detail}\n{headline}".lstrip()


def _short(failures: Dict[int, Dict[str, Any]], first: int) -> str:
    """How the other failed ranks ended, in a few words each."""
    parts = []
    for rank, failure in sorted(failures.items()):
        if rank == first:
            continue
        how = failure["signal"] if failure["exitcode"] < 0 else \
            failure["message"].split(":", 1)[0]  # the exception's type
        parts.append(f"rank {rank}: {how}")
    return ", ".join(parts)


class TorchrunLauncher(Launcher):
    name = "torchrun"
    isolated = True

    def __init__(self, python: Optional[str] = None, nnodes: int = 1, node_rank: int = 0,
                 master_addr: Optional[str] = None, master_port: Optional[int] = None) -> None:
        super().__init__(python)
        if nnodes < 1 or not 0 <= node_rank < nnodes:
            raise UserError(f"--node-rank must be in 0..{nnodes - 1}, got {node_rank}")
        if nnodes > 1 and (master_addr is None or master_port is None):
            raise UserError("several nodes need --master-addr and --master-port (rank 0's node)")
        self.nnodes, self.node_rank = nnodes, node_rank
        self.master_addr = master_addr or "127.0.0.1"
        self.master_port = master_port

    def writes_rows(self, req: Any) -> bool:
        return self.node_rank == 0  # global rank 0 is node 0's first

    def preflight(self, req: Any) -> None:
        if req.strategy is None:
            raise UserError("the torchrun launcher starts ranks: give --nproc N")
        if req.world_size % self.nnodes:
            raise UserError(f"world size {req.world_size} is not a multiple of "
                            f"{self.nnodes} nodes")
        if req.lock_clocks is not None or req.power_limit_w is not None:
            raise UserError("--lock-clocks and --power-limit set one GPU (--device): a run of "
                            "ranks (--nproc) does not take them")
        ProcessLauncher(self.python).preflight_in_python(req)

    def torchrun_args(self, nproc: int, port: int, log_dir: Path, failures: Path) -> List[str]:
        return [self.python, "-m", "gpubench.launch.torchrun_agent", str(failures),
                f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}",
                f"--nproc-per-node={nproc}", f"--master-addr={self.master_addr}",
                f"--master-port={port}", "--max-restarts=0", f"--log-dir={log_dir}",
                "-m", "gpubench.launch.rank_worker"]

    def launch(self, req: Any, timeout_s: Optional[float] = None,
               progress: Progress = no_progress,
               on_start: OnStart = lambda interrupt: None) -> LaunchResult:
        assert req.folder is not None
        folder = Path(req.folder)
        folder.mkdir(parents=True, exist_ok=True)
        nproc = req.world_size // self.nnodes
        with tempfile.TemporaryDirectory(prefix="gpubench-torchrun-") as tmp:
            events_path = Path(tmp) / "events.jsonl"
            events_path.touch()
            env = {**os.environ, REQUEST_ENV: json.dumps(request_to_json(
                replace(req, isolation="fresh"))),  # ranks start fresh: no fork server
                   EVENT_FILE_ENV: str(events_path)}
            pin_cuda_device_order(env)  # the ranks' CUDA ordinals are then NVML's indices
            port = self.master_port or free_port(self.master_addr)
            with open(folder / LOG_NAME, "wb") as log:
                proc = subprocess.Popen(self.torchrun_args(nproc, port, Path(tmp) / "logs",
                                                           Path(tmp) / "failures.json"),
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
            relay = _EventTail(events_path, progress)
            interrupted = threading.Event()

            def interrupt() -> None:
                """A suite's Ctrl-C: the ranks cannot finish in step once one is
                stopped, so all are killed; the trials rank 0 wrote stay."""
                interrupted.set()
                kill_tree(proc)

            on_start(interrupt)
            try:
                code = self._wait(proc, relay, timeout_s)
            except KeyboardInterrupt:  # everything is killed: close the folder for it
                close_interrupted(req)
                raise
            relay.poll()
            events = relay.events
            if code is None:
                return LaunchResult("timeout", timed_out(timeout_s, events, folder / LOG_NAME),
                                    events=events)
            if interrupted.is_set():
                close_interrupted(req)
                return LaunchResult("interrupted", events=events)
            finished = [e for e in events if e["event"] == "finished"]
            if code == 0 and (finished or self.node_rank > 0):  # rank 0 tells, on node 0
                return LaunchResult("finished", events=events)
            refused = [e for e in events if e["event"] == "refused"]
            if refused:
                return LaunchResult("refused", refused[0]["message"], refused[0]["kind"], events)
            message = first_failure(read_failures(Path(tmp) / "failures.json"), events,
                                    folder / LOG_NAME)
            how = f"torchrun exited with code {code}" if code >= 0 else \
                f"torchrun killed by {signal.Signals(-code).name}"
            return LaunchResult("failed", message or f"{how}; last output:\n"
                                + tail(folder / LOG_NAME), events=events)

    @staticmethod
    def _wait(proc: subprocess.Popen, relay: _EventTail,
              timeout_s: Optional[float]) -> Optional[int]:
        """torchrun's exit code, relaying progress meanwhile; None after killing it all
        at the timeout. Ctrl-C kills it all too, then propagates."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            while True:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    relay.poll()
                if deadline is not None and time.monotonic() >= deadline:
                    kill_tree(proc)
                    return None
        except KeyboardInterrupt:
            kill_tree(proc)
            raise
