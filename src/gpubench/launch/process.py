"""The `process` launcher: each run in a worker process of the launcher's Python
(launch/worker.py), forked from the fork server of the run's framework family
(launch/forked.py; `isolation: fork`, the default) or a fresh interpreter (`isolation:
fresh`, and wherever a fork server cannot run). It relays the worker's progress,
enforces the timeout by killing the worker's whole process group, and hands Ctrl-C (and
SIGTERM, which the CLI turns into the same KeyboardInterrupt) on as SIGINT so the worker
writes what finished: the worker runs in its own session, so no signal sent to this
process reaches it.
Preflight runs in that same Python: in this process when it is this interpreter, else
in a worker started with --preflight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import weakref
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from gpubench.errors import Unsupported, UserError
from gpubench.launch.base import (
    LaunchResult, Launcher, OnStart, Progress, is_this_python, no_progress, refuse_ranks,
    run_ended,
)
from gpubench.launch.forked import (
    ForkedProcess, ForkServerLost, ForkServers, fork_supported, kill_group,
)
from gpubench.launch.status_rows import close_interrupted, read_folder_trials
from gpubench.launch.worker import (
    EVENT_FD_ENV, EXIT_FINISHED, EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_TERMINATED,
    request_to_json,
)
from gpubench.launch.policy import under_policy
from gpubench.measure.phases import PHASES, launched_at_env, where
from gpubench.telemetry import clock_policy, pin_cuda_device_order

LOG_NAME = "worker.log"
ERROR_TAIL_CHARS = 2000
INTERRUPT_GRACE_S = 60.0  # time a worker gets to write its finished trials after Ctrl-C
PREFLIGHT_TIMEOUT_S = 120.0


def tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - ERROR_TAIL_CHARS))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def timed_out(timeout_s: float, events: List[Dict[str, Any]], log: Path) -> str:
    """A timeout's message: where the run was (its last phase or trial) and the end of
    its output."""
    last = tail(log)
    return (f"timed out after {timeout_s:g} s while {where(events) or PHASES['imports']}; "
            + (f"last output:\n{last}" if last else "it printed nothing"))


def _relay(read_fd: int, events: List[Dict[str, Any]], progress: Callable[..., None]) -> None:
    with os.fdopen(read_fd, "r") as stream:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            events.append(event)
            name = event.pop("event", "")
            event["event"] = name
            if name not in ("refused", "finished"):
                progress(name, **{k: v for k, v in event.items() if k != "event"})


def for_process(req: Any, process: int) -> Any:
    """The request of the run's worker process `process`: after the first, with the
    iterations per trial the first calibrated and the trials numbered on from the
    folder's rows."""
    if process == 0:
        return req
    folder = Path(req.folder)
    meta = json.loads((folder / "run.json").read_text())
    iterations = int(meta["calibration"]["iterations_per_trial"])
    # --throttle-reruns is the run's budget: what the earlier processes used is spent
    used = sum(int(((p.get("calibration") or {}).get("throttle") or {}).get("reruns_used") or 0)
               for p in meta.get("processes") or [meta])
    return replace(req, process=process, protocol=replace(
        req.protocol, iterations_per_trial=iterations,
        throttle_reruns=max(0, req.protocol.throttle_reruns - used),
        first_trial=len(read_folder_trials(folder))))  # rows, not lines: errors span lines


def _kill_group(proc: subprocess.Popen) -> None:
    kill_group(proc.pid)
    proc.wait()


