"""`gpubench dashboard`: a static site of a fleet's results that opens offline.

    DIR/index.html            every series (configuration x machine) over time, the
                              newest regressions first, filters by machine, workload,
                              backend (assets/dashboard.js, client-side)
    DIR/configs/<name>.html   one page per series: its runs' spread, changes, runs
    DIR/assets/               plotly.min.js (once), dashboard.js, dashboard.css

Built from trial rows (any source read_input reads: run and suite folders, a store):
series.py computes per-run medians and their CIs vectorised, changes.py finds each
series' change points as `gpubench history` does, pages.py writes the pages. The site
is written into a temporary folder beside DIR and renamed into place: a reader sees
the old site or the new one. DIR, when it exists, must be an earlier dashboard (its
`.gpubench-dashboard` marker) or empty: anything else is refused, never replaced.
Nothing here prints: progress goes to the caller's callback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from gpubench.errors import UserError
from gpubench.results import history as hist
from gpubench.results.history import DEFAULT_MIN_SEGMENT

MARKER = ".gpubench-dashboard"
UNITS = {"throughput_samples_per_s": "samples/s"}

Progress = Callable[[str, int, int], None]


@dataclass
class Built:
    path: Path
    runs: int
    series: int
    regressions: int


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UserError(f"-o {out}: a folder that is not a gpubench dashboard (no {MARKER}); "
                        "give a new or empty folder, it is never replaced")


def _swap_in(tmp: Path, out: Path) -> None:
    """tmp becomes out; an earlier dashboard at out is removed after the rename."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_dashboard(trials: pd.DataFrame, out: Path, source: str = "",
                    metric: str = "throughput_samples_per_s", threshold: float = 0.05,
                    min_segment: int = DEFAULT_MIN_SEGMENT,
                    progress: Optional[Progress] = None) -> Built:
    """Writes the site for `trials` (read_input's rows) to `out`."""
    from gpubench.results.dashboard import changes, pages, series
    from gpubench.results.dashboard.assets import DASHBOARD_CSS, DASHBOARD_JS
    from gpubench.results.report_plot import plotly_js

    out = Path(out)
    _check_target(out)
    if trials.empty:
        raise UserError(f"{source or 'the input'}: no trial rows")
    hist.check_options(metric, min_segment)
    library = plotly_js()  # before any work: a missing plotly is one line
    unit = UNITS.get(metric, metric)
    tables = series.tables(trials, metric)
    if progress:
        progress(f"{len(tables.runs):,} runs in {len(tables.series):,} series", 0, 0)
    found = changes.analyse_all(tables, metric, threshold, min_segment, progress)
    order = changes.newest_first(tables, found)
    env = series.env_changes(tables.runs)
    env_of = dict(tuple(env.groupby("series"))) if len(env) else {}
    runs_of = dict(tuple(tables.runs.groupby("series")))
    values_of = dict(tuple(tables.values.groupby("series")))
    rows = tables.series.set_index("series")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise UserError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    try:
        (tmp / pages.ASSETS).mkdir()
        (tmp / "configs").mkdir()
        (tmp / pages.ASSETS / "plotly.min.js").write_text(library)
        (tmp / pages.ASSETS / "dashboard.js").write_text(DASHBOARD_JS)
        (tmp / pages.ASSETS / "dashboard.css").write_text(DASHBOARD_CSS)
        (tmp / "index.html").write_text(pages.index_html(tables, found, order, env, source, unit))
        for done, sid in enumerate(order, start=1):
            name, page = pages.config_html(
                rows.loc[sid], runs_of[sid], values_of.get(sid, tables.values.iloc[:0]), found[sid],
                env_of.get(sid, env.iloc[:0]), unit, threshold)
            (tmp / "configs" / name).write_text(page)
            if progress:
                progress("pages", done, len(order))
        (tmp / MARKER).write_text("a gpubench dashboard: `gpubench dashboard` replaces this "
                                  "folder whole\n")
        os.chmod(tmp, 0o755)
        _swap_in(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"-o {out}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    regressions = sum(h.status == "regression" for h in found.values())
    return Built(out, len(tables.runs), len(tables.series), regressions)
