"""What a row's scenario changes in the results table (cli/result_table.py): the
columns it is read by, never left out whatever the width; and the cells that mean
something else, or nothing, for it. A time-to-accuracy run's trials are epochs (no CV
or CI over epochs that train different weights); a collective has no mode, precision or
batch, moves operations rather than samples, and its bandwidth takes a unit that fits
(8 B messages: kB/s, not 0.00000863 GB/s)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from gpubench.cli import generation_table as generation
from gpubench.cli.table_cells import as_float, unit_for, whole

# What each scenario's rows are read by: never left out of the table, whatever the width.
KEPT_COLUMNS = {
    "throughput": ("samples/s", "95% CI"),
    "single-stream": ("p90 ms",),  # MLPerf's single-stream metric: the 90th percentile
    "multi-stream": ("p99 ms",),  # and multi-stream's: the 99th
    "server": ("target QPS", "p99 bound ms", "p99 ms", "held", "max QPS", "TTFT bound ms",
               "TPOT bound ms", "goodput/s", "max goodput QPS"),
    "offline": ("samples/s",),
    "time-to-accuracy": ("target", "reached", "time to acc.", "trials"),  # trials: its epochs
    "collective": ("size", "busbw GB/s"),
}
# A non-eager exec mode's rows: its compile time, and whether its outputs agree.
KEPT_EXEC_COLUMNS = ("compile s", "outputs ok")
TIME_TO_ACCURACY, COLLECTIVE = "time-to-accuracy", "collective"
# algbw/busbw are in GB/s: the unit in which the column's largest value is at least 1
BANDWIDTH_UNITS = (("GB/s", 1.0), ("MB/s", 1e-3), ("kB/s", 1e-6), ("B/s", 1e-9))


def scenario_of(r: Any) -> str:
    scenario = r.get("scenario")
    return scenario if isinstance(scenario, str) and scenario else "throughput"


def exec_text(value: Any) -> str:
    """A non-default exec mode (compile, cuda-graphs, xla); empty for eager."""
    return value if isinstance(value, str) and value not in ("", "eager") else ""


def kept_columns(rows: Sequence[Any]) -> set:
    """The columns these rows' scenarios (and exec modes) never leave out."""
    kept: set = set()
    for r in rows:
        kept.update(KEPT_COLUMNS.get(scenario_of(r), ()))
        kept.update(generation.kept_for(r))  # --mode generate: its token figures
        if exec_text(r.get("exec")):
            kept.update(KEPT_EXEC_COLUMNS)
    return kept


def trials_text(r: Any) -> str:
    """ok/all trials; a time-to-accuracy run's are epochs, and say so."""
    if scenario_of(r) == TIME_TO_ACCURACY:
        n = whole(r["n_trials"])
        return f"{n} epoch{'' if n == '1' else 's'}"
    return f"{whole(r['n_ok'])}/{whole(r['n_trials'])}"


def not_for(scenario: str, cell: Callable[[Any], str]) -> Callable[[Any], str]:
    """`cell`, empty for rows of `scenario` (where the number means nothing)."""
    return lambda r: "" if scenario_of(r) == scenario else cell(r)


def only_for(scenario: str, cell: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda r: cell(r) if scenario_of(r) == scenario else ""


def data_text(r: Any) -> str:
    """The data a run measured on, when it is real (mnist), not resident synthetic."""
    data = r.get("data")
    return data if isinstance(data, str) and data not in ("", "synthetic") else ""


def bandwidth_unit(records: Sequence[Any]) -> tuple:
    """(unit, scale) for the algbw/busbw columns of these rows."""
    return unit_for([as_float(r.get(f"{c}_gbs_median")) for r in records for c in ("algbw", "busbw")],
                    BANDWIDTH_UNITS)
