"""Does `gpubench compare` cry wolf? Real A/A pairs and real 10%-slowdown pairs, run
through the real CLI on this machine, interleaved, for one or more run settings.

For each round and each setting, three runs in a shuffled order: A and A' (the same
configuration) and S (a slower one: the MNIST MLP with a wider hidden layer, about 10%
fewer samples/s). Then `gpubench compare A A'` (an A/A pair: `slower` or `faster` is a
false alarm) and `gpubench compare A S --by params` (a real slowdown: `slower` is a
catch). Prints, per setting: false alarms and catches out of N, the slowdown actually
measured (median of S/A over the rounds), and the wall time of one run.

    .venv/bin/python benchmarks/aa_false_alarms.py [--rounds 10]
        [--setting "processes=1 trials=6"] [--setting "processes=4 trials=2"]
        [--slow-param hidden=144] [--json out.json]

Each --setting holds `gpubench run` options as key=value (key = the option without
its dashes); none: gpubench's defaults. Run it on a quiet machine: it measures how
often noise is called a change, and a busy neighbour is noise it will find.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

WORKLOAD = ["-w", "mnist", "-b", "torch-cpu"]
BASE_PARAM = "hidden=128"  # the workload's default width


def gpubench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpubench", *args], capture_output=True,
                          text=True)


def run(out: Path, setting: List[str], param: str) -> float:
    """One `gpubench run`; returns its wall time (s)."""
    t0 = time.perf_counter()
    proc = gpubench("run", *WORKLOAD, "-p", param, "--out", str(out), "-q", *setting)
    if proc.returncode != 0:
        raise SystemExit(f"gpubench run failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def verdict(*args: str) -> Dict[str, object]:
    proc = gpubench("compare", *args, "--format", "json", "--fail-on", "never")
    if proc.returncode != 0:
        raise SystemExit(f"gpubench compare failed ({proc.returncode}): {proc.stderr.strip()}")
    rows = json.loads(proc.stdout)["rows"]
    judged = [r for r in rows if r["verdict"] not in ("base_only", "new_only")]
    assert len(judged) == 1, rows
    return judged[0]


def options(spec: str) -> List[str]:
    out: List[str] = []
    for item in spec.split():
        key, _, value = item.partition("=")
        out += [f"--{key.replace('_', '-')}", value]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--setting", action="append", default=[],
                    help="run options as key=value, space separated (repeatable)")
    ap.add_argument("--slow-param", default="hidden=144",
                    help="the slower configuration's workload parameter (default hidden=144)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write every verdict here")
    args = ap.parse_args()
    settings = args.setting or [""]
    shuffle = random.Random(args.seed)
    record: Dict[str, List[Dict[str, object]]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="gpubench-aa-") as tmp:
        for i in range(args.rounds):
            for s_index, spec in enumerate(settings):
                folder = Path(tmp) / f"s{s_index}-r{i}"
                runs = [("a", BASE_PARAM), ("a2", BASE_PARAM), ("slow", args.slow_param)]
                shuffle.shuffle(runs)
                walls = [run(folder / name, options(spec), param) for name, param in runs]
                aa = verdict(str(folder / "a"), str(folder / "a2"))
                slow = verdict(str(folder / "a"), str(folder / "slow"), "--by", "params",
                               "--baseline", BASE_PARAM)
                record[spec].append({
                    "round": i, "order": [n for n, _ in runs], "run_wall_s": walls,
                    "aa": {k: aa[k] for k in ("verdict", "ratio", "p_value", "unit",
                                              "noise_pct", "threshold_pct", "note")},
                    "slow": {k: slow[k] for k in ("verdict", "ratio", "p_value", "unit",
                                                  "noise_pct", "threshold_pct", "note")}})
                print(f"round {i + 1}/{args.rounds} [{spec or 'defaults'}]: A/A {aa['verdict']} "
                      f"({(aa['ratio'] - 1) * 100:+.1f}%), slowdown {slow['verdict']} "
                      f"({(slow['ratio'] - 1) * 100:+.1f}%)", flush=True)
    print(f"\n{'setting':<28} {'A/A false alarms':>17} {'10% caught':>11} "
          f"{'slowdown (median)':>18} {'s per run':>10}")
    for spec, rounds in record.items():
        n = len(rounds)
        alarms = sum(r["aa"]["verdict"] in ("slower", "faster") for r in rounds)
        caught = sum(r["slow"]["verdict"] == "slower" for r in rounds)
        ratios = sorted(r["slow"]["ratio"] for r in rounds)
        walls = sorted(w for r in rounds for w in r["run_wall_s"])
        print(f"{spec or 'defaults':<28} {alarms:>12}/{n:<4} {caught:>6}/{n:<4} "
              f"{(ratios[n // 2] - 1) * 100:>+17.1f}% {walls[len(walls) // 2]:>10.1f}")
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
