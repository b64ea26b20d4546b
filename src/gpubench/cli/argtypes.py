"""argparse value types that reject bad numbers with a message naming what is expected."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def int_at_least(minimum: int, not_int: str, too_small: str) -> Callable[[str], int]:
    """An argparse type for whole numbers >= `minimum`; the two texts say what was
    expected when the text is not a whole number, and when it is below the minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {not_int}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {too_small}, got {text!r}")
        return value
    return parse


positive_int = int_at_least(1, "a positive integer", "a positive integer")
nonnegative_int = int_at_least(0, "an integer >= 0", "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _share(text: str) -> float:
    """'0.02' or '2%' as 0.02; NaN when it is not a number (callers reject NaN)."""
    raw = text.strip()
    try:
        return float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        return math.nan


def fraction(text: str) -> float:
    """A relative width such as 0.02 (or '2%')."""
    value = _share(text)
    if not (0 < value < 1):  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a percentage, got {text!r}")
    return value


def accuracy(text: str) -> float:
    """A test accuracy in (0, 1], such as 0.97 (or '97%')."""
    value = _share(text)
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected an accuracy in (0, 1] (e.g. 0.97 or 97%), "
                                         f"got {text!r}")
    return value
