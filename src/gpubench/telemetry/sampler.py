"""The polling sampler: a thread that reads a `Source` (one device) at `sample_hz`,
bracketed exactly to each trial by begin_trial/end_trial.

- No global state: every sampler owns its thread, lock, samples and source.
- The hot loop is never blocked: the thread takes the lock only while it reads the
  source; begin_trial/end_trial (outside the protocol's timed region) read the source
  once more and the energy counter at the trial's edges, so every trial has a sample at
  each edge and an exact counter delta.
- A failed read is a gap (recorded with its error), never an exception: the run goes
  on. A quantity the source cannot provide is recorded once, with the reason.
- Before the first trial, the thread watches the energy counter for up to
  COUNTER_PROBE_S to learn how often it updates; a trial shorter than that period
  takes its energy from integrated power instead and is flagged.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Mapping, Optional, Tuple

from gpubench.telemetry.aggregate import (
    KIND_BEGIN, KIND_END, KIND_POLL, Window, counter_period_s, energy_columns, gauge_means,
)
from gpubench.telemetry.base import Sampler
from gpubench.telemetry.errors import TelemetryError

clock = time.monotonic  # CLOCK_MONOTONIC: comparable across processes on one machine

COUNTER_PROBE_S = 1.0  # longest time spent learning the counter's update period
COUNTER_PROBE_INTERVAL_S = 0.002
COUNTER_PROBE_CHANGES = 3  # distinct updates to see (two periods)


class Source(ABC):
    """One device's readings, for PollingSampler. Every method may raise
    TelemetryError for a transient failure; a quantity that is not supported is left
    out of read() and listed, with its reason, by unavailable()."""

    name: str = "abstract"
    device_index: Optional[int] = None  # the run's device index, for samples.csv
    power_key: Optional[str] = None  # the sample key integrated for energy, if any
    gauges: Mapping[str, str] = {}  # trial column -> sample key averaged over the trial

    @abstractmethod
    def read(self) -> Dict[str, Any]:
        """One reading of every available quantity. Raises TelemetryError when nothing
        could be read (a gap)."""

    def energy_mj(self) -> Optional[float]:
        """The cumulative energy counter (mJ), or None where there is none."""
        return None

    def begin_window(self) -> None:
        """Called at a trial's start (per-trial hardware counters such as GPM)."""

    def end_window(self, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
        """Trial columns the source computes itself from the trial's samples."""
        return {}

    def unavailable(self) -> Dict[str, str]:
        return {}

    def temperature_c(self) -> Optional[float]:
        """The device's temperature now (C), or None where it has none to give."""
        return None

    def notes(self) -> Dict[str, Any]:
        return {}

    def environment(self) -> Dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class PollingSampler(Sampler):
    def __init__(self, source: Source, sample_hz: float) -> None:
        if not sample_hz > 0:
            raise ValueError(f"sample_hz must be positive, got {sample_hz}")
        self.source, self.sample_hz = source, sample_hz
        self.name = source.name
        self._period_s = 1.0 / sample_hz
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probed = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None
        self._t0 = clock()
        self._samples: List[Dict[str, Any]] = []
        self._poll_times: List[float] = []  # the thread's regular polls (not trial edges)
        self._trial: Optional[int] = None
        self._window: Optional[Window] = None
        self._window_gap = False  # a read failed during the current trial
        self._gaps: List[Dict[str, Any]] = []
        self._open_gap: Optional[Dict[str, Any]] = None
        self._counter_period: Tuple[Optional[float], bool] = (None, False)
        self._set_aside: List[str] = []  # trials whose counter delta was not used
        self._windows: List[Dict[str, Any]] = []  # each trial's exact bracket, sampler clock
        self._errors: Dict[str, Dict[str, Any]] = {}
        self._stopped_at: Optional[float] = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._t0 = clock()
        self._thread = threading.Thread(target=self._run, name=f"gpubench-{self.name}-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopped_at is not None:
            return
        self._stopped_at = clock()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        with self._lock:
            self._close_gap()
        self.source.close()
        if self._failure is not None:
            raise RuntimeError(f"the {self.name} sampler thread failed") from self._failure

    def _run(self) -> None:
        try:
            self._probe_counter()
            self._probed.set()
            due = clock()
            while True:
                due += self._period_s
                delay = due - clock()
                if delay < 0:  # fell behind (a slow driver): skip, never burst
                    due, delay = clock(), 0.0
                if self._stop.wait(delay):
                    return
                with self._lock:
                    self._poll(KIND_POLL)
        except BaseException as exc:  # a bug, not a driver error: re-raised by stop()
            self._failure = exc
        finally:
            self._probed.set()

    def _probe_counter(self) -> None:
        observations: List[Tuple[float, float]] = []
        deadline = clock() + COUNTER_PROBE_S
        while clock() < deadline and not self._stop.is_set():
            try:
                value = self.source.energy_mj()
            except TelemetryError:
                value = None
            if value is None:
                break
            observations.append((clock(), value))
            if len({v for _, v in observations}) > COUNTER_PROBE_CHANGES:
                break
            time.sleep(COUNTER_PROBE_INTERVAL_S)
        self._counter_period = counter_period_s(observations)

    # --- readings (called with the lock held) -----------------------------------------
    def _poll(self, kind: str) -> None:
        t = clock()
        if kind == KIND_POLL:
            self._poll_times.append(t)
        try:
            values = self.source.read()
        except TelemetryError as exc:
            self._record_gap(t, exc)
            return
        self._close_gap()
        self._samples.append({"t_s": t - self._t0, "device_index": self.source.device_index,
                              "trial": self._trial, "sample_kind": kind, **values})

    def _record_gap(self, t: float, exc: TelemetryError) -> None:
        if self._trial is not None:
            self._window_gap = True
        if self._open_gap is None:
            self._open_gap = {"start_t_s": t - self._t0, "end_t_s": t - self._t0,
                              "failed_reads": 0, "error": str(exc)}
            self._gaps.append(self._open_gap)
        self._open_gap["end_t_s"] = t - self._t0
        self._open_gap["failed_reads"] += 1

    def _close_gap(self) -> None:
        self._open_gap = None

    def _energy(self, edge: str) -> Optional[float]:
        try:
            return self.source.energy_mj()
        except TelemetryError as exc:
            entry = self._errors.setdefault(f"energy counter at trial {edge}",
                                            {"count": 0, "first_error": str(exc)})
            entry["count"] += 1
            return None

    # --- trials ------------------------------------------------------------------------
    def begin_trial(self, trial: int) -> None:
        self._probed.wait(COUNTER_PROBE_S + 1.0)
        with self._lock:
            self._trial, self._window_gap = trial, False
            self._poll(KIND_BEGIN)
            try:
                self.source.begin_window()
            except TelemetryError as exc:
                self._record_gap(clock(), exc)
            energy = self._energy("begin")
            self._window = Window(trial, clock(), energy)

    def end_trial(self) -> Dict[str, Any]:
        with self._lock:
            window = self._window
            if window is None:
                return {}
            window.t_end_s = clock()
            window.energy_end_mj = self._energy("end")
            self._windows.append({"trial": window.trial, "t_begin_s": window.t_begin_s - self._t0,
                                  "t_end_s": window.t_end_s - self._t0})
            self._poll(KIND_END)
            self._window, self._trial = None, None
            samples = [s for s in self._samples if s["trial"] == window.trial]
            kinds = {s["sample_kind"] for s in samples}
            covered = not self._window_gap and {KIND_BEGIN, KIND_END} <= kinds
            columns, set_aside = energy_columns(window, samples, self.source.power_key,
                                                self._counter_period[0], covered)
            if set_aside:
                self._set_aside.append(set_aside)
            columns.update(gauge_means(samples, self.source.gauges))
            try:
                columns.update(self.source.end_window(samples))
            except TelemetryError as exc:
                self._record_gap(clock(), exc)
            return columns

    def discard_trial(self, trial: int) -> None:
        with self._lock:
            for sample in self._samples:  # between trials now, as far as samples.csv says
                if sample["trial"] == trial:
                    sample["trial"] = None
            for window in self._windows:
                if window["trial"] == trial:
                    window["discarded"] = True

    def temperature_c(self) -> Optional[float]:
        """The watched device's temperature now (between trials: a wait for a cool
        start reads it); None where the source gives none or the read failed."""
        with self._lock:
            try:
                return self.source.temperature_c()
            except TelemetryError:
                return None

    # --- results ----------------------------------------------------------------------
    def samples(self) -> List[Dict[str, Any]]:
        with self._lock:
            return sorted((dict(s) for s in self._samples), key=lambda s: s["t_s"])

    def notes(self) -> Dict[str, Any]:
        with self._lock:
            period, lower_bound = self._counter_period
            notes: Dict[str, Any] = {
                "sampler": self.name, "sample_hz": self.sample_hz,
                "achieved_hz": _rate_hz(self._poll_times),
                "samples": len(self._samples),
                "clock": "CLOCK_MONOTONIC", "t0_monotonic_s": self._t0,
                **self.source.notes(),
                "unavailable": self.source.unavailable(),
                "energy_counter_period_s": period,
                "energy_counter_period_is_lower_bound": lower_bound,
                "gaps": [dict(g) for g in self._gaps],
                "trial_windows": [dict(w) for w in self._windows],
            }
            if self._errors:
                notes["errors"] = {k: dict(v) for k, v in self._errors.items()}
            notes["warnings"] = self._warnings()
            return notes

    def _warnings(self) -> List[str]:
        warnings = [f"energy from integrated power: {why}" for why in self._set_aside]
        if self._gaps:
            total = sum(g["failed_reads"] for g in self._gaps)
            warnings.append(f"{self.name} telemetry had {len(self._gaps)} gap(s), {total} failed "
                            f"read(s); first: {self._gaps[0]['error']}")
        return warnings

    def environment(self) -> Dict[str, Any]:
        return self.source.environment()


def _rate_hz(times: List[float]) -> Optional[float]:
    """Polls per second between the first and the last poll (the rate kept)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 2)
