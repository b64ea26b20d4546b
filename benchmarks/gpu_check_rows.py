"""gpu-check's verdicts on result rows: pure functions of the trials, samples and
run.json of one run (and of pytest's and the kernels' figures), tested without a GPU
(tests/test_gpu_check.py). Each returns a Check: PASS, FAIL or SKIP with the figures."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

# --- tolerances ----------------------------------------------------------------------------
LATENCY_TOL = 0.20  # p50 x iterations within 20% of the trial's duration
# Below this wall time per step the host's loop between two steps (outside the CUDA
# events) is a large share of the step: the ratio may fall under 0.8 by construction.
LATENCY_STRICT_STEP_S = 1e-4
ENERGY_TOL = 0.03  # counter energy within 3% of integrated power
ENERGY_MIN_SAMPLES = 5
POWER_TOL = 0.01  # average power at most 1% above the enforced limit
MFU_MAX = 1.0
MEM_BW_TOL = 0.05  # GPM bandwidth at most 5% above the theoretical peak
KERNEL_PLAUSIBLE = (0.25, 1.02)  # achieved / peak for the GEMM and the copy

# nvmlClocksEventReason* bits; idle and the clock settings are not throttling.
CLOCK_EVENT_REASONS = (
    (0x1, "gpu_idle"), (0x2, "applications_clocks_setting"), (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"), (0x10, "sync_boost"), (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"), (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
NOT_THROTTLING = 0x1 | 0x2 | 0x100
GPM_NAMES = re.compile(r"(?<![A-Za-z0-9])(GH200|GB200|GB300|H100|H200|H800|H20|B100|B200|B300)"
                       r"(?![A-Za-z0-9])", re.IGNORECASE)



@dataclass
class Check:
    group: str  # what was checked: "run mnist infer bf16", "kernels", "pytest", ...
    name: str  # the check: "status ok", "latency", ...
    verdict: str  # PASS, FAIL or SKIP
    detail: str = ""


# ==========================================================================================
# Pure checks of result rows (tested without a GPU)
# ==========================================================================================
def _num(value: Any) -> Optional[float]:
    """A finite float, or None for an empty cell."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    return None


def _median(values: Sequence[float]) -> Optional[float]:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _fmt(value: Any, spec: str = ".3g") -> str:
    x = _num(value)
    return "" if x is None else format(x, spec)


def decode_reasons(mask: int) -> List[str]:
    """The names of the clock-event reason bits in `mask` ("none" bits: [])."""
    mask = int(mask)
    names = [name for bit, name in CLOCK_EVENT_REASONS if mask & bit]
    unknown = mask & ~sum(bit for bit, _ in CLOCK_EVENT_REASONS)
    if unknown:
        names.append(hex(unknown))
    return names


def latency_ratio(row: Dict[str, Any]) -> Optional[float]:
    """p50 step latency x iterations / trial duration (1.0: the per-step latencies add
    up to the trial's wall time)."""
    p50, n, d = _num(row.get("latency_p50_ms")), _num(row.get("iterations")), _num(row.get("duration_s"))
    if p50 is None or n is None or not d:
        return None
    return p50 / 1e3 * n / d


def check_status(rows: List[Dict[str, Any]]) -> Check:
    ok = [r for r in rows if r.get("status") == "ok"]
    if rows and len(ok) == len(rows):
        return Check("", "status ok", PASS, f"{len(ok)}/{len(rows)} trials ok")
    bad = next((r for r in rows if r.get("status") != "ok"), None)
    error = "" if bad is None else str(bad.get("error") or "").strip().splitlines()
    why = f"; {bad.get('status')}: {error[-1] if error else 'no error text'}" if bad else ""
    return Check("", "status ok", FAIL, f"{len(ok)}/{len(rows)} trials ok{why}")


def check_identity(rows: List[Dict[str, Any]]) -> Check:
    missing = sorted({k for r in rows for k in ("device_name", "driver_version", "cuda_version")
                      if not str(r.get(k) or "").strip() or str(r.get(k)) == "nan"})
    if rows and not missing:
        r = rows[0]
        return Check("", "identity", PASS, f"{r['device_name']}, driver {r['driver_version']}, "
                                           f"CUDA {r['cuda_version']}")
    return Check("", "identity", FAIL, "empty: " + ", ".join(missing) if rows else "no rows")


