"""Contention: trials that ran while something else held the machine. Each kept trial
gets the measured column `contended` (True or False; empty when no test could be made),
run.json's `contention` says per trial which tests were made and which fired, the run
warns on stderr, and compare leaves contended trials out unless --include-contended.

Three tests per trial, each made where its inputs exist:

- `slow`: the trial's seconds per iteration exceed SLOW_TRIAL_FACTOR x the reference
  (trials of at least SLOW_MIN_TRIAL_S; shorter ones are all noise at that factor),
  the median of the calibration (the seconds per iteration the first kept trial was
  sized by) and of the trials kept before it. The first trial is judged against the
  calibration alone: flagged when it ran 1.5x longer than calibrated. After it, the
  median keeps one odd trial (or a pessimistic warm-up) from moving the reference.
  Flagged trials stay in the reference, so a lasting change of speed (a GPU settling
  at a lower clock: the `throttled` column says so) becomes the reference within a few
  trials instead of flagging every trial after it.
- `cpu`: processes other than this one (its threads, and children it waited for)
  used, on average over the trial, at least CPU_OTHERS_MIN_CORES of a core, and
  either CPU_OTHERS_MACHINE_SHARE of the machine's logical CPUs, or enough that the
  machine was CPU_FULL_SHARE busy counting this process's own use (a CPU backend
  using every core loses to any neighbour). Others' use = the machine's busy
  CPU-seconds (psutil.cpu_times: all but idle and iowait; a VM's steal counts) less
  this process's, over the trial. Two psutil reads per trial, whatever the telemetry
  (nvml, cpu, none). Windows shorter than CPU_MIN_WINDOW_S are not judged: the
  accounts count 10 ms ticks.
- `gpu`: another process had a compute context on the run's GPU at the trial's start
  or end (NVML's compute process list, read at both edges; NVML telemetry only). A
  process that came and went inside one trial is not seen (the `slow` test may see
  its effect); graphics contexts (a desktop's compositor, always there on a
  workstation) do not count, though the pre-run gpu_state lists them. Where NVML's
  PIDs are not this process's (a container with its own PID namespace: this process
  is missing from the list while its step runs on that GPU), one listed process is
  taken to be this run's own, so only a second one flags.

Every reading is taken outside the protocol's timing, by `ContentionWatch`, which wraps
the run's sampler (NVML's process list outside the sampler's own bracket of the trial,
its energy window); nothing here runs in a thread or during the timed steps.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Dict, List, Optional, Set, Tuple

from gpubench.telemetry.aggregate import CpuReading, others_cpu
from gpubench.telemetry.base import Sampler
from gpubench.telemetry.errors import NotAvailable, TelemetryError

SLOW_TRIAL_FACTOR = 1.5  # x the reference seconds per iteration
# Shorter trials are not judged slow: over tens of milliseconds one scheduler tick or
# page fault is the 1.5x (tests and smoke suites use 0.05-0.1 s trials).
SLOW_MIN_TRIAL_S = 0.2
CPU_OTHERS_MIN_CORES = 0.5  # others' average use below this is background, never contention
CPU_OTHERS_MACHINE_SHARE = 0.25  # others held a quarter of the machine's logical CPUs
CPU_FULL_SHARE = 0.9  # or the machine was this busy, this process's use included
CPU_MIN_WINDOW_S = 0.2  # shorter trials are not judged on CPU (10 ms accounting ticks)
TESTS = ("slow", "cpu", "gpu")
WARNED_TRIALS = 5  # trials named in the warning; run.json has them all

clock = time.monotonic  # the CPU window's edges (monkeypatched by tests)
FROM_SAMPLER = object()  # ContentionWatch's defaults: psutil, and the sampler's NVML device


def rules() -> Dict[str, float]:
    """The thresholds in effect (run.json's contention.rules)."""
    return {"slow_trial_factor": SLOW_TRIAL_FACTOR, "slow_min_trial_s": SLOW_MIN_TRIAL_S,
            "cpu_others_min_cores": CPU_OTHERS_MIN_CORES,
            "cpu_others_machine_share": CPU_OTHERS_MACHINE_SHARE,
            "cpu_full_share": CPU_FULL_SHARE, "cpu_min_window_s": CPU_MIN_WINDOW_S}


def cpu_contended(facts: Optional[Dict[str, float]]) -> Optional[bool]:
    """The `cpu` test on others_cpu()'s facts; None when it cannot be made."""
    if facts is None or facts["window_s"] < CPU_MIN_WINDOW_S:
        return None
    others, own, cpus = facts["others_cores"], facts["own_cores"], facts["cpus"]
    if others < CPU_OTHERS_MIN_CORES:
        return False
    return others >= CPU_OTHERS_MACHINE_SHARE * cpus or others + own >= CPU_FULL_SHARE * cpus


def gpu_others(pids: Set[int], own_seen: bool, on_gpu: bool) -> int:
    """How many other processes the edges' compute lists show: all listed PIDs but this
    process's; where this process was not listed although its step runs on the GPU,
    NVML's PIDs are another namespace's and one of them is taken for this run's own."""
    return max(0, len(pids) - 1) if on_gpu and not own_seen else len(pids)


class ContentionJudge:
    """The three tests on one kept trial at a time (pure: readings come in as facts)."""

    def __init__(self) -> None:
        self.calibrated_s_per_iter: Optional[float] = None
        self._kept: List[float] = []  # seconds per iteration of the trials judged so far

    def expect(self, s_per_iter: Optional[float]) -> None:
        """The estimate the coming trial was sized by; it stands for the calibration
        until the first trial is kept (a trial run again after a far too short one is
        sized by that one)."""
        if not self._kept and s_per_iter is not None and s_per_iter > 0:
            self.calibrated_s_per_iter = float(s_per_iter)

    def reference_s_per_iter(self) -> Optional[float]:
        votes = ([self.calibrated_s_per_iter] if self.calibrated_s_per_iter else []) + self._kept
        return statistics.median(votes) if votes else None

    def judge(self, trial: int, iterations: int, duration_s: float,
              cpu: Optional[Dict[str, float]] = None,
              gpu: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """run.json's record of the trial: `contended` (None when no test was made),
        the tests `fired`, and each test's numbers under `tests`."""
        tests: Dict[str, Dict[str, Any]] = {}
        s_per_iter = duration_s / iterations if iterations > 0 else None
        reference = self.reference_s_per_iter()
        if s_per_iter is not None and reference and duration_s >= SLOW_MIN_TRIAL_S:
            ratio = s_per_iter / reference
            tests["slow"] = {"fired": ratio > SLOW_TRIAL_FACTOR, "s_per_iter": s_per_iter,
                             "reference_s_per_iter": reference, "ratio": ratio}
        if s_per_iter is not None:
            self._kept.append(s_per_iter)
        flag = cpu_contended(cpu)
        if flag is not None:
            tests["cpu"] = {"fired": flag, **(cpu or {})}
        elif cpu is not None:  # measured, but over too short a window to judge
            tests["cpu_not_judged"] = {"window_s": cpu["window_s"],
                                       "min_window_s": CPU_MIN_WINDOW_S}
        if gpu is not None:
            tests["gpu"] = {"fired": gpu["others"] > 0, **gpu}
        fired = [name for name in TESTS if tests.get(name, {}).get("fired")]
        judged = any(name in tests for name in TESTS)
        return {"trial": trial, "contended": bool(fired) if judged else None, "fired": fired,
                "tests": tests}


def describe(record: Dict[str, Any]) -> str:
    """Why a contended trial was flagged, for the warning: "trial 2: 2.1x the reference
    time per iteration, others used 1.0 of 2 CPUs"."""
    tests, parts = record["tests"], []
    if "slow" in record["fired"]:
        parts.append(f"{tests['slow']['ratio']:.1f}x the reference time per iteration")
    if "cpu" in record["fired"]:
        parts.append(f"others used {tests['cpu']['others_cores']:.1f} of "
                     f"{tests['cpu']['cpus']} CPUs")
    if "gpu" in record["fired"]:
        n = tests["gpu"]["others"]
        parts.append(f"{n} other process{'es' if n != 1 else ''} on the GPU")
    return f"trial {record['trial']}: {', '.join(parts)}"


def open_cpu_account() -> Tuple[Any, Optional[str]]:
    try:
        from gpubench.telemetry.cpu import CpuAccount
        return CpuAccount(), None
    except (ImportError, OSError) as exc:  # psutil missing or refusing: no cpu test
        return None, f"psutil: {exc}"


def _nvml_device(sampler: Sampler) -> Any:
    """The NVML device the run's sampler watches, or None."""
    source = getattr(sampler, "source", None)
    if source is None:
        return None
    from gpubench.telemetry.nvml_source import NvmlSource
    return source.device if isinstance(source, NvmlSource) else None


class ContentionWatch(Sampler):
    """The run's sampler, with the contention readings taken around each trial: the
    GPU's compute processes (NVML, a driver call) outside the sampler's bracket, the CPU
    accounts (two reads of /proc, tens of microseconds) just inside it, so that the CPU
    window is the trial's and not the sampler's start-up wait. `on_gpu`: the step runs
    on the GPU the sampler watches (it should be listed)."""

    def __init__(self, sampler: Sampler, on_gpu: bool, cpu: Any = FROM_SAMPLER,
                 gpu_device: Any = FROM_SAMPLER, own_pid: Optional[int] = None) -> None:
        self.inner, self.name, self.on_gpu = sampler, sampler.name, on_gpu
        self.judge = ContentionJudge()
        self.unavailable: Dict[str, str] = {}
        self.errors: Dict[str, Dict[str, Any]] = {}
        if cpu is FROM_SAMPLER:
            cpu, why = open_cpu_account()
            if why:
                self.unavailable["cpu"] = why
        self._cpu = cpu
        self._gpu = _nvml_device(sampler) if gpu_device is FROM_SAMPLER else gpu_device
        if self._gpu is None:
            self.unavailable["gpu"] = "no NVML telemetry on a GPU (the GPU's processes are NVML's)"
        self._own_pid = os.getpid() if own_pid is None else own_pid
        self._trial: Optional[int] = None
        self._begin: Tuple[Optional[CpuReading], Optional[Tuple[Set[int], bool]]] = (None, None)
        self._pending: Dict[int, Dict[str, Any]] = {}
        self.records: List[Dict[str, Any]] = []

    # --- the wrapped sampler ---------------------------------------------------------
    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()

    def begin_trial(self, trial: int) -> None:
        self._trial = trial
        gpu_begin = self._read_gpu()
        self.inner.begin_trial(trial)  # may wait for its thread's start (the counter probe)
        self._begin = (self._read_cpu(), gpu_begin)

    def end_trial(self) -> Dict[str, Any]:
        cpu_end = self._read_cpu()
        columns = self.inner.end_trial()
        gpu_end = self._read_gpu()
        cpu_begin, gpu_begin = self._begin
        facts: Dict[str, Any] = {"cpu": None, "gpu": None}
        if cpu_begin is not None and cpu_end is not None:
            facts["cpu"] = others_cpu(cpu_begin, cpu_end, self._cpu.cpus)
        edges = [g for g in (gpu_begin, gpu_end) if g is not None]
        if edges:
            pids = set().union(*(p for p, _ in edges))
            own_seen = any(seen for _, seen in edges)
            facts["gpu"] = {"others": gpu_others(pids, own_seen, self.on_gpu),
                            "listed_pids": sorted(pids), "own_listed": own_seen,
                            "edges_read": len(edges)}
        if self._trial is not None:
            self._pending[self._trial] = facts
        return columns

    def discard_trial(self, trial: int) -> None:
        self._pending.pop(trial, None)
        self.inner.discard_trial(trial)

    def samples(self) -> List[Dict[str, Any]]:
        return self.inner.samples()

    def temperature_c(self) -> Optional[float]:
        return self.inner.temperature_c()

    def notes(self) -> Dict[str, Any]:
        return self.inner.notes()

    def environment(self) -> Dict[str, Any]:
        return self.inner.environment()

    # --- readings (outside the timing) -----------------------------------------------
    def _error(self, what: str, exc: Exception) -> None:
        entry = self.errors.setdefault(what, {"count": 0, "first_error": str(exc)})
        entry["count"] += 1

    def _read_cpu(self) -> Optional[CpuReading]:
        if self._cpu is None:
            return None
        try:
            machine, own = self._cpu.read()
        except TelemetryError as exc:
            self._error("cpu", exc)
            return None
        return CpuReading(clock(), machine, own)

    def _read_gpu(self) -> Optional[Tuple[Set[int], bool]]:
        """(PIDs on the GPU other than this process's, whether this process was listed)."""
        if self._gpu is None:
            return None
        try:
            listed = {pid for pid, _ in self._gpu.compute_processes()}
        except NotAvailable as exc:  # for the whole run: stop asking
            self.unavailable["gpu"] = str(exc)
            self._gpu = None
            return None
        except TelemetryError as exc:
            self._error("gpu", exc)
            return None
        return listed - {self._own_pid}, self._own_pid in listed

    # --- verdicts --------------------------------------------------------------------
    def expect(self, s_per_iter: Optional[float]) -> None:
        self.judge.expect(s_per_iter)

    def trial_verdict(self, trial: int, iterations: int, duration_s: float) -> Optional[bool]:
        """Judges a kept trial (once, in order); its `contended` value."""
        facts = self._pending.pop(trial, {"cpu": None, "gpu": None})
        record = self.judge.judge(trial, iterations, duration_s, facts["cpu"], facts["gpu"])
        self.records.append(record)
        return record["contended"]

    def record(self) -> Dict[str, Any]:
        """run.json's `contention`."""
        out: Dict[str, Any] = {"rules": rules(),
                               "calibrated_s_per_iter": self.judge.calibrated_s_per_iter,
                               "unavailable": dict(self.unavailable),
                               "trials": [dict(r) for r in self.records]}
        if self.errors:
            out["errors"] = {k: dict(v) for k, v in self.errors.items()}
        return out

    def warnings(self) -> List[str]:
        flagged = [r for r in self.records if r["contended"]]
        if not flagged:
            return []
        shown = "; ".join(describe(r) for r in flagged[:WARNED_TRIALS])
        more = f"; and {len(flagged) - WARNED_TRIALS} more" if len(flagged) > WARNED_TRIALS else ""
        return [f"{len(flagged)} of {len(self.records)} trials ran under contention ({shown}{more}): "
                "they are marked contended, and compare leaves them out (--include-contended "
                "keeps them)" + fewer_threads_hint(flagged)]


def fewer_threads_hint(flagged: List[Dict[str, Any]]) -> str:
    """Where others held the CPUs: a framework that starts a thread per CPU fights them
    for every core, and measures the fight (a busy 2-CPU machine: 50x slower than one
    thread), so say how to leave them room."""
    cpus = [r["tests"]["cpu"]["cpus"] for r in flagged if "cpu" in r["fired"]]
    if not cpus:
        return ""
    return (f"; others used the CPUs this run's threads wanted: --threads N, fewer than the "
            f"machine's {max(cpus)}, leaves them room (threads is part of the configuration)")
