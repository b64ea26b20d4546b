"""A fleet's year in a results store: how long history, compare, store add and the
dashboard take at 100,000 runs, against today's folder path at 1,000, in one run.

It builds a synthetic store from one real run folder (its trial rows and run.json):
--machines machines (each its own GPU model and driver schedule), a night each day for
--nights nights, as many configurations a machine and night as make --runs runs
(copies of the real run's rows with new run ids, hosts, start times, a variant per
configuration, nightly noise, a few steps: some at a machine's driver upgrade, some
anywhere, some small level changes). The store's files are written straight in the
layout (results/store/layout.py: one file per night, machine and table, as a nightly
`store add` writes them). Then, each command in a fresh process (wall seconds, peak
resident memory):

- `gpubench store add` of one 520-run night (run folders written from the same rows;
  skipped when this gpubench has no `store` command);
- `gpubench history STORE` over the whole store;
- `gpubench compare STORE --where-base date=D1 --where-new date=D2` (two nights);
- `gpubench dashboard STORE -o DIR` (skipped when this gpubench has none);
- today's path: `gpubench history FOLDER` over 1,000 run folders (the first nights'
  runs), and `history` of a store of the same 1,000 runs, with their verdicts compared.

    .venv/bin/python benchmarks/store_scale.py --from RUN_FOLDER [--runs 100000]
        [--nights 365] [--machines 4] [--folder-runs 1000] [--work DIR] [--json out.json]

Targets (issue 31): store add <= 5 s, history <= 10 s and <= 2 GB, compare <= 2 s,
dashboard <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

DEVICES = ("Tesla V100-SXM2-32GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA L4")
START = pd.Timestamp("2025-01-01T02:00:00Z")
FLAGS = ("throttled", "contended", "reached", "accuracy_ok", "latency_bound_met")


def _arrow(frame: pd.DataFrame, numeric) -> "pa.Table":
    import pyarrow as pa

    arrays, fields = [], []
    for column in frame.columns:
        if column in numeric:
            arrays.append(pa.array(pd.to_numeric(frame[column], errors="coerce").to_numpy(float),
                                   type=pa.float64(), from_pandas=True))
            fields.append(pa.field(column, pa.float64()))
        else:
            values = [None if v is None or v != v else str(v) for v in frame[column].tolist()]
            arrays.append(pa.array(values, type=pa.string()))
            fields.append(pa.field(column, pa.string()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class Fleet:
    """The synthetic fleet: the real run's rows, and who runs what when."""

    def __init__(self, run: Path, runs: int, nights: int, machines: int, seed: int = 31):
        from gpubench.results.reader import NUMERIC_COLUMNS, read_meta, read_trials

        rows = read_trials(run / "trials.csv")
        rows = rows[rows["status"] == "ok"].reset_index(drop=True)
        if rows.empty:
            raise SystemExit(f"{run}: no ok trial to copy")
        self.rows, self.meta = rows, read_meta(run)
        self.run_json = json.dumps(self.meta)
        self.numeric = set(NUMERIC_COLUMNS)
        self.machines, self.nights, self.runs = machines, nights, runs
        self.per_night = max(1, math.ceil(runs / (nights * machines)))  # configurations a machine
        rng = np.random.default_rng(seed)
        shape = (machines, self.per_night)
        self.level = float(rows["throughput_samples_per_s"].median()) * rng.lognormal(0, 0.5, shape)
        self.upgrade = rng.integers(nights // 4, 3 * nights // 4, machines)  # driver upgrade night
        self.hit_by_upgrade = rng.random(shape) < 0.10  # 7% slower on the new driver
        self.step_night = np.where(rng.random(shape) < 0.03, rng.integers(20, nights, shape), nights + 1)
        self.step = rng.choice([-0.12, -0.08, 0.08], shape)
        self.drift = np.where(rng.random(shape) < 0.05, rng.normal(0, 0.02, shape), 0.0)
        self.seed = seed
        self.template = _arrow(pd.concat([rows] * self.per_night, ignore_index=True),
                               self.numeric | {"source"})

    def host(self, m: int) -> str:
        return f"gpu-{m:02d}"

    def started(self, night: int, m: int) -> pd.Timestamp:
        return START + pd.Timedelta(days=night, minutes=7 * m)

    def night(self, night: int, m: int, configs: Optional[int] = None) -> pd.DataFrame:
        """The trial rows of machine m's runs of one night (a pandas frame)."""
        k = self.per_night if configs is None else configs
        frame = pd.concat([self.rows] * k, ignore_index=True).copy()  # one block a dtype
        self._fill(frame, night, m, k)
        return frame

    def _values(self, night: int, m: int, k: int) -> Dict[str, np.ndarray]:
        """Machine m's night of k configurations (the same draws whenever asked)."""
        rng = np.random.default_rng((self.seed, night, m, k))
        t = len(self.rows)
        c = np.arange(k) % self.per_night
        level = self.level[m, c] * (1 + self.drift[m, c] * (night > self.nights // 2))
        level = level * np.where(night >= self.step_night[m, c], 1 + self.step[m, c], 1.0)
        new_driver = night >= self.upgrade[m]
        level = level * np.where(new_driver & self.hit_by_upgrade[m, c], 0.93, 1.0)
        run_level = level * (1 + 0.01 * rng.standard_normal(k))
        thr = np.repeat(run_level, t) * (1 + 0.004 * rng.standard_normal(k * t))
        base = self.rows["throughput_samples_per_s"].to_numpy(float)
        scale = thr / np.tile(base, k)
        started = f"{self.started(night, m):%Y-%m-%dT%H:%M:%SZ}"
        return {
            "run_id": np.repeat([f"{m:02x}{night:04x}{i:05x}" for i in range(k)], t),
            "params": np.repeat([f"variant={i % self.per_night}" for i in range(k)], t),
            "host": np.full(k * t, self.host(m)), "device_name": np.full(k * t, DEVICES[m % len(DEVICES)]),
            "device_uuid": np.full(k * t, f"GPU-{m:08d}"), "started_utc": np.full(k * t, started),
            "suite_id": np.full(k * t, f"{night:04d}{m:02d}"),
            "driver_version": np.full(k * t, "560.35.03" if new_driver else "550.54.15"),
            "throughput_samples_per_s": thr,
            "duration_s": np.tile(self.rows["duration_s"].to_numpy(float), k) / scale,
            "latency_p50_ms": np.tile(self.rows["latency_p50_ms"].to_numpy(float), k) / scale,
            "source": np.full(k * t, f"/fleet/{self.host(m)}/night-{night:04d}/trials.csv"),
        }

    def _fill(self, frame: pd.DataFrame, night: int, m: int, k: int) -> None:
        for column, values in self._values(night, m, k).items():
            frame[column] = values

    def arrow_night(self, night: int, m: int, k: int):
        import pyarrow as pa

        table = self.template.slice(0, k * len(self.rows))
        for column, values in self._values(night, m, k).items():
            i = table.schema.get_field_index(column)
            kind = pa.float64() if column in self.numeric else pa.string()
            array = pa.array(values, type=kind) if i >= 0 else None
            table = table.set_column(i, column, array) if i >= 0 else \
                table.append_column(column, pa.array(values, type=kind))
        return table

    def runs_of(self, trials, night: int, m: int):
        from gpubench.results.store import layout

        ids = pd.unique(np.asarray(trials.column("run_id").to_pylist()))
        env = {c: self.rows[c].iloc[0] if c in self.rows.columns else None for c in layout.RUN_COLUMNS}
        frame = pd.DataFrame({c: [env[c]] * len(ids) for c in layout.RUN_COLUMNS})
        values = self._values(night, m, len(ids))
        t = len(self.rows)
        for column in ("host", "device_name", "started_utc", "suite_id", "driver_version", "source"):
            frame[column] = values[column][::t][:len(ids)]
        frame["run_id"] = ids
        frame["n_trials"] = float(t)
        frame["statuses"] = f"ok:{t}"
        frame["added_utc"] = f"{self.started(night, m) + pd.Timedelta(hours=3):%Y-%m-%dT%H:%M:%SZ}"
        frame["fingerprint_json"] = json.dumps(self.meta.get("fingerprint") or {})
        frame["config_json"] = json.dumps(self.meta.get("config") or {})
        frame["run_json"] = self.run_json
        return _arrow(frame, {"n_trials", "schema_version"})


def write_store(fleet: Fleet, store: Path, limit: int, configs: Optional[int] = None) -> int:
    """The fleet's first `limit` runs (`configs` a machine and night) as a store, one
    file a night, machine and table."""
    import pyarrow.parquet as pq

    from gpubench.results.store import layout

    layout.create_store(store)
    written, k = 0, configs or fleet.per_night
    for night in range(10 ** 6):
        for m in range(fleet.machines):
            if written >= limit:
                return written
            trials = fleet.arrow_night(night, m, k)
            take = min(k, limit - written)
            if take < k:
                trials = trials.slice(0, take * len(fleet.rows))
            runs = fleet.runs_of(trials, night, m)
            month = f"{fleet.started(night, m):%Y-%m}"
            part = layout.part_name()
            for name, table in (("trials", trials), ("runs", runs)):
                folder = layout.partition_dir(store, name, month, fleet.host(m))
                folder.mkdir(parents=True, exist_ok=True)
                final = folder / f"{part}{layout.SUFFIX}"
                pq.write_table(table, layout.temp_path(final))
                os.replace(layout.temp_path(final), final)
            written += take
    return written


def write_folders(fleet: Fleet, root: Path, limit: int, night0: int = 0,
                  configs: Optional[int] = None, machines: Optional[int] = None) -> int:
    """Run folders (trials.csv, run.json) of the fleet's runs from night `night0` on."""
    written, night = 0, night0
    while written < limit:
        for m in range(machines or fleet.machines):
            frame = fleet.night(night, m, configs)
            for run_id, rows in frame.groupby("run_id", sort=False):
                if written >= limit:
                    return written
                folder = root / f"{fleet.started(night, m):%Y%m%dT%H%M%SZ}-{fleet.host(m)}-{run_id}"
                folder.mkdir(parents=True)
                rows.drop(columns=["source"], errors="ignore").to_csv(folder / "trials.csv", index=False)
                meta = dict(fleet.meta, run_id=run_id, started_utc=rows["started_utc"].iloc[0])
                (folder / "run.json").write_text(json.dumps(meta))
                written += 1
        night += 1
    return written


def measure(argv: List[str], label: str) -> Dict[str, object]:
    """`gpubench ARGV` in a fresh process: wall seconds, peak RSS (MiB), exit code."""
    code = ("import resource, sys, time; t = time.perf_counter(); from gpubench.cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('MEASURED', time.perf_counter() - t, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rc, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    line = next((l for l in proc.stderr.splitlines() if l.startswith("MEASURED")), None)
    if line is None:
        raise SystemExit(f"{label}: {' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    _, wall, rss, rc = line.split()
    print(f"  {label}: {float(wall):.2f} s, peak RSS {float(rss):.0f} MiB, exit {rc}", flush=True)
    return {"step": label, "argv": argv, "wall_s": float(wall), "peak_rss_mib": float(rss),
            "exit": int(rc) if rc.lstrip("-").isdigit() else rc}


def has_command(name: str) -> bool:
    from gpubench.cli import SUBCOMMANDS

    return name in SUBCOMMANDS


def verdicts(path: Path) -> Dict[str, object]:
    data = json.loads(path.read_text())
    return {c["configuration"]: (c["status"], [(ch["run_id"], ch["verdict"]) for ch in c["changes"]])
            for c in data["configurations"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="run", type=Path, required=True,
                    help="a real run folder (trials.csv, run.json) whose rows are copied")
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--machines", type=int, default=4)
    ap.add_argument("--folder-runs", type=int, default=1000,
                    help="runs in today's folder path's comparison (default 1000)")
    ap.add_argument("--work", type=Path, help="where the store and folders go (default: a "
                                              "temporary folder, removed after)")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="store-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(args.run, args.runs, args.nights, args.machines)
    print(f"load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs): a busy "
          "machine slows every figure")
    figures: Dict[str, object] = {"runs": args.runs, "nights": args.nights, "machines": args.machines,
                                  "load_average_start": os.getloadavg()[0],
                                  "configurations": args.machines * fleet.per_night,
                                  "trial_rows_per_run": len(fleet.rows), "steps": []}
    try:
        t = time.perf_counter()
        store = work / "store"
        written = write_store(fleet, store, args.runs)
        size = sum(p.stat().st_size for p in store.rglob("*.parquet"))
        print(f"store: {written} runs, {written * len(fleet.rows)} trial rows, "
              f"{fleet.per_night * args.machines} configurations, {size / 2**20:.0f} MiB, "
              f"written in {time.perf_counter() - t:.1f} s", flush=True)
        figures.update(store_runs=written, store_mib=size / 2**20)
        steps = figures["steps"]
        last = min(args.nights - 1, (written // (fleet.per_night * args.machines)) - 1)
        d1, d2 = (f"{fleet.started(n, 0):%Y-%m-%d}" for n in (last - 1, last))
        if has_command("store"):
            night = work / "night-520"
            write_folders(fleet, night, 520, night0=args.nights + 1, configs=520, machines=1)
            steps.append(measure(["store", "add", str(store), str(night)], "store add (520-run night)"))
        else:
            print("  store add: this gpubench has no `store` command (skipped)")
        steps.append(measure(["history", str(store), "--format", "json", "-o",
                              str(work / "history-store.json")], f"history STORE ({written} runs)"))
        steps.append(measure(["compare", str(store), "--where-base", f"date={d1}", "--where-new",
                              f"date={d2}", "--format", "json", "-o", str(work / "compare.json")],
                             f"compare STORE two nights ({d1}, {d2})"))
        if has_command("dashboard"):
            steps.append(measure(["dashboard", str(store), "-o", str(work / "site")], "dashboard STORE"))
        else:
            print("  dashboard: this gpubench has no `dashboard` command (skipped)")
        # today's path: as many configurations as a night of 40 runs, so that each has
        # a history of 25 nights at 1,000 runs (enough to find a change)
        folders, small = work / "folders", work / "store-small"
        few = max(1, min(fleet.per_night, 40 // args.machines))
        write_folders(fleet, folders, args.folder_runs, configs=few)
        write_store(fleet, small, args.folder_runs, configs=few)
        steps.append(measure(["history", str(folders), "--format", "json", "-o",
                              str(work / "history-folders.json")],
                             f"history FOLDERS ({args.folder_runs} run folders, today's path)"))
        steps.append(measure(["history", str(small), "--format", "json", "-o",
                              str(work / "history-small.json")],
                             f"history STORE ({args.folder_runs} runs)"))
        same = verdicts(work / "history-folders.json") == verdicts(work / "history-small.json")
        figures["same_verdicts_folders_and_store"] = same
        print(f"  same verdicts from the {args.folder_runs} folders and their store: {same}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    figures["load_average_end"] = os.getloadavg()[0]
    print(f"load average at the end: {figures['load_average_end']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