def check_throughput(rows: List[Dict[str, Any]]) -> Check:
    values = [_num(r.get("throughput_samples_per_s")) for r in rows]
    if values and all(v is not None and v > 0 for v in values):
        return Check("", "throughput > 0", PASS, f"median {_fmt(_median(values))} samples/s")
    return Check("", "throughput > 0", FAIL, f"values {[_fmt(v) for v in values]}")


def check_latency(rows: List[Dict[str, Any]], mode: str) -> Optional[Check]:
    """Inference only. p50 <= p99; the ratio p50 x iterations / duration is at most
    1 + tol everywhere (CUDA-event intervals of one stream cannot add up to more than
    the wall time), and at least 1 - tol where a step takes LATENCY_STRICT_STEP_S or
    longer; below that the host's loop between the events is a large share of a step,
    so only the figure is given."""
    if mode != "infer":
        return None
    problems, ratios, steps = [], [], []
    for r in rows:
        p50, p99 = _num(r.get("latency_p50_ms")), _num(r.get("latency_p99_ms"))
        ratio = latency_ratio(r)
        n, d = _num(r.get("iterations")), _num(r.get("duration_s"))
        step_s = d / n if n and d else None
        if p50 is None or p99 is None or ratio is None or step_s is None:
            problems.append(f"trial {r.get('trial')}: no latency")
            continue
        ratios.append(ratio)
        steps.append(step_s)
        if not 0 < p50 <= p99:
            problems.append(f"trial {r.get('trial')}: p50 {p50:.4g} ms, p99 {p99:.4g} ms")
        if ratio > 1 + LATENCY_TOL:
            problems.append(f"trial {r.get('trial')}: ratio {ratio:.3f} > {1 + LATENCY_TOL:.2f}")
        if ratio < 1 - LATENCY_TOL and step_s >= LATENCY_STRICT_STEP_S:
            problems.append(f"trial {r.get('trial')}: ratio {ratio:.3f} < {1 - LATENCY_TOL:.2f} "
                            f"with {step_s * 1e3:.3g} ms steps")
    figure = (f"p50 x iterations / duration = {_fmt(_median(ratios))} "
              f"(min {_fmt(min(ratios)) if ratios else ''}), step {_fmt((_median(steps) or 0) * 1e3)} ms")
    if not rows:
        return Check("", "latency", FAIL, "no rows")
    if problems:
        return Check("", "latency", FAIL, f"{figure}; " + "; ".join(problems))
    lenient = steps and _median(steps) < LATENCY_STRICT_STEP_S and min(ratios) < 1 - LATENCY_TOL
    note = (f"; steps under {LATENCY_STRICT_STEP_S * 1e3:g} ms: the loop between the CUDA "
            f"events dominates, lower bound not applied" if lenient else "")
    return Check("", "latency", PASS, figure + note)


def check_mfu(rows: List[Dict[str, Any]]) -> Check:
    values = [_num(r.get("mfu")) for r in rows]
    known = [v for v in values if v is not None]
    if not known:
        return Check("", "MFU <= 1", SKIP, "mfu empty: no datasheet peak for this GPU")
    if len(known) == len(values) and all(0 < v <= MFU_MAX for v in known):
        return Check("", "MFU <= 1", PASS, f"median {_median(known):.3g}")
    return Check("", "MFU <= 1", FAIL, f"values {[_fmt(v) for v in values]}")


def check_power(rows: List[Dict[str, Any]], power_limit_w: Optional[float]) -> Check:
    values = [_num(r.get("power_avg_w")) for r in rows]
    if not values or any(v is None for v in values):
        return Check("", "power", FAIL, "power_avg_w empty (NVML telemetry was asked for)")
    if not power_limit_w:
        return Check("", "power", SKIP, f"median {_median(values):.0f} W; no enforced power "
                                        f"limit in run.json")
    top = max(values)
    detail = f"median {_median(values):.0f} W, max {top:.0f} W, limit {power_limit_w:.0f} W"
    ok = all(v > 0 for v in values) and top <= power_limit_w * (1 + POWER_TOL)
    return Check("", "power <= limit", PASS if ok else FAIL, detail)


def check_energy(rows: List[Dict[str, Any]]) -> Check:
    sources = sorted({str(r.get("energy_source")) for r in rows})
    values = [_num(r.get("energy_j")) for r in rows]
    if values and all(v is not None and v > 0 for v in values) and set(sources) <= {"counter", "integrated"}:
        return Check("", "energy", PASS, f"energy_source {'/'.join(sources)}, median "
                                         f"{_median(values):.4g} J")
    return Check("", "energy", FAIL, f"energy_j {[_fmt(v) for v in values]}, energy_source {sources}")