class ProcessLauncher(Launcher):
    name = "process"
    isolated = True

    def __init__(self, python: Optional[str] = None) -> None:
        super().__init__(python)
        self.fork_servers = ForkServers(self.python)
        weakref.finalize(self, self.fork_servers.close)
        self.fallbacks: List[str] = []  # why runs went to fresh interpreters
        self.unsaid: List[str] = []  # those the next run's result says (once each)

    def close(self) -> None:
        self.fork_servers.close()

    def _start(self, args: List[str], req: Any, log_path: Path, events: List[Dict[str, Any]],
               progress: Progress) -> tuple:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, **launched_at_env()}  # run.json's launch phase starts here
        pin_cuda_device_order(env)  # the worker's CUDA ordinals are then NVML's indices
        with open(log_path, "wb") as log:
            proc = self._fork(args, req, env, log.fileno(), write_fd)
            if proc is None:
                request = json.dumps(request_to_json(replace(req, isolation="fresh")))
                proc = subprocess.Popen(
                    [self.python, "-m", "gpubench.launch.worker", *args], stdin=subprocess.PIPE,
                    stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                    env={**env, EVENT_FD_ENV: str(write_fd)},
                    start_new_session=True)  # its own group: a timeout kills all it started
        os.close(write_fd)
        relay = threading.Thread(target=_relay, args=(read_fd, events, progress), daemon=True)
        relay.start()
        if isinstance(proc, subprocess.Popen):
            try:
                proc.stdin.write(request.encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
        return proc, relay

    def _fork(self, args: List[str], req: Any, env: Dict[str, str], log_fd: int,
              event_fd: int) -> Optional[ForkedProcess]:
        """The worker forked by the fork server of the run's framework family; None when
        it runs in a fresh interpreter (asked for, or the server could not)."""
        if req.isolation != "fork":
            return None
        why = "this platform cannot fork a worker (no fork or no fds over Unix sockets)"
        server = None
        if fork_supported():
            try:
                server = self.fork_servers.server(req.backend, env)
                return server.spawn(args, env, json.dumps(request_to_json(req)), log_fd,
                                    event_fd)
            except ForkServerLost as exc:
                why = str(exc)
                if server is not None:
                    self.fork_servers.lose(server, why)
        if why not in self.fallbacks:
            self.fallbacks.append(why)
            self.unsaid.append(why)
        return None

    def preflight(self, req: Any) -> None:
        refuse_ranks(req, self.name)
        clock_policy.check(req)  # the parent sets it: checked in this Python
        self.preflight_in_python(req)

    def preflight_in_python(self, req: Any) -> None:
        """The runner's preflight, in this launcher's Python."""
        if is_this_python(self.python):
            from gpubench.measure.preflight import preflight
            preflight(req)
            return
        import tempfile
        events: List[Dict[str, Any]] = []
        with tempfile.TemporaryDirectory(prefix="gpubench-preflight-") as tmp:
            log = Path(tmp) / LOG_NAME
            proc, relay = self._start(["--preflight"], req, log, events, no_progress)
            try:
                code = proc.wait(timeout=PREFLIGHT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise UserError(f"{self.python}: preflight did not finish in "
                                f"{PREFLIGHT_TIMEOUT_S:g} s") from None
            relay.join(timeout=5)
            refused = [e for e in events if e["event"] == "refused"]
            if code == EXIT_REFUSED and refused:
                kind = Unsupported if refused[-1]["kind"] == "unsupported" else UserError
                raise kind(refused[-1]["message"])
            if code != EXIT_FINISHED:
                last = (tail(log).splitlines() or [f"exit code {code}"])[-1]
                raise UserError(f"{self.python}: cannot run gpubench there ({last})")

    def launch(self, req: Any, timeout_s: Optional[float] = None,
               progress: Progress = no_progress,
               on_start: OnStart = lambda interrupt: None) -> LaunchResult:
        """The run's worker processes one after another (`req.processes`; `timeout_s`
        for each), all into the run's folder: the first calibrates, the later ones time
        its iterations per trial and number their trials on. The first that does not
        finish, or whose run failed, ends the run there."""
        events: List[Dict[str, Any]] = []
        for process in range(req.processes):
            result = self.launch_process(req, process, timeout_s, progress, on_start)
            events += result.events
            result.events = events
            if run_ended(req, result):
                return result
        return result

    def launch_process(self, req: Any, process: int, timeout_s: Optional[float] = None,
                       progress: Progress = no_progress,
                       on_start: OnStart = lambda interrupt: None) -> LaunchResult:
        def tagged(event: str, **fields: Any) -> None:
            progress(event, **fields, process=process, processes=req.processes)

        result = self._launch_one(for_process(req, process), timeout_s,
                                  tagged if req.processes > 1 else progress, on_start)
        result.process = process
        return result

    def _launch_one(self, req: Any, timeout_s: Optional[float], progress: Progress,
                    on_start: OnStart) -> LaunchResult:
        result = under_policy(req, lambda: self._run_worker(req, timeout_s, progress, on_start))
        unsaid, self.unsaid = self.unsaid, []
        result.launch_warnings += [f"fork server unavailable ({why}): workers start in fresh "
                                   "interpreters" for why in unsaid]
        return result

    def _run_worker(self, req: Any, timeout_s: Optional[float], progress: Progress,
                    on_start: OnStart) -> LaunchResult:
        assert req.folder is not None
        folder = Path(req.folder)
        folder.mkdir(parents=True, exist_ok=True)
        events: List[Dict[str, Any]] = []
        proc, relay = self._start([], req, folder / LOG_NAME, events, progress)
        deadlines: List[threading.Timer] = []
        killed = threading.Event()  # the worker outlived the grace after an interrupt

        def kill_after_grace() -> None:
            if proc.poll() is None:
                killed.set()
                _kill_group(proc)

        def interrupt() -> None:
            """SIGINT: the worker writes what finished and exits; one still there after
            INTERRUPT_GRACE_S (stuck in native code) is killed with its group."""
            proc.send_signal(signal.SIGINT)
            deadline = threading.Timer(INTERRUPT_GRACE_S, kill_after_grace)
            deadline.daemon = True
            deadlines.append(deadline)
            deadline.start()

        on_start(interrupt)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            relay.join(timeout=5)
            return LaunchResult("timeout", timed_out(timeout_s, events, folder / LOG_NAME),
                                events=events)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM here: let the worker write what finished, then stop too.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                close_interrupted(req)  # the worker could not close its folder: it says so
            raise
        finally:
            for deadline in deadlines:
                deadline.cancel()
        relay.join(timeout=5)
        if code == EXIT_FINISHED:
            return LaunchResult("finished", events=events)
        if killed.is_set():  # interrupted, and killed when it did not stop in time
            close_interrupted(req)
            return LaunchResult("interrupted", f"worker did not stop within {INTERRUPT_GRACE_S:g} s "
                                "of the interrupt and was killed", events=events)
        if code == EXIT_INTERRUPTED:
            return LaunchResult("interrupted", events=events)
        if code == EXIT_TERMINATED:  # SIGTERM sent to the worker, not by gpubench
            return LaunchResult("failed", "worker stopped by SIGTERM (not sent by gpubench); "
                                "the trials it finished are kept; last output:\n"
                                + tail(folder / LOG_NAME), events=events)
        refused = [e for e in events if e["event"] == "refused"]
        if code == EXIT_REFUSED and refused:
            return LaunchResult("refused", refused[-1]["message"], refused[-1]["kind"], events)
        how = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
        return LaunchResult("failed", f"worker {how}; last output:\n" + tail(folder / LOG_NAME),
                            events=events)
