"""Run and suite folders read into the store's three tables (layout.py): trial rows as
the folder reader gives them (migrated to the current schema, checked), one row per run
from its run.json (run_rows.py), and, when asked, the runs' samples. Reading is done
here, outside the store's lock; write.py writes what this gathers.

Inputs are found as compare and history find them (compare_load.find_trial_files): a
run folder, a suite folder (its merged trials.csv; its runs' run.json files under
`runs/`), a trials.csv, or any folder searched for those. A source that cannot be read
is named and passed over; the others are still gathered.

Speed: a night of separate run folders is hundreds of small files, and the reader's
fixed cost per file (pandas, the checks) is most of the time. Run folders whose
trials.csv share a header are read together, their texts joined into one CSV that the
reader reads and checks once; should that fail, each is read alone, so that the one at
fault is named (and the others still added)."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import compare_load, reader
from gpubench.results.schema import SCHEMA_VERSION
from gpubench.results.store.run_rows import (Metas, read_samples, read_samples_together,
                                              run_rows)

Progress = Callable[[int, int, int], None]  # runs read, sources read, sources in all
PROGRESS_EVERY = 200  # runs
CHUNK = 250  # run folders read together at most (progress shows after each)
PART_RUNS = 20_000  # runs gathered before they are written


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

    def take(self, trials: pd.DataFrame, runs: pd.DataFrame,
             samples: Optional[pd.DataFrame], sources: int) -> None:
        self.trials.append(trials)
        self.runs.append(runs)
        if samples is not None and len(samples):
            self.samples.append(samples)
        self.sources += sources


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


@dataclass
class RunFile:
    """A run folder's trials.csv, its run.json (parsed and as text) and its header."""

    path: Path
    meta: Dict[str, Any]
    meta_text: str
    header: str


def gather(paths: Sequence[Path], samples: bool = False,
           progress: Progress = lambda runs, done, total: None,
           part_runs: Optional[int] = None) -> Iterator[Gathered]:
    """What `paths` hold, in parts of about `part_runs` runs (a night is one part; a
    year's backlog is written a part at a time, never all of it in memory at once)."""
    with warnings.catch_warnings():
        # pandas finds the reader's migration of older files (a column added at a time)
        # fragmented: a note on speed, not on the rows, shown once per batch read
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        yield from _gather(paths, samples, progress, part_runs or PART_RUNS)


def _gather(paths: Sequence[Path], samples: bool, progress: Progress,
            part_runs: int) -> Iterator[Gathered]:
    found = Gathered()
    files = trial_files(paths, found.unreadable)
    singles: List[Path] = []
    batches: Dict[str, List[RunFile]] = {}  # header -> run folders with it
    for file in files:
        run = _run_file(file)
        if run is None:
            singles.append(file)
        else:
            batches.setdefault(run.header, []).append(run)
    done, runs, reported, in_part = 0, 0, 0, 0
    units = [[f] for f in singles] + [group[i:i + CHUNK] for group in batches.values()
                                      for i in range(0, len(group), CHUNK)]
    for unit in units:
        parts = (_read_runs(unit, samples, found) if isinstance(unit[0], RunFile)
                 else [_read_one(unit[0], samples, found)])
        for part in parts:
            if part is not None:
                found.take(*part)
                runs += len(part[1])
                in_part += len(part[1])
        done += len(unit)
        if runs // PROGRESS_EVERY > reported:
            reported = runs // PROGRESS_EVERY
            progress(runs, done, len(files))
        if in_part >= part_runs:
            yield found
            found, in_part = Gathered(), 0
    yield found


def _run_file(file: Path) -> Optional[RunFile]:
    """`file` as a run folder's trials.csv to read with others, or None: a suite's, a
    file without its run.json, or one that does not read plainly (read alone, it is
    refused with the reader's message)."""
    if file.name != "trials.csv":
        return None
    try:
        meta_text = (file.parent / "run.json").read_text(encoding="utf-8")
        meta = json.loads(meta_text)
        with open(file, encoding="utf-8-sig", newline="") as fh:
            header = fh.readline()
    except (OSError, ValueError):
        return None
    if (not isinstance(meta, dict) or meta.get("kind") == "suite" or not meta.get("run_id")
            or not isinstance(meta.get("schema_version", 0), (int, float))
            or meta.get("schema_version", 0) > SCHEMA_VERSION or not header.endswith("\n")):
        return None
    return RunFile(file, meta, meta_text, header.rstrip("\r\n"))


