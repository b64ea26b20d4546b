"""What isolating each run in a fresh worker process costs: the wall time of a short
torch-cpu run through the process launcher (process start + imports + the run)
against the same run through the inline launcher (in this process), interleaved; plus the bare costs of starting Python with gpubench's
worker module and of importing torch.

    .venv/bin/python benchmarks/isolation_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpubench.launch import make_launcher
from gpubench.measure.protocol import ProtocolConfig
from gpubench.measure.runner import RunRequest
from gpubench.results.writer import new_run_id

PROTOCOL = ProtocolConfig(trials=1, warmup_s=0.05, min_trial_s=0.05)


def _request(out: Path) -> RunRequest:
    return RunRequest(workload="linreg", backend="torch-cpu", protocol=PROTOCOL,
                      telemetry="none", out_dir=out, folder=out / f"bench-{new_run_id()}",
                      threads=1)


def _wall(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _python(code: str) -> float:
    return _wall(lambda: subprocess.run([sys.executable, "-c", code], check=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    isolated, in_process, bare, worker_import, torch_import = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        process, inline = make_launcher("process"), make_launcher("inline")
        inline.launch(_request(out))  # torch imported in this process once, as a suite parent would not
        for _ in range(args.rounds):
            isolated.append(_wall(lambda: process.launch(_request(out), timeout_s=120)))
            in_process.append(_wall(lambda: inline.launch(_request(out))))
            bare.append(_python("pass"))
            worker_import.append(_python("import gpubench.launch.worker"))
            torch_import.append(_python("import torch"))
    med = statistics.median
    print(f"{args.rounds} interleaved rounds, linreg on torch-cpu, 1 trial of 0.05 s")
    print(f"  run in a worker      {med(isolated):6.2f} s")
    print(f"  run in-process       {med(in_process):6.2f} s")
    print(f"  isolation overhead   {med(isolated) - med(in_process):6.2f} s per run")
    print(f"    python start       {med(bare):6.2f} s")
    print(f"    + gpubench worker  {med(worker_import) - med(bare):6.2f} s (imports: pandas, numpy, ...)")
    print(f"    + import torch     {med(torch_import) - med(bare):6.2f} s")


if __name__ == "__main__":
    main()
