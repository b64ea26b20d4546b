"""Run and suite folders read into the store's three tables (layout.py): trial rows as
the folder reader gives them (migrated to the current schema, checked), one row per run
from its run.json, and, when asked, the runs' samples. Reading is done here, outside the
store's lock; write.py writes what this gathers.

Inputs are found as compare and history find them (compare_load.find_trial_files): a
run folder, a suite folder (its merged trials.csv; its runs' run.json files under
`runs/`), a trials.csv, or any folder searched for those. A source that cannot be read
is named and passed over; the others are still gathered."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import compare_load, reader, schema
from gpubench.results.store import layout

Progress = Callable[[int, int, int], None]  # runs read, sources read, sources in all
PROGRESS_EVERY = 200  # runs
_STAMP = re.compile(r"^(\d{8}T\d{6})Z?-")


@dataclass
class Gathered:
    """What a `store add` read: rows of each table, how many sources (trials files) were
    read, and one message per source that could not be."""

    trials: List[pd.DataFrame] = field(default_factory=list)
    runs: List[pd.DataFrame] = field(default_factory=list)
    samples: List[pd.DataFrame] = field(default_factory=list)
    sources: int = 0
    unreadable: List[str] = field(default_factory=list)

    def frames(self) -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return tuple(pd.concat(f, ignore_index=True) if f else pd.DataFrame()
                     for f in (self.trials, self.runs, self.samples))


def check_inputs(paths: Sequence[Path]) -> None:
    """A path that does not exist is refused before anything is read (nothing is added:
    a typo should not pass as a night without runs)."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"{missing[0]}: no such file or folder"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))


def trial_files(paths: Sequence[Path], unreadable: List[str]) -> List[Path]:
    """Every trials file under `paths`, once; a folder with no results in it is named
    among the unreadable."""
    check_inputs(paths)
    files: List[Path] = []
    for path in paths:
        try:
            files.extend(compare_load.find_trial_files(Path(path)))
        except UserError as exc:
            unreadable.append(str(exc))
    return list(dict.fromkeys(Path(f).resolve() for f in files))


def gather(paths: Sequence[Path], samples: bool = False,
           progress: Progress = lambda runs, done, total: None) -> Gathered:
    found = Gathered()
    files = trial_files(paths, found.unreadable)
    runs_read, reported = 0, 0
    for done, file in enumerate(files, 1):
        try:
            trials, runs, sample_rows, bad = read_source(file, samples)
        except UserError as exc:
            found.unreadable.append(str(exc))
            continue
        found.unreadable.extend(bad)
        found.trials.append(trials)
        found.runs.append(runs)
        if sample_rows is not None and len(sample_rows):
            found.samples.append(sample_rows)
        found.sources += 1
        runs_read += len(runs)
        if runs_read // PROGRESS_EVERY > reported:
            reported = runs_read // PROGRESS_EVERY
            progress(runs_read, done, len(files))
    return found


def read_source(file: Path, samples: bool
                ) -> Tuple[pd.DataFrame, pd.DataFrame, Optional[pd.DataFrame], List[str]]:
    """One trials file's rows (as compare_load reads them, without its derived column),
    its runs' rows, their samples (or None) and messages for runs passed over (a suite's
    run whose run.json is corrupt)."""
    trials = compare_load.read_checked(file).drop(columns=[compare_load.DERIVED], errors="ignore")
    no_id = trials["run_id"].isna() | trials["run_id"].astype(str).str.strip().eq("")
    if no_id.any():
        raise UserError(f"{file}: {int(no_id.sum())} row(s) without a run_id: a store keeps "
                        "runs by their id")
    trials["run_id"] = trials["run_id"].astype(str)
    trials["source"] = str(file)
    folder = file.parent
    meta = reader.read_meta(folder) if file.name == "trials.csv" else {}
    metas, bad = run_metas(folder, meta)
    if bad:
        dropped = {run_id for run_id, _ in bad}
        trials = trials[~trials["run_id"].isin(dropped)]
        if trials.empty:
            raise UserError(bad[0][1])
    runs = run_rows(trials, metas, meta, file)
    sample_rows = read_samples(folder, meta, trials) if samples else None
    return trials.reset_index(drop=True), runs, sample_rows, [message for _, message in bad]


