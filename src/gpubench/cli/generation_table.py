"""--mode generate in the results table (cli/result_table.py): the prompt and output
lengths (identity), time to first token and time per output token (p50), decode's
output tokens/s and how near it ran to its memory-bandwidth bound. All empty (so not
shown) for rows of other modes."""

from __future__ import annotations

from typing import Any, List

from gpubench.cli.table_cells import Col, as_float, num, pct

# What a generate row is read by: never left out, whatever the width.
KEPT_GENERATE_COLUMNS = ("TTFT ms", "TPOT ms", "out tok/s")
# Left out first when the terminal is narrow (before the throughput columns go).
GENERATE_DROP_ORDER = ("of bound", "TTFT ms")


def _length(value: Any) -> str:
    v = as_float(value)
    return "" if v is None else f"{v:.0f}"


def _of_bound(r: Any) -> str:
    rate, bound = as_float(r.get("output_tokens_per_s_median")), as_float(
        r.get("decode_bound_tokens_per_s_median"))
    return pct(rate / bound) if rate is not None and bound else ""


def identity_columns() -> List[Col]:
    return [Col("prompt", lambda r: _length(r.get("prompt_len")), title=lambda v: f"prompt {v}"),
            Col("output", lambda r: _length(r.get("output_len")), title=lambda v: f"output {v}")]


def result_columns() -> List[Col]:
    return [
        Col("TTFT ms", lambda r: num(r.get("ttft_p50_ms_median")), "TTFT ms"),
        Col("TPOT ms", lambda r: num(r.get("tpot_p50_ms_median")), "TPOT ms"),
        Col("out tok/s", lambda r: num(r.get("output_tokens_per_s_median")), "out tok/s"),
        Col("of bound", _of_bound, "of bound"),
    ]


def kept_for(r: Any) -> tuple:
    return KEPT_GENERATE_COLUMNS if r.get("mode") == "generate" else ()
