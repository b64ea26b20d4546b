"""argparse's side of the declared value kinds (measure/option.py): a type function that
rejects a bad value with the kind's one line, and allowed values asked for only when
argparse first needs them (a registry's names: parsing, an error, --help)."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, Union


def arg_type(kind: Union[Any, str]) -> Callable[[str], Any]:
    """An argparse type for values of `kind` (a Kind, or its name in measure/option.py,
    looked up when a value is parsed: building the parser imports no declaration)."""
    def parse(text: str) -> Any:
        found = kind
        if isinstance(kind, str):
            from gpubench.measure import option
            found = getattr(option, kind)
        try:
            return found.read(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


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


positive_int = arg_type("POSITIVE_INT")
nonnegative_int = arg_type("NONNEGATIVE_INT")
positive_float = arg_type("POSITIVE_FLOAT")
path_text = arg_type("PATH")  # not empty: '' would name the current folder


class Choices(Sequence):
    """Allowed values made when first asked for, so that building the parser (every
    gpubench command does) asks no registry."""

    def __init__(self, make: Callable[[], Sequence[str]]) -> None:
        self._make = make
        self._values: Optional[Tuple[str, ...]] = None

    def _all(self) -> Tuple[str, ...]:
        if self._values is None:
            self._values = tuple(self._make())
        return self._values

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __contains__(self, value: object) -> bool:
        return value in self._all()


def path_arg(text: str) -> Any:
    """A file or folder argument as a Path; '' (which would name the current folder,
    silently) is refused."""
    from pathlib import Path

    return Path(path_text(text))
