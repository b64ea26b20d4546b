"""The cells of gpubench's tables, shared by the results table (result_table.py) and its
serving columns (serving_table.py): a column's header and how it renders a row, and
numbers as people read them: 3-4 significant digits, never an exponent, empty where
nothing was measured, a unit that fits the column."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple


def sig(value: float) -> str:
    """3-4 significant digits, no exponent: 12,345  123  12.3  6.49  0.0123."""
    a = abs(value)
    if a >= 999.5:
        return f"{value:,.0f}"
    if a >= 99.95:
        return f"{value:.0f}"
    if a >= 9.995:
        return f"{value:.1f}"
    if a >= 0.9995:
        return f"{value:.2f}"
    if a == 0:
        return "0"
    return f"{value:.{min(2 - math.floor(math.log10(a)), 15)}f}"


def as_float(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) or math.isinf(v) else v


def num(value: Any, scale: float = 1.0) -> str:
    v = as_float(value)
    return "" if v is None else sig(v * scale)


def fixed(value: Any, decimals: int) -> str:
    v = as_float(value)
    return "" if v is None else f"{v:,.{decimals}f}"


def pct(value: Any) -> str:
    v = as_float(value)
    return "" if v is None else sig(v * 100) + "%"


def whole(value: Any) -> str:
    v = as_float(value)
    return str(value) if v is None else f"{v:.0f}"


def unit_for(values: Sequence[Optional[float]], units: Sequence[Tuple[str, float]]) -> Tuple[str, float]:
    """The largest unit (name, size) in which the column's largest value is at least 1."""
    largest = max((abs(v) for v in values if v is not None), default=0.0)
    for name, size in units:
        if largest >= size:
            return name, 1.0 / size
    return units[-1][0], 1.0 / units[-1][1]


FLOPS_UNITS = (("TFLOP/s", 1.0), ("GFLOP/s", 1e-3), ("MFLOP/s", 1e-6), ("kFLOP/s", 1e-9))
JOULE_UNITS = (("J/sample", 1.0), ("mJ/sample", 1e-3), ("µJ/sample", 1e-6), ("nJ/sample", 1e-9))


@dataclass
class Col:
    header: str
    cell: Callable[[Any], str]
    # its name in the table's drop order; None: identity (text, never left out)
    key: Optional[str] = None
    title: Optional[Callable[[str], str]] = None  # identity: how its one value reads in a title
    text: bool = False  # a column that may be left out but holds text (wraps at spaces)

    @property
    def numeric(self) -> bool:
        return self.key is not None and not self.text


def bytes_text(value: Any) -> str:
    """A message size as nccl-tests' users read it: 8 B, 64 KiB, 1 GiB."""
    n = as_float(value)
    if n is None:
        return ""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n:g} B"


def yes_no(value: Any) -> str:
    """A true/false cell as read back from a CSV (True, 1, 1.0, ...): yes, no, or empty."""
    text = str(value).strip().lower()
    return {"true": "yes", "1": "yes", "1.0": "yes",
            "false": "no", "0": "no", "0.0": "no"}.get(text, "")
