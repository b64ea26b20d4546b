"""Throttle-aware trials (docs/how-it-measures.md, "Throttled trials"): what the protocol
(measure/protocol.py) does with a trial whose GPU clocks were throttled, and the wait
for a thermally comparable start before each trial.

A trial is throttled when an NVML clock-event reason counted in
telemetry/aggregate.py THROTTLE_REASONS (power cap, thermal, hardware slowdown, power
brake) shows in any of its samples; the sampler names them in `throttle_reasons`.
`--on-throttle`:
- `flag`: the trial stays in the statistics, its reasons named;
- `exclude` (the default): the trial stays in trials.csv with `excluded` = "throttled",
  is left out of the statistics, and is replaced by another trial, at most
  `--throttle-reruns` times a run; past that a throttled trial counts towards the trial
  count (left out all the same) and the run warns;
- `rerun`: as exclude, but a replacement first waits for a start as cool as the run's
  first trial's (its start temperature + RERUN_MARGIN_C), unless --cooldown-s or
  --start-below-c already set every trial's wait;
- `fail`: the first throttled trial is written (excluded), then the run stops with a
  failed row naming its reasons.

Before every trial: `--cooldown-s` sleeps; `--start-below-c` polls the GPU's temperature
until it is below the target, for at most MAX_WAIT_S, then goes on with a warning. A
row records the GPU temperature at its start (`start_temp_c`, whenever NVML gives one)
and the seconds waited (`cooldown_s`, when a wait was asked).

In a run of ranks, a trial is throttled when any rank's GPU was (rank 0 decides, for
all); each rank waits for its own GPU, and the trial's barrier starts them together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from gpubench.errors import UserError
from gpubench.measure import interrupt
from gpubench.measure.protocol_config import ProtocolConfig
from gpubench.ranks import SINGLE_RANK, RankContext
from gpubench.telemetry import Sampler
from gpubench.telemetry.aggregate import THROTTLE_REASONS

EXCLUDED_THROTTLED = "throttled"  # the `excluded` value of a throttled trial left out
MAX_WAIT_S = 300.0  # the longest wait for --start-below-c (or rerun's own target)
POLL_S = 0.25  # how often a wait reads the GPU's temperature
RERUN_MARGIN_C = 2.0  # rerun: a replacement starts below the first trial's start + this

# Tests replace these with a fake clock (a wait of minutes in no time).
sleep = time.sleep
clock = time.monotonic


class ThrottleStop(RuntimeError):
    """--on-throttle fail: a throttled trial stops the run (its failed row says why)."""


@dataclass(frozen=True)
class Verdict:
    excluded: Optional[str]  # the row's `excluded` (None: kept in the statistics)
    replaced: bool  # another trial takes its place (it does not count)
    stop: Optional[str]  # --on-throttle fail: why the run stops


KEPT = Verdict(None, False, None)


def merge_reasons(values: List[Optional[str]]) -> Optional[str]:
    """Several ranks' `throttle_reasons` as one, in the declared order."""
    seen = {name for v in values if v for name in str(v).split("+")}
    names = [name for _, name in THROTTLE_REASONS if name in seen]
    return "+".join(names) if names else None


