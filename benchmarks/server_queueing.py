#!/usr/bin/env python3
"""The server scenario against queueing theory on the real clock and threads: what the
unit tests (tests/test_loadgen_queueing.py) check exactly on a virtual clock, measured
here as it happens on this machine, where sleeps overshoot and threads wake late.

A test step whose batch of n samples sleeps 2 ms + 0.1 ms x n (tests/suite_plugins.py),
one query at a time (max batch 1): an M/D/1 queue of capacity 1/S. Per round:
- 50% of capacity: the mean wait against Pollaczek-Khinchine's rho E[S^2] / (2 E[S] (1 -
  rho)) on the service times the probe measured, plus the harness's own hand-off (what a
  query finding the server idle waited); printed as measured / predicted;
- 150%: the latency's slope over the probe against rho - 1, and completions per second
  against 1 / E[S];
- `gpubench run --scenario server --find-max-qps` (batches of up to 8, 30 ms bound)
  against the capacity 8 / S(8).

    .venv/bin/python benchmarks/server_queueing.py [--rounds 3] [--seconds 2] [--json out.json]

On an idle machine the ratios sit near 1; a busy neighbour stretches the sleeps (rho
rises) and delays the threads (the hand-off grows), which is why these are figures here
and not assertions in a unit test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the sleeping test backend

from suite_plugins import ServiceTimeStep, service_s  # noqa: E402

from gpubench.measure.scenarios.serving.arrivals import poisson_schedule  # noqa: E402
from gpubench.measure.scenarios.serving.server import run_probe  # noqa: E402
from gpubench.measure.scenarios.serving.base import ServingSettings  # noqa: E402
from gpubench.telemetry import NullSampler  # noqa: E402

SEED = 7


def probe(load: float, seconds: float):
    """One probe at `load` x the one-at-a-time capacity: (trial, its schedule)."""
    step = ServiceTimeStep(1)
    step.start_serving(np.zeros((64, 2), np.float32))
    settings = ServingSettings(batch=1, min_duration_s=seconds, min_queries=1, warmup_s=0,
                               trials=1, seed=SEED)
    rate = load / service_s(1)
    trial, _ = run_probe(step.serve, 64, rate, SEED, settings, NullSampler(), 0)
    return trial, poisson_schedule(rate, SEED, seconds, 1)


def half_capacity(seconds: float) -> dict:
    trial, schedule = probe(0.5, seconds)
    service, latency = trial.service_s, trial.latencies_s
    rate = len(schedule) / schedule[-1]
    rho = rate * service.mean()
    predicted = rate * np.mean(service ** 2) / (2 * (1 - rho))
    idle = np.concatenate([[True], schedule[1:] > (schedule + latency)[:-1]])
    hand_off = latency[idle].mean() - service.mean()
    wait = latency.mean() - service.mean()
    return {"rho": rho, "service_ms": service.mean() * 1e3, "wait_ms": wait * 1e3,
            "pk_plus_hand_off_ms": (predicted + hand_off) * 1e3,
            "wait_over_prediction": wait / (predicted + hand_off), "hand_off_ms": hand_off * 1e3}


def over_capacity(seconds: float) -> dict:
    trial, schedule = probe(1.5, seconds)
    rho = len(schedule) / schedule[-1] * trial.service_s.mean()
    slope = float(np.polyfit(schedule, trial.latencies_s, 1)[0])
    served = trial.samples / trial.duration_s
    return {"rho": rho, "slope": slope, "slope_over_rho_minus_1": slope / (rho - 1),
            "served_over_capacity": served * trial.service_s.mean()}


def find_max_qps() -> dict:
    env = {**os.environ, "GPUBENCH_PLUGINS": "suite_plugins",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), str(REPO / "src"),
                                                       os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [sys.executable, "-m", "gpubench", "run", "-w", "linreg", "-b", "test-service-time",
             "--scenario", "server", "--find-max-qps", "--latency-bound-ms", "30",
             "--max-batch", "8", "--warmup-s", "0.1", "--min-trial-s", "0.5",
             "--telemetry", "none", "--out", out, "-q"],
            capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1:]}
        rows = pd.read_csv(next(Path(out).glob("*/trials.csv")))
    found = float(rows["max_qps"].dropna().iloc[0])
    capacity = 8 / service_s(8)
    return {"max_qps": found, "capacity_qps": capacity, "found_over_capacity": found / capacity,
            "probes": len(rows)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="each probe's schedule")
    ap.add_argument("--json", type=Path, help="write every round's figures here")
    args = ap.parse_args(argv)
    rounds = []
    for i in range(args.rounds):
        r = {"half": half_capacity(args.seconds), "over": over_capacity(args.seconds),
             "max_qps": find_max_qps()}
        rounds.append(r)
        h, o, m = r["half"], r["over"], r["max_qps"]
        print(f"round {i + 1}: 50%: rho {h['rho']:.2f}, wait {h['wait_ms']:.2f} ms vs "
              f"PK + hand-off {h['pk_plus_hand_off_ms']:.2f} ms ({h['wait_over_prediction']:.2f}x); "
              f"150%: slope {o['slope']:.3f} vs rho - 1 {o['rho'] - 1:.3f} "
              f"({o['slope_over_rho_minus_1']:.2f}x), served {o['served_over_capacity']:.2f}x "
              f"capacity; max QPS " + (f"{m['max_qps']:.0f} vs {m['capacity_qps']:.0f} "
                                       f"({m['found_over_capacity']:.2f}x, {m['probes']} probes)"
                                       if "error" not in m else f"failed: {m['error']}"),
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
