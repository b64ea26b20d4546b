"""What isolating each run costs, fresh interpreter against fork server (issue 29),
interleaved, in one sitting on one machine:

1. the fixed cost per run (wall time minus the requested warm-up and trials) of a short
   MNIST run, torch-cpu and tf-cpu, each isolation's launcher kept across the rounds as
   a suite keeps it (the fork server started once, its start reported apart);
2. `gpubench run --processes 5 --trials 2` against `--processes 1 --trials 10`, the
   whole command's wall time, per isolation;
3. the speed a forked worker measures against a fresh one (the framework's default
   threads): four runs a side, interleaved, then `gpubench compare` (inconclusive: the
   same speed).
4. configs/nightly.yaml's estimate (`suite --dry-run`'s figures, suite/estimate.py) as
   if every run ran here, per isolation.

    .venv/bin/python benchmarks/isolation_overhead.py [--rounds 4] [--skip-tf]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from gpubench.launch import make_launcher, run_one
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.request import RunRequest

ISOLATIONS = ("fresh", "fork")
SHORT = ProtocolConfig(trials=2, warmup_s=0.05, min_trial_s=0.05)
REQUESTED_S = SHORT.warmup_s + SHORT.trials * SHORT.min_trial_s  # what the run asked to measure
SPEED = ProtocolConfig(trials=6, warmup_s=0.5, min_trial_s=0.5)  # long enough to compare speed


def _request(out: Path, backend: str, isolation: str, protocol: ProtocolConfig,
             threads=1) -> RunRequest:
    return RunRequest(workload="mnist", backend=backend, protocol=protocol, telemetry="none",
                      out_dir=out, threads=threads, isolation=isolation)


def _wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def fixed_costs(out: Path, backend: str, rounds: int) -> Dict[str, List[float]]:
    """Per isolation: the first run's fixed cost, then each later run's."""
    launchers = {iso: make_launcher("process") for iso in ISOLATIONS}
    costs: Dict[str, List[float]] = {iso: [] for iso in ISOLATIONS}
    for _ in range(rounds + 1):  # the first round starts the fork server
        for iso in ISOLATIONS:
            req = _request(out / iso, backend, iso, SHORT)
            costs[iso].append(_wall(lambda: run_one(req, launchers[iso], 600)) - REQUESTED_S)
    return costs


def _gpubench(*args: str) -> float:
    return _wall(lambda: subprocess.run([sys.executable, "-m", "gpubench", *args], check=True,
                                        stdout=subprocess.DEVNULL))


def processes_ratio(out: Path) -> Dict[str, List[float]]:
    common = ("run", "-w", "mnist", "-b", "torch-cpu", "--threads", "1", "--telemetry", "none",
              "--warmup-s", "0.05", "--min-trial-s", "0.05", "-q", "--out", str(out))
    walls: Dict[str, List[float]] = {}
    for iso in ISOLATIONS:
        many = _gpubench(*common, "--isolation", iso, "--processes", "5", "--trials", "2")
        one = _gpubench(*common, "--isolation", iso, "--processes", "1", "--trials", "10")
        walls[iso] = [many, one]
    return walls


def same_speed(out: Path, runs: int) -> str:
    launcher = make_launcher("process")
    for _ in range(runs):
        for iso in ISOLATIONS:
            # threads unset: each child starts the framework's default pool itself
            run_one(_request(out / iso, "torch-cpu", iso, SPEED, threads=None), launcher, 600)
    done = subprocess.run([sys.executable, "-m", "gpubench", "compare", str(out / "fresh"),
                           str(out / "fork"), "--format", "markdown"],
                          capture_output=True, text=True)
    return done.stdout


def nightly_estimate_s(isolation: str) -> float:
    """The nightly suite's runs' cost by suite/estimate.py's figures, none refused."""
    from gpubench.launch.forked import family_of
    from gpubench.suite.estimate import SERVER_START_S, run_cost
    from gpubench.suite.plan import plan_suite

    plan = plan_suite(Path(__file__).resolve().parent.parent / "configs" / "nightly.yaml",
                      Path("unused"))
    runs = [p.run.with_values(isolation=isolation) for p in plan.runs]
    servers = {(r.setting("environment"), family_of(r.backend)) for r in runs}
    return (sum(run_cost(r).seconds for r in runs)
            + (len(servers) * SERVER_START_S if isolation == "fork" else 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--skip-tf", action="store_true")
    args = parser.parse_args()
    med = statistics.median
    backends = ("torch-cpu",) if args.skip_tf else ("torch-cpu", "tf-cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print(f"1. fixed cost per run (wall - {REQUESTED_S:g} s requested), mnist, "
              f"{args.rounds} interleaved rounds after a first")
        for backend in backends:
            costs = fixed_costs(out / backend, backend, args.rounds)
            fresh, fork = med(costs["fresh"][1:]), med(costs["fork"][1:])
            print(f"  {backend:10s} fresh {fresh:6.2f} s   fork {fork:6.2f} s   "
                  f"fork/fresh {fork / fresh:5.2f}   (first run: fresh {costs['fresh'][0]:.2f} s,"
                  f" fork {costs['fork'][0]:.2f} s with the server's start)")
        print("2. gpubench run --processes 5 --trials 2 against --processes 1 --trials 10, "
              "torch-cpu mnist")
        for iso, (many, one) in processes_ratio(out / "processes").items():
            print(f"  {iso:5s}  {many:6.2f} s against {one:6.2f} s: {many / one:5.2f}x")
        print("3. fork against fresh, 4 runs a side interleaved (torch-cpu mnist, "
              f"{SPEED.trials} trials of {SPEED.min_trial_s:g} s): gpubench compare")
        print(same_speed(out / "speed", 4))
    print("4. configs/nightly.yaml estimated as if no run were refused here: "
          + ", ".join(f"{iso} {nightly_estimate_s(iso) / 60:.0f} min" for iso in ISOLATIONS))


if __name__ == "__main__":
    main()
