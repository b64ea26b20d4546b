#!/usr/bin/env python3
"""Eager against torch.compile on one workload, through gpubench itself: a suite that
crosses `execs: [eager, compile]` with `repeats`, so the two modes' runs interleave and
share the machine's slow spells; reports, per mode (train, infer), the ratio of median
throughputs compile/eager per repeat round and overall, and compile_s (the compile time,
timed apart from the trials).

    .venv/bin/python benchmarks/exec_modes.py [--workload gpt] [--param layers=2 ...]
        [--repeats 3] [--threads 1] [--keep DIR] [--json]

Default: gpt tiny (layers=2, d_model=64, heads=4, seq_len=32, vocab=1024) on torch-cpu,
one thread (a 2-core VM is stable only so). The first compile in a fresh machine also
fills inductor's on-disk cache; later ones read it, so compile_s is shown per run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
TINY_GPT = {"layers": 2, "d_model": 64, "heads": 4, "seq_len": 32, "vocab": 1024}


def suite_yaml(workload: str, params: dict, backend: str, repeats: int, threads: int) -> dict:
    return {"defaults": {"trials": 3, "warmup_s": 1.0, "min_trial_s": 1.0, "threads": threads,
                         "repeats": repeats},
            "runs": [{"workloads": workload, "backends": backend, "modes": ["train", "infer"],
                      "params": params, "execs": ["eager", "compile"]}]}


def summarize(trials: pd.DataFrame) -> dict:
    ok = trials[trials["status"] == "ok"]
    per_run = ok.groupby(["mode", "exec", "run_id"], sort=False).agg(
        thr=("throughput_samples_per_s", "median"), compile_s=("compile_s", "first"),
        started=("started_utc", "first")).reset_index()
    out = {}
    for mode, rows in per_run.groupby("mode"):
        eager = rows[rows["exec"] == "eager"].sort_values("started")["thr"].to_numpy()
        compiled = rows[rows["exec"] == "compile"].sort_values("started")
        rounds = [c / e for c, e in zip(compiled["thr"].to_numpy(), eager)]
        out[mode] = {"eager_samples_per_s": float(pd.Series(eager).median()),
                     "compile_samples_per_s": float(compiled["thr"].median()),
                     "ratio_compile_over_eager": float(compiled["thr"].median() / pd.Series(eager).median()),
                     "ratio_per_round": [round(r, 3) for r in rounds],
                     "compile_s_per_run": [round(float(c), 2) for c in compiled["compile_s"]]}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="gpt")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--backend", default="torch-cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="keep the suite folder here")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    params = dict(p.split("=", 1) for p in args.param) if args.param else (
        TINY_GPT if args.workload == "gpt" else {})
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp)
        config = Path(tmp) / "exec_modes.yaml"
        config.write_text(yaml.safe_dump(suite_yaml(args.workload, params, args.backend,
                                                    args.repeats, args.threads)))
        done = subprocess.run([sys.executable, "-m", "gpubench", "suite", str(config), "--out",
                               str(out), "--quiet"], capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        folder = Path(done.stdout.strip().splitlines()[-1])
        result = {"workload": args.workload, "params": params, "backend": args.backend,
                  "threads": args.threads, "repeats": args.repeats,
                  "modes": summarize(pd.read_csv(folder / "trials.csv"))}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for mode, r in result["modes"].items():
        print(f"{mode}: eager {r['eager_samples_per_s']:,.0f} samples/s, compile "
              f"{r['compile_samples_per_s']:,.0f}: ratio {r['ratio_compile_over_eager']:.3f} "
              f"(per round {r['ratio_per_round']}); compile_s per run {r['compile_s_per_run']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
