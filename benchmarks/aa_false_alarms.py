"""Does `gpubench compare` cry wolf? Real A/A pairs and real 10%-slowdown pairs, run
through the real CLI on this machine, interleaved, for one or more run settings.

For each round and each setting, runs in a shuffled order: A and A' (the same
configuration) and one S per slower configuration (the MNIST MLP with a wider hidden
layer: hidden=160, about 10% fewer samples/s, and, between separate runs, hidden=232,
about 25% fewer); with --suite, A, A' and S (10%) as one `gpubench suite` (the suite
interleaves runs and, with `processes`, their worker processes round by round). Then
`gpubench compare A A'` (an A/A pair: `slower` or `faster` is a false alarm) and
`gpubench compare A S --by params` (a real slowdown: `slower` is a catch); with --suite
each compare twice, paired (the default: Wilcoxon on the suite's rounds) and
`--unpaired` (Mann-Whitney), on the same runs. Prints, per setting: false alarms and
catches out of N, the slowdown actually measured (median of S/A over the rounds), and
the wall time of one run.

    .venv/bin/python benchmarks/aa_false_alarms.py [--rounds 10]
        [--setting "processes=1 trials=6"] [--setting "processes=4 trials=2"]
        [--slow-param hidden=160 ...] [--suite] [--json out.json] [--keep DIR]

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


def suite_round(out: Path, setting: str, slow_params: List[str]) -> Tuple[Dict[str, Path], float]:
    """A, A' and each S as one suite: its runs, and their worker processes, interleaved
    (A, S, A' in each round of processes). Returns the run folders by name ("a", "a2",
    and each slow param) and the suite's wall time per run."""
    out.mkdir(parents=True)
    keys = dict(item.partition("=")[::2] for item in setting.split())
    settings = "".join(f", {k}: {v}" for k, v in keys.items())
    entry = "  - {{workloads: mnist, backends: torch-cpu, params: {{{param}}}{more}}}\n"
    (out / "suite.yaml").write_text(
        "runs:\n" + entry.format(param=BASE_PARAM.replace("=", ": "), more=", repeats: 2" + settings)
        + "".join(entry.format(param=p.replace("=", ": "), more=settings) for p in slow_params))
    t0 = time.perf_counter()
    proc = gpubench("suite", str(out / "suite.yaml"), "--out", str(out / "results"), "-q")
    if proc.returncode != 0:
        raise SystemExit(f"gpubench suite failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    wall = (time.perf_counter() - t0) / (2 + len(slow_params))
    (suite,) = (out / "results").iterdir()
    runs: Dict[str, Path] = {}
    for folder in sorted((suite / "runs").iterdir()):  # named by start time
        params = json.loads((folder / "run.json").read_text())["config"]["params"]
        named = {f"{k}={v}" for k, v in params.items()}
        slow = [p for p in slow_params if p in named]
        if slow:
            runs[slow[0]] = folder
        else:
            runs["a" if "a" not in runs else "a2"] = folder
    return runs, wall


def verdict(*args: str) -> Dict[str, object]:
    proc = gpubench("compare", *args, "--format", "json", "--fail-on", "never")
    if proc.returncode == 2:  # refused (e.g. every trial of a side contended): no verdict
        return {"verdict": "refused", "ratio": float("nan"), "error": proc.stderr.strip()}
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


KEPT = ("verdict", "ratio", "p_value", "unit", "test", "noise_pct", "threshold_pct", "note")
SEPARATE_SLOW = ["hidden=160", "hidden=232"]  # about 10% and 25% fewer samples/s here
# (hidden=224 measured 23.2% fewer than 128 in one check of 4 trials a side; 232 by
# the same line through the two: about 25%)
SUITE_SLOW = ["hidden=160"]


def judged(paths: Dict[str, Path], slow_params: List[str], unpaired: bool) -> Dict[str, Dict]:
    """The A/A verdict and each slowdown's, with the paired test or --unpaired."""
    flag = ["--unpaired"] if unpaired else []
    out = {"aa": verdict(str(paths["a"]), str(paths["a2"]), *flag)}
    for param in slow_params:
        out[param] = verdict(str(paths["a"]), str(paths[param]), "--by", "params",
                             "--baseline", BASE_PARAM, *flag)
    return {k: {f: v.get(f) for f in KEPT} for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--setting", action="append", default=[],
                    help="run options as key=value, space separated (repeatable)")
    ap.add_argument("--slow-param", action="append", default=None,
                    help="a slower configuration's workload parameter (repeatable; default "
                         f"{' and '.join(SEPARATE_SLOW)} between separate runs, about 10%% and "
                         f"25%% fewer samples/s than hidden=128 here; {SUITE_SLOW[0]} with --suite)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suite", action="store_true",
                    help="run each round's A, A' and S as one suite (runs and worker processes "
                         "interleaved) instead of separate gpubench runs; each compare is made "
                         "paired (the default) and --unpaired")
    ap.add_argument("--json", type=Path, help="write every verdict here")
    ap.add_argument("--keep", type=Path, help="keep the run folders here (default: a "
                    "temporary folder, removed at the end)")
    args = ap.parse_args()
    settings = args.setting or [""]
    slow_params = args.slow_param or (SUITE_SLOW if args.suite else SEPARATE_SLOW)
    tests = ["paired", "unpaired"] if args.suite else ["default"]
    shuffle = random.Random(args.seed)
    record: Dict[str, List[Dict[str, object]]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory(prefix="gpubench-aa-") as tmp:
        tmp = str(args.keep) if args.keep else tmp
        for i in range(args.rounds):
            for s_index, spec in enumerate(settings):
                folder = Path(tmp) / f"s{s_index}-r{i}"
                if args.suite:
                    paths, wall = suite_round(folder, spec, slow_params)
                    order = ["a", *slow_params, "a2"]
                    walls = [wall] * len(order)
                else:
                    runs = [("a", BASE_PARAM), ("a2", BASE_PARAM)] + [(p, p) for p in slow_params]
                    shuffle.shuffle(runs)
                    walls = [run(folder / name.replace("=", "-"), options(spec), param)
                             for name, param in runs]
                    paths = {name: folder / name.replace("=", "-") for name, _ in runs}
                    order = [name for name, _ in runs]
                verdicts = {test: judged(paths, slow_params, test == "unpaired") for test in tests}
                record[spec].append({"round": i, "order": order, "run_wall_s": walls,
                                     "verdicts": verdicts})
                for test, v in verdicts.items():
                    shown = ", ".join(f"{p} {v[p]['verdict']} ({(v[p]['ratio'] - 1) * 100:+.1f}%)"
                                      for p in slow_params)
                    print(f"round {i + 1}/{args.rounds} [{spec or 'defaults'}, {test}]: A/A "
                          f"{v['aa']['verdict']} ({(v['aa']['ratio'] - 1) * 100:+.1f}%), {shown}",
                          flush=True)
                if args.json:  # after every round: an interrupted benchmark keeps its rounds
                    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\n{'setting':<26} {'test':<9} {'A/A false alarms':>17} "
          + " ".join(f"{p + ' caught':>17} {'S/A':>7}" for p in slow_params) + f" {'s per run':>10}")
    for spec, rounds in record.items():
        n = len(rounds)
        walls = sorted(w for r in rounds for w in r["run_wall_s"])
        for test in tests:
            v = [r["verdicts"][test] for r in rounds]
            alarms = sum(x["aa"]["verdict"] in ("slower", "faster") for x in v)
            cells = []
            for p in slow_params:
                caught = sum(x[p]["verdict"] == "slower" for x in v)
                ratios = sorted(x[p]["ratio"] for x in v if x[p]["ratio"] == x[p]["ratio"])
                cells.append(f"{caught:>12}/{n:<4} {(ratios[len(ratios) // 2] - 1) * 100:>+6.1f}%")
            refused = sum(x[k]["verdict"] == "refused" for x in v for k in x)
            print(f"{spec or 'defaults':<26} {test:<9} {alarms:>12}/{n:<4} " + " ".join(cells)
                  + f" {walls[len(walls) // 2]:>10.1f}"
                  + (f"  ({refused} compare(s) refused: every trial of a side contended)"
                     if refused else ""))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
