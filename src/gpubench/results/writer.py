"""Writing a run folder: `<out>/<timestamp>-<host>-<run_id>/` with trials.csv (rewritten
atomically after every trial, so finished trials survive a crash), summary.csv,
samples.csv and run.json."""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pandas as pd

from gpubench.errors import UserError
from gpubench.atomic_io import write_text_atomic
from gpubench.results.schema import TEXT_COLUMNS, trial_columns


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def run_folder_name(host: str, run_id: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{_safe(host)}-{run_id}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "host"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def _clean(value: Any) -> Any:
    """NaN -> None, so run.json holds null (not the non-standard NaN token)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunWriter:
    def __init__(self, out_dir: Path, host: str, run_id: str | None = None,
                 folder: Path | None = None) -> None:
        """Makes `out_dir/<timestamp>-<host>-<run_id>/`, or `folder` when given (whose
        last part then ends in the run id, as suites name them)."""
        out_dir = Path(out_dir)
        if folder is not None:
            self.path = Path(folder)
            self.run_id = run_id or self.path.name.rsplit("-", 1)[-1]
        else:
            self.run_id = run_id or new_run_id()
            self.path = out_dir / run_folder_name(host, self.run_id)
        try:
            self.path.mkdir(parents=True, exist_ok=folder is not None)
            probe = self.path / ".write-probe"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise UserError(f"cannot write results to {out_dir}: {exc.strerror or exc}") from None
        self.trial_rows: List[Dict[str, Any]] = []
        self.earlier_samples: List[Dict[str, Any]] = []

    def resume(self) -> Dict[str, Any]:
        """Takes up the folder's earlier rows (a later worker process of one run,
        --processes): its trials and samples are kept and written again with this
        process's. Returns the earlier run.json ({} when there is none)."""
        trials, samples, meta = (self.path / n for n in ("trials.csv", "samples.csv", "run.json"))
        if trials.exists():
            frame = pd.read_csv(trials, dtype={c: "object" for c in TEXT_COLUMNS})
            for column in ("params", "onnx_sha256"):  # empty, not missing, as written
                frame[column] = frame[column].fillna("")
            self.trial_rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        if samples.exists():
            self.earlier_samples = pd.read_csv(samples).to_dict("records")
        return json.loads(meta.read_text()) if meta.exists() else {}

    def append_trial(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(trial_columns())
        assert not unknown, f"columns outside the schema: {sorted(unknown)}"
        self.trial_rows.append(dict(row))
        self._write_csv("trials.csv", pd.DataFrame(self.trial_rows, columns=list(trial_columns())))

    def append_trials(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Several rows at once (one trial of every rank of a run): one rewrite."""
        for row in rows:
            unknown = set(row) - set(trial_columns())
            assert not unknown, f"columns outside the schema: {sorted(unknown)}"
        self.trial_rows.extend(dict(row) for row in rows)
        self._write_csv("trials.csv", pd.DataFrame(self.trial_rows, columns=list(trial_columns())))

    def write_trials(self) -> pd.DataFrame:
        """Rewrites trials.csv from the rows held: a signal that cut the last rewrite
        short leaves it one row behind them, and summary.csv must not count more."""
        frame = self.trials_frame()
        self._write_csv("trials.csv", frame)
        return frame

    def trials_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.trial_rows, columns=list(trial_columns()))

    def write_summary(self, summary: pd.DataFrame) -> None:
        self._write_csv("summary.csv", summary)

    def write_samples(self, rows: Sequence[Mapping[str, Any]]) -> None:
        rows = [*self.earlier_samples, *rows]
        if rows:
            frame = pd.DataFrame(rows)
            for column in ("trial", "device_index"):  # integers with gaps: not 0.0
                if column in frame:
                    frame[column] = frame[column].astype("Int64")
            self._write_csv("samples.csv", frame)

    def write_run_json(self, meta: Mapping[str, Any]) -> None:
        text = json.dumps(_clean(dict(meta)), indent=2, sort_keys=True, default=_json_default)
        write_text_atomic(self.path / "run.json", text + "\n")

    def _write_csv(self, name: str, frame: pd.DataFrame) -> None:
        write_text_atomic(self.path / name, frame.to_csv(index=False))

    def remove_if_empty(self) -> None:
        """Drops the folder when nothing was written (a run refused before measuring)."""
        try:
            os.rmdir(self.path)
        except OSError:
            pass


class RankRowsWriter(RunWriter):
    """The writer of a rank other than 0 in a run of several: it keeps its rows but
    writes nothing (rank 0 writes the folder, with every rank's rows, so that one
    writer owns its files; the folder may not even be on this rank's node)."""

    def __init__(self, folder: Path) -> None:  # noqa: super().__init__ would make the folder
        self.path = Path(folder)
        self.run_id = self.path.name.rsplit("-", 1)[-1]
        self.trial_rows = []
        self.earlier_samples = []

    def _write_csv(self, name: str, frame: pd.DataFrame) -> None:
        pass

    def write_run_json(self, meta: Mapping[str, Any]) -> None:
        pass

    def remove_if_empty(self) -> None:
        pass
