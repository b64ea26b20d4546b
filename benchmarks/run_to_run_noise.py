"""How far does a run's median move from one invocation to the next? N separately
invoked `gpubench run` (the MNIST MLP on torch-cpu, defaults) through the real CLI, one
after another; prints each run's median throughput, the robust CV of the per-run medians
(compare_stats.noise_floor: 1.4826 x MAD of their logs, the figure compare's prior is)
and a 95% interval of it (a percentile bootstrap over runs, and the order-statistics
interval of the absolute log deviations' median scaled the same way).

    .venv/bin/python benchmarks/run_to_run_noise.py [--runs 20] [--run-option "--trials 3"]
        [--workload mnist] [--backend torch-cpu] [--json out.json] [--keep DIR]

The figure it prints is results/noise_priors.py's CPU_RUN_TO_RUN_NOISE when measured
with the defaults on a quiet machine (nothing else running): a busy neighbour is noise
it will find, and would make compare's prior too wide.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np

from gpubench.results.compare_stats import MAD_TO_SD, noise_floor
from gpubench.results.reader import read_trials
from gpubench.stats import median_ci


def one_run(out: Path, workload: str, backend: str, extra: List[str]) -> float:
    """One `gpubench run -q`; returns the median throughput of its ok trials."""
    proc = subprocess.run([sys.executable, "-m", "gpubench", "run", "-w", workload, "-b", backend,
                           "-q", "--out", str(out), *extra], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gpubench run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    (trials_csv,) = out.rglob("trials.csv")
    trials = read_trials(trials_csv)
    ok = trials[trials["status"] == "ok"]["throughput_samples_per_s"].astype(float)
    return float(ok.median())


def intervals(medians: np.ndarray, seed: int = 0, draws: int = 4000):
    """(bootstrap low, high), (order-statistics low, high) of the robust CV."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, medians.size, size=(draws, medians.size))
    boot = np.array([noise_floor(medians[p]) for p in picks])
    boot = boot[np.isfinite(boot)]
    b_low, b_high = np.percentile(boot, [2.5, 97.5]) if boot.size else (math.nan, math.nan)
    logs = np.log(medians)
    dev = np.abs(logs - np.median(logs))
    low, high = median_ci(dev)  # NaN for fewer than 6 runs
    return (float(b_low), float(b_high)), (math.expm1(MAD_TO_SD * low), math.expm1(MAD_TO_SD * high))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--workload", default="mnist")
    ap.add_argument("--backend", default="torch-cpu")
    ap.add_argument("--run-option", action="append", default=[],
                    help="more `gpubench run` options, as one shell-quoted string (repeatable), "
                         "e.g. --run-option '--trials 3 --min-trial-s 0.05' for a smoke test")
    ap.add_argument("--json", type=Path, help="write the medians and figures here")
    ap.add_argument("--keep", type=Path, help="keep the run folders here")
    args = ap.parse_args()
    if args.runs < 3:
        raise SystemExit("--runs: 3 or more (the spread of fewer is not defined)")
    extra = [word for option in args.run_option for word in shlex.split(option)]
    medians, walls = [], []
    with tempfile.TemporaryDirectory(prefix="gpubench-r2r-") as tmp:
        root = args.keep or Path(tmp)
        for i in range(args.runs):
            t0 = time.perf_counter()
            medians.append(one_run(root / f"run{i:02d}", args.workload, args.backend, extra))
            walls.append(time.perf_counter() - t0)
            print(f"run {i + 1}/{args.runs}: median {medians[-1]:,.0f} samples/s "
                  f"({walls[-1]:.1f} s)", flush=True)
    values = np.array(medians)
    cv = noise_floor(values)
    (b_low, b_high), (o_low, o_high) = intervals(values)
    print(f"\n{args.workload} {args.backend} {' '.join(extra) or '(defaults)'}: {values.size} runs, "
          f"median of medians {np.median(values):,.0f} samples/s, range "
          f"{values.min():,.0f}-{values.max():,.0f}")
    print(f"run-to-run noise (robust CV of per-run medians): {cv:.2%}")
    print(f"95% interval: bootstrap over runs {b_low:.2%}-{b_high:.2%}; order statistics "
          + (f"{o_low:.2%}-{o_high:.2%}" if math.isfinite(o_low) else "none (fewer than 6 runs)"))
    if args.json:
        args.json.write_text(json.dumps({
            "workload": args.workload, "backend": args.backend, "options": extra,
            "medians": medians, "wall_s": walls, "robust_cv": cv,
            "bootstrap_ci": [b_low, b_high], "order_ci": [o_low, o_high]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