def _read_runs(runs: List[RunFile], samples: bool, found: Gathered) -> List[Any]:
    """Run folders read together; if that fails, each half again, down to the one that
    fails alone (named, with the reader's message)."""
    together = _read_together(runs, samples)
    if together is not None:
        return [together]
    if len(runs) == 1:
        return [_read_one(runs[0].path, samples, found)]
    half = len(runs) // 2
    return _read_runs(runs[:half], samples, found) + _read_runs(runs[half:], samples, found)


def _read_together(runs: List[RunFile], samples: bool
                   ) -> Optional[Tuple[pd.DataFrame, pd.DataFrame, Optional[pd.DataFrame], int]]:
    """Run folders of one header read as one CSV; None when any of them would not be
    read so alone (a malformed row, an empty file, rows of another run than run.json's)."""
    ids = [str(r.meta["run_id"]) for r in runs]
    if len(set(ids)) != len(ids):
        return None
    try:
        texts = [r.path.read_bytes().decode("utf-8-sig") for r in runs]
    except (OSError, UnicodeDecodeError):
        return None
    bodies = [t.split("\n", 1)[1] if "\n" in t else "" for t in texts]
    text = runs[0].header + "\n" + "".join(b if b.endswith("\n") or not b else b + "\n"
                                           for b in bodies)
    fd, name = tempfile.mkstemp(prefix="gpubench-store-", suffix=".csv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        trials = compare_load.read_checked(Path(name))
    except UserError:
        return None
    finally:
        os.unlink(name)
    trials = trials.drop(columns=[compare_load.DERIVED], errors="ignore")
    trials["run_id"] = trials["run_id"].astype(str)
    if set(trials["run_id"]) != set(ids):  # an empty file, another run's rows, no run_id
        return None
    source = {i: str(r.path) for i, r in zip(ids, runs)}
    trials["source"] = trials["run_id"].map(source)
    metas: Metas = {i: (r.meta, r.meta_text, r.path.parent.name) for i, r in zip(ids, runs)}
    rows = run_rows(trials, metas)
    found_samples = None
    if samples:
        found_samples = read_samples_together([(r.path.parent, i) for i, r in zip(ids, runs)])
    return trials.reset_index(drop=True), rows, found_samples, len(runs)


def _read_one(file: Path, samples: bool, found: Gathered
              ) -> Optional[Tuple[pd.DataFrame, pd.DataFrame, Optional[pd.DataFrame], int]]:
    """One trials file read alone; None (its message kept in `found`) if it cannot be."""
    try:
        trials, runs, sample_rows, bad = read_source(file, samples)
    except UserError as exc:
        found.unreadable.append(str(exc))
        return None
    found.unreadable.extend(bad)
    return trials, runs, sample_rows, 1


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
    runs = run_rows(trials, metas, meta if meta.get("kind") == "suite" else None)
    sample_rows = read_samples(folder, list(runs["run_id"])) if samples else None
    return trials.reset_index(drop=True), runs, sample_rows, [message for _, message in bad]


def run_metas(folder: Path, meta: Dict[str, Any]) -> Tuple[Metas, List[Tuple[str, str]]]:
    """The run.json of each run of a run or suite folder, and (run_id, message) for a
    suite's run whose run.json does not read."""
    found: Metas = {}
    bad: List[Tuple[str, str]] = []
    if meta.get("kind") == "suite":
        for path in sorted(folder.glob("runs/*/run.json")):
            run_id = path.parent.name.rsplit("-", 1)[-1]
            try:
                text = path.read_text(encoding="utf-8")
                run = json.loads(text)
                if not isinstance(run, dict):
                    raise ValueError
            except (OSError, ValueError):  # said as the reader says it
                try:
                    reader.load_json(path)
                    message = f"{path}: not readable"
                except UserError as exc:
                    message = str(exc)
                bad.append((run_id, message))
                continue
            found[str(run.get("run_id") or run_id)] = (run, text, path.parent.name)
    elif meta.get("run_id"):
        text = (folder / "run.json").read_text(encoding="utf-8")
        found[str(meta["run_id"])] = (meta, text, folder.name)
    return found, bad
