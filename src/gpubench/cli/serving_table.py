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
SEARCH_CELLS = ("trials", "p99 bound ms", "max QPS", "TTFT bound ms", "TPOT bound ms",
                "max goodput QPS")


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
        # --mode generate's server: its token-level p99 bounds
        Col("TTFT bound ms", lambda r: num(r.get("ttft_bound_ms")), "TTFT bound ms"),
        Col("TPOT bound ms", lambda r: num(r.get("tpot_bound_ms")), "TPOT bound ms"),
    ]


def result_columns() -> List[Col]:
    """The rate served, and a search's result: the highest rate that held the bound."""
    return [
        Col("QPS", lambda r: num(r.get("achieved_qps_median")), "QPS"),
        Col("held", lambda r: yes_no(r.get("latency_bound_met_all")), "held"),
        Col("max QPS", lambda r: num(r.get("max_qps_last")), "max QPS"),
        # --mode generate's server: requests a second within both bounds, and a search's
        # highest rate whose p99 TTFT and TPOT held them
        Col("goodput/s", lambda r: num(r.get("goodput_rps_median")), "goodput/s"),
        Col("max goodput QPS", lambda r: num(r.get("max_goodput_qps_last")), "max goodput QPS"),
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
    if "mode" in rows.columns and (rows["mode"] == "generate").all():
        return generate_probes_table(rows, notes, width)
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


GENERATE_PROBE_KEPT = ("probe", "offered QPS", "TTFT p99 ms", "TPOT p99 ms", "held",
                       "probe note")
GENERATE_PROBE_DROP_ORDER = ("batch avg", "TTFT p50 ms", "unfinished", "goodput/s",
                             "achieved QPS", "offered QPS", "TTFT p99 ms", "TPOT p99 ms",
                             "held", "probe note")


def generate_probes_table(rows: "pd.DataFrame", notes: List[str],
                          width: Optional[int]) -> Any:
    """A --mode generate search's probes: each rate's TTFT and TPOT p99 against the
    bounds, its goodput, and whether both held (observed percentiles)."""
    from gpubench.cli.fit_table import fitted_table

    numbers = ("probe", "offered QPS", "achieved QPS", "TTFT p50 ms", "TTFT p99 ms",
               "TPOT p99 ms", "goodput/s", "held", "batch avg", "unfinished")
    cols = [*(Col(h, str, h) for h in numbers), Col("note", str, "probe note", text=True)]
    cells = [[str(int(r["trial"])), num(r["offered_qps"]), num(r["achieved_qps"]),
              num(r["ttft_p50_ms"]), num(r["ttft_p99_ms"]), num(r["tpot_p99_ms"]),
              num(r["goodput_rps"]), yes_no(r["latency_bound_met"]),
              num(r["batch_size_mean"]), num(r["queries_unfinished"]), note]
             for (_, r), note in zip(rows.iterrows(), notes)]
    first = rows.iloc[0]
    title = (f"--find-max-qps probes (p99 TTFT <= {sig(first['ttft_bound_ms'])} ms, p99 TPOT "
             f"<= {sig(first['tpot_bound_ms'])} ms; percentiles as observed)")
    return fitted_table(cols, cells, width, title, GENERATE_PROBE_DROP_ORDER,
                        GENERATE_PROBE_KEPT)