def check_clock_reasons(rows: List[Dict[str, Any]], samples: Optional[List[Dict[str, Any]]]) -> Check:
    """The clock-event reasons are recorded (samples.csv) and decoded, and each trial's
    `throttled` agrees with its samples' reasons."""
    if not samples or not any(_num(s.get("clock_event_reasons")) is not None for s in samples):
        return Check("", "clock-event reasons", FAIL, "no clock_event_reasons in samples.csv")
    seen, problems, throttled_trials = 0, [], 0
    for r in rows:
        trial = _num(r.get("trial"))
        masks = [int(_num(s["clock_event_reasons"])) for s in samples
                 if _num(s.get("trial")) == trial and _num(s.get("clock_event_reasons")) is not None]
        flag = _bool(r.get("throttled"))
        if not masks:
            problems.append(f"trial {r.get('trial')}: no reasons sampled")
            continue
        for m in masks:
            seen |= m
        expected = any(m & ~NOT_THROTTLING for m in masks)
        throttled_trials += bool(flag)
        if flag is None or flag != expected:
            problems.append(f"trial {r.get('trial')}: throttled={r.get('throttled')} but samples "
                            f"say {expected}")
    names = ", ".join(decode_reasons(seen)) or "none"
    detail = f"seen: {names}; throttled {throttled_trials}/{len(rows)} trials"
    if problems:
        return Check("", "clock-event reasons", FAIL, detail + "; " + "; ".join(problems))
    return Check("", "clock-event reasons", PASS, detail)


def check_gpm(rows: List[Dict[str, Any]], gpm_expected: Optional[bool],
              peak_bw_gbs: Optional[float], gpm_note: str = "") -> Check:
    sources = sorted({str(r.get("mem_bw_source")) for r in rows})
    if gpm_expected is None:
        return Check("", "GPM bandwidth", SKIP, f"GPU generation unknown; mem_bw_source {sources}")
    if not gpm_expected:
        return Check("", "GPM bandwidth", SKIP, f"no GPM before Hopper; mem_bw_source {sources}")
    values = [_num(r.get("mem_bw_gbs")) for r in rows]
    if sources != ["gpm"]:
        why = f" ({gpm_note})" if gpm_note else ""
        return Check("", "GPM bandwidth", FAIL, f"mem_bw_source {sources} on a Hopper-or-newer GPU{why}")
    if any(v is None or v < 0 for v in values) or (
            peak_bw_gbs and max(values) > peak_bw_gbs * (1 + MEM_BW_TOL)):
        return Check("", "GPM bandwidth", FAIL, f"mem_bw_gbs {[_fmt(v) for v in values]} "
                                                f"(peak {_fmt(peak_bw_gbs)})")
    return Check("", "GPM bandwidth", PASS, f"median {_fmt(_median(values))} GB/s of peak "
                                            f"{_fmt(peak_bw_gbs)} GB/s")


def trapezoid(points: Sequence[Tuple[float, float]]) -> Optional[float]:
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:]))


