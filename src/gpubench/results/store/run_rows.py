"""The store's runs table (layout.RUN_COLUMNS) made from trial rows and their run.json
files, and a folder's samples: what ingest.py adds beside the trial rows."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from gpubench.errors import UserError
from gpubench.results import schema
from gpubench.results.store import layout

# run_id -> (its run.json, the file's text, the name of its folder)
Metas = Dict[str, Tuple[Dict[str, Any], str, str]]
ENV_COLUMNS = layout.RUN_COLUMNS[5:layout.RUN_COLUMNS.index("schema_version")]
_STAMP = re.compile(r"^(\d{8}T\d{6})Z?-")


def run_rows(trials: pd.DataFrame, metas: Metas, suite: Optional[Dict[str, Any]] = None
             ) -> pd.DataFrame:
    """One row per run of `trials` (whose `source` names the file each row came from);
    `suite` is the run.json of the suite folder they were read from, if any."""
    suite = suite or {}
    first = [c for c in ("source", "suite_id", "started_utc", "host", "device_name") + ENV_COLUMNS
             if c in trials.columns]
    groups = trials.groupby("run_id", sort=False)
    runs = groups[first].first().reindex(columns=list(dict.fromkeys(first)))
    runs["n_trials"] = groups.size().astype("float64")
    counts = trials.groupby(["run_id", "status"], sort=False).size()
    statuses: Dict[str, List[str]] = {}
    for (run_id, status), n in counts.items():
        statuses.setdefault(run_id, []).append(f"{status}:{n}")
    written: Dict[str, Dict[str, Any]] = {}  # source -> run -> its rows' version as written
    rows: List[Dict[str, Any]] = []
    for run_id, row in zip(runs.index, runs.to_dict("records")):
        source = str(row["source"])
        folder = Path(source).parent.name
        run, text, name = metas.get(run_id, ({}, "", folder))
        env = run.get("environment") if isinstance(run.get("environment"), dict) else {}
        started = (_text(run.get("started_utc")) or _text(row.get("started_utc"))
                   or folder_stamp(name) or folder_stamp(folder))
        host = _text(row.get("host")) or _text(env.get("host"))  # as its trials' partition
        version = run.get("schema_version")
        if version is None:  # no run.json: the version its rows were written with
            if source not in written:
                written[source] = _written_versions(Path(source))
            version = written[source].get(run_id)
        fingerprint = run.get("fingerprint")
        rows.append({
            "run_id": run_id,
            "suite_id": _text(run.get("suite_id")) or _text(row.get("suite_id"))
            or _text(suite.get("suite_id")),
            "started_utc": started, "host": host, "device_name": _text(row.get("device_name")),
            **{c: _text(row.get(c)) or _text(env.get(c)) for c in ENV_COLUMNS},
            "schema_version": float(version) if version is not None else None,
            "n_trials": row["n_trials"], "statuses": ",".join(statuses.get(run_id, [])),
            "source": source,
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


def folder_stamp(name: str) -> str:
    """A run folder's start from its name (`20250131T020000Z-host-id`), ISO; '' if none."""
    m = _STAMP.match(name)
    if not m:
        return ""
    s = m.group(1)
    return f"{s[:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}Z"


def _written_versions(file: Path) -> Dict[str, Any]:
    """run_id -> the newest schema version its rows were written with (before migration)."""
    try:
        raw = pd.read_csv(file, usecols=["run_id", "schema_version"], dtype={"run_id": str})
    except (OSError, ValueError):
        return {}
    versions = pd.to_numeric(raw["schema_version"], errors="coerce")
    return versions.groupby(raw["run_id"]).max().to_dict()


def read_samples(folder: Path, run_ids: List[str]) -> Optional[pd.DataFrame]:
    """The samples of a run or suite folder (a suite's samples.csv names each row's run;
    a run folder's are its one run's), for `run_ids`; None where there are none."""
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
        if len(run_ids) != 1:
            raise UserError(f"{path}: samples without a run_id beside rows of {len(run_ids)} runs")
        frame.insert(0, "run_id", run_ids[0])
    frame["run_id"] = frame["run_id"].astype(str)
    return frame[frame["run_id"].isin(set(run_ids))]


def read_samples_together(folders: List[Tuple[Path, str]]) -> Optional[pd.DataFrame]:
    """The samples of run folders (folder, its run_id), their samples.csv files of one
    header read as one CSV (a file read alone costs pandas' fixed cost per call): each
    row's run from the lines each file holds, checked against the rows read (a quoted
    line break, which would throw the count off, sends that header's files one by one)."""
    groups: Dict[str, List[Tuple[str, str, Path]]] = {}  # header -> (run, body, folder)
    for folder, run_id in folders:
        try:
            text = (folder / "samples.csv").read_bytes().decode("utf-8-sig")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError):
            text = ""
        header, _, body = text.partition("\n")
        groups.setdefault(header.rstrip("\r") if body.strip() else "", []).append(
            (run_id, body if body.endswith("\n") else body + "\n", folder))
    frames = []
    for header, files in groups.items():
        counts = [body.count("\n") - body.count("\n\n") for _, body, _ in files]
        frame = None
        if header:
            try:
                frame = pd.read_csv(io.StringIO(header + "\n" + "".join(b for _, b, _ in files)))
            except (pd.errors.ParserError, ValueError):
                frame = None
        if frame is not None and len(frame) == sum(counts) and "run_id" not in frame.columns:
            frame.insert(0, "run_id", np.repeat([r for r, _, _ in files], counts))
            frames.append(frame)
            continue
        for run_id, _, folder in files:  # one by one: the reader's message for a bad one
            one = read_samples(folder, [run_id])
            if one is not None and len(one):
                frames.append(one)
    return pd.concat(frames, ignore_index=True) if frames else None
