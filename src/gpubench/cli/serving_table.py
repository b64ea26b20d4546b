"""The serving scenarios in the results table (cli/result_table.py): which scenario, the
server's rate and bound, the rate achieved, p99.9, whether the bound held, a search's
highest rate; and under a --find-max-qps run, a table of its probes. All empty (so not
shown) for other scenarios."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from gpubench.cli.table_cells import Col, as_float, num, sig, yes_no
from gpubench.measure.scenarios.serving import SERVING_SCENARIOS

if TYPE_CHECKING:
    import pandas as pd

# What a search's summary row shows: its medians over probes at different rates mean
# nothing (the probes table has each probe), its result and settings do.
SEARCH_CELLS = ("trials", "p99 bound ms", "max QPS")


def searched(r: Any) -> bool:
    """A --find-max-qps configuration: a server row without a fixed rate."""
    return r.get("scenario") == "server" and as_float(r.get("target_qps")) is None


def searched_cells(r: Any, cols: List[Col], cells: List[str]) -> List[str]:
    """A row's cells, the numbers aggregated over a search's probes left empty."""
    if not searched(r):
        return cells
    return [c if not col.numeric or col.key in SEARCH_CELLS else ""
            for col, c in zip(cols, cells)]


def identity_columns() -> List[Col]:
    """After the batch: the scenario (serving ones only), the server's rate and bound."""
    return [
        Col("scenario", lambda r: str(r.get("scenario")) if r.get("scenario") in SERVING_SCENARIOS else "",
            title=str),
        Col("target QPS", lambda r: num(r.get("target_qps")), "target QPS"),
        Col("p99 bound ms", lambda r: num(r.get("latency_bound_ms")), "p99 bound ms"),
    ]


def result_columns() -> List[Col]:
    """The rate served, and a search's result: the highest rate that held the bound."""
    return [
        Col("QPS", lambda r: num(r.get("achieved_qps_median")), "QPS"),
        Col("held", lambda r: yes_no(r.get("latency_bound_met_all")), "held"),
        Col("max QPS", lambda r: num(r.get("max_qps_last")), "max QPS"),
    ]


# The probes table at a narrow width: these stay, the rest go in this order.
PROBE_KEPT = ("probe", "offered QPS", "p99 ms", "held", "probe note")
PROBE_DROP_ORDER = ("p99.9 ms", "batch avg", "p50 ms", "unfinished", "achieved QPS",
                    "offered QPS", "p99 ms", "held", "probe note")


def probe_note(probe: Dict[str, Any]) -> str:
    """What the search made of a probe (run.json serving.search.probes[i]): run again
    after a contended or stalled failure, a re-probe of the final bracket, and why."""
    words = [w for flag, w in (("repeated", "again"), ("confirming", "re-probe"),
                               ("contended", "contended"), ("stalled", "stalled"),
                               ("overloaded", "overloaded")) if probe.get(flag)]
    return ", ".join(words)


def probes_table(trials: "pd.DataFrame", search: Optional[Dict[str, Any]] = None,
                 width: Optional[int] = None) -> Optional[Any]:
    """A --find-max-qps run's probes in the order run (None when there is no search),
    fitted to `width`; `search` (run.json serving.search) says which probes ran again
    or re-probed the bracket, and which were contended, stalled or overloaded."""
    from gpubench.cli.fit_table import fitted_table

    if "scenario" not in trials.columns or "offered_qps" not in trials.columns:
        return None
    rows = trials[(trials["scenario"] == "server") & trials["target_qps"].isna()
                  & (trials["status"] == "ok")]
    if rows.empty:
        return None
    probes = (search or {}).get("probes") or []
    notes = [probe_note(p) for p in probes] if len(probes) == len(rows) else [""] * len(rows)
    bound = as_float(rows["latency_bound_ms"].iloc[0])
    numbers = ("probe", "offered QPS", "achieved QPS", "p50 ms", "p99 ms", "p99.9 ms", "held",
               "batch avg", "unfinished")
    cols = [*(Col(h, str, h) for h in numbers), Col("note", str, "probe note", text=True)]
    cells = [[str(int(r["trial"])), num(r["offered_qps"]), num(r["achieved_qps"]),
              num(r["latency_p50_ms"]), num(r["latency_p99_ms"]), num(r["latency_p999_ms"]),
              yes_no(r["latency_bound_met"]), num(r["batch_size_mean"]),
              num(r["queries_unfinished"]), note]
             for (_, r), note in zip(rows.iterrows(), notes)]
    title = (f"--find-max-qps probes (p99 bound {sig(bound) if bound else '?'} ms; "
             "latencies are early-stopping bounds)")
    return fitted_table(cols, cells, width, title, PROBE_DROP_ORDER, PROBE_KEPT)