def energy_vs_integrated(rows: List[Dict[str, Any]], samples: List[Dict[str, Any]],
                         windows: Sequence[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
    """Per trial whose energy came from the counter: the counter's average power (energy
    over the counter's window, from run.json's telemetry.trial_windows, else the trial's
    duration) against the trapezoid average of the sampled power over the trial."""
    spans = {int(w["trial"]): w["t_end_s"] - w["t_begin_s"] for w in windows
             if _num(w.get("trial")) is not None}
    out = []
    for r in rows:
        if r.get("energy_source") != "counter" or _num(r.get("energy_j")) is None:
            continue
        trial = int(_num(r.get("trial")))
        points = sorted((float(s["t_s"]), float(s["power_w"])) for s in samples
                        if _num(s.get("trial")) == trial and _num(s.get("power_w")) is not None
                        and _num(s.get("t_s")) is not None)
        integral = trapezoid(points)
        span = spans.get(trial) or _num(r.get("duration_s"))
        if integral is None or not span:
            continue
        counter_w = float(r["energy_j"]) / span
        integrated_w = integral / (points[-1][0] - points[0][0])
        out.append({"trial": trial, "energy_j": float(r["energy_j"]), "window_s": span,
                    "counter_w": counter_w, "integrated_w": integrated_w,
                    "rel_diff": (counter_w - integrated_w) / integrated_w,
                    "samples": len(points)})
    return out


def check_energy_integrated(figures: List[Dict[str, Any]]) -> Check:
    """The median |difference| over the steady trials (the first is left out when there
    are more) is within ENERGY_TOL."""
    usable = [f for f in figures if f["samples"] >= ENERGY_MIN_SAMPLES]
    if not usable:
        return Check("", "energy counter vs integrated power", SKIP,
                     "no trial with counter energy and enough power samples")
    steady = usable[1:] if len(usable) > 1 else usable
    diff = _median([abs(f["rel_diff"]) for f in steady])
    detail = "; ".join(f"trial {f['trial']}: counter {f['counter_w']:.1f} W, integrated "
                       f"{f['integrated_w']:.1f} W ({f['rel_diff'] * 100:+.2f}%, {f['samples']} samples)"
                       for f in usable)
    verdict = PASS if diff <= ENERGY_TOL else FAIL
    return Check("", "energy counter vs integrated power", verdict,
                 f"median |diff| {diff * 100:.2f}% (limit {ENERGY_TOL * 100:g}%); {detail}")


def verdict(label: str, what: str, problems: List[str], figures: str) -> Check:
    """PASS with the figures, or FAIL saying what is wrong and then the figures."""
    detail = f"{'; '.join(problems)} ({figures})" if problems else figures
    return Check(label, what, FAIL if problems else PASS, detail)


def check_exec_run(label: str, rows: List[Dict[str, Any]], run_json: Dict[str, Any]) -> Check:
    """A non-eager exec mode's run: ok rows, accuracy_ok on them (its outputs matched
    eager's), compile_s > 0, no trial that recompiled."""
    ok = [r for r in rows if r.get("status") == "ok"]
    check = run_json.get("exec_check") or {}
    compile_s = _num(run_json.get("compile_s"))
    recompiled = run_json.get("recompiled_trials") or []
    problems = []
    if not ok:
        problems.append(f"no ok row ({_last_error(rows)})")
    elif not all(_bool(r.get("accuracy_ok")) for r in ok):
        problems.append("outputs off eager's")
    if ok and (compile_s is None or compile_s <= 0):
        problems.append("no compile_s")
    if recompiled:
        problems.append(f"recompiled during trial(s) {recompiled}")
    figures = (f"compile_s {_fmt(compile_s)}, top-1 vs eager {_fmt(check.get('top1_agreement'))}, "
               f"max abs diff {_fmt(check.get('max_abs_diff'))}, "
               f"{_fmt(_median([_num(r.get('throughput_samples_per_s')) or 0.0 for r in ok]))} samples/s")
    return verdict(label, "exec mode against eager", problems, figures)


# The torchrun launcher with one rank (NCCL, DDP) against the plain run of the same
# configuration: the launcher, the process group and DDP's bucketed all-reduce of one
# rank must cost no more than this.
RANKED_TOLERANCE = 0.03


def check_ranked_run(label: str, plain: List[Dict[str, Any]], ranked: List[Dict[str, Any]],
                     run_json: Dict[str, Any]) -> Check:
    """`--nproc 1` through torchrun: ok rows on NCCL with DDP applied, samples/s within
    RANKED_TOLERANCE of the plain run's (medians)."""
    dist = run_json.get("distributed") or {}
    base = _median([_num(r.get("throughput_samples_per_s")) for r in plain
                    if r.get("status") == "ok"])
    mine = _median([_num(r.get("throughput_samples_per_s")) for r in ranked
                    if r.get("status") == "ok"])
    problems = []
    if mine is None or base is None:
        problems.append(f"no ok rows ({_last_error(ranked if mine is None else plain)})")
    if dist.get("process_group_backend") != "nccl" or dist.get("applied") != "ddp":
        problems.append(f"process group {dist.get('process_group_backend')}, "
                        f"applied {dist.get('applied')} (expected nccl, ddp)")
    ratio = mine / base if mine and base else None
    if ratio is not None and abs(ratio - 1) > RANKED_TOLERANCE:
        problems.append(f"{(ratio - 1) * 100:+.1f}% against the plain run "
                        f"(tolerance {RANKED_TOLERANCE * 100:g}%)")
    figures = (f"plain {_fmt(base)} samples/s, --nproc 1 {_fmt(mine)} samples/s, ratio "
               f"{_fmt(ratio, '.4f')}")
    return verdict(label, "--nproc 1 (NCCL, DDP) within 3% of the plain run", problems, figures)


def check_collective_run(label: str, rows: List[Dict[str, Any]],
                         run_json: Dict[str, Any]) -> Check:
    """A collective run on NCCL: ok rows for every message size swept, algbw > 0."""
    sizes = [s.get("message_bytes") for s in (run_json.get("collective") or {}).get("sizes", [])]
    ok = [r for r in rows if r.get("status") == "ok"]
    measured = {int(_num(r.get("message_bytes")) or 0) for r in ok
                if (_num(r.get("algbw_gbs")) or 0) > 0}
    missing = [s for s in sizes if s not in measured]
    backend = (run_json.get("distributed") or {}).get("process_group_backend")
    largest = [r for r in ok if sizes and _num(r.get("message_bytes")) == sizes[-1]]
    algbw = _median([_num(r.get("algbw_gbs")) for r in largest])
    problems = []
    if not sizes or missing:
        problems.append(f"sizes without an algbw: {missing or 'no sizes'} ({_last_error(rows)})")
    if backend != "nccl":
        problems.append(f"process group {backend} (expected nccl)")
    figures = f"{len(measured)} sizes, algbw at {_fmt(sizes[-1] if sizes else None)} B: {_fmt(algbw)} GB/s"
    return verdict(label, "a row with algbw for every message size", problems, figures)


def check_serving_run(label: str, rows: List[Dict[str, Any]], run_json: Dict[str, Any]) -> Check:
    """A serving run on the GPU: ok rows, latencies stamped on the device's clock (CUDA
    events), and for a --find-max-qps search a max_qps on its last row."""
    serving = run_json.get("serving") or {}
    ok = [r for r in rows if r.get("status") == "ok"]
    clock = serving.get("latency_clock")
    problems = []
    if not ok:
        problems.append(f"no ok row ({_last_error(rows)})")
    if clock != "device_events":
        problems.append(f"latency clock {clock} (expected device_events)")
    search = serving.get("search")
    max_qps = _num((search or {}).get("max_qps"))
    if search is not None and not max_qps:
        problems.append("the search found no rate within the bound")
    p99 = _median([_num(r.get("latency_p99_ms")) for r in ok])
    figures = (f"{len(ok)} ok rows, p99 {_fmt(p99)} ms"
               + (f", max QPS {_fmt(max_qps, ',.0f')}" if search is not None else ""))
    return verdict(label, "serving on the device clock", problems, figures)


def _last_error(rows: List[Dict[str, Any]]) -> str:
    errors = [str(r.get("error")).strip().splitlines()[-1] for r in rows if r.get("error")]
    return errors[-1] if errors else f"{len(rows)} rows"


def check_run(label: str, mode: str, rows: List[Dict[str, Any]],
              samples: Optional[List[Dict[str, Any]]], run_json: Dict[str, Any],
              gpm_expected: Optional[bool]) -> List[Check]:
    """Every row check of one run, grouped under `label`."""
    env = run_json.get("environment") or {}
    telemetry = run_json.get("telemetry") or {}
    gpu = env.get("gpu") or {}
    peak_bw = _num(telemetry.get("peak_mem_bw_gbs")) or _num(gpu.get("peak_mem_bw_gbs"))
    gpm_note = str((telemetry.get("unavailable") or {}).get("GPM") or "")
    status = check_status(rows)
    rows = [r for r in rows if r.get("status") == "ok"]  # the rest: the status line says why
    if not rows:
        status.group = label
        return [status]
    checks = [status, check_identity(rows), check_throughput(rows),
              check_latency(rows, mode), check_mfu(rows),
              check_power(rows, _num(gpu.get("power_limit_w"))), check_energy(rows),
              check_clock_reasons(rows, samples), check_gpm(rows, gpm_expected, peak_bw, gpm_note)]
    out = []
    for c in checks:
        if c is not None:
            c.group = label
            out.append(c)
    return out


def run_table_row(label: str, rows: List[Dict[str, Any]], samples: Optional[List[Dict[str, Any]]],
                  run_json: Dict[str, Any], seconds: float) -> Dict[str, Any]:
    """The figures of one run for summary.md's table (medians over its trials)."""
    gpu = (run_json.get("environment") or {}).get("gpu") or {}
    seen = 0
    for s in samples or []:
        if _num(s.get("trial")) is not None and _num(s.get("clock_event_reasons")) is not None:
            seen |= int(_num(s["clock_event_reasons"]))
    ok = sum(r.get("status") == "ok" for r in rows)
    med = lambda key: _median([_num(r.get(key)) for r in rows])  # noqa: E731
    return {
        "run": label, "batch": rows[0].get("batch_size") if rows else None,
        "trials_ok": f"{ok}/{len(rows)}", "throughput": med("throughput_samples_per_s"),
        "mfu": med("mfu"), "power_w": med("power_avg_w"), "power_limit_w": gpu.get("power_limit_w"),
        "energy_source": "/".join(sorted({str(r.get("energy_source")) for r in rows})),
        "mem_bw_source": "/".join(sorted({str(r.get("mem_bw_source")) for r in rows})),
        "mem_bw_gbs": med("mem_bw_gbs"),
        "latency_ratio": _median([latency_ratio(r) for r in rows]),
        "reasons": ", ".join(decode_reasons(seen)) or "none", "seconds": seconds,
        "gpu_state": gpu_state_of(run_json),
    }


def gpu_state_of(run_json: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """run.json's record of the GPU before measuring, where this gpubench writes one."""
    state = (run_json.get("telemetry") or {}).get("gpu_state") or run_json.get("gpu_state")
    return state if isinstance(state, dict) else None


def gpu_state_text(state: Optional[Dict[str, Any]]) -> str:
    """One line: other processes on the GPU, persistence mode, application clocks."""
    if not state:
        return ""
    others = state.get("other_processes")
    clocks = state.get("clocks") or {}
    return (f"other processes: {'unknown' if others is None else len(others)}; persistence mode: "
            f"{state.get('persistence_mode')}; application clocks at default: "
            f"{clocks.get('app_clocks_at_default') if isinstance(clocks, dict) else None}")


def parse_junit(text: str) -> Dict[str, Any]:
    """Counts and failing test ids from pytest's junit XML."""
    root = ET.fromstring(text)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
            failures.append(name)
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failures": failures}


def parse_pytest_tail(text: str) -> Optional[Dict[str, Any]]:
    """Counts from pytest's last summary line ("3 passed, 1 failed, 2 skipped in 4.2s")."""
    lines = [ln for ln in text.strip().splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    if not lines:
        return None
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", lines[-1]):
        key = "failed" if word.startswith("error") else word
        if key in counts:
            counts[key] += int(n)
    return {**counts, "failures": []}


def check_pytest(name: str, counts: Optional[Dict[str, Any]], timed_out: bool,
                 expect_some_run: bool) -> Check:
    if counts is None:
        return Check("pytest", name, FAIL, "timed out, no results" if timed_out else "no results")
    detail = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if counts["failures"]:
        detail += "; failed: " + ", ".join(counts["failures"][:12])
    if timed_out:
        return Check("pytest", name, FAIL, "timed out; " + detail)
    if counts["failed"]:
        return Check("pytest", name, FAIL, detail)
    if expect_some_run and counts["passed"] == 0:
        return Check("pytest", name, FAIL, detail + " (nothing ran: does torch see the GPU?)")
    return Check("pytest", name, PASS, detail)


def check_kernel(name: str, achieved: Optional[float], peak: Optional[float], unit: str) -> Check:
    if achieved is None:
        return Check("kernels", name, FAIL, "not measured")
    if not peak:
        return Check("kernels", name, SKIP, f"{achieved:.1f} {unit}; peak unknown for this GPU")
    share = achieved / peak
    lo, hi = KERNEL_PLAUSIBLE
    verdict = PASS if lo <= share <= hi else FAIL
    return Check("kernels", name, verdict, f"{achieved:.1f} {unit} = {share * 100:.1f}% of "
                                           f"{peak:.1f} {unit} (plausible: {lo:.0%}-{hi:.0%})")


def gpm_expected_for(capability: Optional[Sequence[int]], device_name: Optional[str]) -> Optional[bool]:
    """GPM (DRAM bandwidth per trial) exists on Hopper (compute capability 9.0) and newer."""
    if capability:
        return int(capability[0]) >= 9
    if isinstance(device_name, str) and device_name.strip():
        return True if GPM_NAMES.search(device_name) else None
    return None
