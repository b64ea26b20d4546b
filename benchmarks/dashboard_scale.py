"""How long `gpubench dashboard` takes on a synthetic fleet, stage by stage: the trial
rows of RUNS runs (CONFIGS configurations x HOSTS machines x nights, 6 trials a run,
a 10% step and a driver change in one series in ten) are made in memory, then
build_dashboard's stages are timed (per-run tables, change points, pages). Reading
the source (folders or a store) is not included: it is the store's to measure.

    python benchmarks/dashboard_scale.py --runs 10000
    python benchmarks/dashboard_scale.py --runs 100000 --configs 520 --hosts 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def fleet(runs: int, configs: int, hosts: int, trials: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    series = configs * hosts
    nights = max(1, runs // series)
    n = series * nights
    s = np.repeat(np.arange(series), nights)  # a run's series
    night = np.tile(np.arange(nights), series)
    config, host = s % configs, s // configs
    level = 1000.0 * (1 + config % 37)
    late = (night >= nights // 2) & (s % 10 == 0)
    run_value = level * np.where(late, 0.9, 1.0) * (1 + 0.02 * rng.standard_normal(n))
    r = np.repeat(np.arange(n), trials)
    value = run_value[r] * (1 + 0.01 * rng.standard_normal(n * trials))
    day = pd.Timestamp("2026-01-01T02:00:00Z") + pd.to_timedelta(night, unit="D")
    stamps = np.asarray(day.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return pd.DataFrame({
        "run_id": np.char.add("r", r.astype(str)),
        "workload": np.char.add("w", config[r].astype(str)),
        "backend": np.array(["torch-cuda", "tf-gpu", "onnxruntime-cuda"])[config[r] % 3],
        "mode": np.array(["train", "infer"])[(config[r] // 3) % 2],
        "precision": "fp32", "batch_size": (64 * (1 + config[r] // 360)).astype(float),
        "params": "", "device_name": "Test GPU",
        "host": np.char.add("box-", host[r].astype(str)),
        "started_utc": stamps[r], "driver_version": np.where(late[r], "550.2", "535.1"),
        "cuda_version": "12.4", "framework": "torch", "framework_version": "2.3",
        "status": "ok", "throughput_samples_per_s": value, "source": "synthetic",
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--configs", type=int, default=520)
    ap.add_argument("--hosts", type=int, default=3)
    args = ap.parse_args()

    from gpubench.results.dashboard import build_dashboard

    trials = fleet(args.runs, args.configs, args.hosts)
    stages = {}
    clock = [time.perf_counter()]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        key = stage.split(" in ")[0] if " runs in " in stage else stage
        stages[key] = stages.get(key, 0.0) + now - clock[0]
        clock[0] = now

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_dashboard(trials, Path(tmp) / "site", source="synthetic", progress=progress)
        total = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (Path(tmp) / "site").rglob("*") if p.is_file())
    print(f"{built.runs:,} runs, {len(trials):,} trial rows, {built.series:,} series, "
          f"{built.regressions} regressions: {total:.1f} s, site {size / 1e6:.0f} MB")
    for stage, seconds in stages.items():
        print(f"  {stage}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
