"""Per-trial aggregation of telemetry samples into the trial columns of schema v1.
Pure functions of the samples and counter readings: no devices, no threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# NVML's clock-event reasons that count as throttling, declared once, with the names
# rows give them (`throttle_reasons`, joined by "+" in bit order): the board held below
# its power cap, thermal slowdown (software or hardware), the hardware's slowdown and its
# power brake. Not counted: the GPU idle (0x1), clocks that follow a setting
# (applications clocks 0x2, display clock 0x100) and sync boost (0x10, clocks matched to
# another GPU's): none of them is the board failing to hold its clocks under load.
THROTTLE_REASONS = (
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x20, "sw_thermal"),
    (0x40, "hw_thermal"),
    (0x80, "hw_power_brake"),
)
THROTTLING = 0
for _bit, _ in THROTTLE_REASONS:
    THROTTLING |= _bit
REASON_GPU_IDLE = 0x1
REASON_APPLICATIONS_CLOCKS_SETTING = 0x2
REASON_SYNC_BOOST = 0x10
REASON_DISPLAY_CLOCK_SETTING = 0x100
NOT_THROTTLING = (REASON_GPU_IDLE | REASON_APPLICATIONS_CLOCKS_SETTING | REASON_SYNC_BOOST
                  | REASON_DISPLAY_CLOCK_SETTING)

KIND_POLL, KIND_BEGIN, KIND_END = "poll", "trial_begin", "trial_end"


@dataclass
class Window:
    """One trial's bracket: monotonic times and energy-counter readings (mJ) at its
    edges; a counter reading is None when it failed or there is no counter."""
    trial: int
    t_begin_s: float
    energy_begin_mj: Optional[float]
    t_end_s: float = 0.0
    energy_end_mj: Optional[float] = None

    @property
    def duration_s(self) -> float:
        return self.t_end_s - self.t_begin_s


def trapezoid_j(points: Sequence[Tuple[float, float]]) -> Optional[float]:
    """The integral of power (W) over time (s) through `points` (time-sorted), joules;
    None with fewer than two points or no time between them."""
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:]))


def throttled(reasons: Sequence[int]) -> Optional[bool]:
    """Whether any reading shows a throttling reason (THROTTLE_REASONS); None without
    readings."""
    if not reasons:
        return None
    return any(int(r) & THROTTLING for r in reasons)


def throttle_names(reasons: Sequence[int]) -> Optional[str]:
    """The throttling reasons any reading shows, named and joined by "+" in bit order
    ("sw_power_cap+hw_thermal"); None when none shows one (or there are no readings)."""
    seen = 0
    for r in reasons:
        seen |= int(r)
    names = [name for bit, name in THROTTLE_REASONS if seen & bit]
    return "+".join(names) if names else None


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def energy_columns(window: Window, samples: Sequence[Mapping[str, Any]], power_key: Optional[str],
                   counter_period_s: Optional[float],
                   covered: bool = True) -> Tuple[Dict[str, Any], Optional[str]]:
    """(energy_j, energy_source, power_avg_w) for one trial, and why the counter was not
    used when it exists but was set aside (None otherwise).

    The counter delta is used unless the trial was shorter than the counter's update
    period (the delta would count a whole update, or none) or the delta is not
    positive (no update inside the trial, a reset); then power is integrated (trapezoid
    over the samples, which include one at each edge of the trial). Integration needs
    the samples to cover the trial (`covered`: both edges read, no failed read
    between); otherwise only the average power of the readings there are is given."""
    set_aside = None
    if window.energy_begin_mj is not None and window.energy_end_mj is not None:
        delta_j = (window.energy_end_mj - window.energy_begin_mj) / 1000.0
        if counter_period_s is not None and window.duration_s < counter_period_s:
            set_aside = (f"trial {window.trial} lasted {window.duration_s:.3f} s, less than the "
                         f"energy counter's update period ({counter_period_s:.3f} s)")
        elif delta_j <= 0:
            set_aside = (f"trial {window.trial}: the energy counter did not advance "
                         f"({delta_j:.3f} J)")
        elif window.duration_s > 0:
            return ({"energy_j": delta_j, "energy_source": "counter",
                     "power_avg_w": delta_j / window.duration_s}, None)
    if power_key is None:
        return {}, set_aside
    points = sorted((s["t_s"], float(s[power_key])) for s in samples
                    if s.get(power_key) is not None)
    energy = trapezoid_j(points)
    if energy is None:
        return {}, set_aside
    power_avg_w = energy / (points[-1][0] - points[0][0])
    if not covered:  # energy over part of the trial is not the trial's energy
        return {"power_avg_w": power_avg_w}, set_aside
    return ({"energy_j": energy, "energy_source": "integrated", "power_avg_w": power_avg_w},
            set_aside)


def gauge_means(samples: Sequence[Mapping[str, Any]],
                gauges: Mapping[str, str]) -> Dict[str, float]:
    """Mean of each gauge over the trial's samples, leaving out the one taken as the trial
    began (utilisation there describes the time before the trial)."""
    inside = [s for s in samples if s.get("sample_kind") != KIND_BEGIN]
    out: Dict[str, float] = {}
    for column, key in gauges.items():
        value = mean([float(s[key]) for s in inside if s.get(key) is not None])
        if value is not None:
            out[column] = value
    return out


def counter_period_s(observations: List[Tuple[float, float]]) -> Tuple[Optional[float], bool]:
    """The update period of a cumulative counter from (time, value) readings taken
    much faster than it updates: the median time between observed changes. Returns
    (period, is_lower_bound): with fewer than two changes seen, the time watched
    without a (second) change is a lower bound; with fewer than two readings,
    (None, False)."""
    if len(observations) < 2:
        return None, False
    # an update happened in (t0, t1] for each pair whose values differ
    changes = [(t0, t1) for (t0, v0), (t1, v1) in zip(observations, observations[1:]) if v1 != v0]
    first, last = observations[0][0], observations[-1][0]
    if len(changes) >= 2:
        gaps = sorted(b[1] - a[1] for a, b in zip(changes, changes[1:]))
        return gaps[len(gaps) // 2], False
    if changes:  # the previous update came before `first`, the next after `last`
        (before, after), = changes
        return max(before - first, last - after), True
    return last - first, True


@dataclass(frozen=True)
class CpuReading:
    """The CPU accounts at one edge of a trial: when (monotonic s), the machine's busy
    CPU-seconds (all CPUs) and this process's own CPU-seconds."""
    t_s: float
    machine_busy_s: float
    own_s: float


def others_cpu(begin: CpuReading, end: CpuReading, cpus: int) -> Optional[Dict[str, float]]:
    """What processes other than this one used of the CPUs between two readings:
    `others_cores` (CPU-seconds per second: 1.0 is one core kept busy), `own_cores`,
    the `window_s` and the machine's `cpus`; None when no time passed. The accounts
    count in clock ticks (10 ms a CPU), so short windows are coarse; a negative
    difference (ticks split differently between the two files) reads as 0."""
    window = end.t_s - begin.t_s
    if window <= 0:
        return None
    own = max(0.0, end.own_s - begin.own_s)
    others = max(0.0, (end.machine_busy_s - begin.machine_busy_s) - own)
    return {"others_cores": others / window, "own_cores": own / window,
            "window_s": window, "cpus": cpus}