@dataclass
class ThermalPolicy:
    """One protocol run's throttle policy and waits; `record()` is run.json's account
    (calibration.throttle)."""

    config: ProtocolConfig
    sampler: Sampler
    ranks: RankContext = SINGLE_RANK
    replaced: int = 0
    first_start_c: Optional[float] = None
    throttled: List[Dict[str, Any]] = field(default_factory=list)
    capped_waits: List[Dict[str, Any]] = field(default_factory=list)

    # --- before a trial ------------------------------------------------------------
    def target_c(self, replacement: bool) -> Optional[float]:
        """The temperature to wait below before the coming trial, if any."""
        c = self.config
        if c.start_below_c is not None:
            return c.start_below_c
        if (replacement and c.on_throttle == "rerun" and c.cooldown_s is None
                and self.first_start_c is not None):
            return self.first_start_c + RERUN_MARGIN_C
        return None

    def before_trial(self, trial: int, replacement: bool) -> Dict[str, Any]:
        """Waits as asked; returns the row's start_temp_c and cooldown_s."""
        waited: Optional[float] = None
        if self.config.cooldown_s:
            t0 = clock()
            sleep(self.config.cooldown_s)
            waited = clock() - t0
        elif self.config.cooldown_s is not None:  # --cooldown-s 0: asked, none waited
            waited = 0.0
        target = self.target_c(replacement)
        temp = self.sampler.temperature_c()
        if target is not None and temp is not None:
            spent, temp = self._wait_below(target, temp)
            waited = (waited or 0.0) + spent
            if temp is not None and temp >= target:
                self.capped_waits.append({"trial": trial, "target_c": target,
                                          "temp_c": temp, "waited_s": spent})
        if self.first_start_c is None and temp is not None:
            self.first_start_c = temp
        columns: Dict[str, Any] = {}
        if temp is not None:
            columns["start_temp_c"] = temp
        if waited is not None:
            columns["cooldown_s"] = waited
        return columns

    def _wait_below(self, target: float, temp: float) -> Tuple[float, Optional[float]]:
        """Polls until the temperature is below `target` or MAX_WAIT_S passed: (seconds
        waited, the last temperature read)."""
        start = clock()
        while temp is not None and temp >= target:
            spent = clock() - start
            if spent >= MAX_WAIT_S:
                break
            interrupt.check()
            sleep(min(POLL_S, MAX_WAIT_S - spent))
            temp = self.sampler.temperature_c()
        return clock() - start, temp

    # --- after a trial -------------------------------------------------------------
    def judge(self, trial: int, telemetry: Dict[str, Any]) -> Verdict:
        """What the trial just run becomes, by its throttle reasons (any rank's)."""
        reasons = telemetry.get("throttle_reasons")
        if self.ranks.ranked:
            seen = self.ranks.gather(reasons)
            reasons = self.ranks.agree(merge_reasons(seen) if seen is not None else None)
        if not reasons or self.config.on_throttle == "flag":
            if reasons:
                self.throttled.append({"trial": trial, "reasons": reasons, "excluded": False})
            return KEPT
        entry = {"trial": trial, "reasons": reasons, "excluded": True}
        self.throttled.append(entry)
        if self.config.on_throttle == "fail":
            entry["replaced"] = False
            return Verdict(EXCLUDED_THROTTLED, False, (
                f"trial {trial} was throttled ({reasons}): --on-throttle fail stops the run"))
        entry["replaced"] = self.replaced < self.config.throttle_reruns
        if entry["replaced"]:
            self.replaced += 1
        return Verdict(EXCLUDED_THROTTLED, entry["replaced"], None)

    # --- the account ---------------------------------------------------------------
    @property
    def budget_exhausted(self) -> bool:
        return any(e["excluded"] and not e.get("replaced") for e in self.throttled
                   if self.config.on_throttle in ("exclude", "rerun"))

    def record(self) -> Dict[str, Any]:
        c = self.config
        return {"policy": c.on_throttle, "reruns_allowed": c.throttle_reruns,
                "reruns_used": self.replaced, "budget_exhausted": self.budget_exhausted,
                "throttled_trials": [dict(e) for e in self.throttled],
                "cooldown_s": c.cooldown_s, "start_below_c": c.start_below_c,
                "first_start_temp_c": self.first_start_c, "max_wait_s": MAX_WAIT_S,
                "capped_waits": [dict(w) for w in self.capped_waits]}


def throttle_warnings(record: Optional[Dict[str, Any]]) -> List[str]:
    """The lines the CLI repeats from run.json's calibration.throttle: a spent budget,
    waits that gave up."""
    if not record:
        return []
    out = []
    if record.get("budget_exhausted"):
        counted = [e for e in record["throttled_trials"] if e["excluded"] and not e.get("replaced")]
        out.append(f"the throttle rerun budget (--throttle-reruns {record['reruns_allowed']}) ran "
                   f"out: {len(counted)} more throttled trial(s) "
                   f"({', '.join(str(e['trial']) for e in counted)}) are left out without a "
                   "replacement, so the statistics rest on fewer trials; the GPU needs cooling "
                   "or a lower load (--cooldown-s, --start-below-c)")
    for wait in record.get("capped_waits") or []:
        out.append(f"trial {wait['trial']} started at {wait['temp_c']:g} C after waiting "
                   f"{wait['waited_s']:.0f} s for the GPU to cool below {wait['target_c']:g} C "
                   f"(the wait is capped at {record['max_wait_s']:g} s)")
    return out


NEEDS_NVML = "--start-below-c needs a GPU's temperature (NVML)"


def check_thermal_plan(config: ProtocolConfig, telemetry: str, device_kind: str) -> None:
    """Preflight's refusal of --start-below-c where no GPU will be watched: telemetry
    cpu or none, or auto on a CPU backend (UserError, one line)."""
    if config.start_below_c is None:
        return
    if telemetry in ("cpu", "none") or (telemetry == "auto" and device_kind != "cuda"):
        watched = (f"--telemetry {telemetry}" if telemetry != "auto"
                   else "the backend runs on the CPU")
        raise UserError(f"{NEEDS_NVML}: {watched} (--telemetry nvml watches GPU --device)")


def check_thermal_request(config: ProtocolConfig, sampler: Sampler) -> None:
    """The same once the sampler is made: NVML that gives no temperature (not there,
    or not supported) refuses --start-below-c (UserError)."""
    if config.start_below_c is not None and sampler.temperature_c() is None:
        raise UserError(f"{NEEDS_NVML}: this run's telemetry ({sampler.name}) gives none")