def run_metas(folder: Path, meta: Dict[str, Any]
              ) -> Tuple[Dict[str, Tuple[Dict[str, Any], str, str]], List[Tuple[str, str]]]:
    """run_id -> (its run.json, its text, its folder's name) for the runs of a run or
    suite folder, and (run_id, message) for a suite's run whose run.json is unreadable."""
    found: Dict[str, Tuple[Dict[str, Any], str, str]] = {}
    bad: List[Tuple[str, str]] = []
    if meta.get("kind") == "suite":
        for path in sorted(folder.glob("runs/*/run.json")):
            run_id = path.parent.name.rsplit("-", 1)[-1]
            try:
                text = path.read_text(encoding="utf-8")
                run = reader.load_json(path)
            except (UserError, OSError, UnicodeDecodeError) as exc:
                bad.append((run_id, str(exc) if isinstance(exc, UserError) else f"{path}: {exc}"))
                continue
            found[str(run.get("run_id") or run_id)] = (run, text, path.parent.name)
    elif meta.get("run_id"):
        text = (folder / "run.json").read_text(encoding="utf-8")
        found[str(meta["run_id"])] = (meta, text, folder.name)
    return found, bad


ENV_COLUMNS = layout.RUN_COLUMNS[5:layout.RUN_COLUMNS.index("schema_version")]


def run_rows(trials: pd.DataFrame, metas: Dict[str, Tuple[Dict[str, Any], str, str]],
             meta: Dict[str, Any], file: Path) -> pd.DataFrame:
    """One row per run of `trials` (layout.py: the runs table)."""
    first = [c for c in ("suite_id", "started_utc", "host", "device_name") + ENV_COLUMNS
             if c in trials.columns]
    groups = trials.groupby("run_id", sort=False)
    runs = groups[first].first().reindex(columns=list(dict.fromkeys(first)))
    runs["n_trials"] = groups.size().astype("float64")
    counts = trials.groupby(["run_id", "status"], sort=False).size()
    statuses: Dict[str, List[str]] = {}
    for (run_id, status), n in counts.items():
        statuses.setdefault(run_id, []).append(f"{status}:{n}")
    runs["statuses"] = [",".join(statuses.get(r, [])) for r in runs.index]
    written = None  # the schema version the rows were written with, where run.json lacks it
    rows: List[Dict[str, Any]] = []
    for run_id, row in zip(runs.index, runs.to_dict("records")):
        run, text, name = metas.get(run_id, ({}, "", file.parent.name))
        env = run.get("environment") if isinstance(run.get("environment"), dict) else {}
        started = (run.get("started_utc") or _text(row.get("started_utc"))
                   or _folder_stamp(name) or _folder_stamp(file.parent.name))
        host = _text(env.get("host")) or _text(row.get("host"))
        version = run.get("schema_version")
        if version is None:
            written = _written_versions(file) if written is None else written
            version = written.get(run_id)
        fingerprint = run.get("fingerprint")
        rows.append({
            "run_id": run_id,
            "suite_id": _text(run.get("suite_id")) or _text(row.get("suite_id"))
            or _text(meta.get("suite_id")),
            "started_utc": started, "host": host, "device_name": _text(row.get("device_name")),
            **{c: _text(row.get(c)) or _text(env.get(c)) for c in ENV_COLUMNS},
            "schema_version": float(version) if version is not None else None,
            "n_trials": row["n_trials"], "statuses": row["statuses"], "source": str(file),
            "fingerprint_json": json.dumps(fingerprint, sort_keys=True) if fingerprint else "",
            "config_json": json.dumps(run["config"], sort_keys=True, default=str)
            if isinstance(run.get("config"), dict) else "",
            "run_json": text,
            "month": layout.month_of(started), "machine": layout.safe_machine(host),
        })
    frame = pd.DataFrame(rows)
    return frame.where(frame.ne(""), None)  # nothing known: NULL, as in the trials


def _text(value: Any) -> str:
    return schema.key_text(value)


def _folder_stamp(name: str) -> str:
    """A run folder's start from its name (`20250131T020000Z-host-id`), ISO; '' if none."""
    m = _STAMP.match(name)
    if not m:
        return ""
    s = m.group(1)
    return f"{s[:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"


def _written_versions(file: Path) -> Dict[str, Any]:
    """run_id -> the newest schema version its rows were written with (before migration)."""
    raw = pd.read_csv(file, usecols=["run_id", "schema_version"], dtype={"run_id": str})
    return pd.to_numeric(raw["schema_version"], errors="coerce").groupby(raw["run_id"]).max().to_dict()


def read_samples(folder: Path, meta: Dict[str, Any], trials: pd.DataFrame) -> Optional[pd.DataFrame]:
    """The samples of a run or suite folder (a suite's samples.csv names each row's run);
    None where there are none."""
    path = folder / "samples.csv"
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if "run_id" not in frame.columns:
        ids = list(dict.fromkeys(trials["run_id"]))
        if len(ids) != 1:
            raise UserError(f"{path}: samples without a run_id beside rows of {len(ids)} runs")
        frame.insert(0, "run_id", ids[0])
    frame["run_id"] = frame["run_id"].astype(str)
    return frame[frame["run_id"].isin(set(trials["run_id"]))]
