"""A suite's plan: its file expanded into runs (each with the configuration key its rows
will hold and its Python environment), filtered, and on --resume less the runs an
earlier folder of the suite already holds ok; the requests its runs are made with.
Running the plan is executor.py's; its time estimate estimate.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from gpubench.backends import backend_names
from gpubench.errors import UserError
from gpubench.launch.environments import EnvironmentSet, declared_environments
from gpubench.measure.request import RunRequest, request_from, request_identity
from gpubench.results.reader import read_trials
from gpubench.results.schema import configuration_key
from gpubench.suite.config import SuiteRun, load_suite_file, matches, parse_filter
from gpubench.suite.shards import Shard, select_shard
from gpubench.workloads import resolve_workload

@dataclass(frozen=True)
class PlannedRun:
    run: SuiteRun
    key: Tuple[str, ...]  # the configuration (schema.CONFIGURATION_COLUMNS) as rows hold it
    repeat: int = 0  # which of the configuration's `repeats` runs this is

    def label(self) -> str:
        repeats = self.run.setting("repeats")
        return self.run.label() + (f" (run {self.repeat + 1}/{repeats})" if repeats > 1 else "")


@dataclass
class SuitePlan:
    config_path: Path
    runs: List[PlannedRun]
    skipped: List[PlannedRun] = field(default_factory=list)  # --resume: already ok
    folder: Optional[Path] = None  # the folder resumed, if any
    environments: Optional[EnvironmentSet] = None  # None: every run in this interpreter
    shard: Optional[Shard] = None  # --shard i/N: the part of the suite this plan holds


def resolved_key(run: SuiteRun, source: Path) -> Tuple[str, ...]:
    """The configuration as it will stand in result rows: default batch size and
    default parameters filled in (validates the workload and its params too)."""
    try:
        resolve_workload(run.workload, dict(run.params))
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    req, _ = request_for(run, Path("unused"), run.setting("device"), None)
    return configuration_key(request_identity(req))


def row_key(row: pd.Series) -> Tuple[str, ...]:
    """A run's configuration from one of its rows. A collective run sweeps its message
    sizes in one run, so the row's size is not part of what the suite asked for."""
    return configuration_key({**row.to_dict(), "message_bytes": None})


def find_resumable(out_dir: Path, suite_name: str, shard: Optional[Shard] = None,
                   executor: str = "local") -> Path:
    """The newest folder in `out_dir` of this suite, of the same shard (none: the whole
    suite) and executor (a Slurm submission's folder holds its shards' folders)."""
    from gpubench.results.reader import load_json

    candidates = []
    for meta_path in sorted(Path(out_dir).glob("*/run.json")):
        # A run.json that does not parse may be this suite's: skipping it would start
        # afresh and say there was nothing to resume.
        try:
            meta = load_json(meta_path)
        except UserError as exc:
            raise UserError(f"--resume: {exc}; repair it or move its folder out of "
                            f"{out_dir}") from None
        if (meta.get("kind") == "suite" and meta.get("suite_name") == suite_name
                and meta.get("shard") == (str(shard) if shard else None)
                and meta.get("executor", "local") == executor):
            candidates.append(meta_path.parent)
    if not candidates:
        part = f" shard {shard}" if shard else ""
        raise UserError(f"--resume: no earlier results of suite {suite_name!r}{part} in {out_dir}")
    return candidates[-1]  # folder names start with a UTC timestamp


def plan_suite(config_path: Path, out_dir: Path, filter_expr: Optional[str] = None,
               resume: bool = False, install: bool = True,
               shard: Optional[Shard] = None) -> SuitePlan:
    """The runs to make. Each run's environment is the one its entry names, else the
    first that can run its backend; gpubench is installed into a named environment that
    lacks it, unless `install` is off (--dry-run). With `shard`, its part only
    (shards.py), resumed from that part's own folder."""
    suite_file = load_suite_file(config_path)
    known = set(backend_names())
    for run in suite_file.runs:
        if run.backend not in known:
            raise UserError(f"{config_path}: unknown backend {run.backend!r} "
                            f"(valid: {', '.join(sorted(known))})")
    environments = EnvironmentSet(declared_environments(suite_file.environments, config_path),
                                  install)
    runs = [r if r.environment else r.with_values(environment=environments.choose(r.backend).name)
            for r in suite_file.runs]
    seen: set = set()  # an entry naming the environment another entry's run was given
    runs = [r for r in runs if not (r.key() in seen or seen.add(r.key()))]
    planned = [PlannedRun(r, resolved_key(r, config_path)) for r in runs]
    if filter_expr:
        conditions = parse_filter(filter_expr)
        planned = [p for p in planned if matches(p.run, conditions)]
        if not planned:
            raise UserError(f"--filter {filter_expr!r} matches no run of {config_path}")
    if shard is not None:
        planned = select_shard(planned, shard)
    plan = SuitePlan(Path(config_path), [], environments=environments, shard=shard)
    done: Dict[Tuple[str, ...], int] = {}
    if resume:
        plan.folder = find_resumable(out_dir, Path(config_path).stem, shard)
        done = _ok_runs(plan.folder)
    # Repeats are interleaved (every configuration once, then again), so a slow drift
    # of the machine spreads over all configurations instead of hitting one.
    for repeat in range(max([p.run.setting("repeats") for p in planned] + [0])):
        for p in planned:
            if repeat < p.run.setting("repeats"):
                target = plan.runs if repeat >= done.get(p.key, 0) else plan.skipped
                target.append(replace(p, repeat=repeat))
    return plan


def _ok_runs(folder: Path) -> Dict[Tuple[str, ...], int]:
    """Configuration key -> number of its runs whose every row is ok."""
    path = folder / "trials.csv"
    if not path.exists():
        return {}
    counts: Dict[Tuple[str, ...], int] = {}
    for _, rows in read_trials(path).groupby("run_id"):
        if (rows["status"] == "ok").all():
            key = row_key(rows.iloc[0])
            counts[key] = counts.get(key, 0) + 1
    return counts


def check_rank_devices(plan: SuitePlan, devices: Sequence[int]) -> None:
    """A run of N ranks puts them on N consecutive GPUs from its device (the ranks'
    local ranks added to it). Spread over several --devices, such a run waits for all of
    them and runs alone (execute_suite), so its ranks must land on GPUs of the list."""
    if len(devices) < 2:
        return
    for planned in plan.runs:
        nproc = planned.run.nproc
        if nproc is None:
            continue
        wanted = [min(devices) + r for r in range(nproc)]
        outside = [str(d) for d in wanted if d not in devices]
        if outside:
            shown = ",".join(str(d) for d in devices)
            raise UserError(f"{plan.config_path}: {planned.label()}: its {nproc} ranks run on GPUs "
                            f"{wanted[0]}-{wanted[-1]}, and --devices {shown} leaves out "
                            f"{', '.join(outside)}")


def request_for(run: SuiteRun, folder: Path, device: int,
                timeout_override: Optional[float]) -> Tuple[RunRequest, float]:
    """The run's request, made as `gpubench run` makes its own, into `folder` on
    `device`; and its timeout."""
    req = request_from(run.values(), out_dir=folder.parent, folder=folder, device_index=device)
    return req, timeout_override or run.setting("timeout_s")
