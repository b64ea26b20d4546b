"""Does `gpubench compare` cry wolf? Real A/A pairs and real 10%-slowdown pairs, run
through the real CLI on this machine, interleaved, for one or more run settings.

For each round and each setting, three runs in a shuffled order: A and A' (the same
configuration) and S (a slower one: the MNIST MLP with a wider hidden layer, about 10%
fewer samples/s); with --suite, the three as one `gpubench suite` (A, S, A': the suite
interleaves runs and, with `processes`, their worker processes round by round). Then `gpubench compare A A'` (an A/A pair: `slower` or `faster` is a
false alarm) and `gpubench compare A S --by params` (a real slowdown: `slower` is a
catch). Prints, per setting: false alarms and catches out of N, the slowdown actually
measured (median of S/A over the rounds), and the wall time of one run.

    .venv/bin/python benchmarks/aa_false_alarms.py [--rounds 10]
        [--setting "processes=1 trials=6"] [--setting "processes=4 trials=2"]
        [--slow-param hidden=160] [--suite] [--json out.json] [--keep DIR]

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
from typing import Dict, List, Tuple

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


def suite_round(out: Path, setting: str, slow_param: str) -> Tuple[Dict[str, Path], float]:
    """A, A' and S as one suite: its runs, and their worker processes, interleaved
    (A, S, A' in each round of processes). Returns the run folders by name and the
    suite's wall time per run."""
    out.mkdir(parents=True)
    keys = dict(item.partition("=")[::2] for item in setting.split())
    settings = "".join(f", {k}: {v}" for k, v in keys.items())
    (out / "suite.yaml").write_text(
        "runs:\n"
        f"  - {{workloads: mnist, backends: torch-cpu, params: {{{BASE_PARAM.replace('=', ': ')}}}, "
        f"repeats: 2{settings}}}\n"
        f"  - {{workloads: mnist, backends: torch-cpu, params: {{{slow_param.replace('=', ': ')}}}"
        f"{settings}}}\n")
    t0 = time.perf_counter()
    proc = gpubench("suite", str(out / "suite.yaml"), "--out", str(out / "results"), "-q")
    if proc.returncode != 0:
        raise SystemExit(f"gpubench suite failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    wall = (time.perf_counter() - t0) / 3
    (suite,) = (out / "results").iterdir()
    runs: Dict[str, Path] = {}
    for folder in sorted((suite / "runs").iterdir()):  # named by start time
        params = json.loads((folder / "run.json").read_text())["config"]["params"]
        if slow_param in {f"{k}={v}" for k, v in params.items()}:
            runs["slow"] = folder
        else:
            runs["a" if "a" not in runs else "a2"] = folder
    return runs, wall


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
    ap.add_argument("--slow-param", default="hidden=160",
                    help="the slower configuration's workload parameter (default hidden=160, "
                         "about 10%% fewer samples/s than 128 here)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suite", action="store_true",
                    help="run each round's A, A' and S as one suite (runs and worker processes "
                         "interleaved) instead of three separate gpubench runs")
    ap.add_argument("--json", type=Path, help="write every verdict here")
    ap.add_argument("--keep", type=Path, help="keep the run folders here (default: a "
                    "temporary folder, removed at the end)")
    args = ap.parse_args()
    settings = args.setting or [""]
    shuffle = random.Random(args.seed)
    record: Dict[str, List[Dict[str, object]]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="gpubench-aa-") as tmp:
        tmp = str(args.keep) if args.keep else tmp
        for i in range(args.rounds):
            for s_index, spec in enumerate(settings):
                folder = Path(tmp) / f"s{s_index}-r{i}"
                if args.suite:
                    paths, wall = suite_round(folder, spec, args.slow_param)
                    order, walls = ["a", "slow", "a2"], [wall] * 3
                else:
                    runs = [("a", BASE_PARAM), ("a2", BASE_PARAM), ("slow", args.slow_param)]
                    shuffle.shuffle(runs)
                    walls = [run(folder / name, options(spec), param) for name, param in runs]
                    paths = {name: folder / name for name, _ in runs}
                    order = [name for name, _ in runs]
                aa = verdict(str(paths["a"]), str(paths["a2"]))
                slow = verdict(str(paths["a"]), str(paths["slow"]), "--by", "params",
                               "--baseline", BASE_PARAM)
                record[spec].append({
                    "round": i, "order": order, "run_wall_s": walls,
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
